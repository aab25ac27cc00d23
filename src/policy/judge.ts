/**
 * The one judgement every path makes: does this policy accept these signatures of a target?
 *
 * A pull by tag, a pull by digest, the signed index a child manifest was reached through, and
 * every entry of `tags/list` all come down to "the verified signatures the trust source found"
 * (TrustSource.resolveTag, signedByDigest, listSigned); this function alone says whether they
 * are enough for the policy, so `trust.requireAll` (and every rule added later) holds on every
 * path (REVIEW T3: a digest signed in `targets` alone was refused by tag and allowed by digest).
 * Trust says *what is signed*, policy says *whether that is enough* (sigstore-js policy.ts,
 * notation-go's trust-policy evaluation apart from envelope verification). Pure, no I/O.
 */
import type { SignedTarget } from "../trust/types.js";
import type { Policy } from "./types.js";

export type Judgement =
  | {
      readonly accepted: true;
      /** the signature the pull is pinned to (digest, size) */
      readonly target: SignedTarget;
      /** the role that decided; with requireAll every role, joined with "+" */
      readonly role: string;
      readonly reason: string;
    }
  | { readonly accepted: false; readonly reason: string };

/** What was asked, for the reason: `docker.io/acme/app:v1` or `docker.io/acme/app@sha256:...`. */
export interface JudgedSubject {
  readonly name: string;
  /** asked by digest: the reason then names the tag (target name) the digest is signed as */
  readonly byDigest: boolean;
}

/**
 * Accept when, for one target name (a tag), the signatures in `policy.trust.roles` satisfy the
 * role rule:
 *  - default: the first role in `trust.roles` order that signs it decides (docker/cli
 *    trust.go: GetTargetByName(tag, "targets/releases", "targets")); signatures in any other
 *    role never count;
 *  - requireAll: every listed role signs it, all with the same digest and length.
 * A digest signed under several names is accepted when one of them is: the digest is then the
 * target of a tag the policy accepts. Signatures under different names never add up (a digest
 * signed as `v1` by `targets` and as `v2` by `targets/releases` is not signed by both for one
 * tag, and no tag pull would accept it).
 */
export function judgeSignatures(
  policy: Policy,
  subject: JudgedSubject,
  signatures: readonly SignedTarget[],
): Judgement {
  const roles = policy.trust.roles;
  const byName = new Map<string, Map<string, SignedTarget>>();
  for (const sig of signatures) {
    if (!roles.includes(sig.role)) continue;
    let byRole = byName.get(sig.name);
    if (!byRole) {
      byRole = new Map();
      byName.set(sig.name, byRole);
    }
    if (!byRole.has(sig.role)) byRole.set(sig.role, sig);
  }
  if (byName.size === 0)
    return { accepted: false, reason: `${subject.name} is not signed in ${orList(roles)}` };
  let refusal: Judgement | undefined;
  for (const [name, byRole] of byName) {
    const judged = judgeOneName(policy, subject, name, byRole);
    if (judged.accepted) return judged;
    refusal ??= judged;
  }
  return refusal as Judgement;
}

/** Whether any of `signatures` is in a role the policy counts (else the target is unsigned to it). */
export function signedInPolicyRoles(policy: Policy, signatures: readonly SignedTarget[]): boolean {
  return signatures.some((sig) => policy.trust.roles.includes(sig.role));
}

function judgeOneName(
  policy: Policy,
  subject: JudgedSubject,
  name: string,
  byRole: ReadonlyMap<string, SignedTarget>,
): Judgement {
  const roles = policy.trust.roles;
  const asTag = subject.byDigest ? ` as tag ${name}` : "";
  if (!policy.trust.requireAll) {
    for (const role of roles) {
      const target = byRole.get(role);
      if (target)
        return { accepted: true, target, role, reason: `${subject.name} is signed${asTag} in ${role}` };
    }
    // unreachable: byRole holds only roles of `roles`
    return { accepted: false, reason: `${subject.name} is not signed in ${orList(roles)}` };
  }
  const missing = roles.filter((r) => !byRole.has(r));
  if (missing.length > 0) {
    const present = roles.filter((r) => byRole.has(r));
    const signedAs = subject.byDigest ? `, signed as tag ${name} in ${orList(present, "and")},` : "";
    return {
      accepted: false,
      reason: `${subject.name}${signedAs} is not signed in ${orList(missing, "and")} (policy ${policy.name} requires all of ${roles.join(", ")})`,
    };
  }
  const targets = roles.map((r) => byRole.get(r) as SignedTarget);
  const first = targets[0] as SignedTarget;
  if (targets.some((t) => t.digest !== first.digest || t.size !== first.size)) {
    return {
      accepted: false,
      reason:
        `${subject.name}${asTag} is signed with different content by its roles (${targets.map((t) => `${t.role}: ${t.digest}`).join(", ")}); ` +
        `policy ${policy.name} requires all of them to sign the same digest and length`,
    };
  }
  return {
    accepted: true,
    target: first,
    role: roles.join("+"),
    reason: `${subject.name} is signed${asTag} in ${roles.join(" and ")}`,
  };
}

/** "a", "a or b", "a, b or c" */
export function orList(items: readonly string[], conj = "or"): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} ${conj} ${items[items.length - 1]}`;
}
