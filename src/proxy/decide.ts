/**
 * The decision for one manifest reference, without fetching any manifest: the policy in force
 * (read ONCE per call, so a reload never changes the rules under a request), the registry's trust
 * source, and the policy engine's verdict. The proxy (enforce.ts) acts on it; `trustgate resolve`
 * prints it. Trust says what is signed, policy says whether that is enough (src/policy); this
 * module only joins them to the configuration.
 */

import {
  decideDigestAcross,
  decideTagAcross,
  digestVerifies,
  retiredReason,
  type SourceAnswer,
  tagVerifies,
} from "../policy/across-sources.js";
import {
  type AppliedPolicy,
  applyPolicy,
  applySignatureVerdict,
  type DefaultPolicySetting,
  type DigestSignatures,
  decideDigestPull,
  decideRegistryTag,
  judgeSignatures,
  needsTrust,
  type Policy,
  type PolicyDecision,
  type PolicySet,
  trustQueryFor,
} from "../policy/index.js";
import type { SignatureVerifier, TimedVerdict } from "../signatures/verifier.js";
import { TrustError } from "../trust/errors.js";
import type { SourceCandidate, TrustSources } from "../trust/sources.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../trust/types.js";
import type { IndexChildren } from "./index-children.js";

/**
 * Signature verifications (digests without a fresh cached verdict) one tags/list may start:
 * each costs a lookup or two upstream and some crypto, so a repository of thousands of tags
 * cannot turn one listing into thousands of requests. Above it, tags are left out (fail closed).
 */
export const TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS = 32;

export interface DecisionDeps {
  /** the live policy set (a PolicyStore, or a fixed set) */
  policies: { readonly current: PolicySet };
  defaultPolicy: DefaultPolicySetting;
  sources: TrustSources;
  /** the clock `trust.notaryUntil` is read by (tests pin it) */
  now?: () => Date;
  /** judges `signatures:` requirements; absent: a policy with one refuses every pull (fail closed) */
  signatures?: SignatureVerifier;
  /** `tagTrust: registry`: the tag's digest and length as the upstream registry has them */
  registryTag?: (
    registry: string,
    repository: string,
    tag: string,
  ) => Promise<{ digest: string; size: number }>;
  /** `tagTrust: registry` tags/list: the tag names the upstream registry lists */
  registryTags?: (registry: string, repository: string) => Promise<string[]>;
}

/** A decision plus what the audit line needs beyond the policy engine's answer. */
export interface Decided {
  readonly decision: PolicyDecision;
  /** canonical image, e.g. docker.io/acme/app */
  readonly image: string;
  /** which trust source answered (its `source` text), when one was asked */
  readonly source: string | undefined;
  /** the TrustError code when trust could not be established (the decision says why in words) */
  readonly trustFailure?: string;
}

/** A tag decision, and how long it may be reused without deciding again. */
export interface TagDecided extends Decided {
  /**
   * Until when (ms since the epoch, by the trust source's clock) the same question gets the same
   * decision: the trust source's `reuseUntil`, and only while the policy set it was decided under
   * is still in force. Absent when no trust source vouched for it (off, refusals, failures).
   */
  readonly reuse?: DecisionReuse;
}

/** How long a decision may be reused (manifests.ts AnswerReuse extends it for answers). */
export interface DecisionReuse {
  /** ms since the epoch, by the trust source's clock */
  readonly until: number;
  /** false once the policy set the decision was made under is replaced */
  stillValid(): boolean;
}

export interface DigestDecided extends Decided {
  /** how the digest is vouched for by trust: a signed target, or a child of a signed index */
  readonly signedVia: "target" | "index" | undefined;
  /** the length the signature (or the signed index) gives for these bytes */
  readonly size: number | undefined;
  /**
   * The signed digest that vouches for these bytes: the digest itself when it is a signed target,
   * else the signed index (root of the chain of indexes) that lists it. An index served under this
   * decision records its children under this root (REVIEW T13).
   */
  readonly root: string | undefined;
}

export class TrustDecider {
  constructor(private readonly deps: DecisionDeps) {}

