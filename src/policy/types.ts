/**
 * The policy model: what one policy file says once it has been validated. Everything here is
 * immutable (frozen by the loader); a PolicySet built from these is shared by every request that
 * starts while it is current.
 */
import { ConfigError } from "../errors.js";
import type { SignatureRequirement, SignatureRequirementSpec } from "../signatures/types.js";
import type { ImagePattern } from "./pattern.js";

/** enforce: refuse what is not signed; audit: allow, but report what enforce would refuse; off: no trust check. */
export type PolicyMode = "enforce" | "audit" | "off";
export const POLICY_MODES: readonly PolicyMode[] = ["enforce", "audit", "off"];

/** signed: a pull by digest must name a signed target (or a manifest of a signed index); any: allow it. */
export type DigestPulls = "signed" | "any";
export const DIGEST_PULLS: readonly DigestPulls[] = ["signed", "any"];

export type TrustSourceKind = "notary" | "tuf";
export const TRUST_SOURCE_KINDS: readonly TrustSourceKind[] = ["notary", "tuf"];

/**
 * verified: a tag's digest comes from the trust source (TUF/Notary); registry: from the upstream
 * registry's tag, for organisations that sign only with cosign/Notation (allowed only with
 * `signatures:`). A registry tag has no freshness: it can be moved to another signed digest,
 * an old signed image included (README "Requiring cosign or Notation signatures").
 */
export type TagTrust = "verified" | "registry";
export const TAG_TRUSTS: readonly TagTrust[] = ["verified", "registry"];

/** Docker's order: a signature in targets/releases counts first, then one in targets (docker/cli trust.go). */
export const DEFAULT_ROLES: readonly string[] = Object.freeze(["targets/releases", "targets"]);

export interface TrustRequirement {
  /** pinned root key IDs (64 lower-case hex); empty = trust on first use */
  readonly rootKeys: readonly string[];
  /** roles whose signature counts, in order of precedence */
  readonly roles: readonly string[];
  /** every role in `roles` must sign the tag, all with the same digest */
  readonly requireAll: boolean;
  /** which trust source to ask; undefined = the one configured for the image's registry */
  readonly source: TrustSourceKind | undefined;
  /**
   * `trust.sources` (or `[source]`): the sources that count, asked in this order, the first whose
   * signatures satisfy the policy decides (src/policy/across-sources.ts); absent = `source`'s rule
   */
  readonly sources?: readonly TrustSourceKind[] | undefined;
  /** `trust.notaryUntil`: from this instant on, Notary's signatures no longer count (cut-over) */
  readonly notaryUntil?: Date | undefined;
}

export interface PolicyException {
  /** image pattern the exception covers; undefined = every image of the policy */
  readonly repository: ImagePattern | undefined;
  /** tag glob (`*` any characters, `?` one); undefined = every tag */
  readonly tag: string | undefined;
  /** compiled tag glob */
  readonly tagRegExp: RegExp | undefined;
  /** why this may stay unsigned: goes into every decision it allows */
  readonly reason: string;
  /** where it was written, for explain and logs */
  readonly line: number;
}

export interface Policy {
  readonly name: string;
  /** the file it came from (as given to the loader) and the line of its first key */
  readonly file: string;
  readonly match: readonly ImagePattern[];
  /** line of each `match` entry, parallel to `match` */
  readonly matchLines: readonly number[];
  readonly mode: PolicyMode;
  readonly trust: TrustRequirement;
  readonly digestPulls: DigestPulls;
  readonly exceptions: readonly PolicyException[];
  readonly tagTrust: TagTrust;
  /**
   * Signatures the digest must also carry: loaded (material read, loadPolicyDir) or, straight
   * from parsePolicyFile, only parsed; a parsed-only requirement is never satisfied (fail closed).
   */
  readonly signatures: SignatureRequirement | SignatureRequirementSpec | undefined;
}

/** One validation problem, always with a place a person can open in an editor. */
export interface PolicyProblem {
  readonly file: string;
  /** 1-based; 0 when the problem is about the file or directory as a whole */
  readonly line: number;
  readonly message: string;
}

export function formatProblem(p: PolicyProblem): string {
  return p.line > 0 ? `${p.file}:${p.line}: ${p.message}` : `${p.file}: ${p.message}`;
}

/** A policy directory that does not load: every problem found, each as `file:line: message`. */
export class PolicyLoadError extends ConfigError {
  readonly problems: readonly PolicyProblem[];
  constructor(problems: readonly PolicyProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.problems = problems;
  }
}
