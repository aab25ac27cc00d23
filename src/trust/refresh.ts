/**
 * The freshness rules shared by the trust sources (Notary per GUN, TUF per repository), in one
 * place. A key's verified value is answered from memory while it is fresh and refreshed from its
 * server otherwise, by the injected clock, with `checkedAt` the instant the last usable refresh
 * *started* (TUF spec 5.1 fixes one update start time; the answer reflects the server as of then
 * or later):
 *
 * - age < aheadMs (= floor(refreshMs * 3/4)): answer from the verified value, no request.
 * - aheadMs <= age < refreshMs (refresh-ahead): answer at once and start one refresh in the
 *   background, so a key under steady traffic is refreshed before it is due and no query waits.
 * - age >= refreshMs, no value, the value expired, or the last refresh failed: the query waits for
 *   a refresh (foreground).
 *
 * So no answer rests on a check older than refreshMs or on an expired value. Concurrent callers
 * share one refresh per key, background or foreground (single flight; the flight outlives an
 * eviction of the key). A refresh that cannot reach the server (`isUnavailable`) leaves the last
 * verified value answering, counted as a check, until it expires; after that every answer fails
 * (fail closed). Any other failure, in the background too, makes the key due: the next query
 * refreshes in the foreground and fails while the fault lasts, never answering from the older
 * value, which stays only as what the next refresh must not roll back from.
 *
 * Memory is bounded by count (`max`) and, with `maxSize`, by `sizeOf` of the values held (an
 * lru-cache); an evicted key is refreshed as if new (`previous` undefined), so eviction costs a
 * re-verification from persisted state, never trust.
 */
import { LRUCache } from "lru-cache";

export interface RefreshingCacheOptions<K, V, A> {
  /** ms a check stays good; 0: every query refreshes, in the foreground */
  refreshMs: number;
  /** ms since epoch, the injected clock */
  now: () => number;
  /**
   * One refresh of `key` from its server, as of `startedAt`. `previous` is the last verified
   * value in memory (what the refresh must not roll back from), undefined when there is none or
   * it was evicted. `arg` is what the query that started the refresh handed to `get`.
   */
  refresh: (key: K, previous: V | undefined, startedAt: number, arg: A, report: RefreshReport) => Promise<V>;
  /**
   * The first instant (ms) at which `value` may no longer be answered from, for the query that
   * hands `arg` (a Notary answer depends only on the roles the query resolves through, T5).
   */
  expiresAt: (value: V, arg: A) => number;
  /** the failure only says the server could not be reached (not that it served bad data) */
  isUnavailable: (err: unknown) => boolean;
  /**
   * When the server is unreachable and no value is in memory: the value an earlier run verified
   * and persisted, if any (loaded without the network), answered from until it expires.
   */
  restore?: (key: K) => Promise<V | undefined>;
  /** the error of a query whose only value has expired (`cause`: why no refresh replaced it) */
  expiredError: (key: K, value: V, now: number, cause: unknown, arg: A) => Error;
  /** how many keys' values stay in memory (default 10,000) */
  max?: number;
  /** with sizeOf: bound on the sum of sizeOf over the values in memory */
  maxSize?: number;
  /** a value's cost towards maxSize, a positive integer (e.g. the verified bytes it holds) */
  sizeOf?: (value: V) => number;
  /** told once per refresh how it ended (metrics and the trust-trouble log: ./health.ts) */
  observe?: (key: K, outcome: RefreshOutcome) => void;
}

/**
 * What a source's refresh may tell the cache besides its value: that the server could not be
 * reached and the value returned is the verified one it already held (Notary's update answers
 * offline by itself), so the refresh is observed as failed although it answered.
 */
export interface RefreshReport {
  offline(cause: unknown): void;
}

/**
 * How one refresh ended: ok, or failed with its error; `servingUntil` (ms) when, failed because
 * the server was unreachable, verified data still answers until then.
 */
export type RefreshOutcome =
  | { ok: true; seconds: number }
  | { ok: false; error: unknown; seconds: number; servingUntil?: number };

/** A verified value and the check it rests on, as one answer sees them. */
export interface Checked<V> {
  value: V;
  /** when the refresh this value rests on started (ms) */
  checkedAt: number;
  /**
   * Until when an answer derived from it may be reused without asking again: the refresh-ahead
   * point of this check (the next query from there on starts a refresh), never past the value's
   * expiry. <= now with refreshMs 0.
   */
  reuseUntil: number;
}

interface Entry<V> {
  value: V;
  /** -Infinity once a refresh failed: due at once */
  checkedAt: number;
}

export class RefreshingCache<K extends {}, V, A = undefined> {
  private readonly refreshMs: number;
  /** age from which a query also starts a background refresh: 3/4 of refreshMs */
  readonly aheadMs: number;
  private readonly entries: LRUCache<K, Entry<V>>;
  /** the one refresh in flight per key; outside the LRU so an eviction cannot split a flight */
  private readonly inflight = new Map<K, Promise<Checked<V>>>();

  constructor(private readonly options: RefreshingCacheOptions<K, V, A>) {
    this.refreshMs = options.refreshMs;
    this.aheadMs = Math.floor((options.refreshMs * 3) / 4);
    const { maxSize, sizeOf } = options;
    this.entries = new LRUCache<K, Entry<V>>({
      max: options.max ?? 10_000,
      ...(maxSize !== undefined && sizeOf
        ? { maxSize, sizeCalculation: (e: Entry<V>) => Math.max(1, Math.ceil(sizeOf(e.value))) }
        : {}),
    });
  }

