/**
 * One trust source per configured registry: a NotarySource for a `notary:` block, a TufSource for
 * a `tuf:` block, nothing for a registry with neither. Built once at start from config.yaml;
 * `refreshSeconds` is `trustRefreshSeconds` and the state lives under `stateDir` (rollback
 * protection survives restarts).
 *
 * `sourceFor` is the one place that joins a policy's `trust.source` to the registry's
 * configuration. Every way that cannot work is a TrustError with code TRUST_NOT_CONFIGURED, so the
 * policy engine turns it into a refusal (fail closed) that says what is missing.
 */
import type { Config, RegistryConfig, TufConfig } from "../config/types.js";
import { ConfigError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Policy, PolicySet } from "../policy/index.js";
import { TrustError } from "./errors.js";
import { NotarySource } from "./notary/source.js";
import type { TrustObserver } from "./observer.js";
import { TufSource } from "./tuf/source.js";
import type { TrustSource } from "./types.js";

export interface TrustSourcesOptions {
  /** clock for expiry and refresh decisions (tests pin it) */
  now?: () => Date;
  /** trust trouble is logged here, once per change of state (health.ts) */
  logger?: Logger;
  /** refreshes and expiry for /metrics */
  observer?: TrustObserver;
}

export class TrustSources {
  private constructor(private readonly byRegistry: ReadonlyMap<string, TrustSource>) {}

  /** Build every registry's source. No network; throws ConfigError when a source cannot be set up. */
  static async open(config: Config, options: TrustSourcesOptions = {}): Promise<TrustSources> {
    const sources = new Map<string, TrustSource>();
    try {
      for (const registry of config.registries.values()) {
        const source = await openSource(registry, config, options);
        if (source) sources.set(registry.name, source);
      }
    } catch (err) {
      await Promise.all([...sources.values()].map((s) => closeSource(s)));
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`${config.file}: registries: ${(err as Error).message}`, { cause: err });
    }
    return new TrustSources(sources);
  }

  /** Sources already built, keyed by registry name (tests; embedding). */
  static fromMap(sources: ReadonlyMap<string, TrustSource>): TrustSources {
    return new TrustSources(sources);
  }

  /** The configured source of `registry`, if any. */
  get(registry: string): TrustSource | undefined {
    return this.byRegistry.get(registry);
  }

  /** "notary" | "tuf" | undefined, for explain and for the start-up check. */
  kindOf(registry: string): TrustSource["kind"] | undefined {
    return this.byRegistry.get(registry)?.kind;
  }

  /**
   * The source a policy's trust query goes to for `registry`, or TRUST_NOT_CONFIGURED when the
   * registry has none or has the other kind than `trust.source` demands.
   */
  sourceFor(policy: Policy, registry: string, repository: string): TrustSource {
    const gun = `${registry}/${repository}`;
    const source = this.byRegistry.get(registry);
    if (!source) {
      throw new TrustError(
        "TRUST_NOT_CONFIGURED",
        gun,
        undefined,
        `registry ${registry} has no trust source configured (add a notary: or tuf: block under registries.${registry} in config.yaml)`,
      );
    }
    const wanted = policy.trust.source;
    if (wanted !== undefined && wanted !== source.kind) {
      throw new TrustError(
        "TRUST_NOT_CONFIGURED",
        gun,
        undefined,
        `policy ${policy.name} demands trust.source ${wanted}, but registry ${registry} is configured with ${source.kind}`,
      );
    }
    return source;
  }

  async close(): Promise<void> {
    await Promise.all([...this.byRegistry.values()].map((s) => closeSource(s)));
  }
}

/**
 * Policies whose `trust.source` names a kind that a configured registry they match does not
 * have: `file:line: message` lines. A registry without any source is not listed (the shipped
 * config has none; such pulls are refused with a message at request time).
 */
export function sourceMismatches(set: PolicySet, sources: TrustSources): string[] {
  const problems: string[] = [];
  for (const policy of set.policies) {
    const wanted = policy.trust.source;
    if (wanted === undefined || policy.mode === "off") continue;
    policy.match.forEach((pattern, i) => {
      const kind = sources.kindOf(pattern.registry);
      if (kind !== undefined && kind !== wanted) {
        problems.push(
          `${policy.file}:${policy.matchLines[i] ?? 0}: policy ${policy.name} demands trust.source ${wanted} for ${pattern.source}, but registry ${pattern.registry} is configured with ${kind}`,
        );
      }
    });
  }
  return problems;
}

async function openSource(
  registry: RegistryConfig,
  config: Config,
  options: TrustSourcesOptions,
): Promise<TrustSource | undefined> {
  const clock = {
    ...(options.now ? { now: options.now } : {}),
    registry: registry.name,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.observer ? { observer: options.observer } : {}),
  };
  if (registry.notary) {
    return new NotarySource({
      url: registry.notary.url.href,
      ...(registry.notary.caFile ? { caFile: registry.notary.caFile } : {}),
      ...(registry.notary.credentials ? { credentials: registry.notary.credentials } : {}),
      ...(registry.notary.tokenRealms ? { tokenRealms: registry.notary.tokenRealms } : {}),
      authSettings: {
        credentials: `registries.${registry.name}.notary.username/passwordEnv`,
        tokenRealms: `registries.${registry.name}.notary.tokenRealms`,
      },
      stateDir: config.stateDir,
      refreshSeconds: config.trustRefreshSeconds,
      maxCacheBytes: config.trustCacheBytes,
      pruneAfterDays: config.statePruneDays,
      ...clock,
    });
  }
  if (registry.tuf) {
    return TufSource.open({
      metadataUrl: tufMetadataUrl(registry.tuf),
      trustedRoot: registry.tuf.trustedRoot,
      ...(registry.tuf.targetPath ? { targetPath: registry.tuf.targetPath } : {}),
      ...(registry.tuf.caFile ? { caFile: registry.tuf.caFile } : {}),
      stateDir: config.stateDir,
      refreshSeconds: config.trustRefreshSeconds,
      ...clock,
    });
  }
  return undefined;
}

/**
 * The metadata URL a TufSource is opened with, which also names its state directory
 * (tuf/source.ts repositoryStateDir): config normalises URLs without a trailing slash; TUF joins
 * file names onto a directory URL.
 */
export function tufMetadataUrl(tuf: TufConfig): string {
  return new URL(`${tuf.metadataUrl.href.replace(/\/+$/, "")}/`).toString();
}

async function closeSource(source: TrustSource): Promise<void> {
  await (source as { close?: () => Promise<void> }).close?.();
}
