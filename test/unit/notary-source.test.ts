/** NotarySource behaviour around the verification: caching, refresh, single flight, persistence, HTTP fetcher limits. */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TrustError } from "../../src/trust/errors.js";
import { canonicalJson, parseStrictJson } from "../../src/trust/notary/canonical.js";
import { HttpMetadataFetcher, type MetadataFetcher, roleOfFile } from "../../src/trust/notary/fetcher.js";
import { parseExpires } from "../../src/trust/notary/models.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import { NotaryStateStore } from "../../src/trust/notary/store.js";
import { expectNoUnhandledRejection, Hold } from "../helpers/background.js";
import {
  FIXTURE_NOW,
  FIXTURES,
  loadRepoFiles,
  MapFetcher,
  queryFor,
  readExpected,
} from "../helpers/notary-fixtures.js";
import { serveNotaryFiles } from "../helpers/notary-http.js";
import { ecdsaKey, TestRepo, x509Key } from "../helpers/notary-signer.js";

const BASIC = join(FIXTURES, "signer-ecdsa", "basic");
const { gun } = readExpected(BASIC);
const query = queryFor(gun);
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "tg-src-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A state dir in which a first NotarySource has verified and persisted the basic fixture. */
async function stateDirTrustingBasic(): Promise<{ state: string; f: MapFetcher }> {
  const state = tmp();
  const f = new MapFetcher(loadRepoFiles(BASIC));
  await new NotarySource({ url: "http://x", stateDir: state, fetcher: f, now: () => FIXTURE_NOW }).listSigned(
    query,
  );
  return { state, f };
}

