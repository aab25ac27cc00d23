/**
 * The trust sources of each configured registry: a NotarySource for a `notary:` block, a TufSource
 * for a `tuf:` block (both during a cut-over, issue 14 point 5), nothing for a registry with neither. Built once at start from config.yaml;
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
import { type Policy, type PolicySet, policySources } from "../policy/index.js";
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

/** A registry's sources by kind, in config order (notary, then tuf). */
type RegistrySources = ReadonlyMap<TrustSource["kind"], TrustSource>;

/** One source a policy counts for a registry: the source to ask, or why it cannot be asked. */
export type SourceCandidate =
  | { readonly kind: TrustSource["kind"]; readonly source: TrustSource }
  | { readonly kind: string; readonly error: TrustError };

export class TrustSources {
  private constructor(private readonly byRegistry: ReadonlyMap<string, RegistrySources>) {}

  /** Build every registry's source. No network; throws ConfigError when a source cannot be set up. */
  static async open(config: Config, options: TrustSourcesOptions = {}): Promise<TrustSources> {
    const sources = new Map<string, Map<TrustSource["kind"], TrustSource>>();
    try {
      for (const registry of config.registries.values()) {
        for (const source of await openSources(registry, config, options)) {
          const own = sources.get(registry.name) ?? new Map();
          own.set(source.kind, source);
          sources.set(registry.name, own);
        }
      }
    } catch (err) {
      await Promise.all([...sources.values()].flatMap((m) => [...m.values()].map((s) => closeSource(s))));
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`${config.file}: registries: ${(err as Error).message}`, { cause: err });
    }
    return new TrustSources(sources);
  }

  /** Sources already built, keyed by registry name (tests; embedding). */
  static fromMap(sources: ReadonlyMap<string, TrustSource | readonly TrustSource[]>): TrustSources {
    const byRegistry = new Map<string, RegistrySources>();
    for (const [registry, list] of sources) {
      byRegistry.set(
        registry,
        new Map((Array.isArray(list) ? list : [list]).map((s: TrustSource) => [s.kind, s])),
      );
    }
    return new TrustSources(byRegistry);
  }

  /** The configured source of `registry` of `kind`, or its only one. */
  get(registry: string, kind?: TrustSource["kind"]): TrustSource | undefined {
    const own = this.byRegistry.get(registry);
    return kind ? own?.get(kind) : own?.size === 1 ? [...own.values()][0] : undefined;
  }

  /** The kinds configured for `registry` ("notary", "tuf"), for explain and the start-up check. */
  kindsOf(registry: string): TrustSource["kind"][] {
    return [...(this.byRegistry.get(registry)?.keys() ?? [])];
  }

  /** "notary" | "tuf" when the registry has exactly one source. */
  kindOf(registry: string): TrustSource["kind"] | undefined {
    return this.get(registry)?.kind;
  }

  /**
   * The sources a policy's trust query goes to for `registry`, in the policy's order
   * (`trust.sources`), each the source or a TRUST_NOT_CONFIGURED error saying what is missing.
   * A policy naming no source uses the registry's only one; with both configured it must choose.
   */
  sourcesFor(policy: Policy, registry: string, repository: string): SourceCandidate[] {
    const gun = `${registry}/${repository}`;
    const own = this.byRegistry.get(registry);
    const missing = (kind: string, message: string): SourceCandidate => ({
      kind,
      error: new TrustError("TRUST_NOT_CONFIGURED", gun, undefined, message),
    });
    if (!own || own.size === 0) {
      return [
        missing(
          "trust",
          `registry ${registry} has no trust source configured (add a notary: or tuf: block under registries.${registry} in config.yaml)`,
        ),
      ];
    }
    const wanted = policySources(policy);
    if (wanted === undefined) {
      if (own.size === 1) {
        const [kind, source] = [...own.entries()][0] as [TrustSource["kind"], TrustSource];
        return [{ kind, source }];
      }
      return [
        missing(
          "trust",
          `registry ${registry} has both ${[...own.keys()].join(" and ")} configured: policy ${policy.name} must say which count, in order (trust.sources: [tuf, notary])`,
        ),
      ];
    }
    return wanted.map((kind) => {
      const source = own.get(kind);
      if (source) return { kind, source };
      const configured = [...own.keys()].join(" and ");
      return missing(
        kind,
        policy.trust.sources && policy.trust.sources.length > 1
          ? `policy ${policy.name} lists ${kind} in trust.sources, but registry ${registry} has no ${kind}: block (configured: ${configured})`
          : `policy ${policy.name} demands trust.source ${kind}, but registry ${registry} is configured with ${configured}`,
      );
    });
  }

  /**
   * The first source a policy's trust query goes to for `registry`, or TRUST_NOT_CONFIGURED
   * (a single-source view of sourcesFor).
   */
  sourceFor(policy: Policy, registry: string, repository: string): TrustSource {
    const first = this.sourcesFor(policy, registry, repository)[0];
    if (first && "source" in first) return first.source;
    throw first?.error;
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.byRegistry.values()].flatMap((m) => [...m.values()].map((s) => closeSource(s))),
    );
  }
}

