/**
 * The verified blob cache with a real docker-registry upstream (behind a counting relay) and the
 * built trustgate CLI: a relayed blob is kept only once verified, served from disk afterwards with
 * no upstream transfer, to another repository only after the upstream confirms it, and across a
 * restart. A lying upstream's bytes are never kept.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readlink } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushBlob, sha256Digest } from "../helpers/image.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { type CountingRelay, startCountingRelay } from "../helpers/relay.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

const POLL = { timeout: 5000, interval: 50 };

describe("verified blob cache (blobCache)", () => {
  const bytes = randomBytes(3 * 1024 * 1024 + 11);
  const digest = sha256Digest(bytes);
  const hex = digest.slice("sha256:".length);
  // the liar answers this digest with other bytes of the same length
  const liedBytes = randomBytes(2 * 1024 * 1024);
  const liedDigest = sha256Digest(randomBytes(2 * 1024 * 1024));
  let registry: RegistryPeer;
  let relay: CountingRelay;
  let liar: Server;
  // the flaky upstream answers this blob honestly once, then with other bytes of its length
  const flakyBytes = randomBytes(1024 * 1024);
  const flakyDigest = sha256Digest(flakyBytes);
  let flakyGets = 0;
  let flaky: Server;
  let proxy: TrustgatePeer;
  let config: string;

  const get = async (path: string) => {
    const res = await fetch(`${proxy.url}/v2/${path}`);
    return {
      status: res.status,
      body: Buffer.from(await res.arrayBuffer()),
      reqId: res.headers.get("x-request-id"),
    };
  };
  const lineOf = async (reqId: string | null) => {
    await expect.poll(async () => (await proxy.logs()).some((l) => l.reqId === reqId), POLL).toBe(true);
    return (await proxy.logs()).find((l) => l.reqId === reqId);
  };
  const cached = () => join(proxy.dir, "blobs", "sha256", hex);

  beforeAll(async () => {
    registry = await startRegistry();
    await pushBlob(registry.url, "acme/app", { digest, bytes });
    await pushBlob(registry.url, "other/app", { digest, bytes });
    relay = await startCountingRelay(Number(new URL(registry.url).port));
    liar = createServer((req, res) => {
      if (req.url?.endsWith(`/blobs/${liedDigest}`)) {
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": String(liedBytes.length),
        });
        res.end(liedBytes);
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
    flaky = createServer((req, res) => {
      if (!req.url?.endsWith(`/blobs/${flakyDigest}`)) return void res.writeHead(404).end();
      if (req.method === "GET") flakyGets++;
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": String(flakyBytes.length),
      });
      res.end(
        req.method === "HEAD" ? undefined : flakyGets <= 1 ? flakyBytes : randomBytes(flakyBytes.length),
      );
    });
    await new Promise<void>((r) => flaky.listen(0, "127.0.0.1", r));
    config = [
      "defaultPolicy: off",
      "logLevel: info",
      "blobCache: { dir: ./blobs, maxBytes: 134217728 }",
      "registries:",
      "  r.test:",
      `    upstream: http://${relay.host}`,
      "  liar.test:",
      `    upstream: http://127.0.0.1:${(liar.address() as AddressInfo).port}`,
      "  flaky.test:",
      `    upstream: http://127.0.0.1:${(flaky.address() as AddressInfo).port}`,
    ].join("\n");
    proxy = await startTrustgateWithConfig(config);
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    await relay?.close();
    await registry?.stop();
    await new Promise((r) => liar?.close(r));
    await new Promise((r) => flaky?.close(r));
  });

  it("keeps a relayed blob once verified, then serves it from disk with no upstream request", async () => {
    const upstreamBefore = relay.bytesOut;
    const first = await get(`r.test/acme/app/blobs/${digest}`);
    expect(first.status).toBe(200);
    expect(first.body.equals(bytes)).toBe(true);
    expect(await lineOf(first.reqId)).toMatchObject({ cache: "miss", status: 200, bytes: bytes.length });
    // The file appears at its name (rename) a moment before the cache's index has it: wait for
    // the line that says the cache answers for it (a CI run raced the two).
    await expect
      .poll(
        async () =>
          (await proxy.logs()).some((l) => l.msg === "blob kept in the cache" && l.digest === digest),
        POLL,
      )
      .toBe(true);
    expect(existsSync(cached())).toBe(true);
    // the copy came from a second upstream answer, after the client's (blob-cache-filler.ts)
    expect(relay.bytesOut - upstreamBefore).toBeGreaterThan(2 * bytes.length);
    expect(relay.bytesOut - upstreamBefore).toBeLessThan(2 * bytes.length + 64 * 1024);
    const before = { in: relay.bytesIn, out: relay.bytesOut };
    const second = await get(`r.test/acme/app/blobs/${digest}`);
    expect(second.status).toBe(200);
    expect(second.body.equals(bytes)).toBe(true);
    expect(await lineOf(second.reqId)).toMatchObject({ cache: "hit", status: 200, bytes: bytes.length });
    expect({ in: relay.bytesIn, out: relay.bytesOut }).toEqual(before);
  });

  it("serves another repository from disk only once the upstream confirms it holds the blob there", async () => {
    const before = relay.bytesOut;
    const other = await get(`r.test/other/app/blobs/${digest}`);
    expect(other.status).toBe(200);
    expect(other.body.equals(bytes)).toBe(true);
    expect(await lineOf(other.reqId)).toMatchObject({ cache: "hit" });
    // the confirmation was a HEAD: headers only, not the blob again
    expect(relay.bytesOut - before).toBeGreaterThan(0);
    expect(relay.bytesOut - before).toBeLessThan(64 * 1024);
    const stranger = await get(`r.test/stranger/app/blobs/${digest}`);
    expect(stranger.status).toBe(404);
    expect(JSON.parse(stranger.body.toString()).errors[0].code).toBe("BLOB_UNKNOWN");
  });

  it("a client that goes away mid-answer from the cache: logged as aborted, the file closed, the next answer whole", async () => {
    // Larger than loopback socket buffers, so the answer is still being written when the client goes.
    const big = randomBytes(48 * 1024 * 1024);
    const bigDigest = sha256Digest(big);
    await pushBlob(registry.url, "acme/app", { digest: bigDigest, bytes: big });
    const path = `r.test/acme/app/blobs/${bigDigest}`;
    expect((await get(path)).body.equals(big)).toBe(true);
    const file = join(proxy.dir, "blobs", "sha256", bigDigest.slice("sha256:".length));
    await expect.poll(() => existsSync(file), POLL).toBe(true);
    const reqId = await new Promise<string>((resolve, reject) => {
      const socket = connect(proxy.port, "127.0.0.1", () => {
        socket.write(`GET /v2/${path} HTTP/1.1\r\nHost: ${proxy.host}\r\n\r\n`);
      });
      socket.once("error", reject);
      socket.once("data", (chunk: Buffer) => {
        socket.pause(); // read nothing more: the server's writes back up
        const id = /x-request-id: (\S+)/i.exec(chunk.toString("latin1"))?.[1] ?? "";
        setTimeout(() => {
          socket.destroy();
          resolve(id);
        }, 300);
      });
    });
    expect(await lineOf(reqId)).toMatchObject({ cache: "hit", outcome: expect.stringMatching(/aborted$/) });
    const openFiles = async () =>
      Promise.all(
        (await readdir(`/proc/${proxy.pid}/fd`)).map((fd) =>
          readlink(`/proc/${proxy.pid}/fd/${fd}`).catch(() => ""),
        ),
      );
    await expect.poll(async () => (await openFiles()).includes(file), POLL).toBe(false);
    const again = await get(path);
    expect(again.body.equals(big)).toBe(true);
    expect(await lineOf(again.reqId)).toMatchObject({ cache: "hit", status: 200 });
  }, 60_000);

  it("never keeps bytes that do not match their digest", async () => {
    const res = await fetch(`${proxy.url}/v2/liar.test/acme/app/blobs/${liedDigest}`);
    expect(res.status).toBe(200);
    await expect(res.arrayBuffer()).rejects.toThrow();
    // the relay saw the mismatch (the fill is aborted with it), and the temp copy is gone
    await expect
      .poll(
        async () => (await proxy.logs()).some((l) => l.msg === "blob digest mismatch: connection aborted"),
        POLL,
      )
      .toBe(true);
    await expect.poll(async () => readdir(join(proxy.dir, "blobs", "tmp")), POLL).toEqual([]);
    const kept = await readdir(join(proxy.dir, "blobs", "sha256"));
    expect(kept).toContain(hex);
    expect(kept).not.toContain(liedDigest.slice("sha256:".length));
  });

  it("the client's verified answer is whole, but a second answer that lies is not kept: the next pull relays again", async () => {
    const path = `flaky.test/acme/app/blobs/${flakyDigest}`;
    const first = await get(path);
    expect(first.status).toBe(200);
    expect(first.body.equals(flakyBytes)).toBe(true);
    await expect
      .poll(
        async () =>
          (await proxy.logs()).some(
            (l) =>
              l.msg === "blob not kept in the cache" &&
              l.digest === flakyDigest &&
              String(l.err).includes("BlobDigestMismatchError"),
          ),
        POLL,
      )
      .toBe(true);
    expect(flakyGets).toBe(2);
    await expect.poll(async () => readdir(join(proxy.dir, "blobs", "tmp")), POLL).toEqual([]);
    expect(await readdir(join(proxy.dir, "blobs", "sha256"))).not.toContain(
      flakyDigest.slice("sha256:".length),
    );
    // not cached: the next pull is relayed again (and the upstream, lying now, is caught there)
    const again = await fetch(`${proxy.url}/v2/${path}`);
    await expect(again.arrayBuffer()).rejects.toThrow();
    const reqId = again.headers.get("x-request-id");
    await expect
      .poll(async () => (await proxy.logs()).find((l) => l.reqId === reqId && l.cache !== undefined), POLL)
      .toMatchObject({ cache: "miss" });
    // (the access line's outcome is "digest-mismatch" or "aborted", whichever side closes first)
    await expect
      .poll(
        async () =>
          (await proxy.logs()).some(
            (l) => l.reqId === reqId && l.msg === "blob digest mismatch: connection aborted",
          ),
        POLL,
      )
      .toBe(true);
  });

  it("keeps the cache across a restart", async () => {
    await proxy.stop();
    proxy = await startTrustgateWithConfig(config, { dir: proxy.dir });
    const before = relay.bytesOut;
    const res = await get(`r.test/acme/app/blobs/${digest}`);
    expect(res.body.equals(bytes)).toBe(true);
    expect(await lineOf(res.reqId)).toMatchObject({ cache: "hit" });
    expect(relay.bytesOut - before).toBeLessThan(64 * 1024); // a HEAD to confirm, no transfer
  });
});
