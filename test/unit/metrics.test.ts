/**
 * Metrics (issue 12 item 4): the strict exposition parser the tests rely on, the bounded decision
 * reason, and the counts the real HTTP server makes from its access lines (upstream mocked with
 * undici's MockAgent; trustgate's own server on loopback).
 */
import { createHash } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { MockAgent } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RegistryConfig } from "../../src/config/types.js";
import { createLogger } from "../../src/log.js";
import { DECISION_REASONS, decisionReason, Metrics } from "../../src/metrics.js";
import type { AuditLine } from "../../src/proxy/enforce.js";
import { ManifestStore, PassThroughManifestResolver } from "../../src/proxy/manifests.js";
import { PassThroughTagLister } from "../../src/proxy/tags.js";
import { WarmAnswers } from "../../src/proxy/warm.js";
import { createApp, createHttpServer } from "../../src/server.js";
import { TokenCache } from "../../src/upstream/auth.js";
import { RegistryClient } from "../../src/upstream/client.js";
import { type Family, parseExposition, sampleValue, sumOf } from "../helpers/prometheus.js";

describe("the strict exposition parser (test helper)", () => {
  const good = [
    "# HELP a_total A counter.",
    "# TYPE a_total counter",
    'a_total{route="manifest",status="200"} 3',
    'a_total{route="blob",status="404"} 1',
    "# TYPE h histogram",
    'h_bucket{le="0.1"} 1',
    'h_bucket{le="+Inf"} 2',
    "h_sum 0.3",
    "h_count 2",
    "",
  ].join("\n");

  it("I12.4: reads families, labels and histograms", () => {
    const f = parseExposition(good);
    expect(sampleValue(f, "a_total", { route: "manifest", status: "200" })).toBe(3);
    expect(sumOf(f, "a_total")).toBe(4);
    expect(sampleValue(f, "h_count")).toBe(2);
    expect((f.get("h") as Family).type).toBe("histogram");
  });

  it.each([
    ["no final newline", good.trimEnd()],
    ["a sample before its TYPE", "x 1\n"],
    ["a bad value", "# TYPE x gauge\nx one\n"],
    ["a bad label name", '# TYPE x gauge\nx{1a="v"} 1\n'],
    ["an unquoted label value", "# TYPE x gauge\nx{a=v} 1\n"],
    ["a bad escape", '# TYPE x gauge\nx{a="\\t"} 1\n'],
    ["a duplicate series", '# TYPE x gauge\nx{a="v"} 1\nx{a="v"} 2\n'],
    ["a family split in two", "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 2\n"],
    ["TYPE twice", "# TYPE x gauge\n# TYPE x counter\n"],
    ["a negative counter", "# TYPE x counter\nx -1\n"],
    ["non-cumulative buckets", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n'],
    ["+Inf bucket not the count", '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 3\n'],
    ["no +Inf bucket", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_count 2\n'],
    ["garbage after the value", "# TYPE x gauge\nx 1 2 3\n"],
  ])("I12.4: refuses %s", (_what, text) => {
    expect(() => parseExposition(text)).toThrow(/line \d+/);
  });

  it("I12.4: reads what prom-client writes, default process metrics included", async () => {
    const m = new Metrics();
    const f = parseExposition((await m.scrape()).body);
    expect(f.get("trustgate_process_cpu_seconds_total")?.type).toBe("counter");
    expect(f.get("trustgate_http_requests_total")?.type).toBe("counter");
    expect(f.get("trustgate_http_request_duration_seconds")?.type).toBe("histogram");
  });
});

describe("decisionReason: a bounded label from the audit fields", () => {
  const line = (over: Partial<AuditLine>): AuditLine => ({
    decision: "allow",
    image: "r.test/acme/app",
    policy: "acme",
    mode: "enforce",
    reason: "free text that must never become a label",
    ...over,
  });

  it.each<[Partial<AuditLine>, string]>([
    [{ role: "targets/releases", digest: "sha256:1" }, "signed"],
    [{ decision: "deny" }, "unsigned"],
    [{ decision: "deny", trustFailure: "EXPIRED" }, "EXPIRED"],
    [{ decision: "deny", trustFailure: "SOMETHING_NEW" }, "other"],
    [{ decision: "deny", role: "targets", digest: "sha256:1" }, "content-mismatch"],
    [{ mode: "audit", wouldDeny: true }, "unsigned"],
    [{ mode: "audit", wouldDeny: true, trustFailure: "TRUST_UNAVAILABLE" }, "TRUST_UNAVAILABLE"],
    [{ exception: "legacy base image", trustFailure: "TRUST_NOT_FOUND" }, "exception"],
    [{ mode: "off" }, "trust-off"],
    [{ decision: "deny", mode: "refuse", policy: "defaultPolicy" }, "no-policy"],
    [{ digest: "sha256:1" }, "digest-pulls-any"],
  ])("I12.4: %j -> %s", (over, reason) => {
    expect(decisionReason(line(over))).toBe(reason);
    expect(DECISION_REASONS).toContain(reason);
  });
});

const UP = "http://up.test";
const OCI = "application/vnd.oci.image.manifest.v1+json";
const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI, layers: [] }));
const digest = `sha256:${createHash("sha256").update(manifest).digest("hex")}`;
const blob = Buffer.from("blob bytes ".repeat(1000));
const blobDigest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;

