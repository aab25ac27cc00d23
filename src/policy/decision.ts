/**
 * The policy decision, pure: given the rules that apply (applyPolicy), a reference, and what the
 * trust layer verified (TagSignatures, DigestSignatures) or why it could not (TrustError), allow or
 * deny, and say why in words a person understands. Trust says *what is signed*; this module says
 * *whether that is enough*, by one judgement for every path (judge.ts). Nothing here does I/O; the
 * proxy logs the returned decision as one audit line.
 */

import type { SignatureVerdict } from "../signatures/types.js";
import { TrustError } from "../trust/errors.js";
import type { SignedTarget, TagSignatures, TrustQuery } from "../trust/types.js";
import { type AppliedPolicy, DEFAULT_POLICY_NAME } from "./applied.js";
import { type Judgement, judgeSignatures, signedInPolicyRoles } from "./judge.js";
import { matchSegments } from "./pattern.js";
import type { Policy, PolicyException, PolicyMode } from "./types.js";

export interface PolicyDecision {
  readonly decision: "allow" | "deny";
  /** audit mode only: true when enforce would have refused this pull */
  readonly wouldDeny?: boolean;
  /** the signed manifest digest to pull by; absent when allowed without a signature */
  readonly digest?: string;
  /** the signed manifest length in bytes, with `digest` */
  readonly size?: number;
  /** the role whose signature was used (requireAll: every role, joined with "+") */
  readonly role?: string;
  /** a pull by digest allowed as a child: the signed index (root of the chain) that lists it */
  readonly index?: string;
  /** the policy behind the decision: its name, or "defaultPolicy" */
  readonly policy: string;
  readonly mode: PolicyMode | "refuse";
  /** set when an exception allowed an unsigned pull: the exception's reason */
  readonly exception?: string;
  readonly reason: string;
  /** the policy's signature requirement, when it has one: which rule and key/identity verified, or why none did */
  readonly signatures?: string;
}

/**
 * The policy's signature requirement (`signatures:`) judged on top of a decision about the same
 * digest (its tag trust). Only an allow with a digest is judged: a refusal stays one, an exception
 * says the image may be unsigned, `off` checks nothing. Not satisfied: enforce refuses with the
 * verdict (it names the rule), audit allows the same digest and reports would-deny.
 */
export function applySignatureVerdict(
  policy: Policy,
  decision: PolicyDecision,
  verdict: SignatureVerdict | undefined,
): PolicyDecision {
  if (verdict === undefined || decision.decision === "deny" || decision.exception !== undefined)
    return decision;
  if (verdict.satisfied) return { ...decision, signatures: verdict.summary };
  // audit already reporting would-deny (tag trust): the verdict is added, the reason stays
  if (decision.wouldDeny === true) return { ...decision, signatures: verdict.summary };
  if (policy.mode === "audit")
    return {
      ...decision,
      wouldDeny: true,
      signatures: verdict.summary,
      reason: `audit: would deny: ${decision.reason}, but ${verdict.summary}`,
    };
  return {
    decision: "deny",
    policy: policy.name,
    mode: policy.mode,
    signatures: verdict.summary,
    reason: `${decision.reason}, but ${verdict.summary}`,
  };
}

/**
 * `tagTrust: registry`: the tag's digest as the upstream registry has it, allowed only when its
 * signatures satisfy the policy (no trust source vouches for the tag: README says what that gives up).
 */
export function decideRegistryTag(
  policy: Policy,
  name: string,
  target: { readonly digest: string; readonly size: number },
  verdict: SignatureVerdict,
): PolicyDecision {
  const base: PolicyDecision = {
    decision: "allow",
    ...(policy.mode === "audit" ? { wouldDeny: false } : {}),
    digest: target.digest,
    size: target.size,
    role: "registry",
    policy: policy.name,
    mode: policy.mode,
    reason: `${name} is ${target.digest} in the registry (tagTrust: registry, no tag trust)`,
  };
  return applySignatureVerdict(policy, base, verdict);
}

/** `canonical image` + tag, e.g. { image: "docker.io/acme/app", tag: "latest" } */
export interface TagRef {
  readonly image: string;
  readonly tag: string;
}

