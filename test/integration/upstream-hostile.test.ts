/**
 * trustgate in front of hostile upstreams (REVIEW U1-U4, U9), every peer on 127.0.0.1:
 *  - `internal`: "another service on the network", on its own loopback port: what a redirect or a
 *    token realm must not reach unless the operator listed it. It counts every connection.
 *  - `hostile`: the configured upstream. It redirects manifests, blobs, tag lists and its token
 *    realm to `internal`, answers 206 to requests without Range, drips manifests, serves a big blob.
 *  - `issuer`: a token issuer on a third port, recording what credentials it receives.
 * The upstream's own origin is loopback too: that is allowed because the operator configured it.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeImage, OCI_MANIFEST, pushImage, sha256Digest } from "../helpers/image.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

interface Fake {
  server: Server;
  port: number;
  url: string;
  connections: number;
  close(): Promise<void>;
}

async function startFake(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Fake> {
  const server = createServer(handler);
  const fake: Fake = {
    server,
    port: 0,
    url: "",
    connections: 0,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  server.on("connection", () => {
    fake.connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.port = (server.address() as AddressInfo).port;
  fake.url = `http://127.0.0.1:${fake.port}`;
  return fake;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(text.length),
    ...headers,
  });
  res.end(text);
}

// What "internal" serves: valid answers, so that an allowed redirect visibly works end to end.
const internalManifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    annotations: { internal: "secret" },
    layers: [],
  }),
);
const internalBlob = Buffer.from("internal service bytes ".repeat(4096));
const internalBlobDigest = sha256Digest(internalBlob);
const internalTags = { name: "redir/app", tags: ["internal-only"] };

// U1: the blob asked for, and the other bytes the upstream sends as a "206".
const blob4m = Buffer.alloc(4 * 1024 * 1024, 1);
const blob4mDigest = sha256Digest(blob4m);
const wrong4m = Buffer.alloc(4 * 1024 * 1024, 2);

// U3: a blob big enough that a non-reading client holds its upstream connection.
const big = Buffer.alloc(32 * 1024 * 1024, 3);
const bigDigest = sha256Digest(big);
const small = Buffer.from("a small layer");
const smallDigest = sha256Digest(small);
const honestManifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }));

describe("trustgate in front of hostile upstreams", () => {
  let internal: Fake;
  let hostile: Fake;
  /** big-blob answers the hostile upstream has open right now */
  let bigOpen = 0;
  /** trustgate with nothing allowed beyond the upstream's origin (audit mode: it would pass unsigned tags) */
  let guarded: TrustgatePeer;
  /** trustgate whose operator listed `internal` under redirectHosts */
  let allowing: TrustgatePeer;

  beforeAll(async () => {
    internal = await startFake((req, res) => {
      const path = req.url ?? "";
      if (path.startsWith("/manifest")) {
        res.writeHead(200, {
          "content-type": OCI_MANIFEST,
          "content-length": String(internalManifest.length),
        });
        return res.end(internalManifest);
      }
      if (path.startsWith("/blob")) {
        res.writeHead(200, { "content-length": String(internalBlob.length) });
        return res.end(internalBlob);
      }
      if (path.startsWith("/tags")) return json(res, 200, internalTags);
      if (path.startsWith("/token")) return json(res, 200, { token: "internal-token", expires_in: 300 });
      res.writeHead(404).end();
    });
    hostile = await startFake((req, res) => {
      const path = req.url ?? "";
      if (path === "/v2/") return json(res, 200, {});
      if (path.startsWith("/v2/redir/app/manifests/"))
        return res.writeHead(302, { location: `${internal.url}/manifest` }).end();
      if (path.startsWith("/v2/redir/app/blobs/"))
        return res.writeHead(307, { location: `${internal.url}/blob` }).end();
      if (path.startsWith("/v2/redir/app/tags/list"))
        return res.writeHead(302, { location: `${internal.url}/tags` }).end();
      // A token realm on the internal service (anonymous: no credentials are configured here).
      if (path.startsWith("/v2/realm/app/manifests/")) {
        if (req.headers.authorization === "Bearer internal-token") {
          res.writeHead(200, {
            "content-type": OCI_MANIFEST,
            "content-length": String(honestManifest.length),
          });
          return res.end(honestManifest);
        }
        return json(
          res,
          401,
          { errors: [{ code: "UNAUTHORIZED" }] },
          {
            "www-authenticate": `Bearer realm="${internal.url}/token",service="hostile"`,
          },
        );
      }
      // U1: 206 and wrong bytes whatever the request said.
      if (path === `/v2/partial/app/blobs/${blob4mDigest}`) {
        res.writeHead(206, {
          "content-length": String(wrong4m.length),
          "content-range": `bytes 0-${wrong4m.length - 1}/${wrong4m.length}`,
        });
        return res.end(wrong4m);
      }
      // U4: a manifest dripped one byte every 1.5 s (30 s in all).
      if (path.startsWith("/v2/drip/app/manifests/") || path.startsWith("/v2/drip/app/tags/list")) {
        res.writeHead(200, { "content-type": OCI_MANIFEST, "content-length": "20" });
        let sent = 0;
        const timer = setInterval(() => {
          if (res.destroyed || ++sent > 20) return clearInterval(timer);
          res.write("x");
        }, 1500);
        res.on("close", () => clearInterval(timer));
        return;
      }
      if (path === `/v2/load/app/blobs/${bigDigest}`) {
        bigOpen++;
        res.on("close", () => bigOpen--);
        res.writeHead(200, { "content-length": String(big.length) });
        return res.end(big);
      }
      if (path === `/v2/load/app/blobs/${smallDigest}`) {
        res.writeHead(200, { "content-length": String(small.length) });
        return res.end(small);
      }
      if (path.startsWith("/v2/load/app/manifests/")) {
        res.writeHead(200, { "content-type": OCI_MANIFEST, "content-length": String(honestManifest.length) });
        return res.end(honestManifest);
      }
      json(res, 404, { errors: [{ code: "NAME_UNKNOWN" }] });
    });
    const registries = (extra: string[]) =>
      ["registries:", "  hostile.test:", `    upstream: ${hostile.url}`, ...extra].join("\n");
    guarded = await startTrustgateWithConfig(
      [
        "defaultPolicy: audit",
        "defaultRegistry: hostile.test",
        "upstreamTimeouts: { bodyMs: 2000, totalMs: 4000 }",
        registries([]),
      ].join("\n"),
    );
    allowing = await startTrustgateWithConfig(
      [
        "defaultPolicy: audit",
        "defaultRegistry: hostile.test",
        registries([`    redirectHosts: ["127.0.0.1:${internal.port}"]`]),
      ].join("\n"),
    );
  }, 60_000);

  afterAll(async () => {
    await guarded?.stop();
    await allowing?.stop();
    await Promise.all([internal?.close(), hostile?.close()]);
  });

  async function errorCode(res: Response): Promise<string | undefined> {
    const body = (await res.json()) as { errors?: { code?: string }[] };
    return body.errors?.[0]?.code;
  }

  describe("U2: redirects and token realms do not reach another service", () => {
    it("U2: a manifest redirected to another loopback port is refused, even in audit mode", async () => {
      const before = internal.connections;
      const res = await fetch(`${guarded.url}/v2/redir/app/manifests/v1`);
      expect(res.status).toBe(502);
      expect(await errorCode(res)).toBe("UPSTREAM_ERROR");
      expect(internal.connections).toBe(before);
    });

    it("U2: a redirected blob is refused, no internal byte relayed", async () => {
      const before = internal.connections;
      const res = await fetch(`${guarded.url}/v2/redir/app/blobs/${internalBlobDigest}`);
      expect(res.status).toBe(502);
      expect(Buffer.from(await res.arrayBuffer()).includes("internal service")).toBe(false);
      expect(internal.connections).toBe(before);
    });

    it("U2: a redirected tags/list is refused", async () => {
      const before = internal.connections;
      const res = await fetch(`${guarded.url}/v2/redir/app/tags/list`);
      expect(res.status).toBe(502);
      expect(await res.text()).not.toContain("internal-only");
      expect(internal.connections).toBe(before);
    });

    it("U2: a token realm on another loopback port is never asked", async () => {
      const before = internal.connections;
      const res = await fetch(`${guarded.url}/v2/realm/app/manifests/v1`);
      expect(res.status).toBe(502);
      expect(internal.connections).toBe(before);
      // The operator reads where it went, the client learns only the kind of address.
      await guarded.waitForLog((l) => l.msg === "upstream destination refused" && l.class === "loopback");
    });

    it("U2: each is allowed once the operator lists the host under redirectHosts", async () => {
      const manifest = await fetch(`${allowing.url}/v2/redir/app/manifests/v1`);
      expect(manifest.status).toBe(200);
      expect(Buffer.from(await manifest.arrayBuffer()).equals(internalManifest)).toBe(true);
      const blob = await fetch(`${allowing.url}/v2/redir/app/blobs/${internalBlobDigest}`);
      expect(blob.status).toBe(200);
      expect(Buffer.from(await blob.arrayBuffer()).equals(internalBlob)).toBe(true);
      const tags = await fetch(`${allowing.url}/v2/redir/app/tags/list`);
      expect(tags.status).toBe(200);
      expect(((await tags.json()) as { tags: string[] }).tags).toContain("internal-only");
      const realm = await fetch(`${allowing.url}/v2/realm/app/manifests/v1`);
      expect(realm.status).toBe(200);
    });
  });

  describe("U1: a 206 nobody asked for", () => {
    it("U1: a 206 with wrong bytes to a request without Range is refused", async () => {
      const res = await fetch(`${guarded.url}/v2/partial/app/blobs/${blob4mDigest}`);
      expect(res.status).toBe(502);
      const body = Buffer.from(await res.arrayBuffer());
      expect(body.length).toBeLessThan(1024);
    });

    it("U1: a client that asked for a range still gets the upstream's 206", async () => {
      const res = await fetch(`${guarded.url}/v2/partial/app/blobs/${blob4mDigest}`, {
        headers: { range: "bytes=0-" },
      });
      expect(res.status).toBe(206);
      await res.arrayBuffer();
    });
  });

  describe("U4: a dripping upstream", () => {
    it("U4: a manifest dripped one byte every 1.5 s is cut at upstreamTimeouts.totalMs", async () => {
      const started = performance.now();
      const res = await fetch(`${guarded.url}/v2/drip/app/manifests/v1`);
      const elapsed = performance.now() - started;
      expect(res.status).toBe(504);
      // totalMs is 4 s; without it the pull lasted the whole drip (30 s).
      expect(elapsed).toBeGreaterThan(3_500);
      expect(elapsed).toBeLessThan(8_000);
    }, 20_000);

    it("U4: a dripped tags/list is cut the same way", async () => {
      const started = performance.now();
      const res = await fetch(`${guarded.url}/v2/drip/app/tags/list`);
      expect(res.status).toBe(504);
      expect(performance.now() - started).toBeLessThan(8_000);
    }, 20_000);
  });

  describe("U3: clients that never read", () => {
    const holders: Socket[] = [];
    afterAll(() => {
      for (const s of holders) s.destroy();
    });

    it("U3: 70 non-reading clients of a 32 MiB blob starve no manifest pull, and are cut after bodyMs", async () => {
      // Each asks for the big blob and never reads a byte of the answer.
      for (let i = 0; i < 70; i++) {
        const s = connect(guarded.port, "127.0.0.1");
        s.on("error", () => {});
        s.write(`GET /v2/load/app/blobs/${bigDigest} HTTP/1.1\r\nHost: ${guarded.host}\r\n\r\n`);
        s.pause();
        holders.push(s);
      }
      // Until the upstream holds as many big answers open as trustgate admits for one client.
      const deadline = Date.now() + 10_000;
      while (bigOpen < 32 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(bigOpen).toBeGreaterThanOrEqual(32);
      expect(bigOpen).toBeLessThanOrEqual(32);

      // A manifest pull answers promptly while they hold on.
      const started = performance.now();
      const manifest = await fetch(`${guarded.url}/v2/load/app/manifests/v1`, {
        signal: AbortSignal.timeout(5_000),
      });
      expect(manifest.status).toBe(200);
      await manifest.arrayBuffer();
      // Unloaded it takes well under 100 ms; the bound leaves room for a busy test machine.
      expect(performance.now() - started).toBeLessThan(3_000);

      // So does a blob for another client address (the whole of 127/8 is loopback).
      const other = new Agent({ localAddress: "127.0.0.2" });
      try {
        const res = await request(`${guarded.url}/v2/load/app/blobs/${smallDigest}`, {
          dispatcher: other,
          signal: AbortSignal.timeout(5_000),
        });
        expect(res.statusCode).toBe(200);
        expect(Buffer.from(await res.body.arrayBuffer()).equals(small)).toBe(true);
      } finally {
        await other.close();
      }

      // The stalled relays are cut after bodyMs (2 s) and their upstream connections freed,
      // although the clients still hold their sockets open.
      const freed = Date.now() + 10_000;
      while (bigOpen > 0 && Date.now() < freed) await new Promise((r) => setTimeout(r, 100));
      expect(bigOpen).toBe(0);
      expect(holders.filter((s) => !s.destroyed).length).toBeGreaterThan(0);
      await guarded.waitForLog((l) => l.outcome === "client-stalled");
    }, 40_000);
  });
});

