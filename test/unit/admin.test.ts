/**
 * The admin listener and readiness (issue 12 item 4), on a real loopback server: what /healthz,
 * /readyz and /metrics answer, and that readiness follows the state directory (a cached probe),
 * the OCI listener and a stop, and nothing else.
 */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Readiness, StateDirProbe } from "../../src/admin/readiness.js";
import { createAdminServer } from "../../src/admin/server.js";
import { collectTrustStatus } from "../../src/commands/trust-status.js";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import { loadPolicyDir } from "../../src/policy/load-dir.js";
import { TufSource } from "../../src/trust/tuf/source.js";
import { fillNotaryState, runBuiltCliWithEnv } from "../helpers/built-cli.js";
import { FIXTURES, readExpected } from "../helpers/notary-fixtures.js";
import { tempDir } from "../helpers/process.js";
import { parseExposition } from "../helpers/prometheus.js";
import { TestTufRepository } from "../helpers/tuf-repo.js";

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

describe("admin listener: GET /trust", () => {
  const SECRET = "s3cret-never-on-the-admin-listener";
  let dir: string;
  let repo: TestTufRepository;
  let server: Server;
  let base: string;
  let configFile: string;

  beforeEach(async () => {
    dir = await tempDir("admin-trust");
    const state = join(dir, "state");
    const policies = join(dir, "policies");
    await mkdir(policies);
    const deleg = join(FIXTURES, "signer-ecdsa", "delegation");
    const { gun } = readExpected(deleg);
    await fillNotaryState(state, deleg, gun);
    repo = await TestTufRepository.start();
    repo.addTarget("targets", "t.test/acme/app:v1", Buffer.from("manifest"));
    repo.publish();
    await writeFile(join(dir, "root.json"), repo.initialRoot);
    const tuf = await TufSource.open({
      metadataUrl: repo.metadataUrl,
      trustedRoot: join(dir, "root.json"),
      stateDir: state,
      fetchTimeoutMs: 2000,
    });
    await tuf.resolveTag({ registry: "t.test", repository: "acme/app", roles: [] }, "v1");
    await tuf.close();
    configFile = join(dir, "config.yaml");
    await writeFile(
      configFile,
      [
        `stateDir: ${state}`,
        `policies: ${policies}`,
        "registries:",
        `  ${gun.slice(0, gun.indexOf("/"))}:`,
        "    upstream: http://127.0.0.1:1",
        "    username: puller",
        "    passwordEnv: TG_ADMIN_TEST_SECRET",
        "    notary: { url: 'http://127.0.0.1:2', username: signer, passwordEnv: TG_ADMIN_TEST_SECRET }",
        "  t.test:",
        "    upstream: http://127.0.0.1:1",
        "    username: puller",
        "    passwordEnv: TG_ADMIN_TEST_SECRET",
        `    tuf: { metadataUrl: '${repo.metadataUrl}', trustedRoot: ${join(dir, "root.json")} }`,
        "",
      ].join("\n"),
    );
    process.env.TG_ADMIN_TEST_SECRET = SECRET;
    const config = await loadConfig(configFile);
    const loaded = await loadPolicyDir(config.policies);
    const set = loaded.set;
    if (!set) throw new Error("policies did not load");
    const probe = new StateDirProbe(state, { intervalMs: 60_000 });
    server = createAdminServer({
      readiness: new Readiness({ stateDir: probe, listening: () => true }),
      metrics: new Metrics(),
      logger: createLogger("silent"),
      trustStatus: () => collectTrustStatus(config, set),
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await repo.close();
    await rm(dir, { recursive: true, force: true });
    delete process.env.TG_ADMIN_TEST_SECRET;
  });

  it("I12.7: /trust answers what `trust status --json` prints, Notary and TUF, and no secret", async () => {
    const res = await fetch(`${base}/trust`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const text = await res.text();
    const cli = runBuiltCliWithEnv(
      { TG_ADMIN_TEST_SECRET: SECRET },
      "trust",
      "status",
      "--config",
      configFile,
      "--json",
    );
    expect(cli.code).toBe(0);
    expect(JSON.parse(text)).toEqual(JSON.parse(cli.stdout));
    const body = JSON.parse(text) as { repositories: { source: string }[] };
    expect(body.repositories.map((r) => r.source).sort()).toEqual(["notary", "tuf"]);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain("puller");
    expect(text).not.toContain("signer");
  });

  it("I12.7: /trust is GET/HEAD only; concurrent callers share one listing", async () => {
    expect((await fetch(`${base}/trust`, { method: "POST" })).status).toBe(405);
    const head = await fetch(`${base}/trust`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    const all = await Promise.all(
      Array.from({ length: 5 }, () => fetch(`${base}/trust`).then((r) => r.json())),
    );
    for (const one of all) expect(one).toEqual(all[0]);
  });

  it("I12.7: without a trust status source, /trust is 404 and not listed", async () => {
    const bare = createAdminServer({
      readiness: new Readiness({ stateDir: { problem: () => undefined }, listening: () => true }),
      metrics: new Metrics(),
      logger: createLogger("silent"),
    });
    await new Promise<void>((r) => bare.listen(0, "127.0.0.1", r));
    try {
      const res = await fetch(`http://127.0.0.1:${(bare.address() as AddressInfo).port}/trust`);
      expect(res.status).toBe(404);
      expect(await res.text()).toBe("not found: /healthz, /readyz, /metrics\n");
    } finally {
      bare.closeAllConnections();
      await new Promise((r) => bare.close(r));
    }
  });
});