/** Whether the caller must ask a trust source before deciding (no for `off` and for a refusal). */
export function needsTrust(applied: AppliedPolicy): boolean {
  return applied.kind === "policy" && applied.policy.mode !== "off";
}

/**
 * The query to send to the trust source for a policy (registry/repository split from the canonical
 * image by the caller, which knows the registry configuration). `policy.trust.source` says which
 * source; undefined means the registry's configured one.
 */
export function trustQueryFor(policy: Policy, registry: string, repository: string): TrustQuery {
  return {
    registry,
    repository,
    roles: policy.trust.roles,
    ...(policy.trust.rootKeys.length > 0 ? { rootKeys: policy.trust.rootKeys } : {}),
  };
}

/**
 * The decisions that need no trust answer (the refusing default, a policy that is off), or else
 * the policy whose trust requirements the caller must judge.
 */
function withoutTrust(applied: AppliedPolicy, name: string): PolicyDecision | Policy {
  if (applied.kind === "refuse") {
    return {
      decision: "deny",
      policy: DEFAULT_POLICY_NAME,
      mode: "refuse",
      reason: `${name}: ${applied.why}`,
    };
  }
  if (applied.policy.mode === "off") {
    return {
      decision: "allow",
      policy: applied.policy.name,
      mode: "off",
      reason: `policy ${applied.policy.name} is off: trust not checked`,
    };
  }
  return applied.policy;
}

export function decideTag(
  applied: AppliedPolicy,
  ref: TagRef,
  trust: TagSignatures | TrustError | undefined,
): PolicyDecision {
  const name = `${ref.image}:${ref.tag}`;
  const policy = withoutTrust(applied, name);
  if ("decision" in policy) return policy;
  const judged = judgeTag(policy, name, ref.tag, trust);
  if (judged.accepted) {
    return {
      decision: "allow",
      ...(policy.mode === "audit" ? { wouldDeny: false } : {}),
      digest: judged.target.digest,
      size: judged.target.size,
      role: judged.role,
      policy: policy.name,
      mode: policy.mode,
      reason: judged.reason,
    };
  }
  return unsigned(policy, findException(policy, ref.image, ref.tag), judged.reason);
}

/**
 * What the trust source verified for a pull by digest (TrustSource.signedByDigest): every
 * signature of the digest itself and, when the digest was reached through a signed index
 * (src/proxy/index-children.ts), that index and every signature of it.
 */
export interface DigestSignatures {
  readonly signatures: readonly SignedTarget[];
  readonly index?: {
    /** the signed index (the root of the chain of indexes) that lists this digest */
    readonly root: string;
    /** the length that index gives this digest */
    readonly size: number;
    /** every signature of `root` */
    readonly signatures: readonly SignedTarget[];
  };
}

/**
 * A pull by digest, judged by the same rule as a tag (judgeSignatures): allowed when the digest's
 * own signatures satisfy the policy, or when it is listed in a signed index whose signatures do
 * (an index vouches for its children only as far as the policy accepts the index). Otherwise
 * unsigned to the policy: `digestPulls: any` lets it through, an exception or audit may.
 */
