/**
 * NotarySource: the TrustSource for one registry's Notary server (Docker Content Trust).
 *
 * GUN = `${registry}/${repository}`. Verified metadata is kept in memory per GUN and on disk
 * (store.ts). Freshness, per GUN, follows the rules of ../refresh.ts (RefreshingCache), by the
 * injected clock, with `checkedAt` the instant the last usable update *started* (so its answer
 * reflects the server as of then or later):
 *
 * - age < aheadMs (= floor(refreshMs * 3/4)): answer from the verified metadata, no request.
 * - aheadMs <= age < refreshMs (refresh-ahead): answer from the verified metadata at once and
 *   start one update in the background, so a GUN under steady traffic is refreshed before it is
 *   due and no request waits for the server.
 * - age >= refreshMs, no metadata, metadata on the query's resolution path expired (root and its
 *   certificates, timestamp, snapshot, the query's roles and their ancestors), or the last update
 *   failed verification: the query waits for an update (foreground).
 *
 * So no answer rests on a check older than `refreshSeconds` or on expired metadata. Concurrent
 * callers share one in-flight update per GUN, background or foreground. When the server cannot be
 * reached (TRUST_UNAVAILABLE), answers come from the trusted metadata until it expires or the
 * root's certificates do; after that every answer is a TrustError (fail closed). A delegated role
 * off the query's path that failed verification (a per-signer `targets/alice` that expired) does
 * not block the query; one on the path refuses it, naming the role (T5). Any other failure
 * (rollback, bad signature, pin mismatch, expired...), in the background too, marks the GUN due:
 * the next query updates in the foreground and throws while the attack lasts, never answering
 * from the older metadata.
 *
 * Memory is bounded by GUN count and by the verified bytes held (REVIEW U5); disk by pruning the
 * state of GUNs long unused (store.ts `prune`).
 */

import type { Logger } from "../../log.js";
import { TrustError } from "../errors.js";
import { TrustHealth } from "../health.js";
import type { TrustObserver } from "../observer.js";
import { RefreshingCache, type RefreshReport } from "../refresh.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../types.js";
import type { HttpFetcherOptions, MetadataFetcher } from "./fetcher.js";
import { openMetadataFetcher } from "./file-fetcher.js";
import { requirePinnedRoot } from "./pinning.js";
import { NotaryStateStore } from "./store.js";
import {
  brokenOnPath,
  checkResolutionPath,
  earliestExpiry,
  expiredRole,
  rootCertsExpired,
} from "./trusted-state.js";
import { type TrustedRepo, updateRepository } from "./update.js";

export interface NotarySourceOptions {
  /** notary server base URL, http(s); or file:// for a directory written by `trustgate notary mirror` */
  url: string;
  caFile?: string;
  /** token auth: Basic credentials for the token realm, realms allowed besides the server's origin */
  credentials?: HttpFetcherOptions["credentials"];
  tokenRealms?: string[];
  /** how messages name those settings (config keys, or the CLI's flags) */
  authSettings?: HttpFetcherOptions["settings"];
  stateDir: string;
  /**
   * Seconds a check of one GUN's timestamp stays good (default 30); from 3/4 of it on, a query
   * also starts the next check in the background. 0: every query checks, in the foreground.
   */
  refreshSeconds?: number;
  /** the clock used for expiry and refresh decisions (tests pin it) */
  now?: () => Date;
  fetchTimeoutMs?: number;
  fetcher?: MetadataFetcher;
  /**
   * How many GUNs' verified metadata stay in memory (default 10,000). An evicted GUN is read
   * back from the state dir on its next pull, so eviction costs a re-verification, never trust.
   */
  maxGuns?: number;
  /**
   * Bound on the verified metadata bytes held in memory over all GUNs (default 64 MiB; REVIEW
   * U5). The parsed form and the per-tag and per-digest indexes cost more on top: measured with
   * 1.3 MiB targets files, the heap grew by about 6x the verified bytes, 7.6x once digest pulls
   * had built their index, so the default keeps this cache near 0.5 GiB of heap. An evicted GUN
   * is re-read from the state dir (a re-verification), as with maxGuns.
   */
  maxCacheBytes?: number;
  /**
   * Days after which the state file of a GUN not used since is removed (default 90; 0: never).
   * Checked at start and every hour; a GUN in memory is never removed. A removed GUN whose root
   * no policy pins is trusted on first use again, so keep this long.
   */
  pruneAfterDays?: number;
  /** the registry this source serves: the label of its metrics and log lines */
  registry?: string;
  /** trust trouble, once per change of state per GUN (../health.ts) */
  logger?: Logger;
  /** refreshes and the earliest expiry held, for /metrics */
  observer?: TrustObserver;
}

