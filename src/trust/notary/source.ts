/**
 * NotarySource: the TrustSource for one registry's Notary server (Docker Content Trust).
 *
 * GUN = `${registry}/${repository}`. Verified metadata is kept in memory per GUN and on disk
 * (store.ts). Freshness, per GUN, by the injected clock, with `checkedAt` the instant the last
 * usable update *started* (so its answer reflects the server as of then or later):
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
 */
import { LRUCache } from "lru-cache";
import { TrustError } from "../errors.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../types.js";
import { HttpMetadataFetcher, type MetadataFetcher } from "./fetcher.js";
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
  /** notary server base URL, http(s) */
  url: string;
  caFile?: string;
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
}

interface GunEntry {
  repo?: TrustedRepo;
  /**
   * ms (by the injected clock) at which the last update that ended in a usable answer started;
   * -Infinity when there is none, or the last update failed (then the GUN is due: foreground).
   */
  checkedAt: number;
  inflight?: Promise<Checked>;
}

/** Verified metadata and the check it rests on, as one answer sees them. */
interface Checked {
  repo: TrustedRepo;
  checkedAt: number;
}

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
  private readonly refreshMs: number;
  /** age from which a query also starts a background update: 3/4 of refreshMs */
  private readonly aheadMs: number;
  private readonly now: () => Date;
  private readonly entries: LRUCache<string, GunEntry>;
  /**
   * Per verified repo object (replaced on every update, so never stale), per role list: built once,
   * so a pull by digest is a map lookup even with 10,000 tags.
   */
  private readonly views = new WeakMap<TrustedRepo, Map<string, SignedView>>();
  /** every update in flight, for idle() and close() (an entry evicted meanwhile is not lost) */
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly options: NotarySourceOptions) {
    this.fetcher =
      options.fetcher ??
      new HttpMetadataFetcher({
        url: options.url,
        ...(options.caFile ? { caFile: options.caFile } : {}),
        ...(options.fetchTimeoutMs ? { timeoutMs: options.fetchTimeoutMs } : {}),
      });
    this.store = new NotaryStateStore(options.stateDir);
    this.refreshMs = (options.refreshSeconds ?? 30) * 1000;
    this.aheadMs = Math.floor((this.refreshMs * 3) / 4);
    this.now = options.now ?? (() => new Date());
    this.entries = new LRUCache<string, GunEntry>({ max: options.maxGuns ?? 10_000 });
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
   * Resolves when every update in flight at the call (background ones included) has ended and
   * its outcome is recorded; never rejects. close() waits for it; tests use it to see a
   * background update land.
   */
  async idle(): Promise<void> {
    await Promise.all([...this.running].map((p) => p.catch(() => undefined)));
  }

  async close(): Promise<void> {
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
    const gun = `${query.registry}/${query.repository}`;
    let entry = this.entries.get(gun);
    if (!entry) {
      entry = { checkedAt: Number.NEGATIVE_INFINITY };
      this.entries.set(gun, entry);
    }
    const now = this.now();
    const t = now.getTime();
    const { repo, checkedAt } = entry;
    // Fresh: checked less than refreshMs ago and nothing on the query's path expired (firstExpiry
    // is the earliest expiry expiredRole would find, and the root certificates'), so answer now,
    // even while an update is in flight.
    if (repo && t - checkedAt < this.refreshMs && t < firstExpiry(repo, query.roles)) {
      if (t - checkedAt >= this.aheadMs && !entry.inflight) {
        // Refresh-ahead. refresh() records the outcome on the entry (a verification failure
        // marks it due), so nothing is lost by not awaiting it; the catch only keeps a failure
        // from becoming an unhandled rejection when no foreground caller shares this update.
        this.startUpdate(gun, entry, now, query.rootKeys).catch(() => undefined);
      }
      return { repo, checkedAt };
    }
    return entry.inflight ?? this.startUpdate(gun, entry, now, query.rootKeys);
  }

  /** Start the one update of this GUN; callers share it as `entry.inflight` until it ends. */
  private startUpdate(gun: string, entry: GunEntry, now: Date, pins?: readonly string[]): Promise<Checked> {
    const update = this.refresh(gun, entry, now, pins).finally(() => {
      entry.inflight = undefined;
      this.running.delete(update);
    });
    entry.inflight = update;
    this.running.add(update);
    return update;
  }

  private async refresh(gun: string, entry: GunEntry, now: Date, pins?: readonly string[]): Promise<Checked> {
    try {
      const repo = await this.update(gun, entry, now, pins);
      entry.repo = repo;
      entry.checkedAt = now.getTime();
      return { repo, checkedAt: entry.checkedAt };
    } catch (err) {
      // Due at once: the next query updates in the foreground instead of answering from the
      // older metadata (what a background update that met a rollback or a bad signature needs).
      // entry.repo stays: it is what the next update must not roll back from.
      entry.checkedAt = Number.NEGATIVE_INFINITY;
      throw err;
    }
  }

  /** One update from the server; offline, the trusted metadata while none of it has expired. */
  private async update(
    gun: string,
    entry: GunEntry,
    now: Date,
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
        if (!expired) return trusted;
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
    return repo;
  }
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
