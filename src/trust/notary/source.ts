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
 * - age >= refreshMs, no metadata, any metadata expired, or the last update failed verification:
 *   the query waits for an update (foreground).
 *
 * So no answer rests on a check older than `refreshSeconds` or on expired metadata. Concurrent
 * callers share one in-flight update per GUN, background or foreground. When the server cannot be
 * reached (TRUST_UNAVAILABLE), answers come from the trusted metadata until it expires; after that
 * every answer is a TrustError (fail closed). Any other failure (rollback, bad signature, pin
 * mismatch, expired...), in the background too, marks the GUN due: the next query updates in the
 * foreground and throws while the attack lasts, never answering from the older metadata.
 *
 * Memory is bounded by GUN count and by the verified bytes held (REVIEW U5); disk by pruning the
 * state of GUNs long unused (store.ts `prune`).
 */
import { TrustError } from "../errors.js";
import { RefreshingCache } from "../refresh.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../types.js";
import { HttpMetadataFetcher, type MetadataFetcher } from "./fetcher.js";
import { canonicalKeyId } from "./keys.js";
import { keysResolver } from "./signatures.js";
import { NotaryStateStore } from "./store.js";
import { earliestExpiry, expiredRole, type TrustedRepo, updateRepository } from "./update.js";

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
  private readonly entries: RefreshingCache<string, TrustedRepo, readonly string[] | undefined>;
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
      new HttpMetadataFetcher({
        url: options.url,
        ...(options.caFile ? { caFile: options.caFile } : {}),
        ...(options.fetchTimeoutMs ? { timeoutMs: options.fetchTimeoutMs } : {}),
      });
    this.store = new NotaryStateStore(options.stateDir);
    this.now = options.now ?? (() => new Date());
    this.entries = new RefreshingCache({
      refreshMs: (options.refreshSeconds ?? 30) * 1000,
      now: () => this.now().getTime(),
      refresh: (gun, previous, startedAt, pins) => this.refresh(gun, previous, new Date(startedAt), pins),
      expiresAt: firstExpiry,
      // update() answers from the trusted metadata itself while the server is down, until expiry
      isUnavailable: (err) => err instanceof TrustError && err.code === "TRUST_UNAVAILABLE",
      expiredError: (gun, repo, at, cause) => {
        const role = expiredRole(repo, new Date(at));
        return new TrustError("EXPIRED", gun, role, `${gun}: ${role}: trusted metadata has expired`, {
          cause,
        });
      },
      max: options.maxGuns ?? 10_000,
      maxSize: options.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES,
      sizeOf: verifiedBytes,
    });
    this.aheadMs = this.entries.aheadMs;
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
      // and never past any expiry trustedRepo checks: all of the repo's metadata, not only the
      // queried roles. With refreshSeconds 0 that is checkedAt <= now: nothing to reuse.
      reuseUntil: Math.min(checkedAt + this.aheadMs, firstExpiry(repo)),
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
    return checked;
  }

  private async trustedRepo(query: TrustQuery): Promise<Checked> {
    const { value: repo, checkedAt } = await this.entries.get(
      `${query.registry}/${query.repository}`,
      query.rootKeys,
    );
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
    pins?: readonly string[],
  ): Promise<TrustedRepo> {
    const entry: GunEntry = previous ? { repo: previous } : {};
    const repo = await this.update(gun, entry, now, pins);
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
    pins?: readonly string[],
  ): Promise<TrustedRepo> {
    let trusted = entry.repo ?? null;
    if (!trusted) {
      const stored = await this.store.load(gun);
      if (stored) trusted = await updateRepository(null, { gun, source: stored, now, reloading: true });
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
      // Offline: answer from what is trusted while it is fresh; never from expired metadata.
      if (err instanceof TrustError && err.code === "TRUST_UNAVAILABLE" && trusted) {
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

/** The verified bytes a repo holds: its cost towards maxCacheBytes. */
function verifiedBytes(repo: TrustedRepo): number {
  let n = repo.root.bytes.length + repo.timestamp.bytes.length + repo.snapshot.bytes.length;
  for (const role of repo.roles.values()) n += role.bytes.length;
  return n;
}

/**
 * Per verified repo object (replaced on every update, so never stale): the earliest expiry of all
 * its metadata (root, timestamp, snapshot, every role), i.e. the first instant expiredRole names
 * a role. Once per repo, so the fresh path is a few comparisons however many roles there are.
 */
const firstExpiryOf = new WeakMap<TrustedRepo, number>();

function firstExpiry(repo: TrustedRepo): number {
  let at = firstExpiryOf.get(repo);
  if (at === undefined) {
    at = earliestExpiry(repo, repo.roles.keys());
    firstExpiryOf.set(repo, at);
  }
  return at;
}

/** Per trusted root: its root-role key IDs, each as "cert key ID" and canonical key ID. */
const rootKeyIdsOf = new WeakMap<TrustedRepo["root"], { ids: Set<string>; shown: string[] }>();

function rootKeyIds(root: TrustedRepo["root"]): { ids: Set<string>; shown: string[] } {
  let known = rootKeyIdsOf.get(root);
  if (!known) {
    const resolve = keysResolver(root.env.signed.keys);
    const ids = new Set<string>();
    const shown: string[] = [];
    for (const id of root.env.signed.roles.root.keyids) {
      const r = resolve(id);
      const canonical = "key" in r ? canonicalKeyId(r.key, id) : id;
      ids.add(id).add(canonical);
      shown.push(canonical === id ? id : `${id} (canonical ${canonical})`);
    }
    known = { ids, shown };
    rootKeyIdsOf.set(root, known);
  }
  return known;
}

/**
 * A pin holds on every query, not only when the root is first fetched: the trusted root may have
 * been recorded on first use (TOFU) before the policy pinned it, or by a query under another
 * policy. The root in force must list a pinned key (cert key ID or canonical key ID, as Notary's
 * trustpinning accepts) among its root keys; the bootstrap check in update.ts additionally
 * demands the pinned keys' signatures. Cheap: a set check over IDs computed once per root.
 */
function checkRootPin(repo: TrustedRepo, pins: readonly string[]): void {
  const { ids, shown } = rootKeyIds(repo.root);
  if (pins.some((p) => ids.has(p))) return;
  throw new TrustError(
    "ROOT_PIN_MISMATCH",
    repo.gun,
    "root",
    `${repo.gun}: the trust server's root key is ${shown.join(", ")}, but the pinned root key is ${pins.join(", ")}`,
  );
}

function changed(a: TrustedRepo, b: TrustedRepo): boolean {
  const same = (x: Uint8Array, y: Uint8Array) => Buffer.from(x).equals(Buffer.from(y));
  if (!same(a.root.bytes, b.root.bytes) || !same(a.timestamp.bytes, b.timestamp.bytes)) return true;
  if (!same(a.snapshot.bytes, b.snapshot.bytes) || a.roles.size !== b.roles.size) return true;
  for (const [name, r] of b.roles) {
    const old = a.roles.get(name);
    if (!old || !same(old.bytes, r.bytes)) return true;
  }
  return false;
}
