/**
 * The decision for one manifest reference, without fetching any manifest: the policy in force
 * (read ONCE per call, so a reload never changes the rules under a request), the registry's trust
 * source, and the policy engine's verdict. The proxy (enforce.ts) acts on it; `trustgate resolve`
 * prints it. Trust says what is signed, policy says whether that is enough (src/policy); this
 * module only joins them to the configuration.
 */
import {
  type AppliedPolicy,
  applyPolicy,
  type DefaultPolicySetting,
  decideDigestPull,
  decideTag,
  needsTrust,
  type Policy,
  type PolicyDecision,
  type PolicySet,
  trustQueryFor,
} from "../policy/index.js";
import { TrustError } from "../trust/errors.js";
import type { TrustSources } from "../trust/sources.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../trust/types.js";
import type { IndexChildren } from "./index-children.js";
import type { AnswerReuse } from "./manifests.js";

export interface DecisionDeps {
  /** the live policy set (a PolicyStore, or a fixed set) */
  policies: { readonly current: PolicySet };
  defaultPolicy: DefaultPolicySetting;
  sources: TrustSources;
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
  readonly reuse?: Pick<AnswerReuse, "until" | "stillValid">;
}

export interface DigestDecided extends Decided {
  /** how the digest is vouched for by trust: a signed target, or a child of a signed index */
  readonly signedVia: "target" | "index" | undefined;
  /** the length the signature (or the signed index) gives for these bytes */
  readonly size: number | undefined;
}

export class TrustDecider {
  constructor(private readonly deps: DecisionDeps) {}

  applied(image: string, policies: PolicySet = this.deps.policies.current): AppliedPolicy {
    return applyPolicy(policies, image, this.deps.defaultPolicy);
  }

  async decideTag(registry: string, repository: string, tag: string): Promise<TagDecided> {
    const image = `${registry}/${repository}`;
    const policies = this.deps.policies.current;
    const applied = this.applied(image, policies);
    let trust: TagSignatures | TrustError | undefined;
    let source: string | undefined;
    if (needsTrust(applied) && applied.kind === "policy") {
      try {
        const s = this.deps.sources.sourceFor(applied.policy, registry, repository);
        source = s.kind;
        trust = await s.resolveTag(trustQueryFor(applied.policy, registry, repository), tag);
        if (s.kind === "tuf") trust = tufSignaturesAsPolicyRoles(trust, applied.policy.trust.roles);
        source = trust.source;
      } catch (err) {
        // Fail closed: any TrustError is handed to the policy, which refuses (or, in audit, logs).
        if (!(err instanceof TrustError)) throw err;
        trust = err;
      }
    }
    const live = this.deps.policies;
    return {
      decision: decideTag(applied, { image, tag }, trust),
      image,
      source,
      ...(trust instanceof TrustError ? { trustFailure: trust.code } : {}),
      ...(trust && !(trust instanceof TrustError) && trust.reuseUntil !== undefined
        ? { reuse: { until: trust.reuseUntil, stillValid: () => live.current === policies } }
        : {}),
    };
  }

  /** Every signed target of the repository under `policy`, or why trust failed. */
  async signedTargets(
    registry: string,
    repository: string,
    policy: Policy,
  ): Promise<SignedTarget[] | TrustError> {
    try {
      const source = this.deps.sources.sourceFor(policy, registry, repository);
      return await source.listSigned(trustQueryFor(policy, registry, repository));
    } catch (err) {
      if (err instanceof TrustError) return err;
      throw err;
    }
  }

  /**
   * A pull by digest: signed when it is a signed target of the repository, or a child of a signed
   * index served earlier whose root digest is still signed (`reachable`).
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
      };
    }
    // Trust that cannot be established is the policy's to judge (a refusal unless an exception).
    const trustFailed = (err: unknown, source: TrustSource | undefined): DigestDecided => {
      if (!(err instanceof TrustError)) throw err;
      return {
        decision: decideDigestPull(applied, ref, err),
        image,
        trustFailure: err.code,
        source: source?.kind,
        signedVia: undefined,
        size: undefined,
      };
    };
    let source: TrustSource;
    try {
      source = this.deps.sources.sourceFor(applied.policy, registry, repository);
    } catch (err) {
      return trustFailed(err, undefined);
    }
    const query: TrustQuery = trustQueryFor(applied.policy, registry, repository);
    let target: SignedTarget | undefined;
    try {
      // Interim: the first signature decides, as before; the policy judgement over all of them
      // (requireAll, REVIEW T3) replaces this.
      target = (await source.signedByDigest(query, digest))[0];
    } catch (err) {
      return trustFailed(err, source);
    }
    if (target) {
      const decision = decideDigestPull(applied, ref, true);
      return {
        decision: {
          ...decision,
          role: target.role,
          size: target.size,
          reason: `${image}@${digest} is signed as tag ${target.name} in ${target.role}`,
        },
        image,
        source: source.kind,
        signedVia: "target",
        size: target.size,
      };
    }
    const via = reachable?.lookup(registry, repository, digest);
    if (via) {
      for (const [root, size] of via.roots) {
        // the same verified trust data as above, already fresh: a map lookup, no network
        const parent = (await source.signedByDigest(query, root))[0];
        if (!parent) continue;
        const decision = decideDigestPull(applied, ref, true);
        return {
          decision: {
            ...decision,
            role: parent.role,
            size,
            reason: `${image}@${digest} is listed in the signed index ${root} (tag ${parent.name}, ${parent.role})`,
          },
          image,
          source: source.kind,
          signedVia: "index",
          size,
        };
      }
    }
    return {
      decision: decideDigestPull(applied, ref, false),
      image,
      source: source.kind,
      signedVia: undefined,
      size: undefined,
    };
  }
}

/**
 * TUF answers with the delegated role its walk found (e.g. "acme"), after TufSource has already
 * applied the query's roles (trust/tuf/source.ts roleCounts): with Docker's default roles, any role
 * the walk reaches counts, because in TUF the repository's own delegations, signed by the
 * top-level targets key that root pins, decide who may sign which path. To the policy engine,
 * which matches signature roles against `trust.roles`, such a signature is one made through
 * `targets`; the audit line keeps the real signer in `source`.
 */
function tufSignaturesAsPolicyRoles(trust: TagSignatures, roles: readonly string[]): TagSignatures {
  const outside = trust.signatures.filter((sig) => !roles.includes(sig.role));
  if (outside.length === 0 || !roles.includes("targets")) return trust;
  return {
    ...trust,
    signatures: trust.signatures.map((sig) => (roles.includes(sig.role) ? sig : { ...sig, role: "targets" })),
    source: `${trust.source} (signed by delegation ${outside.map((s) => s.role).join(", ")})`,
  };
}