/** What update() reads of the GUN's cached state: the last verified metadata, if any. */
interface GunEntry {
  repo?: TrustedRepo;
}

/** Verified metadata and the check it rests on, as one answer sees them. */
interface Checked {
  repo: TrustedRepo;
  checkedAt: number;
}

export const DEFAULT_MAX_CACHE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_PRUNE_AFTER_DAYS = 90;
const PRUNE_EVERY_MS = 3600_000;
const DAY_MS = 24 * 3600_000;

/**
 * What a repo signs in one ordered list of roles: the list for tags/list (per tag, the first
 * role), and for digest pulls every (role, name) that signs each digest, in role order.
 */
interface SignedView {
  list: SignedTarget[];
  byDigest: Map<string, SignedTarget[]>;
}

/** Docker Content Trust's roles, in the order docker/cli resolves a tag. */
export const DOCKER_ROLES: readonly string[] = ["targets/releases", "targets"];

export class NotarySource implements TrustSource {
  readonly kind = "notary" as const;
  private readonly fetcher: MetadataFetcher;
  private readonly store: NotaryStateStore;
  /** age from which a query also starts a background update: 3/4 of refreshSeconds */
  private readonly aheadMs: number;
  private readonly now: () => Date;
  /** per GUN: the verified metadata, its freshness, the one update in flight (../refresh.ts) */
  private readonly entries: RefreshingCache<string, TrustedRepo, TrustQuery>;
  /**
   * Per verified repo object (replaced on every update, so never stale), per role list: built once,
   * so a pull by digest is a map lookup even with 10,000 tags.
   */
  private readonly views = new WeakMap<TrustedRepo, Map<string, SignedView>>();
  private readonly pruneAfterMs: number;
  private pruning: Promise<void> | undefined;
  private readonly pruneTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: NotarySourceOptions) {
    this.fetcher =
      options.fetcher ??
      openMetadataFetcher({
        url: options.url,
        ...(options.caFile ? { caFile: options.caFile } : {}),
        ...(options.credentials ? { credentials: options.credentials } : {}),
        ...(options.tokenRealms ? { tokenRealms: options.tokenRealms } : {}),
        ...(options.authSettings ? { settings: options.authSettings } : {}),
        ...(options.fetchTimeoutMs ? { timeoutMs: options.fetchTimeoutMs } : {}),
      });
    this.store = new NotaryStateStore(options.stateDir);
    this.now = options.now ?? (() => new Date());
    const ref = { registry: options.registry ?? new URL(options.url).host, kind: "notary" as const };
    const health = new TrustHealth({
      source: ref,
      now: () => this.now().getTime(),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.observer ? { observer: options.observer } : {}),
    });
    this.entries = new RefreshingCache({
      refreshMs: (options.refreshSeconds ?? 30) * 1000,
      now: () => this.now().getTime(),
      refresh: (gun, previous, startedAt, query, report) =>
        this.refresh(gun, previous, new Date(startedAt), report, query.rootKeys),
      observe: health.record,
      // Only the metadata on the query's resolution path and the root certificates count (T5, T10).
      expiresAt: (repo, query) => firstExpiry(repo, query.roles),
      // update() answers from the trusted metadata itself while the server is down, until expiry
      isUnavailable: (err) => err instanceof TrustError && err.code === "TRUST_UNAVAILABLE",
      expiredError: (gun, repo, at, cause, query) =>
        unusableError(gun, repo, new Date(at), query.roles, cause),
      max: options.maxGuns ?? 10_000,
      maxSize: options.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES,
      sizeOf: verifiedBytes,
    });
    this.aheadMs = this.entries.aheadMs;
    // Docker's roles: a per-signer delegation skipped as expired is not what pulls wait on.
    options.observer?.watchExpiry(ref, () => {
      let earliest: number | undefined;
      for (const [, repo] of this.entries.values()) {
        const at = earliestExpiry(repo, DOCKER_ROLES);
        if (earliest === undefined || at < earliest) earliest = at;
      }
      return earliest === undefined ? undefined : (earliest - this.now().getTime()) / 1000;
    });
    this.pruneAfterMs = (options.pruneAfterDays ?? DEFAULT_PRUNE_AFTER_DAYS) * DAY_MS;
    if (this.pruneAfterMs > 0) {
      void this.pruneState();
      this.pruneTimer = setInterval(() => void this.pruneState(), PRUNE_EVERY_MS);
      this.pruneTimer.unref();
    }
  }

  async resolveTag(query: TrustQuery, tag: string): Promise<TagSignatures> {
    const { repo, checkedAt } = await this.trusted(query);
    const signatures: SignedTarget[] = [];
    for (const role of query.roles) {
      const t = repo.roles.get(role)?.targets.get(tag);
      if (t) signatures.push({ name: tag, digest: t.digest, size: t.size, role });
    }
    return {
      tag,
      signatures,
      source: `notary ${this.options.url} ${repo.gun}`,
      expires: new Date(earliestExpiry(repo, query.roles)),
      // Until the refresh-ahead point of this check (the next query after it starts an update)
      // and never past any expiry trustedRepo checks: the metadata on the query's resolution
      // path and the root certificates (T5, T10). With refreshSeconds 0 that is checkedAt <= now:
      // nothing to reuse.
      reuseUntil: Math.min(checkedAt + this.aheadMs, firstExpiry(repo, query.roles)),
    };
  }

  /** Per tag, the first role in `query.roles` that signs it (Docker's GetTargetByName order). */
  async listSigned(query: TrustQuery): Promise<SignedTarget[]> {
    return this.signedView((await this.trusted(query)).repo, query.roles).list;
  }

  /** Every signature of `digest` for this GUN in the query's roles (digest pulls; a map lookup). */
  async signedByDigest(query: TrustQuery, digest: string): Promise<SignedTarget[]> {
    return this.signedView((await this.trusted(query)).repo, query.roles).byDigest.get(digest) ?? [];
  }

  private signedView(repo: TrustedRepo, roles: readonly string[]): SignedView {
    let perRoles = this.views.get(repo);
    if (!perRoles) {
      perRoles = new Map();
      this.views.set(repo, perRoles);
    }
    const key = roles.join("\n");
    let view = perRoles.get(key);
    if (!view) {
      const byTag = new Map<string, SignedTarget>();
      const byDigest = new Map<string, SignedTarget[]>();
      for (const role of roles) {
        for (const [name, t] of repo.roles.get(role)?.targets ?? []) {
          const signed: SignedTarget = { name, digest: t.digest, size: t.size, role };
          if (!byTag.has(name)) byTag.set(name, signed);
          const same = byDigest.get(t.digest);
          if (same) same.push(signed);
          else byDigest.set(t.digest, [signed]);
        }
      }
      const list = [...byTag.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      view = { list, byDigest };
      perRoles.set(key, view);
    }
    return view;
  }

  /**
   * Resolves when every update in flight at the call (background ones included) and a prune in
   * progress have ended and their outcome is recorded; never rejects. close() waits for it; tests
   * use it to see a background update land.
   */
  async idle(): Promise<void> {
    await Promise.all([this.entries.idle(), this.pruning]);
  }

  async close(): Promise<void> {
    clearInterval(this.pruneTimer);
    // A background update must not find its fetcher closed under it, nor outlive the source.
    await this.idle();
    await this.fetcher.close?.();
  }

  /** The verified repository for the query, its root checked against the query's pins. */
  private async trusted(query: TrustQuery): Promise<Checked> {
    const checked = await this.trustedRepo(query);
    if (query.rootKeys && query.rootKeys.length > 0) checkRootPin(checked.repo, query.rootKeys);
    // T5: fail closed for the roles this query resolves through (broken or expired), only.
    checkResolutionPath(checked.repo, query.roles, this.now());
    return checked;
  }

  private async trustedRepo(query: TrustQuery): Promise<Checked> {
    const { value: repo, checkedAt } = await this.entries.get(`${query.registry}/${query.repository}`, query);
    return { repo, checkedAt };
  }

  /**
   * One update of `gun` for the RefreshingCache, which records the outcome (a failure makes the
   * GUN due). A success is a use of the GUN: its state file's mtime is what prune reads.
   */
  private async refresh(
    gun: string,
    previous: TrustedRepo | undefined,
    now: Date,
    report: RefreshReport,
    pins?: readonly string[],
  ): Promise<TrustedRepo> {
    const entry: GunEntry = previous ? { repo: previous } : {};
    const repo = await this.update(gun, entry, now, report, pins);
    await this.store.markUsed(repo, now);
    return repo;
  }

  /**
   * Remove the state of GUNs not used for pruneAfterDays, never one in memory (one prune at a
   * time; runs at start and hourly, tests call it). Resolves when done; never rejects: pruning
   * only frees disk, a failure (e.g. a file removed meanwhile) must not stop answers.
   */
  pruneState(): Promise<void> {
    if (this.pruneAfterMs <= 0) return Promise.resolve();
    this.pruning ??= this.store
      .prune(this.now().getTime() - this.pruneAfterMs, (gun) => this.entries.has(gun))
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        this.pruning = undefined;
      });
    return this.pruning;
  }

  /** One update from the server; offline, the trusted metadata while none of it has expired. */
  private async update(
    gun: string,
    entry: GunEntry,
    now: Date,
    report: RefreshReport,
    pins?: readonly string[],
  ): Promise<TrustedRepo> {
    let trusted = entry.repo ?? null;
    if (!trusted) {
      const stored = await this.store.load(gun);
      if (stored) {
        trusted = await updateRepository(null, {
          gun,
          source: stored.source,
          now,
          reloading: true,
          stored: { floors: stored.floors, broken: stored.broken },
        });
      }
    }
    let repo: TrustedRepo;
    try {
      repo = await updateRepository(trusted, {
        gun,
        now,
        ...(pins ? { pins } : {}),
        source: (file, _role, maxBytes) => this.fetcher.fetch(gun, file, maxBytes),
      });
    } catch (err) {
      // Offline: answer from what is trusted while it is fresh; never from expired metadata, nor
      // from a root whose certificates have expired since (T10: Notary validates the cached
      // root's certificates again, trustpinning/certs.go). Here only what every query depends on
      // (root, timestamp, snapshot, targets); trusted() checks each query's own path.
      if (err instanceof TrustError && err.code === "TRUST_UNAVAILABLE" && trusted) {
        if (rootCertsExpired(trusted, now)) {
          throw new TrustError(
            "ROOT_CERT_INVALID",
            gun,
            "root",
            `${gun}: root: the trusted root's certificates expired at ${new Date(trusted.root.certsExpire - 1).toISOString()} and the server is unreachable (${err.message})`,
            { cause: err },
          );
        }
        const expired = expiredRole(trusted, now);
        if (!expired) {
          report.offline(err);
          return trusted;
        }
        throw new TrustError(
          "EXPIRED",
          gun,
          expired,
          `${gun}: ${expired}: trusted metadata has expired and the server is unreachable (${err.message})`,
          { cause: err },
        );
      }
      throw err;
    }
    if (!trusted || changed(trusted, repo)) await this.store.save(repo);
    this.logBrokenChanges(gun, trusted, repo);
    return repo;
  }

  /**
   * T5: a delegation that does not verify is skipped, not fatal to the GUN; only pulls that
   * resolve through it are refused. Said once when a role breaks and once when it verifies again
   * (on a restart, roles already recorded as broken in stateDir are not said again).
   */
  private logBrokenChanges(gun: string, before: TrustedRepo | null, after: TrustedRepo): void {
    const logger = this.options.logger;
    if (!logger) return;
    for (const [role, broken] of after.broken) {
      if (before?.broken.has(role)) continue;
      logger.warn(
        { gun, role, code: broken.code, reason: broken.message },
        "delegation skipped: it does not verify; pulls that resolve through it are refused",
      );
    }
    for (const role of before?.broken.keys() ?? []) {
      if (!after.broken.has(role)) logger.info({ gun, role }, "delegation verifies again");
    }
  }
}

