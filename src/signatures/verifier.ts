/**
 * The signature requirement of a policy, judged for one digest: each rule's verdict (cosign:
 * legacy `.sig` payloads, then Sigstore bundles; notation: the Notation verifier, notation-plug.ts),
 * combined by `require: all | any`. A manifest reached through a signed index (index children)
 * is covered, per rule, by a signature on itself or on that index.
 *
 * Verdicts are cached in a bounded LRU keyed on every input of the decision: registry,
 * repository, digest, the index it was reached through, and the requirement's fingerprint (its
 * settings and the content of every key and trust file, material.ts), so a reloaded policy or a
 * rotated key never answers from a stale verdict. A verdict is kept for a while only: a
 * satisfied one for VERIFIED_TTL_MS (a signature can be deleted upstream), a refusal for
 * REFUSED_TTL_MS (a signature can be added); concurrent misses share one verification.
 * Discovery failures (a broken or hostile registry) are refusals: fail closed.
 */
import { LRUCache } from "lru-cache";
import type { Policy } from "../policy/types.js";
import { verifyCosignLegacy } from "./cosign-legacy.js";
import {
  type DiscoveredSignatures,
  discoverSignatures,
  NOTATION_SIGNATURE,
  SIGSTORE_BUNDLE_V03,
  type SignatureFetcher,
} from "./discover.js";
import { notationPlug } from "./notation-plug.js";
import { verifySigstoreBundles } from "./sigstore-bundle.js";
import {
  type LoadedSignatureRule,
  type RuleVerdict,
  ruleLabel,
  type SignatureRequirement,
  type SignatureVerdict,
} from "./types.js";

export const VERIFIED_TTL_MS = 10 * 60_000;
export const REFUSED_TTL_MS = 30_000;

export interface TimedVerdict extends SignatureVerdict {
  /** ms since the epoch until which this verdict is reused (a warm answer must not outlive it) */
  readonly until: number;
}

export interface SignatureVerifierOptions {
  /** the transport for a configured registry (RegistrySignatureFetcher over its client) */
  fetcherFor(registry: string): SignatureFetcher;
  now?: () => number;
  maxEntries?: number;
}

export interface VerifyTarget {
  readonly registry: string;
  readonly repository: string;
  readonly digest: string;
  /** the signed index this digest was reached through, when it is an index child */
  readonly index?: string | undefined;
}

export class SignatureVerifier {
  readonly #cache: LRUCache<string, TimedVerdict>;
  readonly #inflight = new Map<string, Promise<TimedVerdict>>();
  readonly #now: () => number;
  constructor(private readonly opts: SignatureVerifierOptions) {
    this.#cache = new LRUCache({ max: opts.maxEntries ?? 10_000 });
    this.#now = opts.now ?? Date.now;
  }

