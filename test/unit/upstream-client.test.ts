import { createHash } from "node:crypto";
import { MockAgent } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RegistryConfig, Secret } from "../../src/config/types.js";
import { createLogger } from "../../src/log.js";
import { TokenCache } from "../../src/upstream/auth.js";
import { RegistryClient } from "../../src/upstream/client.js";
import { UpstreamError } from "../../src/upstream/errors.js";

// The client's own rules over undici's MockAgent (no socket is ever opened: disableNetConnect).
// What the connector refuses at connect time is tested in upstream-destination.test.ts and,
// end to end on loopback, in test/integration/upstream-hostile.test.ts.
const blob = Buffer.from("layer bytes");
const blobDigest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
const OCI = "application/vnd.oci.image.manifest.v1+json";
const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI, layers: [] }));
const creds = { username: "robot", password: new Secret("s3cret") };
const basic = `Basic ${Buffer.from("robot:s3cret").toString("base64")}`;

describe("RegistryClient against hostile answers", () => {
  let agent: MockAgent;
  beforeEach(() => {
    agent = new MockAgent();
    agent.disableNetConnect();
  });
  afterEach(async () => {
    agent.assertNoPendingInterceptors();
    await agent.close();
  });

  function client(upstream: string, extra: Partial<RegistryConfig> = {}): RegistryClient {
    return new RegistryClient({
      registry: { name: "up.test", upstream: new URL(upstream), ...extra },
      timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000, totalMs: 2000 },
      tokens: new TokenCache(),
      logger: createLogger("silent"),
      dispatcher: agent,
    });
  }

  async function failure(p: Promise<unknown>): Promise<UpstreamError> {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UpstreamError);
    return err as UpstreamError;
  }

  it("referrers API: 404 and 405 mean no API (the tag schema is used); 500 is the registry's failure", async () => {
    const path = `/v2/acme/app/referrers/${blobDigest}`;
    const up = agent.get("https://up.test");
    up.intercept({ path, method: "GET" }).reply(404, "");
    up.intercept({ path, method: "GET" }).reply(405, "");
    up.intercept({ path, method: "GET" }).reply(500, "");
    const c = client("https://up.test");
    expect(await c.fetchReferrers("acme/app", blobDigest)).toBeUndefined();
    expect(await c.fetchReferrers("acme/app", blobDigest)).toBeUndefined();
    await failure(c.fetchReferrers("acme/app", blobDigest));
  });

  it("U1: a 206 to a request without Range is refused", async () => {
    agent
      .get("https://up.test")
      .intercept({ path: `/v2/acme/app/blobs/${blobDigest}`, method: "GET" })
      .reply(206, blob, { headers: { "content-range": `bytes 0-${blob.length - 1}/${blob.length}` } });
    const err = await failure(client("https://up.test").openBlob("acme/app", blobDigest, "GET", undefined));
    expect(err.code).toBe("UPSTREAM_INVALID");
    expect(err.message).toContain("206");
  });

  it("U1: a 206 to a request with Range is the slice asked for", async () => {
    agent
      .get("https://up.test")
      .intercept({ path: `/v2/acme/app/blobs/${blobDigest}`, method: "GET", headers: { range: "bytes=0-3" } })
      .reply(206, blob.subarray(0, 4), { headers: { "content-range": `bytes 0-3/${blob.length}` } });
    const res = await client("https://up.test").openBlob("acme/app", blobDigest, "GET", "bytes=0-3");
    expect(res.statusCode).toBe(206);
    res.body.resume();
  });

  it("U2: a redirect from https to plain http is refused, and the http URL never asked", async () => {
    agent
      .get("https://up.test")
      .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
      .reply(302, "", { headers: { location: "http://up.test/v2/acme/app/manifests/v1" } });
    const err = await failure(client("https://up.test").fetchManifest("acme/app", "v1", OCI));
    expect(err.code).toBe("UPSTREAM_INVALID");
    expect(err.message).toContain("plain http");
  });

  it("U9: credentials never go to a token realm on another host the operator did not list", async () => {
    agent
      .get("https://up.test")
      .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
      .reply(401, "", { headers: { "www-authenticate": 'Bearer realm="https://collector.test/token"' } });
    const err = await failure(
      client("https://up.test", { credentials: creds }).fetchManifest("acme/app", "v1", OCI),
    );
    expect(err.code).toBe("UPSTREAM_AUTH_FAILED");
    expect(err.message).toContain("registries.up.test.tokenRealms");
    // No interceptor for collector.test: had it been asked, MockAgent would have thrown instead.
  });

  it("U9: credentials never go over plain http to a realm of an https upstream, listed or not", async () => {
    for (const realm of ["http://up.test/token", "http://auth.test/token"]) {
      agent
        .get("https://up.test")
        .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
        .reply(401, "", { headers: { "www-authenticate": `Bearer realm="${realm}"` } });
      const err = await failure(
        client("https://up.test", {
          credentials: creds,
          tokenRealms: ["auth.test", "up.test"],
        }).fetchManifest("acme/app", "v1", OCI),
      );
      expect(err.code).toBe("UPSTREAM_AUTH_FAILED");
      expect(err.message).toContain("plain-http");
    }
  });

  it("U9: a listed https realm gets the credentials, and so does Docker Hub's own", async () => {
    for (const [upstream, realm, listed] of [
      ["https://up.test", "https://auth.test", ["auth.test"]],
      ["https://registry-1.docker.io", "https://auth.docker.io", []],
    ] as const) {
      agent
        .get(upstream)
        .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
        .reply(401, "", { headers: { "www-authenticate": `Bearer realm="${realm}/token",service="s"` } });
      agent
        .get(realm)
        .intercept({
          path: "/token?service=s&scope=repository%3Aacme%2Fapp%3Apull",
          method: "GET",
          headers: { authorization: basic },
        })
        .reply(200, { token: "T", expires_in: 300 });
      agent
        .get(upstream)
        .intercept({
          path: "/v2/acme/app/manifests/v1",
          method: "GET",
          headers: { authorization: "Bearer T" },
        })
        .reply(200, manifest, { headers: { "content-type": OCI } });
      const got = await client(upstream, { credentials: creds, tokenRealms: [...listed] }).fetchManifest(
        "acme/app",
        "v1",
        OCI,
      );
      expect(got.bytes.equals(manifest)).toBe(true);
    }
  });

  it("U4: a manifest whose body never ends is cut at totalMs", async () => {
    agent
      .get("https://up.test")
      .intercept({ path: "/v2/acme/app/manifests/v1", method: "GET" })
      .reply(200, "{")
      .delay(5_000);
    const started = performance.now();
    const err = await failure(client("https://up.test").fetchManifest("acme/app", "v1", OCI));
    expect(err.code).toBe("UPSTREAM_TIMEOUT");
    expect(err.message).toContain("totalMs");
    expect(performance.now() - started).toBeLessThan(4_000);
  });
});