describe("U9: upstream credentials and the token realm", () => {
  const issued: IncomingHttpHeaders[] = [];
  let issuer: Fake;
  let upstream: Fake;
  let unlisted: TrustgatePeer;
  let listed: TrustgatePeer;
  let ownRealm: TrustgatePeer;
  const env = { TEST_HOSTILE_PASSWORD: "pa55-for-the-upstream" };

  beforeAll(async () => {
    issuer = await startFake((req, res) => {
      issued.push(req.headers);
      json(res, 200, { token: "issued-token", expires_in: 300 });
    });
    upstream = await startFake((req, res) => {
      const path = req.url ?? "";
      if (path === "/v2/") return json(res, 200, {});
      if (path.startsWith("/token")) {
        issued.push({ ...req.headers, "x-realm": "own" });
        return json(res, 200, { token: "issued-token", expires_in: 300 });
      }
      const realm = path.startsWith("/v2/own/") ? `${upstream.url}/token` : `${issuer.url}/token`;
      if (req.headers.authorization === "Bearer issued-token") {
        res.writeHead(200, { "content-type": OCI_MANIFEST, "content-length": String(honestManifest.length) });
        return res.end(honestManifest);
      }
      json(
        res,
        401,
        { errors: [{ code: "UNAUTHORIZED" }] },
        {
          "www-authenticate": `Bearer realm="${realm}",service="hostile"`,
        },
      );
    });
    const config = (extra: string[]) =>
      [
        "defaultPolicy: off",
        "defaultRegistry: creds.test",
        "registries:",
        "  creds.test:",
        `    upstream: ${upstream.url}`,
        "    username: robot",
        "    passwordEnv: TEST_HOSTILE_PASSWORD",
        ...extra,
      ].join("\n");
    unlisted = await startTrustgateWithConfig(config([]), { env });
    listed = await startTrustgateWithConfig(config([`    tokenRealms: ["127.0.0.1:${issuer.port}"]`]), {
      env,
    });
    ownRealm = await startTrustgateWithConfig(config([]), { env });
  }, 60_000);

  afterAll(async () => {
    await Promise.all([unlisted?.stop(), listed?.stop(), ownRealm?.stop()]);
    await Promise.all([issuer?.close(), upstream?.close()]);
  });

  it("U9: credentials are not sent to a token realm on another origin the operator did not list", async () => {
    issued.length = 0;
    const res = await fetch(`${unlisted.url}/v2/other/app/manifests/v1`);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { errors: { message: string }[] };
    expect(body.errors[0]?.message).toContain("tokenRealms");
    expect(issued).toEqual([]);
  });

  it("U9: a listed realm gets them (the upstream itself is plain http here)", async () => {
    issued.length = 0;
    const res = await fetch(`${listed.url}/v2/other/app/manifests/v1`);
    expect(res.status).toBe(200);
    expect(issued.length).toBe(1);
    expect(issued[0]?.authorization).toBe(
      `Basic ${Buffer.from(`robot:${env.TEST_HOSTILE_PASSWORD}`).toString("base64")}`,
    );
  });

  it("U9: a realm on the upstream's own origin gets them without any listing", async () => {
    issued.length = 0;
    const res = await fetch(`${ownRealm.url}/v2/own/app/manifests/v1`);
    expect(res.status).toBe(200);
    expect(issued.map((h) => h["x-realm"])).toEqual(["own"]);
    expect(issued[0]?.authorization).toMatch(/^Basic /);
  });
});