/** The verified bytes a repo holds: its cost towards maxCacheBytes. */
function verifiedBytes(repo: TrustedRepo): number {
  let n = repo.root.bytes.length + repo.timestamp.bytes.length + repo.snapshot.bytes.length;
  for (const role of repo.roles.values()) n += role.bytes.length;
  return n;
}

/**
 * Per verified repo object (replaced on every update, so never stale), per role list: the
 * earliest expiry of the metadata a query for those roles depends on (root and its certificates,
 * timestamp, snapshot, the roles and their ancestors; T5: not the roles off the path), i.e. the
 * first instant checkResolutionPath or the offline check refuses. Once per repo and role list,
 * so the fresh path is a few comparisons however many roles there are.
 */
const firstExpiryOf = new WeakMap<TrustedRepo, Map<string, number>>();

function firstExpiry(repo: TrustedRepo, roles: readonly string[]): number {
  let perRoles = firstExpiryOf.get(repo);
  if (!perRoles) {
    perRoles = new Map();
    firstExpiryOf.set(repo, perRoles);
  }
  const key = roles.join("\n");
  let at = perRoles.get(key);
  if (at === undefined) {
    // A role on the path that did not verify makes the GUN due at once, as a failed update does:
    // each such query updates in the foreground (and is refused while the role stays broken).
    at = brokenOnPath(repo, roles) === undefined ? earliestExpiry(repo, roles) : Number.NEGATIVE_INFINITY;
    perRoles.set(key, at);
  }
  return at;
}

