/**
 * Several trust sources for one policy, during a cut-over from Notary to TUF (issue 14 point 5):
 * `trust.sources: [tuf, notary]` asks them in that order and the first whose signatures satisfy
 * the policy decides; `trust.notaryUntil` ends Notary's say at an instant. Pure: the caller asks
 * the sources (src/proxy/decide.ts) and hands every answer here. Each answer is judged by the
 * policy's one rule (decideTag / decideDigestPull, judge.ts), strictly (enforce, no exceptions);
 * only when none verifies do the policy's mode, exceptions and digestPulls apply, once, to the
 * reasons of all of them.
 */
import type { TrustError } from "../trust/errors.js";
import type { TagSignatures } from "../trust/types.js";
import type { AppliedPolicy } from "./applied.js";
import {
  type DigestSignatures,
  decideDigestPull,
  decideTag,
  findException,
  type PolicyDecision,
  type TagRef,
  unsigned,
} from "./decision.js";
import type { Policy, TrustSourceKind } from "./types.js";

/** What one source said: verified signatures, why trust failed, or (a string) why it no longer counts. */
export interface SourceAnswer<T> {
  /** "tuf" | "notary", or "trust" when no source could be chosen at all */
  readonly kind: string;
  readonly trust: T | TrustError | string;
}

export interface AcrossDecision {
  readonly decision: PolicyDecision;
  /** index of the answer that decided (its signatures satisfied the policy), if one did */
  readonly decidedBy: number | undefined;
}

/** The sources a policy names, in order (`trust.sources`, or `[trust.source]`); undefined: the registry's one. */
export function policySources(policy: Policy): readonly TrustSourceKind[] | undefined {
  return policy.trust.sources ?? (policy.trust.source ? [policy.trust.source] : undefined);
}

/** `2026-12-08` for a day's start (as written), else the full ISO instant. */
export function formatInstant(date: Date): string {
  const iso = date.toISOString();
  return iso.endsWith("T00:00:00.000Z") ? iso.slice(0, 10) : iso.replace(/\.000Z$/, "Z");
}

/** Why `kind` no longer counts for the policy at `now`, or undefined while it does. */
export function retiredReason(policy: Policy, kind: string, now: Date): string | undefined {
  const until = policy.trust.notaryUntil;
  if (kind !== "notary" || until === undefined || now.getTime() < until.getTime()) return undefined;
  return `Notary signatures no longer count since ${formatInstant(until)} (policy ${policy.name}: trust.notaryUntil)`;
}

/** The policy as judged per source: signed or not, nothing else (mode, exceptions apply once, later). */
function strict(applied: AppliedPolicy & { kind: "policy" }): AppliedPolicy {
  return {
    ...applied,
    policy: { ...applied.policy, mode: "enforce", digestPulls: "signed", exceptions: [] },
  };
}

/** A signed allow under the strict policy, in the real policy's mode. */
function relax(decision: PolicyDecision, policy: Policy): PolicyDecision {
  return { ...decision, mode: policy.mode, ...(policy.mode === "audit" ? { wouldDeny: false } : {}) };
}

/** Whether this one answer satisfies the policy for the tag (then later sources are not asked). */
export function tagVerifies(applied: AppliedPolicy, ref: TagRef, trust: TagSignatures | TrustError): boolean {
  if (applied.kind !== "policy") return false;
  return decideTag(strict(applied), ref, trust).digest !== undefined;
}

export function digestVerifies(
  applied: AppliedPolicy,
  ref: { readonly image: string; readonly digest: string },
  trust: DigestSignatures | TrustError,
): boolean {
  if (applied.kind !== "policy") return false;
  return decideDigestPull(strict(applied), ref, trust).digest !== undefined;
}

export function decideTagAcross(
  applied: AppliedPolicy,
  ref: TagRef,
  answers: readonly SourceAnswer<TagSignatures>[],
): AcrossDecision {
  return across(
    applied,
    answers,
    (a, trust) => decideTag(a, ref, trust),
    (policy) => findException(policy, ref.image, ref.tag),
    false,
  );
}

export function decideDigestAcross(
  applied: AppliedPolicy,
  ref: { readonly image: string; readonly digest: string },
  answers: readonly SourceAnswer<DigestSignatures>[],
): AcrossDecision {
  return across(
    applied,
    answers,
    (a, trust) => decideDigestPull(a, ref, trust),
    (policy) => findException(policy, ref.image, undefined),
    true,
  );
}

function across<T>(
  applied: AppliedPolicy,
  answers: readonly SourceAnswer<T>[],
  decide: (applied: AppliedPolicy, trust: T | TrustError | undefined) => PolicyDecision,
  exceptionOf: (policy: Policy) => ReturnType<typeof findException>,
  byDigest: boolean,
): AcrossDecision {
  const only = answers[0];
  // one source asked: exactly the single-source decision (mode, exceptions, digestPulls included)
  if (
    applied.kind !== "policy" ||
    answers.length === 0 ||
    (answers.length === 1 && typeof only?.trust !== "string")
  ) {
    const trust = only && typeof only.trust !== "string" ? only.trust : undefined;
    const decision = decide(applied, trust);
    return { decision, decidedBy: decision.digest !== undefined && only ? 0 : undefined };
  }
  const policy = applied.policy;
  const whys: string[] = [];
  for (const [i, answer] of answers.entries()) {
    if (typeof answer.trust === "string") {
      whys.push(`${answer.kind}: ${answer.trust}`);
      continue;
    }
    const d = decide(strict(applied), answer.trust);
    if (d.digest !== undefined) return { decision: relax(d, policy), decidedBy: i };
    whys.push(`${answer.kind}: ${d.reason}`);
  }
  // digestPulls: any lets an unsigned digest through; decideDigestPull says so without trust
  if (byDigest && policy.digestPulls === "any")
    return { decision: decide(applied, undefined), decidedBy: undefined };
  return { decision: unsigned(policy, exceptionOf(policy), whys.join("; ")), decidedBy: undefined };
}