  applied(image: string, policies: PolicySet = this.deps.policies.current): AppliedPolicy {
    return applyPolicy(policies, image, this.deps.defaultPolicy);
  }

  /**
   * Each source the policy counts, in its order, until one's signatures satisfy the policy
   * (`trust.sources`: first that verifies wins; a Notary past `trust.notaryUntil` is not asked).
   */
  async decideTag(registry: string, repository: string, tag: string): Promise<TagDecided> {
    const image = `${registry}/${repository}`;
    const policies = this.deps.policies.current;
    const applied = this.applied(image, policies);
    if (needsTrust(applied) && applied.kind === "policy" && applied.policy.tagTrust === "registry")
      return this.decideRegistryTag(applied.policy, registry, repository, tag);
    const ref = { image, tag };
    const answers: SourceAnswer<TagSignatures>[] = [];
    if (needsTrust(applied) && applied.kind === "policy") {
      const now = this.now();
      for (const candidate of this.deps.sources.sourcesFor(applied.policy, registry, repository)) {
        const answer = await this.askTag(candidate, applied.policy, registry, repository, tag, now);
        answers.push(answer);
        if (typeof answer.trust !== "string" && tagVerifies(applied, ref, answer.trust)) break;
      }
    }
    const across = decideTagAcross(applied, ref, answers);
    let decision = across.decision;
    const decider = across.decidedBy === undefined ? undefined : answers[across.decidedBy];
    let verdict: TimedVerdict | undefined;
    if (applied.kind === "policy" && decision.decision === "allow" && decision.digest !== undefined) {
      verdict = await this.verifySignatures(applied.policy, registry, repository, decision.digest, undefined);
      decision = applySignatureVerdict(applied.policy, decision, verdict);
    }
    const live = this.deps.policies;
    // A warm answer depends on the signature verdict too: it is reused no longer than the verdict.
    const trustReuse = applied.kind === "policy" ? reuseUntil(applied.policy, answers) : undefined;
    const reuse =
      trustReuse === undefined ? undefined : Math.min(trustReuse, verdict?.until ?? Number.POSITIVE_INFINITY);
    const failure = answers.find((a) => a.trust instanceof TrustError)?.trust as TrustError | undefined;
    return {
      decision,
      image,
      source: decider ? describe(decider) : answers.length > 0 ? answers.map(describe).join(", ") : undefined,
      ...(!decider && failure ? { trustFailure: failure.code } : {}),
      ...(reuse !== undefined && decision.digest !== undefined
        ? { reuse: { until: reuse, stillValid: () => live.current === policies } }
        : {}),
    };
  }

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  private async askTag(
    candidate: SourceCandidate,
    policy: Policy,
    registry: string,
    repository: string,
    tag: string,
    now: Date,
  ): Promise<SourceAnswer<TagSignatures>> {
    if ("error" in candidate) return { kind: candidate.kind, trust: candidate.error };
    const retired = retiredReason(policy, candidate.kind, now);
    if (retired) return { kind: candidate.kind, trust: retired };
    const s = candidate.source;
    try {
      const answer = await s.resolveTag(trustQueryFor(policy, registry, repository), tag);
      const mapped = asPolicyRoles(s, policy, answer.signatures);
      return {
        kind: s.kind,
        trust:
          mapped.delegations.length === 0
            ? answer
            : {
                ...answer,
                signatures: [...mapped.signatures],
                source: `${answer.source} (signed by delegation ${mapped.delegations.join(", ")})`,
              },
      };
    } catch (err) {
      // Fail closed: any TrustError is handed to the policy, which refuses (or, in audit, logs).
      if (!(err instanceof TrustError)) throw err;
      return { kind: s.kind, trust: err };
    }
  }

