/**
 * Issue 12 items 4 and 5: every network refresh is counted on /metrics with its result and
 * latency, the expiry gauge reads the verified data held, and trust trouble is logged once per
 * change of state (per source and GUN), never once per pull.
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import { TrustError } from "../../src/trust/errors.js";
import { TrustHealth } from "../../src/trust/health.js";
import { RefreshingCache } from "../../src/trust/refresh.js";
import { parseExposition, sampleValue } from "../helpers/prometheus.js";

interface Value {
  version: number;
  expires: number;
}

function setup() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const logger = createLogger("info", sink);
  const metrics = new Metrics({ processMetrics: false });
  let clock = 1_000_000;
  const server = {
    up: true,
    version: 1,
    expires: clock + 3600_000,
    fail: undefined as TrustError | undefined,
  };
  const source = { registry: "docker.io", kind: "notary" as const };
  const health = new TrustHealth({ source, logger, observer: metrics.trust, now: () => clock });
  const cache = new RefreshingCache<string, Value, undefined>({
    refreshMs: 0, // every pull refreshes: the worst case for log volume
    now: () => clock,
    refresh: async (gun) => {
      if (server.fail) throw server.fail;
      if (!server.up)
        throw new TrustError(
          "TRUST_UNAVAILABLE",
          gun,
          "timestamp",
          `${gun}: GET http://10.0.0.5:4443/: ECONNREFUSED`,
        );
      return { version: server.version, expires: server.expires };
    },
    expiresAt: (v) => v.expires,
    isUnavailable: (err) => err instanceof TrustError && err.code === "TRUST_UNAVAILABLE",
    expiredError: (gun, v) => new TrustError("EXPIRED", gun, "timestamp", `${gun}: expired at ${v.expires}`),
    observe: health.record,
  });
  metrics.trust.watchExpiry(source, () => {
    let earliest: number | undefined;
    for (const [, v] of cache.values()) earliest = Math.min(earliest ?? v.expires, v.expires);
    return earliest === undefined ? undefined : (earliest - clock) / 1000;
  });
  const scrape = async () => parseExposition((await metrics.scrape()).body);
  const trustLines = () =>
    lines.filter((l) => typeof l.msg === "string" && String(l.msg).startsWith("trust "));
  return {
    cache,
    server,
    lines: trustLines,
    scrape,
    tick: (ms: number) => {
      clock += ms;
    },
  };
}

const refreshes = (f: Awaited<ReturnType<ReturnType<typeof setup>["scrape"]>>, result: string) =>
  sampleValue(f, "trustgate_trust_refreshes_total", { registry: "docker.io", source: "notary", result });

describe("trust refreshes on /metrics and trust trouble in the log", () => {
  it("counts every refresh, logs down / serving / recovery once each over many pulls", async () => {
    const t = setup();
    let f = await t.scrape();
    expect(
      sampleValue(f, "trustgate_trust_expiry_seconds", { registry: "docker.io", source: "notary" }),
    ).toBeUndefined();
    for (let i = 0; i < 5; i++) await t.cache.get("docker.io/acme/app", undefined);
    f = await t.scrape();
    expect(refreshes(f, "ok")).toBe(5);
    expect(
      sampleValue(f, "trustgate_trust_expiry_seconds", { registry: "docker.io", source: "notary" }),
    ).toBe(3600);
    expect(
      sampleValue(f, "trustgate_trust_refresh_duration_seconds_count", {
        registry: "docker.io",
        source: "notary",
      }),
    ).toBe(5);
    expect(t.lines()).toHaveLength(0);

    // the trust server goes down: 200 pulls, each refreshing, all answered from verified data
    t.server.up = false;
    for (let i = 0; i < 200; i++) {
      t.tick(1000);
      await t.cache.get("docker.io/acme/app", undefined);
    }
    f = await t.scrape();
    expect(refreshes(f, "TRUST_UNAVAILABLE")).toBe(200);
    expect(
      sampleValue(f, "trustgate_trust_expiry_seconds", { registry: "docker.io", source: "notary" }),
    ).toBe(3400);
    expect(t.lines()).toHaveLength(1);
    expect(t.lines()[0]).toMatchObject({
      level: 40,
      msg: "trust server unreachable: serving verified metadata until it expires",
      gun: "docker.io/acme/app",
      code: "TRUST_UNAVAILABLE",
      trustSource: "notary",
      registry: "docker.io",
      secondsLeft: 3599,
    });
    // the log keeps the internal URL the client never sees
    expect(String(t.lines()[0]?.reason)).toContain("http://10.0.0.5:4443/");

    // back up: one info line, and quiet again
    t.server.up = true;
    for (let i = 0; i < 50; i++) await t.cache.get("docker.io/acme/app", undefined);
    expect(t.lines()).toHaveLength(2);
    expect(t.lines()[1]).toMatchObject({
      level: 30,
      msg: "trust refresh recovered",
      after: "TRUST_UNAVAILABLE",
      troubleSeconds: 199,
    });
  });

  it("a failed refresh is logged once with its reason, and the expiry of offline data as EXPIRED once", async () => {
    const t = setup();
    await t.cache.get("docker.io/acme/app", undefined);
    t.server.fail = new TrustError(
      "ROLLBACK",
      "docker.io/acme/app",
      "timestamp",
      "docker.io/acme/app: timestamp: version 1 < 2",
    );
    for (let i = 0; i < 30; i++)
      await expect(t.cache.get("docker.io/acme/app", undefined)).rejects.toThrow(/version/);
    expect(t.lines()).toEqual([
      expect.objectContaining({
        level: 40,
        msg: "trust refresh failed",
        code: "ROLLBACK",
        reason: "docker.io/acme/app: timestamp: version 1 < 2",
      }),
    ]);
    expect(refreshes(await t.scrape(), "ROLLBACK")).toBe(30);

    // then unreachable (a change of state: logged), then past expiry (another change: logged once)
    t.server.fail = undefined;
    t.server.up = false;
    for (let i = 0; i < 10; i++) await t.cache.get("docker.io/acme/app", undefined);
    t.tick(3600_000);
    for (let i = 0; i < 10; i++)
      await expect(t.cache.get("docker.io/acme/app", undefined)).rejects.toThrow(/expired/);
    expect(t.lines().map((l) => [l.msg, l.code])).toEqual([
      ["trust refresh failed", "ROLLBACK"],
      ["trust server unreachable: serving verified metadata until it expires", "TRUST_UNAVAILABLE"],
      ["trust refresh failed", "EXPIRED"],
    ]);
    const f = await t.scrape();
    expect(refreshes(f, "EXPIRED")).toBe(10);
    expect(
      sampleValue(f, "trustgate_trust_expiry_seconds", { registry: "docker.io", source: "notary" }),
    ).toBe(0);
  });

  it("state is per GUN: a second repository going down logs its own line", async () => {
    const t = setup();
    await t.cache.get("docker.io/acme/a", undefined);
    await t.cache.get("docker.io/acme/b", undefined);
    t.server.up = false;
    for (let i = 0; i < 10; i++) {
      await t.cache.get("docker.io/acme/a", undefined);
      await t.cache.get("docker.io/acme/b", undefined);
    }
    expect(t.lines().map((l) => l.gun)).toEqual(["docker.io/acme/a", "docker.io/acme/b"]);
  });
});
