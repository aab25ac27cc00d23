/**
 * Wiring: from a validated Config (and the live policy set) to the app's dependencies: upstream
 * clients, token cache, manifest store, one trust source per registry, and the trust-enforcing
 * manifest resolver and tag lister. `serve`, `resolve` and the in-process tests use it.
 */
import type { ClientAccess } from "./access/gate.js";
import type { Config } from "./config/types.js";
import { ConfigError } from "./errors.js";
import { fixedFieldsLogger, type Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import type { PolicySet } from "./policy/index.js";
import { BlobCache } from "./proxy/blob-cache.js";
import { TrustDecider } from "./proxy/decide.js";
import { TrustEnforcingResolver } from "./proxy/enforce.js";
import { IndexChildren } from "./proxy/index-children.js";
import { ManifestStore } from "./proxy/manifests.js";
import { PassThroughTagLister, SignedTagLister, tagNames } from "./proxy/tags.js";
import { WarmAnswers } from "./proxy/warm.js";
import type { AppDeps } from "./server.js";
import { RegistrySignatureFetcher } from "./signatures/registry-fetcher.js";
import { SignatureVerifier } from "./signatures/verifier.js";
import { TrustSources } from "./trust/sources.js";
import { TokenCache } from "./upstream/auth.js";
import { RegistryClient } from "./upstream/client.js";

export interface RuntimeOptions {
  /** the live policy set: a PolicyStore (reloads swap `current`), or a fixed set in tests */
  policies: { readonly current: PolicySet };
  /** clock for trust expiry and refresh (tests pin it; default: wall clock) */
  now?: () => Date;
  /** count requests, decisions and upstream exchanges (serve with an admin listener); absent: none */
  metrics?: Metrics;
  /** who may use the API (`clients:`, opened by serve); absent: anyone who can connect */
  access?: ClientAccess;
}

export interface Runtime {
  deps: AppDeps;
  store: ManifestStore;
  tokens: TokenCache;
  sources: TrustSources;
  decider: TrustDecider;
  /** close every upstream pool and trust source */
  close(): Promise<void>;
}

export async function buildRuntime(
  config: Config,
  logger: Logger,
  options: RuntimeOptions,
): Promise<Runtime> {
  const blobCache = config.blobCache ? await openBlobCache(config) : undefined;
  const sources = await TrustSources.open(config, {
    ...(options.now ? { now: options.now } : {}),
    logger,
    ...(options.metrics ? { observer: options.metrics.trust } : {}),
  });
  const tokens = new TokenCache();
  const clients = new Map<string, RegistryClient>();
  for (const registry of config.registries.values()) {
    clients.set(
      registry.name,
      new RegistryClient({
        registry,
        timeouts: config.upstreamTimeouts,
        tokens,
        logger,
        ...(options.metrics ? { observe: options.metrics.upstream } : {}),
      }),
    );
  }
  const store = new ManifestStore({ clients, cacheBytes: config.manifestCacheBytes });
  const signatures = new SignatureVerifier({
    fetcherFor(registry) {
      const client = clients.get(registry);
      if (!client) throw new Error(`no client for registry ${registry}`);
      return new RegistrySignatureFetcher(client);
    },
    ...(options.now ? { now: () => (options.now as () => Date)().getTime() } : {}),
  });
  const decider = new TrustDecider({
    policies: options.policies,
    defaultPolicy: config.defaultPolicy,
    sources,
    signatures,
    // tagTrust: registry: the bytes the tag names, hashed here (never the upstream's header)
    async registryTag(registry, repository, tag) {
      const answer = await store.byTag(registry, repository, tag, undefined);
      return { digest: answer.digest, size: answer.bytes.length };
    },
    async registryTags(registry, repository) {
      const client = clients.get(registry);
      if (!client) throw new Error(`no client for registry ${registry}`);
      return tagNames(registry, (await client.listTags(repository, new URLSearchParams())).bytes);
    },
  });
  // Audit lines are flat (AuditLine: fixed keys, primitive values): no redaction needed (log.ts).
  const audit = fixedFieldsLogger(logger).child({ audit: true });
  const now = options.now;
  // Warm answers hold manifest bytes too: enabled with the manifest cache, bounded like it.
  const warm =
    config.manifestCacheBytes > 0
      ? new WarmAnswers({
          maxBytes: config.manifestCacheBytes,
          now: now ? () => now().getTime() : Date.now,
          access: fixedFieldsLogger(logger),
          ...(options.metrics ? { metrics: options.metrics } : {}),
        })
      : undefined;
  return {
    deps: {
      config,
      clients,
      manifests: new TrustEnforcingResolver({
        decider,
        store,
        reachable: new IndexChildren(),
        logger: audit,
      }),
      tags: new SignedTagLister(decider, new PassThroughTagLister(clients), audit),
      logger,
      ...(warm ? { warm } : {}),
      ...(blobCache ? { blobCache } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
      ...(options.access ? { access: options.access } : {}),
    },
    store,
    tokens,
    sources,
    decider,
    async close() {
      await Promise.all([...clients.values()].map((c) => c.close()));
      await sources.close();
    },
  };
}

async function openBlobCache(config: Config): Promise<BlobCache> {
  const { dir, maxBytes } = config.blobCache as NonNullable<Config["blobCache"]>;
  try {
    return await BlobCache.open({ dir, maxBytes });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      `${config.file}: blobCache.dir: cannot use ${dir} (${code ?? (err as Error).message})`,
    );
  }
}