  /**
   * `tagTrust: registry`: no trust source; the registry's digest for the tag, allowed only when
   * its signatures satisfy the policy. Never reused as a warm answer: the registry's tag can move.
   */
  private async decideRegistryTag(
    policy: Policy,
    registry: string,
    repository: string,
    tag: string,
  ): Promise<TagDecided> {
    const image = `${registry}/${repository}`;
    const name = `${image}:${tag}`;
    if (!this.deps.registryTag) throw new Error("tagTrust: registry needs the registry's tag lookup");
    const target = await this.deps.registryTag(registry, repository, tag);
    const verdict = await this.verifySignatures(policy, registry, repository, target.digest, undefined);
    return {
      decision: decideRegistryTag(policy, name, target, verdict ?? missingRequirement(policy)),
      image,
      source: "registry (tagTrust: registry)",
    };
  }

  /** The policy's signature requirement for a digest; undefined when it has none. */
  private async verifySignatures(
    policy: Policy,
    registry: string,
    repository: string,
    digest: string,
    index: string | undefined,
  ): Promise<TimedVerdict | undefined> {
    if (policy.signatures === undefined || policy.mode === "off") return undefined;
    if (!this.deps.signatures) return { ...missingRequirement(policy), until: 0 };
    return this.deps.signatures.verify(policy, { registry, repository, digest, index });
  }

  /**
   * The tags of the repository that the policy accepts (tags/list), judged one by one by the same
   * rule as a pull of each tag (judgeSignatures) and, when the policy has `signatures:`, only
   * those whose trusted digest also satisfies them (as decideTag), or why trust failed.
   *
   * Cost is bounded: verdicts come from the verifier's cache when fresh, and at most
   * TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS digests not in it are verified per listing. A tag whose
   * digest is over that budget is left out (fail closed: never listed unverified) and counted in
   * `onUnverified`; its verdict is cached once a pull or a later listing verifies it.
   */
  async acceptedTags(
    registry: string,
    repository: string,
    policy: Policy,
    onUnverified?: (omitted: number) => void,
  ): Promise<string[] | TrustError> {
    if (policy.tagTrust === "registry")
      return this.acceptedRegistryTags(registry, repository, policy, onUnverified);
    /** tag -> the trusted digests of it that some source accepted */
    const accepted = new Map<string, Set<string>>();
    let failure: TrustError | undefined;
    let answered = false;
    const now = this.now();
    for (const candidate of this.deps.sources.sourcesFor(policy, registry, repository)) {
      if ("error" in candidate) {
        failure ??= candidate.error;
        continue;
      }
      if (retiredReason(policy, candidate.kind, now)) continue;
      const tags = await this.acceptedTagsOf(candidate.source, registry, repository, policy);
      if (tags instanceof TrustError) failure ??= tags;
      else {
        answered = true;
        for (const t of tags) {
          const digests = accepted.get(t.name) ?? new Set<string>();
          digests.add(t.digest);
          accepted.set(t.name, digests);
        }
      }
    }
    // a tag counts when any source the policy counts accepts it; no source answered: why
    if (!answered && failure) return failure;
    const names = [...accepted.keys()].sort();
    if (policy.signatures === undefined || policy.mode === "off") return names;
    const satisfied = await this.signedDigests(policy, registry, repository, accepted, onUnverified);
    return names.filter((name) => [...(accepted.get(name) ?? [])].some((d) => satisfied.has(d)));
  }

  /**
   * tags/list under `tagTrust: registry`: the registry's tags whose digest (as the registry has it
   * now, as decideRegistryTag takes it) satisfies the signature requirement. Each tag costs a
   * manifest lookup upstream, so at most TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS tags, in lexical
   * order, are looked up per listing; the rest, and tags whose lookup fails, are left out (fail
   * closed) and counted in `onUnverified`.
   */
  private async acceptedRegistryTags(
    registry: string,
    repository: string,
    policy: Policy,
    onUnverified: ((omitted: number) => void) | undefined,
  ): Promise<string[]> {
    const { registryTags, registryTag } = this.deps;
    if (!registryTags || !registryTag || policy.signatures === undefined || policy.mode === "off") return [];
    const names = [...new Set(await registryTags(registry, repository))].sort();
    const looked = names.slice(0, TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS);
    let omitted = names.length - looked.length;
    const accepted = new Map<string, Set<string>>();
    for (const name of looked) {
      try {
        accepted.set(name, new Set([(await registryTag(registry, repository, name)).digest]));
      } catch {
        omitted++; // deleted since the listing, or the registry failed: not listed (fail closed)
      }
    }
    const satisfied = await this.signedDigests(policy, registry, repository, accepted, onUnverified);
    if (omitted > 0) onUnverified?.(omitted);
    return [...accepted.keys()].filter((n) => [...(accepted.get(n) ?? [])].some((d) => satisfied.has(d)));
  }