describe("NotarySource", () => {
  it("concurrent callers share one update (single flight)", async () => {
    const f = new MapFetcher(loadRepoFiles(BASIC));
    const src = new NotarySource({ url: "http://x", stateDir: tmp(), fetcher: f, now: () => FIXTURE_NOW });
    const answers = await Promise.all(Array.from({ length: 20 }, () => src.resolveTag(query, "v1")));
    expect(new Set(answers.map((a) => a.signatures[0]?.digest)).size).toBe(1);
    expect(f.requests.filter((r) => r === "timestamp.json")).toHaveLength(1);
  });

  it("re-fetches the timestamp at most every refreshSeconds", async () => {
    const f = new MapFetcher(loadRepoFiles(BASIC));
    let now = FIXTURE_NOW;
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: f,
      now: () => now,
      refreshSeconds: 30,
    });
    await src.listSigned(query);
    // just before the refresh-ahead point (3/4 of refreshSeconds = 22.5 s): answered from memory
    now = new Date(FIXTURE_NOW.getTime() + 22_000);
    await src.listSigned(query);
    expect(f.requests.filter((r) => r === "timestamp.json")).toHaveLength(1);
    now = new Date(FIXTURE_NOW.getTime() + 31_000);
    await src.listSigned(query);
    expect(f.requests.filter((r) => r === "timestamp.json")).toHaveLength(2);
    // unchanged snapshot/targets are not downloaded again
    expect(f.requests.filter((r) => r.startsWith("targets"))).toHaveLength(1);
  });

  it("persists atomically and answers from the state dir after a restart while the server is down", async () => {
    const { state, f } = await stateDirTrustingBasic();
    expect(readdirSync(join(state, "notary"))).toEqual([basename(new NotaryStateStore(state).pathFor(gun))]);
    f.offline = true;
    const again = new NotarySource({ url: "http://x", stateDir: state, fetcher: f, now: () => FIXTURE_NOW });
    expect((await again.resolveTag(query, "v1")).signatures).toHaveLength(1);
  });

  it("bounds the GUNs kept in memory; an evicted GUN is re-read from the state dir, so a rollback is still refused", async () => {
    const retag = join(FIXTURES, "signer-ecdsa", "retag");
    const retagQuery = queryFor(readExpected(retag).gun);
    const retagFiles = new MapFetcher(loadRepoFiles(join(retag, "after")));
    const basicFiles = new MapFetcher(loadRepoFiles(BASIC));
    const byGun: MetadataFetcher = {
      fetch: (g, file, max) => (g === gun ? basicFiles : retagFiles).fetch(g, file, max),
    };
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: byGun,
      now: () => FIXTURE_NOW,
      maxGuns: 1,
    });
    await src.listSigned(retagQuery);
    await src.listSigned(query); // evicts the retag GUN from memory
    // the server now serves the older metadata: only the persisted state can tell
    retagFiles.files = loadRepoFiles(join(retag, "before"));
    const err = await src.listSigned(retagQuery).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustError);
    expect((err as TrustError).code).toBe("ROLLBACK");
  });

  it("applies a root pin on every query, also to a root first trusted without one (TOFU)", async () => {
    const f = new MapFetcher(loadRepoFiles(BASIC));
    const src = new NotarySource({ url: "http://x", stateDir: tmp(), fetcher: f, now: () => FIXTURE_NOW });
    await src.listSigned(query); // trust on first use, no pin
    const root = JSON.parse(readFileSync(join(BASIC, "root.json"), "utf8")) as {
      signed: { roles: { root: { keyids: string[] } } };
    };
    const serverRootId = root.signed.roles.root.keyids[0] as string;
    const wrongPin = "ab".repeat(32);
    const err = await src.resolveTag({ ...query, rootKeys: [wrongPin] }, "v1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustError);
    expect((err as TrustError).code).toBe("ROOT_PIN_MISMATCH");
    expect((err as TrustError).message).toContain(wrongPin);
    expect((err as TrustError).message).toContain(serverRootId);
    // the right pin (cert key ID) is accepted from the same trusted state, without a new fetch
    const before = f.requests.length;
    expect((await src.resolveTag({ ...query, rootKeys: [serverRootId] }, "v1")).signatures).toHaveLength(1);
    expect(f.requests.length).toBe(before);
  });

  it("a corrupt state file is an error, not a silent fresh start", async () => {
    const { state, f } = await stateDirTrustingBasic();
    const file = new NotaryStateStore(state).pathFor(gun);
    writeFileSync(file, readFileSync(file, "utf8").slice(0, 50));
    const err = await new NotarySource({
      url: "http://x",
      stateDir: state,
      fetcher: f,
      now: () => FIXTURE_NOW,
    })
      .listSigned(query)
      .catch((e: unknown) => e);
    expect((err as TrustError).code).toBe("METADATA_INVALID");
  });

  it("TagSignatures.expires is the earliest expiry the answer depends on (the timestamp)", async () => {
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: new MapFetcher(loadRepoFiles(BASIC)),
      now: () => FIXTURE_NOW,
    });
    const ts = JSON.parse(readFileSync(join(BASIC, "timestamp.json"), "utf8")).signed.expires as string;
    expect((await src.resolveTag(query, "v1")).expires.getTime()).toBe(parseExpires(gun, "timestamp", ts));
  });
});

/** Holds every request while `hold()` is on, so an update stays in flight as long as a test needs. */
class HeldFetcher extends Hold implements MetadataFetcher {
  /** every file asked for, at the moment it is asked (before any hold) */
  readonly asked: string[] = [];
  constructor(readonly inner: MapFetcher) {
    super();
  }
  /** updates started: each begins with root.json */
  get updates(): number {
    return this.asked.filter((f) => f === "root.json").length;
  }
  async fetch(gun: string, file: string, maxBytes: number): Promise<Uint8Array> {
    this.asked.push(file);
    await new Promise<void>((go) => this.pass(go));
    return this.inner.fetch(gun, file, maxBytes);
  }
}

/** `p`'s value if it settles before the next macrotask: an answer that waited for no I/O. */
async function withoutWaiting<T>(p: Promise<T>): Promise<T> {
  const late = Symbol("late");
  const v = await Promise.race([p, new Promise<typeof late>((r) => setImmediate(() => r(late)))]);
  if (v === late) throw new Error("the answer waited for I/O");
  return v as T;
}

