/**
 * The policy decision, pure: given the rules that apply (applyPolicy), a reference, and what the
 * trust layer verified (TagSignatures) or why it could not (TrustError), allow or deny, and say why
 * in words a person understands. Trust says *what is signed*; this module says *whether that is
 * enough*. Nothing here does I/O; the proxy logs the returned decision as one audit line.
 */
import { TrustError } from "../trust/errors.js";
import type { SignedTarget, TagSignatures, TrustQuery } from "../trust/types.js";
import { type AppliedPolicy, DEFAULT_POLICY_NAME } from "./applied.js";
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
  /** the policy behind the decision: its name, or "defaultPolicy" */
  readonly policy: string;
  readonly mode: PolicyMode | "refuse";
  /** set when an exception allowed an unsigned pull: the exception's reason */
  readonly exception?: string;
  readonly reason: string;
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

type Verdict =
  | { readonly ok: true; readonly target: SignedTarget; readonly role: string; readonly reason: string }
  | { readonly ok: false; readonly reason: string };

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
  const verdict = judgeTag(policy, name, ref.tag, trust);
  if (verdict.ok) {
    return {
      decision: "allow",
      ...(policy.mode === "audit" ? { wouldDeny: false } : {}),
      digest: verdict.target.digest,
      size: verdict.target.size,
      role: verdict.role,
      policy: policy.name,
      mode: policy.mode,
      reason: verdict.reason,
    };
  }
  return unsigned(policy, findException(policy, ref.image, ref.tag), verdict.reason);
}

/**
 * A pull by digest. `signed` is whether the digest is a signed target of the repository or a
 * manifest of a verified signed index (the proxy knows the reachable set), or why trust failed.
 */
export function decideDigestPull(
  applied: AppliedPolicy,
  ref: { readonly image: string; readonly digest: string },
  signed: boolean | TrustError | undefined,
): PolicyDecision {
  const name = `${ref.image}@${ref.digest}`;
  const policy = withoutTrust(applied, name);
  if ("decision" in policy) return policy;
  if (signed === true) {
    return {
      decision: "allow",
      ...(policy.mode === "audit" ? { wouldDeny: false } : {}),
      digest: ref.digest,
      policy: policy.name,
      mode: policy.mode,
      reason: `${name} is signed`,
    };
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
  const why =
    signed instanceof TrustError
      ? `${name}: trust could not be established: ${signed.message}`
      : signed === undefined
        ? `${name}: trust was not consulted`
        : `${name} is not a signed manifest of ${ref.image} (policy ${policy.name}: digestPulls: signed)`;
  return unsigned(policy, findException(policy, ref.image, undefined), why);
}

/** Not signed enough: an exception allows it, audit allows and reports, enforce refuses. */
function unsigned(policy: Policy, exception: PolicyException | undefined, why: string): PolicyDecision {
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

/**
 * Is the tag signed the way the policy demands?
 *  - default: the first role in `trust.roles` order that signs the tag decides (Docker:
 *    GetTargetByName(tag, "targets/releases", "targets")); signatures in other roles never count.
 *  - requireAll: every listed role signs the tag, all with the same digest and length.
 */
function judgeTag(
  policy: Policy,
  name: string,
  tag: string,
  trust: TagSignatures | TrustError | undefined,
): Verdict {
  const roles = policy.trust.roles;
  if (trust === undefined) return { ok: false, reason: `${name}: trust was not consulted` };
  if (trust instanceof TrustError) return { ok: false, reason: trustFailure(policy, name, trust) };
  if (trust.tag !== tag) {
    return { ok: false, reason: `${name}: the trust answer is for tag "${trust.tag}", not "${tag}"` };
  }
  const byRole = new Map<string, SignedTarget>();
  for (const sig of trust.signatures) {
    if (roles.includes(sig.role) && !byRole.has(sig.role)) byRole.set(sig.role, sig);
  }
  if (!policy.trust.requireAll) {
    for (const role of roles) {
      const target = byRole.get(role);
      if (target) return { ok: true, target, role, reason: `${name} is signed in ${role} (${trust.source})` };
    }
    return { ok: false, reason: `${name} is not signed in ${orList(roles)}` };
  }
  const missing = roles.filter((r) => !byRole.has(r));
  if (missing.length > 0) {
    return {
      ok: false,
      reason: `${name} is not signed in ${orList(missing, "and")} (policy ${policy.name} requires all of ${roles.join(", ")})`,
    };
  }
  const targets = roles.map((r) => byRole.get(r) as SignedTarget);
  const first = targets[0] as SignedTarget;
  if (targets.some((t) => t.digest !== first.digest || t.size !== first.size)) {
    return {
      ok: false,
      reason:
        `${name} is signed with different content by its roles (${targets.map((t) => `${t.role}: ${t.digest}`).join(", ")}); ` +
        `policy ${policy.name} requires all of them to sign the same digest`,
    };
  }
  return {
    ok: true,
    target: first,
    role: roles.join("+"),
    reason: `${name} is signed in ${roles.join(" and ")} (${trust.source})`,
  };
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

/** "a", "a or b", "a, b or c" */
function orList(items: readonly string[], conj = "or"): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} ${conj} ${items[items.length - 1]}`;
}