  /**
   * Of the tags' digests, those whose signatures satisfy the policy: cached verdicts first (free),
   * then at most TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS new verifications, in tag order.
   */
  private async signedDigests(
    policy: Policy,
    registry: string,
    repository: string,
    accepted: ReadonlyMap<string, ReadonlySet<string>>,
    onUnverified: ((omitted: number) => void) | undefined,
  ): Promise<Set<string>> {
    const satisfied = new Set<string>();
    const verifier = this.deps.signatures;
    if (!verifier) return satisfied; // no verifier wired: nothing satisfies (fail closed)
    const digests = [...new Set([...accepted.keys()].sort().flatMap((n) => [...(accepted.get(n) ?? [])]))];
    const uncached: string[] = [];
    for (const digest of digests) {
      const cached = verifier.cached(policy, { registry, repository, digest });
      if (cached === undefined) uncached.push(digest);
      else if (cached.satisfied) satisfied.add(digest);
    }
    const budget = uncached.slice(0, TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS);
    for (const digest of budget) {
      if ((await verifier.verify(policy, { registry, repository, digest }))?.satisfied) satisfied.add(digest);
    }
    const over = new Set(uncached.slice(TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS));
    if (over.size > 0) {
      const omitted = [...accepted.values()].filter(
        (ds) => ![...ds].some((d) => satisfied.has(d)) && [...ds].some((d) => over.has(d)),
      ).length;
      onUnverified?.(omitted);
    }
    return satisfied;
  }

  private async acceptedTagsOf(
    source: TrustSource,
    registry: string,
    repository: string,
    policy: Policy,
  ): Promise<Array<{ name: string; digest: string }> | TrustError> {
    const image = `${registry}/${repository}`;
    try {
      const query = trustQueryFor(policy, registry, repository);
      const listed = asPolicyRoles(source, policy, await source.listSigned(query)).signatures;
      // listSigned gives each tag's first signature in roles order, which is all the default
      // rule reads. requireAll needs every role's signature of the tag: those sign the same
      // digest under the same name, so they are among signedByDigest's answer (a map lookup).
      const ofDigest = new Map<string, readonly SignedTarget[]>();
      if (policy.trust.requireAll) {
        for (const t of listed) {
          if (!ofDigest.has(t.digest))
            ofDigest.set(t.digest, await this.signaturesOf(source, policy, query, t.digest));
        }
      }
      const accepted: Array<{ name: string; digest: string }> = [];
      for (const t of listed) {
        const signatures = ofDigest.get(t.digest)?.filter((s) => s.name === t.name) ?? [t];
        if (judgeSignatures(policy, { name: `${image}:${t.name}`, byDigest: false }, signatures).accepted)
          accepted.push({ name: t.name, digest: t.digest });
      }
      return accepted;
    } catch (err) {
      if (err instanceof TrustError) return err;
      throw err;
    }
  }