/**
 * Why `repo` cannot answer a query for `roles` at `now` (RefreshingCache found it past
 * firstExpiry): a broken role on the path (T5) names what broke it, else the expired role or the
 * root certificates that are no longer valid (T10).
 */
function unusableError(
  gun: string,
  repo: TrustedRepo,
  now: Date,
  roles: readonly string[],
  cause: unknown,
): TrustError {
  try {
    checkResolutionPath(repo, roles, now);
  } catch (err) {
    if (err instanceof TrustError) return err;
    throw err;
  }
  if (rootCertsExpired(repo, now)) {
    return new TrustError(
      "ROOT_CERT_INVALID",
      gun,
      "root",
      `${gun}: root: the trusted root's certificates are no longer valid`,
      { cause },
    );
  }
  const role = expiredRole(repo, now, roles) ?? "root";
  return new TrustError("EXPIRED", gun, role, `${gun}: ${role}: trusted metadata has expired`, { cause });
}

/**
 * A pin holds on every query, not only when the root is first fetched: the trusted root may have
 * been recorded on first use (TOFU) before the policy pinned it, or by a query under another
 * policy. The rule is the bootstrap one (pinning.ts): a threshold of the root's signatures must
 * verify with pinned keys, a pinned key merely listed never counts (REVIEW T1). Cached per root
 * and pin set, so a warm query does no crypto.
 */
