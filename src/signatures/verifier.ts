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
 *
 * Lookups (issue 15: a cold pull costs one referrers or `.sig` lookup): each rule looks only
 * where a signature it can accept may be (cosignPlaces), a Notation rule whose trust policy skips
 * the image asks for nothing. A cosign rule accepts both a `.sig` payload and a bundle (cosign v3
 * signs into a bundle by default; older signatures are `.sig` images), so it looks first where
 * the repository's last verified signature was (a bounded LRU; at first contact: `.sig` for a
 * key rule, referrers for a keyless one) and at the other place only when that does not satisfy it. A registry whose referrers API answered 404/405 is read through the
 * referrers tag schema directly for a while (discover.ts ReferrersApiMemory).
 */
import { LRUCache } from "lru-cache";
import type { Policy } from "../policy/types.js";
import { verifyCosignLegacy } from "./cosign-legacy.js";
import {
  type DiscoveredSignatures,
  discoverSignatures,
  NOTATION_SIGNATURE,
  ReferrersApiMemory,
  SIGSTORE_BUNDLE_V03,
  type SignatureFetcher,
} from "./discover.js";
import { notationPlug } from "./notation-plug.js";
import { verifySigstoreBundles } from "./sigstore-bundle.js";
import {
  type LoadedCosignRule,
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
  readonly #referrersApi: ReferrersApiMemory;
  /** per registry/repository: where its last verified cosign signature was ("legacy" | "referrers") */
  readonly #cosignPlace = new LRUCache<string, Place>({ max: 10_000 });
  constructor(private readonly opts: SignatureVerifierOptions) {
    this.#cache = new LRUCache({ max: opts.maxEntries ?? 10_000 });
    this.#now = opts.now ?? Date.now;
    this.#referrersApi = new ReferrersApiMemory(this.#now);
  }

  /**
   * The cached verdict for the target, if one is fresh; never verifies. tags/list uses it to
   * spend its verification budget only on digests not judged yet.
   */
  cached(policy: Policy, target: VerifyTarget): TimedVerdict | undefined {
    const req = policy.signatures;
    if (req === undefined || !req.loaded) return undefined;
    const cached = this.#cache.get(cacheKey(target, req));
    return cached && cached.until > this.#now() ? cached : undefined;
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
    const key = cacheKey(target, req);
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
    // Each place is looked at only when a rule needs it, once per digest.
    const discovered = new Map<string, Promise<DiscoveredSignatures | Error>>();
    const artifactTypes = [
      ...(req.rules.some((r) => r.kind === "cosign" && cosignPlaces(r).includes("referrers"))
        ? [SIGSTORE_BUNDLE_V03]
        : []),
      ...(req.rules.some((r) => r.kind === "notation") ? [NOTATION_SIGNATURE] : []),
    ];
    const discover: Discover = (digest, where) => {
      const key = `${digest} ${where}`;
      let d = discovered.get(key);
      if (!d) {
        const opts =
          where === "legacy"
            ? { legacy: true, artifactTypes: [] }
            : {
                legacy: false,
                artifactTypes,
                referrersApiAbsent: this.#referrersApi.absent(target.registry),
              };
        d = discoverSignatures(fetcher, target.repository, digest, opts).then(
          (found) => {
            if (found.referrersApiAbsent) this.#referrersApi.recordAbsent(target.registry);
            return found;
          },
          (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
        );
        discovered.set(key, d);
      }
      return d;
    };
    const placeKey = `${target.registry}/${target.repository}`;
    const places: Places = {
      preferred: () => this.#cosignPlace.get(placeKey),
      found: (place) => {
        this.#cosignPlace.set(placeKey, place);
      },
    };
    const rules: RuleVerdict[] = [];
    for (const rule of req.rules) {
      const own = await judgeRule(rule, image, target.digest, discover, places);
      if (own.satisfied || target.index === undefined) {
        rules.push(own);
        continue;
      }
      const viaIndex = await judgeRule(rule, image, target.index, discover, places);
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

type Discover = (digest: string, where: Place) => Promise<DiscoveredSignatures | Error>;
type Place = "legacy" | "referrers";
interface Places {
  preferred(): Place | undefined;
  found(place: Place): void;
}

function cacheKey(target: VerifyTarget, req: SignatureRequirement): string {
  return [target.registry, target.repository, target.digest, target.index ?? "", req.fingerprint].join(
    "\u0000",
  );
}

/**
 * Where a signature this cosign rule can accept may be, most likely first: both places hold
 * key-signed and keyless signatures (cosign-legacy.ts, sigstore-bundle.ts). cosign v3 writes
 * bundles (referrers) by default, and keyless signers moved there first; `--key` users still
 * have years of `.sig` images.
 */
export function cosignPlaces(rule: LoadedCosignRule): Place[] {
  const keyless = rule.trustedRoot !== undefined && rule.identities.length > 0;
  if (rule.keys.length > 0) return ["legacy", "referrers"];
  return keyless ? ["referrers", "legacy"] : [];
}

async function judgeRule(
  rule: LoadedSignatureRule,
  image: string,
  digest: string,
  discover: Discover,
  places: Places,
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
      // The plug discovers only when the trust policy verifies this image (level skip: nothing).
      const signatures = async () => {
        const found = await discover(digest, "referrers");
        if (found instanceof Error) throw found;
        return found;
      };
      const v = await notationPlug.verify({ material: rule.material, image, digest, signatures });
      return {
        rule: label,
        satisfied: v.satisfied,
        detail: v.detail,
        ...(v.satisfied ? { on: digest } : {}),
      };
    }
    const possible = cosignPlaces(rule);
    if (possible.length === 0)
      return {
        rule: label,
        satisfied: false,
        detail: "the rule can accept no signature (no keys, no identities)",
      };
    const first = places.preferred();
    const order =
      first && possible.includes(first) ? [first, ...possible.filter((p) => p !== first)] : possible;
    const why: string[] = [];
    for (const place of order) {
      const found = await discover(digest, place);
      const result =
        found instanceof Error
          ? unreadable(found)
          : place === "legacy"
            ? await verifyCosignLegacy(rule, image, found)
            : await verifySigstoreBundles(rule, found);
      if (result.satisfied) {
        places.found(place);
        return { rule: label, satisfied: true, detail: result.detail, on: digest };
      }
      why.push(result.detail);
    }
    return { rule: label, satisfied: false, detail: why.join("; ") };
  } catch (e) {
    // a blob that cannot be fetched or does not match its digest: not verified
    return unreadable(e as Error);
  }
}
