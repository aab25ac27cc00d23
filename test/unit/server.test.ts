import { createHash } from "node:crypto";
import { MockAgent } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RegistryConfig } from "../../src/config/types.js";
import { createLogger } from "../../src/log.js";
import { ManifestStore, PassThroughManifestResolver } from "../../src/proxy/manifests.js";
import { PassThroughTagLister } from "../../src/proxy/tags.js";
import { createApp } from "../../src/server.js";
import { TokenCache } from "../../src/upstream/auth.js";
import { RegistryClient } from "../../src/upstream/client.js";

const UP = "http://up.test";
const OCI = "application/vnd.oci.image.manifest.v1+json";
const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI, layers: [] }));
const digest = `sha256:${createHash("sha256").update(manifest).digest("hex")}`;
const blob = Buffer.from("blob bytes ".repeat(1000));
const blobDigest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;

// The app with real upstream clients over undici's MockAgent: what the upstream is asked and
// what the client gets back.
describe("createApp with mocked upstreams", () => {
  let agent: MockAgent;
  let app: ReturnType<typeof createApp>;
  let tokens: TokenCache;

  function build(registry: Partial<RegistryConfig> = {}) {
    const config: RegistryConfig = { name: "up.test", upstream: new URL(UP), ...registry };
    const logger = createLogger("silent");
    tokens = new TokenCache();
    const clients = new Map([
      [
        "up.test",
        new RegistryClient({
          registry: config,
          timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000 },
          tokens,
          logger,
          dispatcher: agent,
        }),
      ],
    ]);
    const store = new ManifestStore({ clients, cacheBytes: 1 << 20 });
    app = createApp({
      config: { registries: new Map([["up.test", config]]), defaultRegistry: "up.test", blobRedirect: false },
      clients,
      manifests: new PassThroughManifestResolver(store),
      tags: new PassThroughTagLister(clients),
      logger,
    });
  }

  beforeEach(() => {
    agent = new MockAgent();
    agent.disableNetConnect();
    build();
  });
  afterEach(async () => {
    agent.assertNoPendingInterceptors();
    await agent.close();
  });

  it("forwards the client's Accept by tag, answers exact bytes, then serves the digest from cache", async () => {
    const accept =
      "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
    agent
      .get(UP)
      .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET", headers: { accept } })
      .reply(200, manifest, { headers: { "content-type": OCI, "docker-content-digest": digest } });
    const res = await app.request("/v2/acme/app/manifests/v1", { headers: { accept } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(manifest)).toBe(true);
    expect(res.headers.get("docker-content-digest")).toBe(digest);
    expect(res.headers.get("content-type")).toBe(OCI);
    expect(res.headers.get("content-length")).toBe(String(manifest.length));
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    // no interceptor left: this must come from the cache
    const again = await app.request(`/v2/acme/app/manifests/${digest}`);
    expect(Buffer.from(await again.arrayBuffer()).equals(manifest)).toBe(true);
  });

  it("asks for every current type when the client sends no Accept (no schema1 conversion)", async () => {
    agent
      .get(UP)
      .intercept({
        path: "/v2/acme/app/manifests/v1",
        method: "GET",
        headers: {
          accept: (v: string) =>
            v.includes("application/vnd.oci.image.index.v1+json") && !v.includes("v1+prettyjws"),
        },
      })
      .reply(200, manifest, { headers: { "content-type": OCI } });
    expect((await app.request("/v2/acme/app/manifests/v1")).status).toBe(200);
  });

  it("refuses manifest bytes that do not hash to the requested digest", async () => {
    agent
      .get(UP)
      .intercept({ path: `/v2/acme/app/manifests/${digest}`, method: "GET" })
      .reply(200, Buffer.from("{}"), { headers: { "content-type": OCI } });
    const res = await app.request(`/v2/acme/app/manifests/${digest}`);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe("UPSTREAM_ERROR");
  });

  it("refuses a tag whose Docker-Content-Digest contradicts its bytes", async () => {
    agent
      .get(UP)
      .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
      .reply(200, manifest, {
        headers: { "content-type": OCI, "docker-content-digest": `sha256:${"0".repeat(64)}` },
      });
    expect((await app.request("/v2/acme/app/manifests/v1")).status).toBe(502);
  });

  it("answers HEAD by tag with the headers and no body", async () => {
    agent
      .get(UP)
      .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
      .reply(200, manifest, { headers: { "content-type": OCI } });
    const res = await app.request("/v2/acme/app/manifests/v1", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-content-digest")).toBe(digest);
    expect(res.headers.get("content-length")).toBe(String(manifest.length));
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it("runs the token flow, caches the token, and drops Authorization on a redirect to another host", async () => {
    const up = agent.get(UP);
    up.intercept({ path: `/v2/acme/app/blobs/${blobDigest}`, method: "GET" }).reply(401, "", {
      headers: {
        "www-authenticate":
          'Bearer realm="http://auth.test/token",service="up",scope="repository:acme/app:pull,push"',
      },
    });
    agent
      .get("http://auth.test")
      .intercept({ path: "/token?service=up&scope=repository%3Aacme%2Fapp%3Apull", method: "GET" })
      .reply(200, { token: "T1", expires_in: 300 });
    up.intercept({
      path: `/v2/acme/app/blobs/${blobDigest}`,
      method: "GET",
      headers: { authorization: "Bearer T1" },
    })
      .reply(307, "", { headers: { location: "http://cdn.test/b?sig=1" } })
      .times(2);
    agent
      .get("http://cdn.test")
      .intercept({
        path: "/b?sig=1",
        method: "GET",
        headers: (h: Record<string, string>) => !("authorization" in h),
      })
      .reply(200, blob, { headers: { "content-length": String(blob.length) } })
      .times(2);
    for (let i = 0; i < 2; i++) {
      const res = await app.request(`/v2/acme/app/blobs/${blobDigest}`, {
        headers: { authorization: "Basic Y2xpZW50OnNlY3JldA==" },
      });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(blob)).toBe(true);
      expect(res.headers.get("docker-content-digest")).toBe(blobDigest);
    }
    expect(tokens.get("up.test", "repository:acme/app:pull")).toBe("T1");
  });

  it("retries a GET once the connection was reset", async () => {
    const up = agent.get(UP);
    up.intercept({ path: "/v2/acme/app/tags/list", method: "GET" }).replyWithError(
      Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }),
    );
    up.intercept({ path: "/v2/acme/app/tags/list", method: "GET" }).reply(200, {
      name: "acme/app",
      tags: ["v1"],
    });
    const res = await app.request("/v2/acme/app/tags/list");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: "acme/app", tags: ["v1"] });
  });

  it("gives up after bounded retries with 503 naming the registry", async () => {
    agent
      .get(UP)
      .intercept({ path: "/v2/acme/app/tags/list", method: "GET" })
      .replyWithError(Object.assign(new Error("refused"), { code: "ECONNREFUSED" }))
      .times(3);
    const res = await app.request("/v2/acme/app/tags/list");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { errors: { message: string }[] }).errors[0]?.message).toContain("up.test");
  });

  it("maps an upstream 404 to MANIFEST_UNKNOWN and refuses writes", async () => {
    agent
      .get(UP)
      .intercept({ path: "/v2/acme/app/manifests/nope", method: "GET" })
      .reply(404, { errors: [{ code: "MANIFEST_UNKNOWN", message: "x" }] });
    const res = await app.request("/v2/acme/app/manifests/nope");
    expect(res.status).toBe(404);
    expect(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe("MANIFEST_UNKNOWN");
    for (const method of ["PUT", "POST", "PATCH", "DELETE"]) {
      const w = await app.request("/v2/acme/app/manifests/v1", { method });
      expect(w.status, method).toBe(405);
      expect(w.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    }
  });

  it("answers 307 to the upstream blob URL in blobRedirect mode, without contacting it", async () => {
    const config: RegistryConfig = { name: "up.test", upstream: new URL(UP) };
    const logger = createLogger("silent");
    const clients = new Map([
      [
        "up.test",
        new RegistryClient({
          registry: config,
          timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000 },
          tokens: new TokenCache(),
          logger,
          dispatcher: agent,
        }),
      ],
    ]);
    const redirecting = createApp({
      config: { registries: new Map([["up.test", config]]), defaultRegistry: "up.test", blobRedirect: true },
      clients,
      manifests: new PassThroughManifestResolver(new ManifestStore({ clients, cacheBytes: 0 })),
      tags: new PassThroughTagLister(clients),
      logger,
    });
    const res = await redirecting.request(`/v2/acme/app/blobs/${blobDigest}`);
    expect(res.status).toBe(307);
    expect(res.headers.get("location")).toBe(`${UP}/v2/acme/app/blobs/${blobDigest}`);
  });
});
