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
import { ensureBuilt } from "../helpers/trustgate.js";

const CLI = resolve(import.meta.dirname, "../../dist/cli.js");
const ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
const GRACE_S = 2;
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