  /**
   * A pull by digest: signed when the digest's own signatures satisfy the policy, or when it is a
   * child of an index served earlier (`reachable`) whose signatures still satisfy it; both judged
   * by the policy's one rule (decideDigestPull, judgeSignatures), as a tag is.
   */
  async decideDigest(
    registry: string,
    repository: string,
    digest: string,
    reachable: IndexChildren | undefined,
  ): Promise<DigestDecided> {
    const image = `${registry}/${repository}`;
    const applied = this.applied(image);
    const ref = { image, digest };
    if (!needsTrust(applied) || applied.kind !== "policy") {
      return {
        decision: decideDigestPull(applied, ref, undefined),
        image,
        source: undefined,
        signedVia: undefined,
        size: undefined,
        root: undefined,
      };
    }
    const policy = applied.policy;
    if (policy.tagTrust === "registry")
      return this.decideRegistryDigest(policy, registry, repository, digest, reachable);
    const answers: SourceAnswer<DigestSignatures>[] = [];
    const now = this.now();
    for (const candidate of this.deps.sources.sourcesFor(policy, registry, repository)) {
      let answer: SourceAnswer<DigestSignatures>;
      if ("error" in candidate) answer = { kind: candidate.kind, trust: candidate.error };
      else {
        const retired = retiredReason(policy, candidate.kind, now);
        if (retired) answer = { kind: candidate.kind, trust: retired };
        else {
          try {
            answer = {
              kind: candidate.kind,
              trust: await this.digestSignatures(
                candidate.source,
                policy,
                registry,
                repository,
                digest,
                reachable,
              ),
            };
          } catch (err) {
            // Fail closed: any TrustError (also one met while checking an index root, REVIEW T14) is
            // the policy's to judge: a refusal, or in audit mode an allow that says wouldDeny.
            if (!(err instanceof TrustError)) throw err;
            answer = { kind: candidate.kind, trust: err };
          }
        }
      }
      answers.push(answer);
      if (typeof answer.trust !== "string" && digestVerifies(applied, ref, answer.trust)) break;
    }
    const across = decideDigestAcross(applied, ref, answers);
    let decision = across.decision;
    const decider = across.decidedBy === undefined ? undefined : answers[across.decidedBy];
    if (decision.decision === "allow" && decision.exception === undefined) {
      const verdict = await this.verifySignatures(policy, registry, repository, digest, decision.index);
      decision = applySignatureVerdict(policy, decision, verdict);
    }
    const failure = answers.find((a) => a.trust instanceof TrustError)?.trust as TrustError | undefined;
    const signedVia =
      decision.index !== undefined ? "index" : decision.digest !== undefined ? "target" : undefined;
    return {
      decision,
      image,
      source: decider ? decider.kind : answers.length > 0 ? answers.map((a) => a.kind).join(", ") : undefined,
      ...(!decider && failure ? { trustFailure: failure.code } : {}),
      signedVia,
      size: signedVia ? decision.size : undefined,
      root: signedVia === "index" ? decision.index : signedVia === "target" ? digest : undefined,
    };
  }

  /**
   * A pull by digest under `tagTrust: registry`: the digest's own signatures, or those of an
   * index it was served through (index children), must satisfy the policy.
   */
  private async decideRegistryDigest(
    policy: Policy,
    registry: string,
    repository: string,
    digest: string,
    reachable: IndexChildren | undefined,
  ): Promise<DigestDecided> {
    const image = `${registry}/${repository}`;
    const name = `${image}@${digest}`;
    let verdict = await this.verifySignatures(policy, registry, repository, digest, undefined);
    let root: { digest: string; size: number | undefined } = { digest, size: undefined };
    if (verdict && !verdict.satisfied) {
      for (const [index, size] of reachable?.lookup(registry, repository, digest)?.roots ?? []) {
        const viaIndex = await this.verifySignatures(policy, registry, repository, digest, index);
        if (viaIndex?.satisfied) {
          verdict = viaIndex;
          root = { digest: index, size };
          break;
        }
      }
    }
    const decision = applySignatureVerdict(
      policy,
      {
        decision: "allow",
        ...(policy.mode === "audit" ? { wouldDeny: false } : {}),
        digest,
        ...(root.size !== undefined ? { size: root.size } : {}),
        role: "registry",
        ...(root.digest !== digest ? { index: root.digest } : {}),
        policy: policy.name,
        mode: policy.mode,
        reason: `${name} (tagTrust: registry, no tag trust)`,
      },
      verdict ?? missingRequirement(policy),
    );
    const allowed = decision.decision === "allow" && !decision.wouldDeny;
    return {
      decision,
      image,
      source: "registry (tagTrust: registry)",
      signedVia: allowed ? (root.digest !== digest ? "index" : "target") : undefined,
      size: allowed ? root.size : undefined,
      root: allowed ? root.digest : undefined,
    };
  }