// A registry front that sends blobs elsewhere, as registries in front of object storage or a CDN
// do (distribution's `redirect` storage middleware): here the "elsewhere" is a real docker-registry
// on another loopback port, which is exactly what an SSRF redirect looks like from trustgate.
describe("U2: blob redirects to a real docker-registry on another port", () => {
  let registry: RegistryPeer;
  let front: Fake;
  let refusing: TrustgatePeer;
  let listing: TrustgatePeer;
  const image = makeImage("redirected blobs", { extraBytes: 300_000 });

  beforeAll(async () => {
    registry = await startRegistry();
    await pushImage(registry.url, "acme/app", "v1", image);
    front = await startFake((req, res) => {
      const path = req.url ?? "";
      if (path.includes("/blobs/")) return res.writeHead(307, { location: `${registry.url}${path}` }).end();
      // Everything else is the registry's own answer.
      void fetch(`${registry.url}${path}`, {
        headers: req.headers.accept ? { accept: req.headers.accept } : {},
      })
        .then(async (up) => {
          const body = Buffer.from(await up.arrayBuffer());
          const headers: Record<string, string> = { "content-length": String(body.length) };
          for (const h of ["content-type", "docker-content-digest"]) {
            const v = up.headers.get(h);
            if (v) headers[h] = v;
          }
          res.writeHead(up.status, headers).end(body);
        })
        .catch(() => res.writeHead(502).end());
    });
    const config = (extra: string[]) =>
      [
        "defaultPolicy: off",
        "defaultRegistry: cdn.test",
        "registries:",
        "  cdn.test:",
        `    upstream: ${front.url}`,
        ...extra,
      ].join("\n");
    refusing = await startTrustgateWithConfig(config([]));
    listing = await startTrustgateWithConfig(config([`    redirectHosts: ["${registry.host}"]`]));
  }, 60_000);

  afterAll(async () => {
    await Promise.all([refusing?.stop(), listing?.stop()]);
    await front?.close();
    await registry?.stop();
  });

  it("U2: a layer redirected to an unlisted loopback port is refused; listed, it is relayed and verified", async () => {
    const layer = image.blobs[image.blobs.length - 1] as { digest: string; bytes: Buffer };
    const manifest = await fetch(`${refusing.url}/v2/acme/app/manifests/v1`, {
      headers: { accept: image.mediaType },
    });
    expect(manifest.status).toBe(200);
    const refused = await fetch(`${refusing.url}/v2/acme/app/blobs/${layer.digest}`);
    expect(refused.status).toBe(502);
    await refused.arrayBuffer();
    const allowed = await fetch(`${listing.url}/v2/acme/app/blobs/${layer.digest}`);
    expect(allowed.status).toBe(200);
    expect(Buffer.from(await allowed.arrayBuffer()).equals(layer.bytes)).toBe(true);
  });
});