export function decideDigestPull(
  applied: AppliedPolicy,
  ref: { readonly image: string; readonly digest: string },
  trust: DigestSignatures | TrustError | undefined,
): PolicyDecision {
  const name = `${ref.image}@${ref.digest}`;
  const policy = withoutTrust(applied, name);
  if ("decision" in policy) return policy;
  const signedAllow = (size: number, role: string, reason: string, index?: string): PolicyDecision => ({
    decision: "allow",
    ...(policy.mode === "audit" ? { wouldDeny: false } : {}),
    digest: ref.digest,
    size,
    role,
    ...(index !== undefined ? { index } : {}),
    policy: policy.name,
    mode: policy.mode,
    reason,
  });
  let why: string;
  if (trust instanceof TrustError) {
    why = trustFailure(policy, name, trust);
  } else if (trust === undefined) {
    why = `${name}: trust was not consulted`;
  } else {
    const own = judgeSignatures(policy, { name, byDigest: true }, trust.signatures);
    if (own.accepted) return signedAllow(own.target.size, own.role, own.reason);
    const index = trust.index;
    const viaIndex = index
      ? judgeSignatures(policy, { name: `${ref.image}@${index.root}`, byDigest: true }, index.signatures)
      : undefined;
    if (index && viaIndex?.accepted) {
      return signedAllow(
        index.size,
        viaIndex.role,
        `${name} is listed in the signed index ${index.root} (tag ${viaIndex.target.name}, ${viaIndex.role})`,
        index.root,
      );
    }
    why = signedInPolicyRoles(policy, trust.signatures)
      ? own.reason
      : index && viaIndex && signedInPolicyRoles(policy, index.signatures)
        ? `${name} is listed in the index ${index.root}, which is not signed as policy ${policy.name} demands: ${viaIndex.reason}`
        : `${name} is not a signed manifest of ${ref.image} (policy ${policy.name}: digestPulls: signed)`;
  }
  if (policy.digestPulls === "any") {
    return {
      decision: "allow",
      ...(policy.mode === "audit" ? { wouldDeny: false } : {}),
      policy: policy.name,
      mode: policy.mode,
      reason: `policy ${policy.name} allows unsigned digest pulls (digestPulls: any)`,
    };
  }
  return unsigned(policy, findException(policy, ref.image, undefined), why);
}

/** Not signed enough: an exception allows it, audit allows and reports, enforce refuses. */
export function unsigned(
  policy: Policy,
  exception: PolicyException | undefined,
  why: string,
): PolicyDecision {
  if (exception) {
    return {
      decision: "allow",
      policy: policy.name,
      mode: policy.mode,
      exception: exception.reason,
      reason: `exception: ${exception.reason} (${why})`,
    };
  }
  if (policy.mode === "audit") {
    return {
      decision: "allow",
      wouldDeny: true,
      policy: policy.name,
      mode: "audit",
      reason: `audit: would deny: ${why}`,
    };
  }
  return { decision: "deny", policy: policy.name, mode: policy.mode, reason: why };
}

/** Is the tag signed the way the policy demands? The trust answer must be for this tag. */
function judgeTag(
  policy: Policy,
  name: string,
  tag: string,
  trust: TagSignatures | TrustError | undefined,
): Judgement {
  if (trust === undefined) return { accepted: false, reason: `${name}: trust was not consulted` };
  if (trust instanceof TrustError) return { accepted: false, reason: trustFailure(policy, name, trust) };
  if (trust.tag !== tag) {
    return { accepted: false, reason: `${name}: the trust answer is for tag "${trust.tag}", not "${tag}"` };
  }
  const judged = judgeSignatures(
    policy,
    { name, byDigest: false },
    trust.signatures.filter((sig) => sig.name === tag),
  );
  return judged.accepted ? { ...judged, reason: `${judged.reason} (${trust.source})` } : judged;
}

function trustFailure(policy: Policy, name: string, err: TrustError): string {
  switch (err.code) {
    case "ROOT_PIN_MISMATCH":
      // The policy knows the pinned IDs; the trust layer's message names the key(s) the server's root has.
      return (
        `${name}: the trust root of ${err.gun} is not signed by a key pinned by policy ${policy.name} ` +
        `(${policy.trust.rootKeys.join(", ") || "none pinned"}): ${err.message}`
      );
    case "DELEGATION_INVALID":
      return `${name}: delegation ${err.role ?? "(unknown role)"} of ${err.gun} is not valid: ${err.message}`;
    default:
      return `${name}: trust could not be established (${err.code}): ${err.message}`;
  }
}

/** The first exception of the policy covering this image (and tag, when there is one). */
export function findException(
  policy: Policy,
  image: string,
  tag: string | undefined,
): PolicyException | undefined {
  if (policy.exceptions.length === 0) return undefined;
  const slash = image.indexOf("/");
  const registry = image.slice(0, slash);
  const path = image.slice(slash + 1).split("/");
  return policy.exceptions.find((ex) => {
    if (
      ex.repository &&
      (ex.repository.registry !== registry || !matchSegments(ex.repository.segments, path))
    ) {
      return false;
    }
    if (ex.tagRegExp) return tag !== undefined && ex.tagRegExp.test(tag);
    return true;
  });
}