async function refusal(p: Promise<unknown>): Promise<TrustError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrustError);
  return err as TrustError;
}

describe("NotarySource refresh-ahead (refreshSeconds 40: ahead point 30 s)", () => {
  const RETAG = join(FIXTURES, "signer-ecdsa", "retag");
  const retagQuery = queryFor(readExpected(RETAG).gun);
  const after = readExpected(RETAG).signed;
  const BEFORE_A = after.stable?.digest as string; // in before/, a and stable share one digest
  const AFTER_A = after.a?.digest as string; // in after/, a is re-signed to this
  const T0 = FIXTURE_NOW.getTime();

  function retagSource(dir: "before" | "after", refreshSeconds = 40) {
    const f = new HeldFetcher(new MapFetcher(loadRepoFiles(join(RETAG, dir))));
    const clock = { now: T0 };
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: f,
      now: () => new Date(clock.now),
      refreshSeconds,
    });
    return { f, clock, src };
  }

  it("before the ahead point no fetch; from it on answers at once and refreshes once in the background", async () => {
    const { f, clock, src } = retagSource("before");
    expect((await src.resolveTag(retagQuery, "a")).signatures[0]?.digest).toBe(BEFORE_A);
    expect(f.updates).toBe(1);
    f.inner.files = loadRepoFiles(join(RETAG, "after")); // a is re-signed on the server

    clock.now = T0 + 29_999;
    expect((await withoutWaiting(src.resolveTag(retagQuery, "a"))).signatures[0]?.digest).toBe(BEFORE_A);
    expect(f.updates).toBe(1);

    f.hold();
    clock.now = T0 + 30_000;
    const answers = await withoutWaiting(
      Promise.all(Array.from({ length: 50 }, () => src.resolveTag(retagQuery, "a"))),
    );
    expect(answers.every((a) => a.signatures[0]?.digest === BEFORE_A)).toBe(true);
    expect(f.updates).toBe(1 + 1); // one background update for 50 queries...
    expect(f.held).toBe(1); // ...still waiting for the server
    // while it is in flight, queries keep being answered from memory and start nothing
    clock.now = T0 + 39_999;
    expect((await withoutWaiting(src.resolveTag(retagQuery, "a"))).signatures[0]?.digest).toBe(BEFORE_A);
    expect(f.updates).toBe(2);

    f.release();
    await src.idle();
    expect((await withoutWaiting(src.resolveTag(retagQuery, "a"))).signatures[0]?.digest).toBe(AFTER_A);
    expect(f.updates).toBe(2);
  });

  it("at refreshSeconds or later the query waits for the refresh (foreground), shared by concurrent callers", async () => {
    const { f, clock, src } = retagSource("before");
    await src.resolveTag(retagQuery, "a");
    f.inner.files = loadRepoFiles(join(RETAG, "after"));
    f.hold();
    clock.now = T0 + 40_000;
    const pending = Promise.all(Array.from({ length: 10 }, () => src.resolveTag(retagQuery, "a")));
    await expect(withoutWaiting(pending)).rejects.toThrow("waited");
    expect(f.updates).toBe(2);
    f.release();
    expect((await pending).every((a) => a.signatures[0]?.digest === AFTER_A)).toBe(true);
    expect(f.updates).toBe(2);
  });

  it("a background refresh that meets a rollback makes the very next query fail closed", async () => {
    const { f, clock, src } = retagSource("after");
    await src.resolveTag(retagQuery, "a");
    f.inner.files = loadRepoFiles(join(RETAG, "before")); // the server rolls back
    await expectNoUnhandledRejection(async () => {
      clock.now = T0 + 30_000;
      // answered from the verified metadata; the background update meets the rollback
      expect((await src.resolveTag(retagQuery, "a")).signatures[0]?.digest).toBe(AFTER_A);
      expect(f.updates).toBe(2);
      // A fetch from MapFetcher and the verification take microtasks only: by the next
      // macrotask the background update has failed, without anyone awaiting it.
      await new Promise((r) => setImmediate(r));
    });
    // Still inside the 40 s of the last good check, yet not answered from it: foreground, refused.
    expect((await refusal(src.resolveTag(retagQuery, "a"))).code).toBe("ROLLBACK");
    expect(f.updates).toBe(3);
    expect((await refusal(src.listSigned(retagQuery))).code).toBe("ROLLBACK");
  });

  it("a background refresh that finds the server unreachable keeps answers coming until expiry", async () => {
    const f = new HeldFetcher(new MapFetcher(loadRepoFiles(BASIC)));
    let now = T0;
    const src = new NotarySource({ url: "http://x", stateDir: tmp(), fetcher: f, now: () => new Date(now) });
    const first = await src.resolveTag(query, "v1"); // default refreshSeconds 30: ahead point 22.5 s
    f.inner.offline = true;
    await expectNoUnhandledRejection(async () => {
      now = T0 + 22_500;
      expect((await withoutWaiting(src.resolveTag(query, "v1"))).signatures).toEqual(first.signatures);
      await src.idle();
    });
    expect(f.updates).toBe(2);
    // the offline check counts as a check: no new request until its own ahead point
    expect((await src.resolveTag(query, "v1")).signatures).toEqual(first.signatures);
    expect(f.updates).toBe(2);
    now = T0 + 45_000;
    expect((await withoutWaiting(src.resolveTag(query, "v1"))).signatures).toEqual(first.signatures);
    await src.idle();
    expect(f.updates).toBe(3);
    // the last instant before the timestamp expires: still answered (foreground, offline)
    const expires = first.expires.getTime();
    now = expires - 1;
    expect((await src.resolveTag(query, "v1")).signatures).toEqual(first.signatures);
    now = expires;
    const err = await refusal(src.resolveTag(query, "v1"));
    expect(err.code).toBe("EXPIRED");
    expect(err.role).toBe("timestamp");
  });

  it("reuseUntil is checkedAt + the ahead interval, or an expiry when that comes first", async () => {
    const { f, clock, src } = retagSource("before");
    expect((await src.resolveTag(retagQuery, "a")).reuseUntil).toBe(T0 + 30_000);
    clock.now = T0 + 10_000;
    expect((await src.resolveTag(retagQuery, "a")).reuseUntil).toBe(T0 + 30_000);
    // at the ahead point the answer still rests on the old check: nothing left to reuse
    clock.now = T0 + 30_000;
    expect((await src.resolveTag(retagQuery, "a")).reuseUntil).toBe(T0 + 30_000);
    await src.idle();
    expect((await src.resolveTag(retagQuery, "a")).reuseUntil).toBe(T0 + 60_000);
    expect(f.updates).toBe(2);

    // 10 s before the timestamp expires, the expiry comes before the ahead point
    const ts = JSON.parse(readFileSync(join(RETAG, "before", "timestamp.json"), "utf8")).signed.expires;
    const tsExpires = parseExpires(readExpected(RETAG).gun, "timestamp", ts);
    const late = retagSource("before");
    late.clock.now = tsExpires - 10_000;
    const answer = await late.src.resolveTag(retagQuery, "a");
    expect(answer.reuseUntil).toBe(tsExpires);
    expect(answer.expires.getTime()).toBe(tsExpires);
  });

  it("reuseUntil is <= now with refreshSeconds 0", async () => {
    const { clock, src } = retagSource("before", 0);
    expect((await src.resolveTag(retagQuery, "a")).reuseUntil).toBe(T0);
    clock.now = T0 + 5;
    expect((await src.resolveTag(retagQuery, "a")).reuseUntil).toBeLessThanOrEqual(T0 + 5);
  });
});

