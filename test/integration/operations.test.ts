/**
 * Operating trustgate (issue 12 items 4 and 6), all real: docker-registry behind a relay that can
 * hold a transfer mid-body, notary-server with the `notary` CLI signing, and the built CLI's
 * `serve` with an admin listener. What a Prometheus scrape sees as pulls are made, and what a
 * load balancer sees on SIGTERM while a slow pull is in flight.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Image, makeImage, pushImage, sha256Digest } from "../helpers/image.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";
import { freePort, tempDir, waitFor } from "../helpers/process.js";
import { type Family, parseExposition, sampleValue, sumOf } from "../helpers/prometheus.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { type SlowRegistry, startSlowRegistry } from "../helpers/relay.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";
import { ensureBuilt } from "../helpers/trustgate.js";

const CLI = resolve(import.meta.dirname, "../../dist/cli.js");
const ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
const GRACE_S = 2;
/** trustRefreshSeconds: short, so the test can wait a refresh out; long enough for test 1's warm answer */
const REFRESH_S = 4;
const hex = (img: Image) => img.digest.replace(/^sha256:/, "");

describe("operating it: /metrics, /readyz and a draining stop, against real peers", () => {
  let dir: string;
  let registry: RegistryPeer;
  let slow: SlowRegistry;
  let notary: NotaryLab;
  let child: ChildProcess;
  let exited: Promise<number | null>;
  let logFile: string;
  let url: string;
  let admin: string;
  let R: string;
  const signed = makeImage("signed, with a layer to pull slowly", { extraBytes: 300_000 });
  const unsigned = makeImage("never signed");

  beforeAll(async () => {
    await ensureBuilt();
    dir = await tempDir("operations");
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    slow = await startSlowRegistry(registry.url);
    // The registry's name is the relay's address: GUNs and pulls name it, the relay forwards.
    R = slow.host;
    await pushImage(registry.url, "acme/app", "v1", signed);
    await pushImage(registry.url, "acme/app", "unsigned", unsigned);
    const signer = notary.client();
    await signer.init(`${R}/acme/app`);
    await signer.addhash(`${R}/acme/app`, "v1", signed.size, hex(signed));
    await signer.publish(`${R}/acme/app`);

    const ca = join(dir, "notary-ca.crt");
    await copyFile(notary.ca, ca);
    await mkdir(join(dir, "policies"));
    await writeFile(
      join(dir, "policies", "acme.yaml"),
      `match: ["${R}/acme/**"]\nmode: enforce\ntrust:\n  roles: [targets/releases, targets]\n`,
    );
    const [port, adminPort] = [await freePort(), await freePort()];
    await writeFile(
      join(dir, "config.yaml"),
      [
        "logLevel: info",
        `trustRefreshSeconds: ${REFRESH_S}`,
        `defaultRegistry: "${R}"`,
        `admin: { listen: "127.0.0.1:${adminPort}" }`,
        `shutdown: { graceSeconds: ${GRACE_S}, drainSeconds: 20 }`,
        "registries:",
        `  "${R}":`,
        `    upstream: ${slow.url}`,
        `    notary: { url: "${notary.url}", caFile: "${ca}" }`,
      ].join("\n"),
    );
    logFile = join(dir, "trustgate.log");
    const fd = openSync(logFile, "a");
    child = spawn(
      process.execPath,
      [CLI, "serve", "--config", "config.yaml", "--listen", `127.0.0.1:${port}`],
      {
        cwd: dir,
        stdio: ["ignore", fd, fd],
      },
    );
    closeSync(fd);
    exited = new Promise((r) => child.once("exit", (code) => r(code)));
    url = `http://127.0.0.1:${port}`;
    admin = `http://127.0.0.1:${adminPort}`;
    await waitFor(
      "trustgate's admin /readyz answering 200",
      async () => (await fetch(`${admin}/readyz`)).status === 200,
    );
  }, 180_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    // a notary-server left stopped (SIGSTOP) by a failed test must run again to take its SIGTERM
    for (const pid of notary?.pids ?? []) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // already gone
      }
    }
    await slow?.close();
    await registry?.stop();
    await notary?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const scrape = async (): Promise<Map<string, Family>> => {
    const res = await fetch(`${admin}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    return parseExposition(await res.text());
  };
  const decisions = (f: Map<string, Family>) =>
    (f.get("trustgate_decisions_total")?.samples ?? []).map((s) => ({ ...s.labels, value: s.value }));
  const pull = (path: string) => fetch(`${url}/v2/${R}/${path}`, { headers: { accept: ACCEPT } });

  it("I12.4: an allowed and a refused pull move the decision counter by exactly one each", async () => {
    const before = await scrape();
    const allowed = await pull("acme/app/manifests/v1");
    expect(allowed.status).toBe(200);
    await allowed.arrayBuffer();
    const refused = await pull("acme/app/manifests/unsigned");
    expect(refused.status).toBe(403);
    await refused.arrayBuffer();
    // The access line (and so the count) is written as the answer completes: poll briefly.
    await waitFor(
      "both decisions counted",
      async () => sumOf(await scrape(), "trustgate_decisions_total") === 2,
      5_000,
    );
    const after = await scrape();

    const series = { mode: "enforce", policy: "acme" };
    const delta = (labels: Record<string, string>) =>
      (sampleValue(after, "trustgate_decisions_total", labels) ?? 0) -
      (sampleValue(before, "trustgate_decisions_total", labels) ?? 0);
    expect(delta({ decision: "allow", ...series, reason: "signed" })).toBe(1);
    expect(delta({ decision: "deny", ...series, reason: "unsigned" })).toBe(1);
    expect(sumOf(after, "trustgate_decisions_total") - sumOf(before, "trustgate_decisions_total")).toBe(2);
    expect(decisions(after)).toHaveLength(2);

    expect(sampleValue(after, "trustgate_http_requests_total", { route: "manifest", status: "200" })).toBe(1);
    expect(sampleValue(after, "trustgate_http_requests_total", { route: "manifest", status: "403" })).toBe(1);
    // The signed tag was fetched upstream by digest (one exchange); the refusal asked nothing.
    expect(
      sampleValue(after, "trustgate_upstream_requests_total", {
        registry: R,
        resource: "manifest",
        status: "200",
      }),
    ).toBe(1);
    // Bounded labels: the repository and tags are in the log, never in a series.
    const text = await (await fetch(`${admin}/metrics`)).text();
    expect(text).not.toContain("acme/app");
    expect(text).not.toContain("sha256:");
    for (const family of after.values())
      for (const s of family.samples)
        for (const label of ["image", "repository", "tag", "digest"])
          expect(s.labels).not.toHaveProperty(label);

    // The same pull again is a warm answer: counted as one, with its decision, and as warm.
    await (await pull("acme/app/manifests/v1")).arrayBuffer();
    await waitFor(
      "the warm answer counted",
      async () => sampleValue(await scrape(), "trustgate_warm_answers_total") === 1,
      5_000,
    );
    expect(
      sampleValue(await scrape(), "trustgate_decisions_total", {
        decision: "allow",
        ...series,
        reason: "signed",
      }),
    ).toBe(2);
  });

  it("I12.4/I12.5: skopeo pulls move the counters; notary-server stopped: /readyz stays 200, pulls still serve, failures counted, trouble and recovery each logged once", async () => {
    const ref = `127.0.0.1:${new URL(url).port}/acme/app:v1`;
    const logLines = async () =>
      (await readFile(logFile, "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const count = (lines: Record<string, unknown>[], msg: string) =>
      lines.filter((l) => l.msg === msg).length;
    const refreshes = (f: Map<string, Family>, result: string) =>
      sampleValue(f, "trustgate_trust_refreshes_total", { registry: R, source: "notary", result }) ?? 0;
    const waitOutRefresh = () => new Promise((r) => setTimeout(r, REFRESH_S * 1000 + 500));

    // A refresh is due again: the next pull refreshes from notary-server.
    await waitOutRefresh();
    const before = await scrape();
    const copied = await skopeoCopyToOciDir(ref);
    expect(copied.stderr).toBe("");
    expect(copied.code).toBe(0);
    expect(copied.manifest?.equals(signed.manifest)).toBe(true);
    const inspected = await skopeoInspect(ref, { raw: true });
    expect(inspected.code).toBe(0);
    expect(inspected.raw?.equals(signed.manifest)).toBe(true);
    const refused = await skopeoInspect(`127.0.0.1:${new URL(url).port}/acme/app:unsigned`, { raw: true });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/denied/);
    await waitFor(
      "three decisions counted",
      async () =>
        sumOf(await scrape(), "trustgate_decisions_total") - sumOf(before, "trustgate_decisions_total") === 3,
      5_000,
    );
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) =>
      (sampleValue(after, name, labels) ?? 0) - (sampleValue(before, name, labels) ?? 0);
    const acme = { mode: "enforce", policy: "acme" };
    // skopeo asks by tag (GET, never HEAD): each pull is one decision
    expect(delta("trustgate_decisions_total", { decision: "allow", ...acme, reason: "signed" })).toBe(2);
    expect(delta("trustgate_decisions_total", { decision: "deny", ...acme, reason: "unsigned" })).toBe(1);
    expect(delta("trustgate_http_requests_total", { route: "manifest", status: "200" })).toBe(2);
    expect(delta("trustgate_http_requests_total", { route: "manifest", status: "403" })).toBe(1);
    expect(
      sumOf(after, "trustgate_http_requests_total", { route: "blob" }) -
        sumOf(before, "trustgate_http_requests_total", { route: "blob" }),
    ).toBeGreaterThanOrEqual(signed.blobs.length);
    expect(refreshes(after, "ok") - refreshes(before, "ok")).toBeGreaterThanOrEqual(1);
    const expiry = sampleValue(after, "trustgate_trust_expiry_seconds", { registry: R, source: "notary" });
    expect(expiry).toBeGreaterThan(3600);

    // The trust state on the admin listener: this GUN, just checked.
    const trust = (await (await fetch(`${admin}/trust`)).json()) as {
      repositories: { gun?: string; source: string; lastChecked: string; roles: { role: string }[] }[];
    };
    const entry = trust.repositories.find((r) => r.gun === `${R}/acme/app`);
    expect(entry?.source).toBe("notary");
    expect(entry?.roles.map((r) => r.role)).toEqual(
      expect.arrayContaining(["root", "targets", "snapshot", "timestamp"]),
    );
    expect(Date.now() - Date.parse(entry?.lastChecked ?? "")).toBeLessThan(60_000);

    // notary-server stops (SIGSTOP: its memory storage, the signed data, would not survive a
    // restart; a stopped process answers nothing, connections time out).
    const [notaryPid] = notary.pids;
    if (notaryPid === undefined) throw new Error("no notary-server PID");
    const linesBefore = await logLines();
    process.kill(notaryPid, "SIGSTOP");
    try {
      for (let round = 0; round < 2; round++) {
        await waitOutRefresh();
        const down = await skopeoInspect(ref, { raw: true, timeoutMs: 90_000 });
        expect(down.stderr).toBe("");
        expect(down.raw?.equals(signed.manifest)).toBe(true);
        const ready = await fetch(`${admin}/readyz`);
        expect(ready.status).toBe(200);
        await ready.arrayBuffer();
      }
      // a pull at once after is answered from memory (no refresh due)
      const warm = await skopeoInspect(ref, { raw: true });
      expect(warm.raw?.equals(signed.manifest)).toBe(true);
      const outage = await scrape();
      expect(
        refreshes(outage, "TRUST_UNAVAILABLE") - refreshes(after, "TRUST_UNAVAILABLE"),
      ).toBeGreaterThanOrEqual(2);
      const during = (await logLines()).slice(linesBefore.length);
      const trouble = during.filter(
        (l) => l.msg === "trust server unreachable: serving verified metadata until it expires",
      );
      expect(trouble).toHaveLength(1);
      expect(trouble[0]).toMatchObject({
        trustSource: "notary",
        registry: R,
        gun: `${R}/acme/app`,
        code: "TRUST_UNAVAILABLE",
      });
      expect(trouble[0]?.secondsLeft).toBeGreaterThan(3600);
      expect(count(during, "trust refresh recovered")).toBe(0);
    } finally {
      process.kill(notaryPid, "SIGCONT");
    }

    // notary-server runs again: the next due refresh succeeds, and recovery is logged once.
    const okBefore = refreshes(await scrape(), "ok");
    await waitOutRefresh();
    expect((await skopeoInspect(ref, { raw: true })).raw?.equals(signed.manifest)).toBe(true);
    await waitFor(
      "a successful refresh counted",
      async () => refreshes(await scrape(), "ok") > okBefore,
      30_000,
    );
    await waitOutRefresh();
    expect((await skopeoInspect(ref, { raw: true })).code).toBe(0);
    const since = (await logLines()).slice(linesBefore.length);
    expect(count(since, "trust refresh recovered")).toBe(1);
    expect(since.find((l) => l.msg === "trust refresh recovered")).toMatchObject({
      gun: `${R}/acme/app`,
      after: "TRUST_UNAVAILABLE",
    });
    expect(count(since, "trust server unreachable: serving verified metadata until it expires")).toBe(1);
  }, 240_000);

  it("I12.6: SIGTERM turns /readyz 503 at once; a slow pull in flight completes; the process exits 0", async () => {
    const layer = signed.blobs.find((b) => b.bytes.length > 1000);
    if (!layer) throw new Error("the image has no layer");
    slow.slowPath = `/blobs/${layer.digest}`;
    slow.pauseMs = (GRACE_S + 2) * 1000;
    const paused = slow.nextPause();
    const started = Date.now();
    const inFlight = pull(`acme/app/blobs/${layer.digest}`).then(async (res) => ({
      status: res.status,
      bytes: Buffer.from(await res.arrayBuffer()),
    }));
    await paused; // half of the blob is on its way to the client, the rest held by the relay

    child.kill("SIGTERM");
    await waitFor("/readyz 503", async () => (await fetch(`${admin}/readyz`)).status === 503, 2_000, 20);
    const readyz = (await (await fetch(`${admin}/readyz`)).json()) as {
      failed: string[];
      checks: Record<string, string>;
    };
    expect(readyz.failed).toEqual(["shutdown"]);
    expect(readyz.checks.shutdown).toBe("stopping (SIGTERM)");
    // Still accepting during the grace period: a request routed here just now still lands.
    expect((await fetch(`${url}/v2/`)).status).toBe(200);
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);

    const done = await inFlight;
    expect(done.status).toBe(200);
    expect(sha256Digest(done.bytes)).toBe(layer.digest);
    expect(Date.now() - started).toBeGreaterThanOrEqual(slow.pauseMs - 100);

    // Idle keep-alive connections (this test's fetch keeps them) do not hold the exit until they time out (~80 ms here; ~3 s without the sweep).
    const completed = Date.now();
    expect(await exited).toBe(0);
    expect(Date.now() - completed).toBeLessThan(1_500);
    const lines = (await readFile(logFile, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { msg: string; path?: string; status?: number; outcome?: string });
    const blobLine = lines.find((l) => l.msg === "request" && l.path?.includes(layer.digest));
    expect(blobLine).toMatchObject({ status: 200 });
    expect(blobLine?.outcome).toBeUndefined();
    const order = lines.map((l) => l.msg).filter((m) => m.startsWith("stop"));
    expect(order).toEqual([
      "stopping: not ready; still accepting for the grace period",
      "stopping: listener closed, draining in-flight requests",
      "stopped",
    ]);
    // After the stop nothing listens any more.
    await expect(fetch(`${url}/v2/`)).rejects.toThrow();
  });
});