  /** The policy's requirement judged for the target; undefined when the policy has none. */
  async verify(policy: Policy, target: VerifyTarget): Promise<TimedVerdict | undefined> {
    const req = policy.signatures;
    if (req === undefined) return undefined;
    if (!req.loaded) {
      // parsed but its key and trust files never read (not through loadPolicyDir): fail closed
      const summary = `policy ${policy.name}: signature material not loaded`;
      return { satisfied: false, rules: [], summary, until: this.#now() };
    }
    const key = [target.registry, target.repository, target.digest, target.index ?? "", req.fingerprint].join(
      "\u0000",
    );
    const cached = this.#cache.get(key);
    if (cached && cached.until > this.#now()) return cached;
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#judge(policy.name, req, target)
        .then((v) => {
          this.#cache.set(key, v);
          return v;
        })
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  async #judge(policyName: string, req: SignatureRequirement, target: VerifyTarget): Promise<TimedVerdict> {
    const image = `${target.registry}/${target.repository}`;
    const fetcher = this.opts.fetcherFor(target.registry);
    // Each place is looked at only when a rule needs it, once per digest: a cold pull whose
    // cosign .sig satisfies the rule costs that one lookup (and its payloads), no referrers query.
    const discovered = new Map<string, Promise<DiscoveredSignatures | Error>>();
    const discover: Discover = (digest, where) => {
      const key = `${digest} ${where}`;
      let d = discovered.get(key);
      if (!d) {
        const opts =
          where === "legacy"
            ? { legacy: true, artifactTypes: [] }
            : {
                legacy: false,
                artifactTypes: [
                  ...(req.rules.some((r) => r.kind === "cosign") ? [SIGSTORE_BUNDLE_V03] : []),
                  ...(req.rules.some((r) => r.kind === "notation") ? [NOTATION_SIGNATURE] : []),
                ],
              };
        d = discoverSignatures(fetcher, target.repository, digest, opts).catch((e: unknown) =>
          e instanceof Error ? e : new Error(String(e)),
        );
        discovered.set(key, d);
      }
      return d;
    };
    const rules: RuleVerdict[] = [];
    for (const rule of req.rules) {
      const own = await judgeRule(rule, image, target.digest, discover);
      if (own.satisfied || target.index === undefined) {
        rules.push(own);
        continue;
      }
      const viaIndex = await judgeRule(rule, image, target.index, discover);
      rules.push(
        viaIndex.satisfied
          ? { ...viaIndex, detail: `${viaIndex.detail} on the index ${target.index} that lists it` }
          : { ...own, detail: `${own.detail}; on the index ${target.index}: ${viaIndex.detail}` },
      );
    }
    const satisfied =
      req.require === "all" ? rules.every((r) => r.satisfied) : rules.some((r) => r.satisfied);
    const shown = satisfied ? rules.filter((r) => r.satisfied) : rules.filter((r) => !r.satisfied);
    const summary = satisfied
      ? `signatures verified (policy ${policyName}, require ${req.require}): ${shown.map((r) => `${r.rule}: ${r.detail}`).join("; ")}`
      : `signatures not verified (policy ${policyName}, require ${req.require}): ${shown.map((r) => `${r.rule}: ${r.detail}`).join("; ")}`;
    return { satisfied, rules, summary, until: this.#now() + (satisfied ? VERIFIED_TTL_MS : REFUSED_TTL_MS) };
  }
}

type Discover = (digest: string, where: "legacy" | "referrers") => Promise<DiscoveredSignatures | Error>;

async function judgeRule(
  rule: LoadedSignatureRule,
  image: string,
  digest: string,
  discover: Discover,
): Promise<RuleVerdict> {
  const label = `${ruleLabel(rule)} line ${rule.line}`;
  const unreadable = (e: Error): RuleVerdict => ({
    rule: label,
    satisfied: false,
    detail: `the signatures of ${digest} could not be read (${e.message})`,
  });
  try {
    if (rule.kind === "notation") {
      if (!notationPlug)
        return { rule: label, satisfied: false, detail: "notation is not supported in this build" };
      const found = await discover(digest, "referrers");
      if (found instanceof Error) return unreadable(found);
      const v = await notationPlug.verify({ material: rule.material, image, digest, signatures: found });
      return {
        rule: label,
        satisfied: v.satisfied,
        detail: v.detail,
        ...(v.satisfied ? { on: digest } : {}),
      };
    }
    const sig = await discover(digest, "legacy");
    const legacy = sig instanceof Error ? unreadable(sig) : await verifyCosignLegacy(rule, image, sig);
    if (legacy.satisfied) return { rule: label, satisfied: true, detail: legacy.detail, on: digest };
    const referrers = await discover(digest, "referrers");
    const bundles =
      referrers instanceof Error ? unreadable(referrers) : await verifySigstoreBundles(rule, referrers);
    if (bundles.satisfied) return { rule: label, satisfied: true, detail: bundles.detail, on: digest };
    return { rule: label, satisfied: false, detail: `${legacy.detail}; ${bundles.detail}` };
  } catch (e) {
    // a blob that cannot be fetched or does not match its digest: not verified
    return unreadable(e as Error);
  }
}