describe("NotarySource refresh-ahead against the test signer", () => {
  const GUN = "registry.test:5000/acme/ahead";
  // certificates are minted now (notBefore = when openssl runs): pin the clock a little later
  const NOW = Date.now() + 5 * 60_000;
  const signerQuery = queryFor(GUN);
  const D1 = "a".repeat(64);
  const D2 = "b".repeat(64);

  it("a background refresh that meets a bad signature makes the very next query fail closed", async () => {
    const r = new TestRepo(GUN, new Date(NOW), x509Key(GUN));
    r.targets = { v1: { digest: D1, size: 401 } };
    const f = new MapFetcher(r.publish());
    let now = NOW;
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: f,
      now: () => new Date(now),
      refreshSeconds: 30,
    });
    expect((await src.resolveTag(signerQuery, "v1")).signatures[0]?.digest).toBe(`sha256:${D1}`);
    // v1 re-pointed, targets signed by a key the root does not list
    r.targets = { v1: { digest: D2, size: 401 } };
    f.files = r.publish({ signers: { targets: [ecdsaKey()] } });
    await expectNoUnhandledRejection(async () => {
      now = NOW + 22_500;
      expect((await src.resolveTag(signerQuery, "v1")).signatures[0]?.digest).toBe(`sha256:${D1}`);
      await new Promise((r) => setImmediate(r));
    });
    const err = await refusal(src.resolveTag(signerQuery, "v1"));
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe("targets");
  });

  it("T5: reuseUntil stops at the earliest expiry on the query's resolution path, not at roles off it", async () => {
    const r = new TestRepo(GUN, new Date(NOW), x509Key(GUN));
    r.targets = { v1: { digest: D1, size: 401 } };
    r.delegations = [{ name: "targets/releases", keys: [ecdsaKey()], targets: {} }];
    const releasesExpire = NOW + 10_000;
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: new MapFetcher(
        r.publish({ expires: { "targets/releases": new Date(releasesExpire).toISOString() } }),
      ),
      now: () => new Date(NOW),
      refreshSeconds: 30,
    });
    // targets/releases is not on the path of a query for targets alone: its expiry does not
    // change that answer, so it does not bound its reuse
    const answer = await src.resolveTag(queryFor(GUN, ["targets"]), "v1");
    expect(answer.signatures).toHaveLength(1);
    expect(answer.reuseUntil).toBe(NOW + 22_500);
    expect(answer.expires.getTime()).toBeGreaterThan(releasesExpire);
    // Docker's roles read targets/releases first: its expiry bounds both
    const docker = await src.resolveTag(signerQuery, "v1");
    expect(docker.reuseUntil).toBe(releasesExpire);
    expect(docker.expires.getTime()).toBe(releasesExpire);
  });
});