describe("counts from the access line, on trustgate's HTTP server", () => {
  let agent: MockAgent;
  let metrics: Metrics;
  let server: Server;
  let base: string;
  let warm: WarmAnswers;
  let lines: Record<string, unknown>[];

  beforeEach(async () => {
    agent = new MockAgent();
    agent.disableNetConnect();
    metrics = new Metrics({ processMetrics: false });
    lines = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    const logger = createLogger("info", sink);
    const config: RegistryConfig = { name: "up.test", upstream: new URL(UP) };
    const clients = new Map([
      [
        "up.test",
        new RegistryClient({
          registry: config,
          timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000 },
          tokens: new TokenCache(),
          logger,
          dispatcher: agent,
          observe: metrics.upstream,
        }),
      ],
    ]);
    const store = new ManifestStore({ clients, cacheBytes: 1 << 20 });
    warm = new WarmAnswers({ maxBytes: 1 << 20, now: Date.now, access: logger, metrics });
    const app = createApp({
      config: { registries: new Map([["up.test", config]]), defaultRegistry: "up.test", blobRedirect: false },
      clients,
      manifests: new PassThroughManifestResolver(store),
      tags: new PassThroughTagLister(clients),
      logger,
      metrics,
    });
    server = createHttpServer(app, warm);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await agent.close();
  });

  const scrape = async () => parseExposition((await metrics.scrape()).body);

  it("I12.4: requests by route and status, upstream exchanges by registry and status, blob bytes", async () => {
    const up = agent.get(UP);
    up.intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" }).reply(200, manifest, {
      headers: { "content-type": OCI, "docker-content-digest": digest },
    });
    up.intercept({ path: `/v2/acme/app/blobs/${blobDigest}`, method: "GET" }).reply(200, blob, {
      headers: { "content-length": String(blob.length) },
    });
    up.intercept({ path: "/v2/acme/app/manifests/missing", method: "GET" }).reply(404, "{}");
    for (const path of [
      "/v2/",
      "/v2/acme/app/manifests/v1",
      `/v2/acme/app/blobs/${blobDigest}`,
      "/v2/acme/app/manifests/missing",
      "/nope",
    ]) {
      const res = await fetch(`${base}${path}`);
      await res.arrayBuffer();
    }
    await expect.poll(() => lines.filter((l) => l.msg === "request").length).toBe(5);
    const f = await scrape();
    expect(sampleValue(f, "trustgate_http_requests_total", { route: "ping", status: "200" })).toBe(1);
    expect(sampleValue(f, "trustgate_http_requests_total", { route: "manifest", status: "200" })).toBe(1);
    expect(sampleValue(f, "trustgate_http_requests_total", { route: "manifest", status: "404" })).toBe(1);
    expect(sampleValue(f, "trustgate_http_requests_total", { route: "blob", status: "200" })).toBe(1);
    expect(sampleValue(f, "trustgate_http_requests_total", { route: "other", status: "404" })).toBe(1);
    expect(sampleValue(f, "trustgate_http_request_duration_seconds_count", { route: "manifest" })).toBe(2);
    expect(sampleValue(f, "trustgate_blob_bytes_total", { cache: "none" })).toBe(blob.length);
    const upstream = { registry: "up.test", resource: "manifest" };
    expect(sampleValue(f, "trustgate_upstream_requests_total", { ...upstream, status: "200" })).toBe(1);
    expect(sampleValue(f, "trustgate_upstream_requests_total", { ...upstream, status: "404" })).toBe(1);
    expect(sampleValue(f, "trustgate_upstream_request_duration_seconds_count", upstream)).toBe(2);
  });

  it("I12.4: an upstream that cannot be reached counts as status error", async () => {
    agent
      .get(UP)
      .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
      .replyWithError(Object.assign(new Error("refused"), { code: "EHOSTDOWN" }));
    expect((await fetch(`${base}/v2/acme/app/manifests/v1`)).status).toBe(503);
    const f = await scrape();
    expect(
      sampleValue(f, "trustgate_upstream_requests_total", {
        registry: "up.test",
        resource: "manifest",
        status: "error",
      }),
    ).toBe(1);
  });

  it("I12.4: a warm answer counts as a 200 manifest under its decision, and as warm", async () => {
    const decision: AuditLine = {
      decision: "allow",
      image: "up.test/acme/app",
      tag: "v1",
      digest,
      role: "targets",
      policy: "acme",
      mode: "enforce",
      reason: "signed",
    };
    warm.remember({
      url: "/v2/acme/app/manifests/v1",
      path: "/v2/acme/app/manifests/v1",
      body: manifest,
      headers: { "content-type": OCI, "content-length": String(manifest.length) },
      lineFields: { registry: "up.test", audit: true, ...decision, warm: true },
      decision,
      reuse: { until: Date.now() + 60_000, stillValid: () => true },
    });
    for (let i = 0; i < 3; i++) await (await fetch(`${base}/v2/acme/app/manifests/v1`)).arrayBuffer();
    const f = await scrape();
    expect(sampleValue(f, "trustgate_warm_answers_total")).toBe(3);
    expect(sampleValue(f, "trustgate_http_requests_total", { route: "manifest", status: "200" })).toBe(3);
    expect(
      sampleValue(f, "trustgate_decisions_total", {
        decision: "allow",
        mode: "enforce",
        policy: "acme",
        reason: "signed",
      }),
    ).toBe(3);
    // Bounded labels: no repository, image, tag or digest anywhere in the exposition.
    const text = (await metrics.scrape()).body;
    for (const name of ["acme/app", 'v1"', digest]) expect(text).not.toContain(name);
  });

  it("I12.4: trust observer hooks: refreshes by result and the earliest expiry per registry", async () => {
    const src = { registry: "up.test", kind: "notary" as const };
    metrics.trust.onRefresh(src, "ok", 0.02);
    metrics.trust.onRefresh(src, "TRUST_UNAVAILABLE", 10);
    metrics.trust.watchExpiry(src, () => 3600);
    metrics.trust.watchExpiry(src, () => 120);
    metrics.trust.watchExpiry({ registry: "other.test", kind: "tuf" }, () => undefined);
    const f = await scrape();
    expect(
      sampleValue(f, "trustgate_trust_refreshes_total", {
        registry: "up.test",
        source: "notary",
        result: "ok",
      }),
    ).toBe(1);
    expect(
      sampleValue(f, "trustgate_trust_refreshes_total", {
        registry: "up.test",
        source: "notary",
        result: "TRUST_UNAVAILABLE",
      }),
    ).toBe(1);
    expect(sampleValue(f, "trustgate_trust_expiry_seconds", { registry: "up.test", source: "notary" })).toBe(
      120,
    );
    expect(sumOf(f, "trustgate_trust_expiry_seconds", { registry: "other.test" })).toBe(0);
  });
});
