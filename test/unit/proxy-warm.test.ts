/**
 * WarmAnswers on a real loopback HTTP server: what it answers, and every way an entry stops being
 * used (time, a replaced policy set, the method, the byte bound).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { type WarmAnswer, WarmAnswers } from "../../src/proxy/warm.js";

const body = Buffer.from('{"schemaVersion":2}');
const DIGEST = `sha256:${"1".repeat(64)}`;

describe("WarmAnswers", () => {
  let clock: number;
  let lines: Record<string, unknown>[];
  let warm: WarmAnswers;
  let server: Server;
  let base: string;
  let routed: number;

  const answer = (over: Partial<WarmAnswer> = {}): WarmAnswer => ({
    url: "/v2/r.test/acme/app/manifests/v1",
    path: "/v2/r.test/acme/app/manifests/v1",
    body,
    headers: {
      "content-type": "application/vnd.oci.image.manifest.v1+json",
      "content-length": String(body.length),
      "docker-content-digest": DIGEST,
    },
    lineFields: { registry: "r.test", audit: true, decision: "allow", digest: DIGEST, warm: true },
    reuse: { until: clock + 1000, stillValid: () => true },
    ...over,
  });

  beforeEach(async () => {
    clock = 1_000_000;
    lines = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    warm = new WarmAnswers({ maxBytes: 64 * 1024, now: () => clock, access: createLogger("info", sink) });
    routed = 0;
    server = createServer((req, res) => {
      if (warm.serve(req, res)) return;
      routed++;
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await new Promise((r) => server.close(r));
  });

  const get = async (path: string, method = "GET") => {
    const res = await fetch(`${base}${path}`, { method });
    return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
  };

  it("answers a remembered URL with its bytes and headers, a new request id, and one access line", async () => {
    warm.remember(answer());
    const res = await get("/v2/r.test/acme/app/manifests/v1");
    expect(res.status).toBe(200);
    expect(res.bytes.equals(body)).toBe(true);
    expect(res.headers.get("docker-content-digest")).toBe(DIGEST);
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    const head = await get("/v2/r.test/acme/app/manifests/v1", "HEAD");
    expect(head.bytes.length).toBe(0);
    expect(head.headers.get("content-length")).toBe(String(body.length));
    expect(head.headers.get("x-request-id")).not.toBe(res.headers.get("x-request-id"));
    expect(routed).toBe(0);
    await expect.poll(() => lines.length).toBe(2);
    expect(lines[0]).toMatchObject({
      msg: "request",
      reqId: res.headers.get("x-request-id"),
      method: "GET",
      status: 200,
      bytes: body.length,
      registry: "r.test",
      decision: "allow",
      warm: true,
    });
    expect(lines[1]).toMatchObject({ method: "HEAD", bytes: 0 });
  });

  it("leaves every other URL and method to the router", async () => {
    warm.remember(answer());
    expect((await get("/v2/r.test/acme/app/manifests/v1?ns=x")).status).toBe(404);
    expect((await get("/v2/r.test/acme/app/manifests/v2")).status).toBe(404);
    expect((await get("/v2/r.test/acme/app/manifests/v1", "DELETE")).status).toBe(404);
    expect(routed).toBe(3);
  });

  it("stops at `until` by the trust clock, and drops the entry", async () => {
    warm.remember(answer());
    clock += 999;
    expect((await get("/v2/r.test/acme/app/manifests/v1")).status).toBe(200);
    clock += 1;
    expect((await get("/v2/r.test/acme/app/manifests/v1")).status).toBe(404);
    expect(warm.size).toBe(0);
  });

  it("is not used once its policy set is replaced", async () => {
    let inForce = true;
    warm.remember(answer({ reuse: { until: clock + 1000, stillValid: () => inForce } }));
    expect((await get("/v2/r.test/acme/app/manifests/v1")).status).toBe(200);
    inForce = false;
    expect((await get("/v2/r.test/acme/app/manifests/v1")).status).toBe(404);
    expect(routed).toBe(1);
  });

  it("keeps nothing already past `until`, and runs onReuse on every warm answer", async () => {
    warm.remember(answer({ reuse: { until: clock, stillValid: () => true } }));
    expect(warm.size).toBe(0);
    let reused = 0;
    warm.remember(answer({ reuse: { until: clock + 1, stillValid: () => true, onReuse: () => reused++ } }));
    await get("/v2/r.test/acme/app/manifests/v1");
    await get("/v2/r.test/acme/app/manifests/v1", "HEAD");
    expect(reused).toBe(2);
  });

  it("is bounded by bytes: the least recently used entries go first", async () => {
    const big = Buffer.alloc(30 * 1024, 1); // two fit in 64 KiB with their overhead
    for (const tag of ["a", "b", "c", "d"])
      warm.remember(
        answer({ url: `/t/${tag}`, body: big, headers: { "content-length": String(big.length) } }),
      );
    expect(warm.size).toBe(2);
    expect((await get("/t/a")).status).toBe(404);
    expect((await get("/t/d")).status).toBe(200);
  });
});