describe("HttpMetadataFetcher", () => {
  it("serves fixtures over real HTTP end to end", async () => {
    const server = await serveNotaryFiles(gun, loadRepoFiles(BASIC));
    const src = new NotarySource({ url: server.url, stateDir: tmp(), now: () => FIXTURE_NOW });
    try {
      expect(await src.listSigned(query)).toHaveLength(Object.keys(readExpected(BASIC).signed).length);
      // snapshot and targets are fetched by checksum
      expect(server.requests.some((p) => /\/snapshot\.[0-9a-f]{64}\.json$/.test(p))).toBe(true);
      expect(server.requests.some((p) => /\/targets\.[0-9a-f]{64}\.json$/.test(p))).toBe(true);
    } finally {
      await src.close();
      await server.close();
    }
  });

  it.each([true, false])(
    "enforces the size cap while reading (content-length sent: %s)",
    async (withLength) => {
      const body = Buffer.alloc(200_000, 0x20);
      const server = createServer((_req, res) => {
        res.writeHead(200, withLength ? { "content-length": body.length } : {});
        res.end(body);
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const f = new HttpMetadataFetcher({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      });
      try {
        const err = await f.fetch(gun, "timestamp.json", 1024).catch((e: unknown) => e);
        expect((err as TrustError).code).toBe("METADATA_INVALID");
        expect((err as TrustError).role).toBe("timestamp");
      } finally {
        await f.close();
        server.closeAllConnections();
        server.close();
      }
    },
  );

  it("times out a server that never answers", async () => {
    const server = createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const f = new HttpMetadataFetcher({
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      timeoutMs: 200,
    });
    try {
      const err = await f.fetch(gun, "root.json", 1024).catch((e: unknown) => e);
      expect((err as TrustError).code).toBe("TRUST_UNAVAILABLE");
    } finally {
      await f.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it("names roles from file names", () => {
    expect(roleOfFile("3.root.json")).toBe("root");
    expect(roleOfFile(`targets/releases.${"a".repeat(64)}.json`)).toBe("targets/releases");
  });
});

describe("canonical JSON and expires", () => {
  it("sorts keys by bytes, escapes only backslash and quote, keeps other characters raw", () => {
    expect(canonicalJson({ b: 1, a: ['x\n"\\<é'], c: null, d: true }).toString()).toBe(
      '{"a":["x\n\\"\\\\<é"],"b":1,"c":null,"d":true}',
    );
  });
  it.each(["1.0", "1e2", "-0.5", "12345678901234567890"])("refuses the number %s", (n) => {
    expect(() => parseStrictJson(Buffer.from(`{"a":${n}}`))).toThrow();
  });
  it("keeps numbers inside strings alone", () => {
    expect(parseStrictJson(Buffer.from('{"a":"1.5e3","b":-2}'))).toEqual({ a: "1.5e3", b: -2 });
  });
  it("reads RFC 3339 with nanoseconds and offsets", () => {
    expect(parseExpires("g", "r", "2025-08-07T20:55:22.677722315-07:00")).toBe(
      Date.parse("2025-08-08T03:55:22.677Z"),
    );
    expect(parseExpires("g", "r", "2026-12-08T21:50:43Z")).toBe(Date.parse("2026-12-08T21:50:43Z"));
    expect(() => parseExpires("g", "r", "2026-12-08 21:50:43")).toThrow(TrustError);
  });
});

describe("NotarySource reports refreshes to the metrics and logs trust trouble once (issue 12 items 4, 5)", () => {
  it("offline answers (Notary's update answers them itself) count as failed refreshes, logged once", async () => {
    const { Writable } = await import("node:stream");
    const { createLogger } = await import("../../src/log.js");
    const { Metrics } = await import("../../src/metrics.js");
    const { parseExposition, sampleValue } = await import("../helpers/prometheus.js");
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _e, done) {
        for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    const metrics = new Metrics({ processMetrics: false });
    const f = new MapFetcher(loadRepoFiles(BASIC));
    let now = FIXTURE_NOW.getTime();
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: f,
      refreshSeconds: 0,
      now: () => new Date(now),
      registry: "docker.io",
      logger: createLogger("info", sink),
      observer: metrics.trust,
    });
    const first = await src.resolveTag(query, "v1");
    f.offline = true;
    for (let i = 0; i < 25; i++) {
      now += 1000;
      expect((await src.resolveTag(query, "v1")).signatures).toEqual(first.signatures);
    }
    f.offline = false;
    await src.resolveTag(query, "v1");
    const fam = parseExposition((await metrics.scrape()).body);
    const labels = { registry: "docker.io", source: "notary" };
    expect(sampleValue(fam, "trustgate_trust_refreshes_total", { ...labels, result: "ok" })).toBe(2);
    expect(
      sampleValue(fam, "trustgate_trust_refreshes_total", { ...labels, result: "TRUST_UNAVAILABLE" }),
    ).toBe(25);
    const gauge = sampleValue(fam, "trustgate_trust_expiry_seconds", labels) ?? Number.NaN;
    expect(gauge).toBeCloseTo((first.expires.getTime() - now) / 1000, 0);
    const trouble = lines.filter((l) => String(l.msg).startsWith("trust "));
    expect(trouble.map((l) => [l.msg, l.gun])).toEqual([
      ["trust server unreachable: serving verified metadata until it expires", gun],
      ["trust refresh recovered", gun],
    ]);
    await src.close();
  });
});
