/** RefreshingCache (src/trust/refresh.ts) on its own: the freshness rules, by a fake clock. */
import { describe, expect, it } from "vitest";
import { type Checked, RefreshingCache, type RefreshingCacheOptions } from "../../src/trust/refresh.js";
import { expectNoUnhandledRejection, Hold } from "../helpers/background.js";

const T0 = 1_000_000;

class Unavailable extends Error {}
class Expired extends Error {}

interface Value {
  version: number;
  expires: number;
  size?: number;
}

/**
 * A fake server per key: `answer` is what the next refresh returns (a Value, or an Error it
 * throws); every refresh is recorded with what it was handed, and waits while held.
 */
class FakeServer extends Hold {
  answer: Value | Error = { version: 1, expires: T0 + 3600_000 };
  readonly calls: { key: string; previous: Value | undefined; startedAt: number; arg: string }[] = [];
  /** set at the end of a refresh (to test a slow refresh) */
  clockAfter: number | undefined;
  constructor(private readonly clock: { now: number }) {
    super();
  }
  refresh = async (key: string, previous: Value | undefined, startedAt: number, arg: string) => {
    this.calls.push({ key, previous, startedAt, arg });
    const answer = this.answer;
    await new Promise<void>((go) => this.pass(go));
    if (this.clockAfter !== undefined) this.clock.now = this.clockAfter;
    if (answer instanceof Error) throw answer;
    return answer;
  };
}

function setup(extra: Partial<RefreshingCacheOptions<string, Value, string>> = {}) {
  const clock = { now: T0 };
  const server = new FakeServer(clock);
  const cache = new RefreshingCache<string, Value, string>({
    refreshMs: 40_000,
    now: () => clock.now,
    refresh: (key, previous, startedAt, arg) => server.refresh(key, previous, startedAt, arg),
    expiresAt: (v) => v.expires,
    isUnavailable: (err) => err instanceof Unavailable,
    expiredError: (key, v, now, cause) =>
      new Expired(`${key}: v${v.version} expired at ${v.expires} (now ${now})`, { cause }),
    ...extra,
  });
  return { clock, server, cache };
}

/** `p`'s value if it settles before the next macrotask: an answer that waited for no I/O. */
async function withoutWaiting<T>(p: Promise<T>): Promise<T> {
  const late = Symbol("late");
  const v = await Promise.race([p, new Promise<typeof late>((r) => setImmediate(() => r(late)))]);
  if (v === late) throw new Error("the answer waited");
  return v as T;
}

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error("expected a failure");
    },
    (e: unknown) => e as Error,
  );
}

const versions = (answers: Checked<Value>[]) => answers.map((a) => a.value.version);