/**
 * Policies that count a trust source a configured registry they match does not have (or name
 * none for a registry with both): `file:line: message` lines. A registry without any source is
 * not listed (the shipped config has none; such pulls are refused with a message at request time).
 */
export function sourceMismatches(set: PolicySet, sources: TrustSources): string[] {
  const problems: string[] = [];
  for (const policy of set.policies) {
    if (policy.mode === "off") continue;
    policy.match.forEach((pattern, i) => {
      const kinds = sources.kindsOf(pattern.registry);
      if (kinds.length === 0) return;
      const at = `${policy.file}:${policy.matchLines[i] ?? 0}: policy ${policy.name}`;
      const wanted = policySources(policy);
      if (wanted === undefined) {
        if (kinds.length > 1)
          problems.push(
            `${at} names no trust source for ${pattern.source}, but registry ${pattern.registry} has both ${kinds.join(" and ")}: say which count, in order (trust.sources: [tuf, notary])`,
          );
        return;
      }
      for (const kind of wanted) {
        if (kinds.includes(kind)) continue;
        problems.push(
          policy.trust.sources && policy.trust.sources.length > 1
            ? `${at} lists ${kind} in trust.sources for ${pattern.source}, but registry ${pattern.registry} has no ${kind}: block (configured: ${kinds.join(" and ")})`
            : `${at} demands trust.source ${kind} for ${pattern.source}, but registry ${pattern.registry} is configured with ${kinds.join(" and ")}`,
        );
      }
    });
  }
  return problems;
}

async function openSources(
  registry: RegistryConfig,
  config: Config,
  options: TrustSourcesOptions,
): Promise<TrustSource[]> {
  const opened: TrustSource[] = [];
  const clock = {
    ...(options.now ? { now: options.now } : {}),
    registry: registry.name,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.observer ? { observer: options.observer } : {}),
  };
  if (registry.notary) {
    opened.push(
      new NotarySource({
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
      }),
    );
  }
  if (registry.tuf) {
    try {
      opened.push(
        await TufSource.open({
          metadataUrl: tufMetadataUrl(registry.tuf),
          trustedRoot: registry.tuf.trustedRoot,
          ...(registry.tuf.targetPath ? { targetPath: registry.tuf.targetPath } : {}),
          ...(registry.tuf.caFile ? { caFile: registry.tuf.caFile } : {}),
          stateDir: config.stateDir,
          refreshSeconds: config.trustRefreshSeconds,
          ...clock,
        }),
      );
    } catch (err) {
      await Promise.all(opened.map((s) => closeSource(s)));
      throw err;
    }
  }
  return opened;
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