  /** The verified value of `key`, refreshed first when due (see the rules above). */
  async get(key: K, arg: A): Promise<Checked<V>> {
    const t = this.options.now();
    const entry = this.entries.get(key);
    if (entry && t - entry.checkedAt < this.refreshMs && t < this.options.expiresAt(entry.value, arg)) {
      if (t - entry.checkedAt >= this.aheadMs && !this.inflight.has(key)) {
        // Refresh-ahead. The outcome is recorded on the key (a failure makes it due), so nothing
        // is lost by not awaiting it; the catch only keeps a failure from becoming an unhandled
        // rejection when no foreground caller shares this refresh.
        this.start(key, t, arg).catch(() => undefined);
      }
      return this.checked(entry.value, entry.checkedAt, arg);
    }
    const checked = await (this.inflight.get(key) ?? this.start(key, t, arg));
    // A value fine when its refresh started may have expired while a slow refresh ran.
    const now = this.options.now();
    if (now >= this.options.expiresAt(checked.value, arg)) {
      throw this.options.expiredError(key, checked.value, now, undefined, arg);
    }
    // The flight may have been started by a query with another `arg`: reuse is this query's.
    return this.checked(checked.value, checked.checkedAt, arg);
  }

  /** Whether `key` has a value in memory or a refresh in flight (no effect on recency). */
  has(key: K): boolean {
    return this.entries.has(key) || this.inflight.has(key);
  }

  /** The sum of sizeOf over the values in memory (0 without maxSize). */
  get size(): number {
    return this.entries.calculatedSize ?? 0;
  }

  /**
   * Resolves when every refresh in flight at the call (background ones included) has ended and
   * its outcome is recorded; never rejects. Sources' close() waits for it; tests use it to see a
   * background refresh land.
   */
  async idle(): Promise<void> {
    await Promise.all([...this.inflight.values()].map((p) => p.catch(() => undefined)));
  }

  private checked(value: V, checkedAt: number, arg: A): Checked<V> {
    return {
      value,
      checkedAt,
      reuseUntil: Math.min(checkedAt + this.aheadMs, this.options.expiresAt(value, arg)),
    };
  }

  /** Start the one refresh of `key`; callers share it until it ends. */
  private start(key: K, startedAt: number, arg: A): Promise<Checked<V>> {
    const flight = this.refresh(key, startedAt, arg).finally(() => {
      if (this.inflight.get(key) === flight) this.inflight.delete(key);
    });
    this.inflight.set(key, flight);
    return flight;
  }

  private async refresh(key: K, startedAt: number, arg: A): Promise<Checked<V>> {
    const previous = this.entries.peek(key)?.value;
    const t0 = performance.now();
    const seconds = () => (performance.now() - t0) / 1000;
    const observe = this.options.observe;
    let offlineCause: unknown;
    let reported = false;
    const report: RefreshReport = {
      offline: (cause) => {
        offlineCause = cause;
        reported = true;
      },
    };
    let value: V;
    try {
      value = await this.options.refresh(key, previous, startedAt, arg, report);
    } catch (err) {
      const offline = this.options.isUnavailable(err)
        ? (previous ?? (await this.options.restore?.(key).catch(() => undefined)))
        : undefined;
      if (offline === undefined) {
        this.markDue(key);
        observe?.(key, { ok: false, error: err, seconds: seconds() });
        throw err;
      }
      if (this.options.now() >= this.options.expiresAt(offline, arg)) {
        // Never answer from expired metadata, even when it is the newest there is (freeze
        // attack, TUF spec 5.4.4); kept as what the next refresh must not roll back from.
        if (previous === undefined)
          this.entries.set(key, { value: offline, checkedAt: Number.NEGATIVE_INFINITY });
        else this.markDue(key);
        const expired = this.options.expiredError(key, offline, this.options.now(), err, arg);
        observe?.(key, { ok: false, error: expired, seconds: seconds() });
        throw expired;
      }
      // Offline: the verified value answers until it expires, and this attempt counts as a check.
      value = offline;
      reported = true;
      offlineCause = err;
    }
    if (observe) {
      observe(
        key,
        reported
          ? {
              ok: false,
              error: offlineCause,
              seconds: seconds(),
              servingUntil: this.options.expiresAt(value, arg),
            }
          : { ok: true, seconds: seconds() },
      );
    }
    // set, not a mutation: the value's size is counted again, and a key evicted meanwhile
    // comes back with its newest verified value.
    this.entries.set(key, { value, checkedAt: startedAt });
    return this.checked(value, startedAt, arg);
  }

  /** Every value in memory with its key (no effect on recency): the expiry gauge reads them. */
  *values(): IterableIterator<[K, V]> {
    for (const [k, e] of this.entries.entries()) yield [k, e.value];
  }

  /** Due at once: the next query refreshes in the foreground instead of answering from memory. */
  private markDue(key: K): void {
    const entry = this.entries.peek(key);
    if (entry) entry.checkedAt = Number.NEGATIVE_INFINITY;
  }
}