  /**
   * What trust says about a digest: its own signatures and, when those do not satisfy the policy,
   * the first signed index it was reached through whose signatures do (else the first one, for
   * the refusal's reason). Throws TrustError.
   */
  private async digestSignatures(
    source: TrustSource,
    policy: Policy,
    registry: string,
    repository: string,
    digest: string,
    reachable: IndexChildren | undefined,
  ): Promise<DigestSignatures> {
    const query = trustQueryFor(policy, registry, repository);
    const subject = (d: string) => ({ name: `${registry}/${repository}@${d}`, byDigest: true });
    const signatures = await this.signaturesOf(source, policy, query, digest);
    if (judgeSignatures(policy, subject(digest), signatures).accepted) return { signatures };
    let first: DigestSignatures["index"];
    for (const [root, size] of reachable?.lookup(registry, repository, digest)?.roots ?? []) {
      // the same verified trust data as above, already fresh: a map lookup, no network
      const index = { root, size, signatures: await this.signaturesOf(source, policy, query, root) };
      if (judgeSignatures(policy, subject(root), index.signatures).accepted) return { signatures, index };
      first ??= index;
    }
    return first ? { signatures, index: first } : { signatures };
  }

  /** Every signature of `digest` (TrustSource.signedByDigest), in the policy's role names. */
  private async signaturesOf(
    source: TrustSource,
    policy: Policy,
    query: TrustQuery,
    digest: string,
  ): Promise<readonly SignedTarget[]> {
    return asPolicyRoles(source, policy, await source.signedByDigest(query, digest)).signatures;
  }
}

/** The source text for the audit line: where the answer came from, or the kind and why not. */
/** tagTrust: registry is refused at parse without signatures:; should one get here, it is refused. */
function missingRequirement(policy: Policy): TimedVerdict {
  return {
    satisfied: false,
    rules: [],
    summary: `policy ${policy.name}: signatures cannot be checked`,
    until: 0,
  };
}

function describe(answer: SourceAnswer<TagSignatures>): string {
  const t = answer.trust;
  if (typeof t === "string") return `${answer.kind} (no longer counts)`;
  if (t instanceof TrustError) return answer.kind;
  return t.source;
}

/**
 * Until when the decision from these answers may be reused: the earliest `reuseUntil` of the
 * sources asked, never past `trust.notaryUntil` while Notary was asked (a Notary-decided pull
 * must stop at the cut-over date). No reuse when any source failed (the next request retries).
 */
function reuseUntil(policy: Policy, answers: readonly SourceAnswer<TagSignatures>[]): number | undefined {
  let until: number | undefined;
  for (const a of answers) {
    if (typeof a.trust === "string") continue;
    if (a.trust instanceof TrustError || a.trust.reuseUntil === undefined) return undefined;
    until = Math.min(until ?? Number.POSITIVE_INFINITY, a.trust.reuseUntil);
    if (a.kind === "notary" && policy.trust.notaryUntil)
      until = Math.min(until, policy.trust.notaryUntil.getTime());
  }
  return until;
}

/**
 * TUF answers with the delegated role its walk found (e.g. "acme"), after TufSource has already
 * applied the query's roles (trust/tuf/source.ts roleCounts): with Docker's default roles, any role
 * the walk reaches counts, because in TUF the repository's own delegations, signed by the
 * top-level targets key that root pins, decide who may sign which path. To the policy engine,
 * which matches signature roles against `trust.roles`, such a signature is one made through
 * `targets`; the audit line keeps the real signer in `source`.
 */
function asPolicyRoles(
  source: TrustSource,
  policy: Policy,
  signatures: readonly SignedTarget[],
): { signatures: readonly SignedTarget[]; delegations: string[] } {
  const roles = policy.trust.roles;
  const outside = signatures.filter((sig) => !roles.includes(sig.role));
  if (source.kind !== "tuf" || outside.length === 0 || !roles.includes("targets"))
    return { signatures, delegations: [] };
  return {
    signatures: signatures.map((sig) => (roles.includes(sig.role) ? sig : { ...sig, role: "targets" })),
    delegations: outside.map((s) => s.role),
  };
}