function checkRootPin(repo: TrustedRepo, pins: readonly string[]): void {
  requirePinnedRoot(repo.gun, repo.root.env, pins);
}

function changed(a: TrustedRepo, b: TrustedRepo): boolean {
  const same = (x: Uint8Array, y: Uint8Array) => Buffer.from(x).equals(Buffer.from(y));
  if (!same(a.root.bytes, b.root.bytes) || !same(a.timestamp.bytes, b.timestamp.bytes)) return true;
  if (!same(a.snapshot.bytes, b.snapshot.bytes) || a.roles.size !== b.roles.size) return true;
  // what outlives a role's absence (floors, T2) and what was skipped (broken, T5) are stored too
  const sameMap = <V>(x: Map<string, V>, y: Map<string, V>, eq: (p: V, q: V) => boolean) =>
    x.size === y.size && [...y].every(([k, v]) => x.has(k) && eq(x.get(k) as V, v));
  if (!sameMap(a.floors, b.floors, (p, q) => p === q)) return true;
  if (!sameMap(a.broken, b.broken, (p, q) => p.code === q.code && p.message === q.message)) return true;
  for (const [name, r] of b.roles) {
    const old = a.roles.get(name);
    if (!old || !same(old.bytes, r.bytes)) return true;
  }
  return false;
}
