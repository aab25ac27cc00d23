/**
 * The admin listener and readiness (issue 12 item 4), on a real loopback server: what /healthz,
 * /readyz and /metrics answer, and that readiness follows the state directory (a cached probe),
 * the OCI listener and a stop, and nothing else.
 */
import { readdir, rm, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Readiness, StateDirProbe } from "../../src/admin/readiness.js";
import { createAdminServer } from "../../src/admin/server.js";
import { createLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import { tempDir } from "../helpers/process.js";
import { parseExposition } from "../helpers/prometheus.js";

describe("admin listener", () => {
  let dir: string;
  let stateDir: string;
  let probe: StateDirProbe;
  let listening: boolean;
  let readiness: Readiness;
  let server: Server;
  let base: string;

  beforeEach(async () => {
    dir = await tempDir("admin");
    stateDir = join(dir, "state");
    probe = new StateDirProbe(stateDir, { intervalMs: 60_000 });
    await probe.start();
    listening = true;
    readiness = new Readiness({ stateDir: probe, listening: () => listening });
    server = createAdminServer({ readiness, metrics: new Metrics(), logger: createLogger("silent") });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    probe.stop();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  const readyz = async () => {
    const res = await fetch(`${base}/readyz`);
    return {
      status: res.status,
      body: (await res.json()) as { status: string; failed: string[]; checks: Record<string, string> },
    };
  };

  it("I12.4: /healthz answers 200; unknown paths 404; writes 405", async () => {
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("ok\n");
    expect((await fetch(`${base}/v2/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("I12.4: /readyz is 200 with every check ok, and leaves no probe file behind", async () => {
    const r = await readyz();
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      status: "ready",
      ready: true,
      failed: [],
      checks: { stateDir: "ok", listener: "ok", shutdown: "ok" },
    });
    expect(await readdir(stateDir)).toEqual([]);
  });

  it("I12.4: /readyz is 503 naming the listener when the OCI listener is down, and a stop", async () => {
    listening = false;
    let r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.failed).toEqual(["listener"]);
    listening = true;
    readiness.beginShutdown("SIGTERM");
    r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.failed).toEqual(["shutdown"]);
    expect(r.body.checks.shutdown).toBe("stopping (SIGTERM)");
  });

  it("I12.4: an unusable stateDir turns /readyz 503 at the next probe, not per request, and back", async () => {
    // A file where the directory should be: refused even to root (the tests may run as root,
    // for whom permission bits are no obstacle).
    await rm(stateDir, { recursive: true });
    await writeFile(stateDir, "not a directory");
    // Cached: the probe that ran at start still holds until the next one.
    expect((await readyz()).status).toBe(200);
    await probe.probe();
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.failed).toEqual(["stateDir"]);
    expect(r.body.checks.stateDir).toMatch(/^not writable \((EEXIST|ENOTDIR)\)/);
    await rm(stateDir);
    await probe.probe();
    expect((await readyz()).status).toBe(200);
  });

  it("I12.4: a probe that hangs longer than its timeout is a failure", async () => {
    let now = 0;
    const slow = new StateDirProbe(stateDir, { timeoutMs: 1000, now: () => now });
    const pending = slow.probe();
    now = 5000;
    expect(slow.problem()).toMatch(/has not finished after 1000 ms/);
    await pending;
    expect(slow.problem()).toBeUndefined();
  });

  it("I12.4: /metrics is the Prometheus text format", async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parseExposition(await res.text());
    expect(families.has("trustgate_decisions_total")).toBe(true);
  });
});