describe("RefreshingCache (refreshMs 40 s: ahead point 30 s)", () => {
  it("before the ahead point answers from memory; from it on at once, with one background refresh", async () => {
    const { clock, server, cache } = setup();
    expect((await cache.get("a", "q1")).value.version).toBe(1);
    expect(server.calls).toEqual([{ key: "a", previous: undefined, startedAt: T0, arg: "q1" }]);
    server.answer = { version: 2, expires: T0 + 3600_000 };

    clock.now = T0 + 29_999;
    expect((await withoutWaiting(cache.get("a", "q"))).value.version).toBe(1);
    expect(server.calls).toHaveLength(1);

    server.hold();
    clock.now = T0 + 30_000;
    const answers = await withoutWaiting(Promise.all(Array.from({ length: 50 }, () => cache.get("a", "q"))));
    expect(versions(answers).every((v) => v === 1)).toBe(true);
    expect(server.calls).toHaveLength(2); // one background refresh for 50 queries
    expect(server.calls[1]?.previous?.version).toBe(1);
    clock.now = T0 + 39_999;
    expect((await withoutWaiting(cache.get("a", "q"))).value.version).toBe(1);
    expect(server.calls).toHaveLength(2);

    server.release();
    await cache.idle();
    const after = await withoutWaiting(cache.get("a", "q"));
    expect(after.value.version).toBe(2);
    expect(after.checkedAt).toBe(T0 + 30_000); // when that refresh started
    expect(server.calls).toHaveLength(2);
  });

  it("at refreshMs or later the query waits for the refresh, one for all concurrent callers", async () => {
    const { clock, server, cache } = setup();
    await cache.get("a", "q");
    server.answer = { version: 2, expires: T0 + 3600_000 };
    server.hold();
    clock.now = T0 + 40_000;
    const pending = Promise.all(Array.from({ length: 10 }, () => cache.get("a", "q")));
    await expect(withoutWaiting(pending)).rejects.toThrow("waited");
    expect(server.calls).toHaveLength(2);
    server.release();
    expect(versions(await pending).every((v) => v === 2)).toBe(true);
    expect(server.calls).toHaveLength(2);
  });

  it("keys are refreshed apart: one key's refresh does not answer another", async () => {
    const { server, cache } = setup();
    server.hold();
    const a = cache.get("a", "qa");
    const b = cache.get("b", "qb");
    expect(server.calls.map((c) => c.key)).toEqual(["a", "b"]);
    server.release();
    await Promise.all([a, b]);
    expect(server.calls.map((c) => c.arg)).toEqual(["qa", "qb"]);
  });

  it("a background refresh that fails verification makes the very next query refresh in the foreground and fail", async () => {
    const { clock, server, cache } = setup();
    await cache.get("a", "q");
    server.answer = new Error("rollback");
    await expectNoUnhandledRejection(async () => {
      clock.now = T0 + 30_000;
      expect((await cache.get("a", "q")).value.version).toBe(1);
      await cache.idle();
    });
    // well inside 40 s of the last good check, yet not answered from it
    expect((await failure(cache.get("a", "q"))).message).toBe("rollback");
    expect(server.calls).toHaveLength(3);
    // the older value stays only as what the next refresh must not roll back from
    expect(server.calls[2]?.previous?.version).toBe(1);
    server.answer = { version: 2, expires: T0 + 3600_000 };
    expect((await cache.get("a", "q")).value.version).toBe(2);
    expect((await cache.get("a", "q")).value.version).toBe(2);
    expect(server.calls).toHaveLength(4);
  });

  it("unreachable: answers from the verified value, counted as a check, until it expires", async () => {
    const { clock, server, cache } = setup();
    await cache.get("a", "q");
    server.answer = new Unavailable("down");
    await expectNoUnhandledRejection(async () => {
      clock.now = T0 + 30_000;
      expect((await withoutWaiting(cache.get("a", "q"))).value.version).toBe(1);
      await cache.idle();
    });
    // the offline attempt counts as a check: nothing new until its own ahead point
    const offline = await cache.get("a", "q");
    expect(offline.checkedAt).toBe(T0 + 30_000);
    expect(server.calls).toHaveLength(2);
    clock.now = T0 + 3600_000 - 1; // foreground (due), still offline, the last instant before expiry
    expect((await cache.get("a", "q")).value.version).toBe(1);
    clock.now = T0 + 3600_000;
    const err = await failure(cache.get("a", "q"));
    expect(err).toBeInstanceOf(Expired);
    expect(err.cause).toBeInstanceOf(Unavailable);
    // and on every query after, each one trying the server again
    const calls = server.calls.length;
    expect(await failure(cache.get("a", "q"))).toBeInstanceOf(Expired);
    expect(server.calls.length).toBe(calls + 1);
  });

  it("unreachable with nothing in memory: the persisted value (restore) until it expires, else the failure", async () => {
    const stored: Value = { version: 7, expires: T0 + 60_000 };
    let restores = 0;
    const { clock, server, cache } = setup({
      restore: async () => {
        restores++;
        return stored;
      },
    });
    server.answer = new Unavailable("down");
    expect((await cache.get("a", "q")).value.version).toBe(7);
    expect(restores).toBe(1);
    clock.now = T0 + 60_000;
    expect(await failure(cache.get("a", "q"))).toBeInstanceOf(Expired);

    const never = setup();
    never.server.answer = new Unavailable("down");
    expect(await failure(never.cache.get("a", "q"))).toBeInstanceOf(Unavailable);
  });

  it("a failure that is not 'unavailable' is never answered around, even with a persisted value", async () => {
    let restores = 0;
    const { server, cache } = setup({
      restore: async () => {
        restores++;
        return { version: 7, expires: T0 + 60_000 };
      },
    });
    server.answer = new Error("bad signature");
    expect((await failure(cache.get("a", "q"))).message).toBe("bad signature");
    expect(restores).toBe(0);
  });

  it("an expired value is refreshed in the foreground, never answered", async () => {
    const { clock, server, cache } = setup();
    server.answer = { version: 1, expires: T0 + 10_000 };
    await cache.get("a", "q");
    server.answer = { version: 2, expires: T0 + 3600_000 };
    server.hold();
    clock.now = T0 + 10_000; // inside the ahead interval, but expired
    const pending = cache.get("a", "q");
    await expect(withoutWaiting(pending)).rejects.toThrow("waited");
    server.release();
    expect((await pending).value.version).toBe(2);
  });

  it("a value that expired while its slow refresh ran is not answered", async () => {
    const { server, cache } = setup();
    server.answer = { version: 1, expires: T0 + 10_000 };
    server.clockAfter = T0 + 10_000;
    expect(await failure(cache.get("a", "q"))).toBeInstanceOf(Expired);
  });

  it("reuseUntil is checkedAt + the ahead interval, or the expiry when that comes first; <= now with refreshMs 0", async () => {
    const { clock, server, cache } = setup();
    expect((await cache.get("a", "q")).reuseUntil).toBe(T0 + 30_000);
    server.answer = { version: 2, expires: T0 + 50_000 };
    clock.now = T0 + 40_000;
    expect((await cache.get("a", "q")).reuseUntil).toBe(T0 + 50_000);

    const zero = setup({ refreshMs: 0 });
    expect((await zero.cache.get("a", "q")).reuseUntil).toBe(T0);
    expect((await zero.cache.get("a", "q")).reuseUntil).toBe(T0);
    expect(zero.server.calls).toHaveLength(2); // every query refreshes, in the foreground
    await zero.cache.idle();
    expect(zero.server.calls).toHaveLength(2); // and nothing starts behind it
  });

  it("U5: bounded by the size of the values held; an evicted key is refreshed as new", async () => {
    const { server, cache } = setup({ maxSize: 100, sizeOf: (v) => v.size ?? 1 });
    server.answer = { version: 1, expires: T0 + 3600_000, size: 60 };
    await cache.get("a", "q");
    await cache.get("b", "q"); // 60 + 60 > 100: a goes
    expect(cache.size).toBe(60);
    expect(cache.has("a")).toBe(false);
    expect(cache.has("b")).toBe(true);
    await cache.get("a", "q");
    expect(server.calls.map((c) => [c.key, c.previous?.version])).toEqual([
      ["a", undefined],
      ["b", undefined],
      ["a", undefined],
    ]);
    // a value larger than the whole bound is answered but not kept
    server.answer = { version: 2, expires: T0 + 3600_000, size: 101 };
    expect((await cache.get("c", "q")).value.version).toBe(2);
    expect(cache.has("c")).toBe(false);
  });

  it("U5: a value whose size grows on refresh is counted again", async () => {
    const { clock, server, cache } = setup({ maxSize: 100, sizeOf: (v) => v.size ?? 1 });
    server.answer = { version: 1, expires: T0 + 3600_000, size: 10 };
    await cache.get("a", "q");
    await cache.get("b", "q");
    expect(cache.size).toBe(20);
    server.answer = { version: 2, expires: T0 + 3600_000, size: 95 };
    clock.now = T0 + 40_000;
    await cache.get("b", "q");
    expect(cache.size).toBe(95); // a (least recently used) made room
    expect(cache.has("a")).toBe(false);
  });

  it("single flight outlives an eviction of the key", async () => {
    const { clock, server, cache } = setup({ max: 1 });
    const holdA = new Hold();
    const refresh = server.refresh;
    server.refresh = async (key, previous, startedAt, arg) => {
      if (key === "a") await new Promise<void>((go) => holdA.pass(go));
      return refresh(key, previous, startedAt, arg);
    };
    await cache.get("a", "q");
    holdA.hold();
    clock.now = T0 + 40_000;
    const a1 = cache.get("a", "q"); // foreground, held
    await cache.get("b", "q"); // b's value evicts a's while a's refresh is in flight
    expect(cache.has("a")).toBe(true); // in flight still counts as held (pruning asks this)
    const a2 = cache.get("a", "q");
    holdA.release();
    await Promise.all([a1, a2]);
    expect(server.calls.map((c) => c.key)).toEqual(["a", "b", "a"]);
  });
});
