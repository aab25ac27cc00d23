/**
 * Wiring: from a validated Config to the app's dependencies (upstream clients, token cache,
 * manifest store, the pass-through resolvers). `serve` and the integration tests use it; issue 4
 * swaps `manifests` / `tags` for the trust-enforcing ones.
 */
import type { Config } from "./config/types.js";
import type { Logger } from "./log.js";
import { ManifestStore, PassThroughManifestResolver } from "./proxy/manifests.js";
import { PassThroughTagLister } from "./proxy/tags.js";
import type { AppDeps } from "./server.js";
import { TokenCache } from "./upstream/auth.js";
import { RegistryClient } from "./upstream/client.js";

export interface Runtime {
  deps: AppDeps;
  store: ManifestStore;
  tokens: TokenCache;
  /** close every upstream pool */
  close(): Promise<void>;
}

export function buildRuntime(config: Config, logger: Logger): Runtime {
  const tokens = new TokenCache();
  const clients = new Map<string, RegistryClient>();
  for (const registry of config.registries.values()) {
    clients.set(
      registry.name,
      new RegistryClient({ registry, timeouts: config.upstreamTimeouts, tokens, logger }),
    );
  }
  const store = new ManifestStore({ clients, cacheBytes: config.manifestCacheBytes });
  return {
    deps: {
      config,
      clients,
      manifests: new PassThroughManifestResolver(store),
      tags: new PassThroughTagLister(clients),
      logger,
    },
    store,
    tokens,
    async close() {
      await Promise.all([...clients.values()].map((c) => c.close()));
    },
  };
}
