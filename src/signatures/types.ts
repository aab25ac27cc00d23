/**
 * Signature requirements of a policy (`signatures:`), as written and as loaded, and what one
 * verification says. A policy file gives the rules (parse-file.ts); the loader reads their key and
 * trust files once (material.ts) and fingerprints their content, so a verdict cache keyed on that
 * fingerprint can never answer for a rotated key or a replaced trusted root.
 *
 * Trust (TUF/Notary) says which digest a tag names; these rules say which signatures that digest
 * must also carry. What a signature proves is computed first (cosign.ts, bundle.ts, a Notation
 * verifier), whether that satisfies the policy second (verifier.ts), as in sigstore-js
 * packages/verify (verifier.ts apart from policy.ts).
 */
import type { KeyObject } from "node:crypto";
import type { TrustMaterial } from "@sigstore/verify";

/** A file named in a policy, relative to the policy file's directory, and where it was named. */
export interface PolicyFileRef {
  /** as written in the policy */
  readonly written: string;
  /** resolved against the policy file's directory */
  readonly path: string;
  readonly line: number;
}

/**
 * A keyless signer: the certificate's OIDC issuer and its subject (SAN), each exactly or by
 * pattern (cosign's --certificate-oidc-issuer(-regexp), --certificate-identity(-regexp)).
 * Exactly one of issuer/issuerPattern and one of subject/subjectPattern is set (parse-file.ts).
 */
export interface CosignIdentity {
  readonly issuer: string | undefined;
  /** anchored (^...$) when compiled: a pattern must match the whole issuer */
  readonly issuerPattern?: string | undefined;
  readonly subject: string | undefined;
  /** anchored (^...$) when compiled: a pattern must match the whole subject */
  readonly subjectPattern: string | undefined;
  readonly line: number;
}

export interface CosignRuleSpec {
  readonly kind: "cosign";
  /** 1-based position in `signatures.rules`, for reasons ("rule 2 (cosign)") */
  readonly index: number;
  readonly line: number;
  readonly keys: readonly PolicyFileRef[];
  readonly identities: readonly CosignIdentity[];
  readonly trustedRoot: PolicyFileRef | undefined;
  /** a signature counts only with a verified transparency-log entry (bundles: tlog threshold 1) */
  readonly requireTlog: boolean;
  /**
   * Repository names a legacy payload's `critical.identity.docker-reference` may give besides the
   * image's own (mirrors, registry aliases; README "Requiring cosign or Notation signatures").
   */
  readonly dockerReferences: readonly string[];
}

export interface NotationRuleSpec {
  readonly kind: "notation";
  readonly index: number;
  readonly line: number;
  readonly trustPolicy: PolicyFileRef;
  readonly trustStore: PolicyFileRef;
}

export type SignatureRuleSpec = CosignRuleSpec | NotationRuleSpec;

export type SignatureCombination = "all" | "any";
export const SIGNATURE_COMBINATIONS: readonly SignatureCombination[] = ["all", "any"];

/** `signatures:` as parsed: file names only, nothing read yet. */
export interface SignatureRequirementSpec {
  readonly loaded: false;
  readonly require: SignatureCombination;
  readonly rules: readonly SignatureRuleSpec[];
  readonly line: number;
}

/** A public key read from a PEM file named in `keys:`. */
export interface CosignKey {
  /** the file as written in the policy: what reasons and audit lines name */
  readonly name: string;
  readonly key: KeyObject;
  /** "ecdsa-p256" | "ed25519" | "rsa" */
  readonly algorithm: "ecdsa-p256" | "ed25519" | "rsa";
  /** sha256 of the key's DER SubjectPublicKeyInfo, hex */
  readonly fingerprint: string;
}

export interface LoadedCosignRule extends CosignRuleSpec {
  readonly material: {
    readonly keys: readonly CosignKey[];
    /** the Sigstore trusted_root.json as @sigstore/verify's trust material */
    readonly trustedRoot: TrustMaterial | undefined;
  };
  /** sha256 over the rule's settings and the content of every file it reads */
  readonly fingerprint: string;
}

export interface LoadedNotationRule extends NotationRuleSpec {
  /** whatever the Notation verifier loaded (its loadNotationMaterial); opaque here */
  readonly material: unknown;
  readonly fingerprint: string;
}

export type LoadedSignatureRule = LoadedCosignRule | LoadedNotationRule;

/** `signatures:` with its material read: what a policy carries once loadPolicyDir accepted it. */
export interface SignatureRequirement {
  readonly loaded: true;
  readonly require: SignatureCombination;
  readonly rules: readonly LoadedSignatureRule[];
  readonly line: number;
  /** sha256 over every rule's fingerprint and `require`: the verdict cache's key part */
  readonly fingerprint: string;
}

/** How one rule judged one digest. */
export interface RuleVerdict {
  readonly rule: string;
  readonly satisfied: boolean;
  /** satisfied: who signed ("key cosign.pub", "identity cody@... (issuer ...)"); else why none did */
  readonly detail: string;
  /** the digest the satisfying signature is on (an index's when a child is covered by its index) */
  readonly on?: string;
}

/** What the signature requirement of a policy says about one digest. */
export interface SignatureVerdict {
  readonly satisfied: boolean;
  readonly rules: readonly RuleVerdict[];
  /** one line for reasons and audit lines */
  readonly summary: string;
}

/** "rule 2 (cosign)" */
export function ruleLabel(rule: { readonly index: number; readonly kind: string }): string {
  return `signatures rule ${rule.index} (${rule.kind})`;
}
