import { createPrivateKey, createPublicKey, randomUUID, sign } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeImage, OCI_MANIFEST, pushImage } from "../helpers/image.js";
import { runCommand, tempDir, waitFor } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { libtrustKeyId } from "../helpers/token-issuer.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");

// The upstream is a REAL docker-registry demanding bearer tokens; the token endpoint is a small
// issuer in this test (ES256 JWTs in distribution's format). trustgate must run the token flow
// with its configured credentials and cache the token per scope.
describe("proxy against a registry that demands bearer tokens", () => {
  const service = "test-registry";
  const issuer = "trustgate-test-issuer";
  const password = `pw-${randomUUID()}`;
  let registry: RegistryPeer;
  let tokenServer: Server;
  let proxy: TrustgatePeer;
  const tokenRequests: { scope: string | null; authorization: string | undefined }[] = [];
  const image = makeImage("token-protected");
  const other = makeImage("other-repo");

  beforeAll(async () => {
    const dir = await tempDir("token");
    const keyFile = join(dir, "issuer.key");
    const certFile = join(dir, "issuer.crt");
    for (const args of [
      ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile],
      ["req", "-new", "-x509", "-key", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=token issuer"],
    ]) {
      const r = await runCommand("openssl", args);
      if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
    }
    const { readFile } = await import("node:fs/promises");
    const privateKey = createPrivateKey(await readFile(keyFile));
    const kid = libtrustKeyId(createPublicKey(privateKey));

    tokenServer = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const scope = url.searchParams.get("scope");
      tokenRequests.push({ scope, authorization: req.headers.authorization });
      const expected = `Basic ${Buffer.from(`robot:${password}`).toString("base64")}`;
      if (req.headers.authorization !== expected) return res.writeHead(401).end();
      const access = scope
        ? [{ type: "repository", name: scope.split(":")[1], actions: (scope.split(":")[2] ?? "").split(",") }]
        : [];
      const now = Math.floor(Date.now() / 1000);
      const header = b64url(JSON.stringify({ typ: "JWT", alg: "ES256", kid }));
      const claims = b64url(
        JSON.stringify({
          iss: issuer,
          sub: "robot",
          aud: service,
          exp: now + 300,
          nbf: now - 10,
          iat: now,
          jti: randomUUID(),
          access,
        }),
      );
      const signature = sign("sha256", Buffer.from(`${header}.${claims}`), {
        key: privateKey,
        dsaEncoding: "ieee-p1363",
      });
      const token = `${header}.${claims}.${b64url(signature)}`;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ token, expires_in: 300, issued_at: new Date().toISOString() }));
    });
    await new Promise<void>((resolve) => tokenServer.listen(0, "127.0.0.1", resolve));
    const realm = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;

    // Fill the storage through a registry without auth, then serve it with token auth.
    const filler = await startRegistry();
    try {
      await pushImage(filler.url, "acme/app", "v1", image);
      await pushImage(filler.url, "acme/other", "v1", other);
    } finally {
      await filler.stop();
    }
    registry = await startRegistry({
      storageDir: join(filler.dir, "data"),
      tokenAuth: { realm, service, issuer, rootCertBundle: certFile },
    });
    proxy = await startTrustgateWithConfig(
      [
        "logLevel: debug",
        "defaultPolicy: off", // pass-through behaviour: no trust check
        "registries:",
        `  "${registry.host}":`,
        `    upstream: ${registry.url}`,
        "    username: robot",
        "    passwordEnv: TEST_UPSTREAM_PASSWORD",
        // The issuer is on another port: the credentials go there only because it is listed (U9).
        `    tokenRealms: ["${new URL(realm).host}"]`,
      ].join("\n"),
      { env: { TEST_UPSTREAM_PASSWORD: password } },
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await new Promise((resolve) => tokenServer?.close(resolve));
  });

  it("the registry really demands a token", async () => {
    const res = await fetch(`${registry.url}/v2/acme/app/manifests/v1`, {
      headers: { accept: OCI_MANIFEST },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer realm=/);
  });

  it("fetches a pull token with the configured credentials and serves the manifest", async () => {
    const res = await fetch(`${proxy.url}/v2/${registry.host}/acme/app/manifests/v1`, {
      headers: { accept: OCI_MANIFEST },
    });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(image.manifest)).toBe(true);
    const proxyTokenRequests = tokenRequests.filter((t) => t.scope === "repository:acme/app:pull");
    expect(proxyTokenRequests).toHaveLength(1);
    expect(proxyTokenRequests[0]?.authorization).toBe(
      `Basic ${Buffer.from(`robot:${password}`).toString("base64")}`,
    );
  });

  it("reuses the cached token for the same repository", async () => {
    const before = tokenRequests.length;
    for (const blob of image.blobs) {
      const res = await fetch(`${proxy.url}/v2/${registry.host}/acme/app/blobs/${blob.digest}`);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(blob.bytes)).toBe(true);
    }
    expect(tokenRequests.length).toBe(before);
  });

  it("gets a separate token per repository scope", async () => {
    const res = await fetch(`${proxy.url}/v2/${registry.host}/acme/other/manifests/v1`, {
      headers: { accept: OCI_MANIFEST },
    });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(other.manifest)).toBe(true);
    expect(tokenRequests.filter((t) => t.scope === "repository:acme/other:pull")).toHaveLength(1);
  });

  it("never logs the password or a token", async () => {
    const { readFile } = await import("node:fs/promises");
    // Logs are written asynchronously: wait for this request's access line, so the lines of
    // every earlier request are in the file before asserting what is not in it.
    const res = await fetch(`${proxy.url}/v2/${registry.host}/acme/app/manifests/v1`, {
      headers: { accept: OCI_MANIFEST },
    });
    await res.arrayBuffer();
    const reqId = res.headers.get("x-request-id") ?? "none";
    await waitFor("the last access line", async () =>
      (await readFile(proxy.logFile, "utf8")).includes(reqId),
    );
    const log = await readFile(proxy.logFile, "utf8");
    expect(log).not.toContain(password);
    expect(log).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
  });
});
