/**
 * Issue 12 item 8: a complete 404 or 405 answer is a complete answer, not `"outcome":"aborted"`
 * on its access line. Through a real node:http listener (the raw-response path), with the
 * request forms clients send: a GET of an unknown path, a HEAD, and a write with a body the
 * server never reads.
 */
import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import type { RegistryConfig } from "../../src/config/types.js";
import { createLogger } from "../../src/log.js";
import { ManifestStore, PassThroughManifestResolver } from "../../src/proxy/manifests.js";
import { PassThroughTagLister } from "../../src/proxy/tags.js";
import { createApp, createHttpServer } from "../../src/server.js";
import { TokenCache } from "../../src/upstream/auth.js";
import { RegistryClient } from "../../src/upstream/client.js";

const lines: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk, _enc, done) {
    for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
    done();
  },
});

function start() {
  const config: RegistryConfig = { name: "up.test", upstream: new URL("http://127.0.0.1:9") };
  const logger = createLogger("info", sink);
  const clients = new Map([
    [
      "up.test",
      new RegistryClient({
        registry: config,
        timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000 },
        tokens: new TokenCache(),
        logger,
      }),
    ],
  ]);
  const app = createApp({
    config: { registries: new Map([["up.test", config]]), defaultRegistry: "up.test", blobRedirect: false },
    clients,
    manifests: new PassThroughManifestResolver(new ManifestStore({ clients, cacheBytes: 0 })),
    tags: new PassThroughTagLister(clients),
    logger,
  });
  const server = createHttpServer(app, undefined);
  return new Promise<typeof server>((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function send(port: number, method: string, path: string, body?: string, close = false) {
  return new Promise<number>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        headers: close ? { connection: "close" } : {},
        agent: false,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

let server: Awaited<ReturnType<typeof start>> | undefined;
afterEach(async () => {
  await new Promise((r) => server?.close(r));
  lines.length = 0;
});

describe("access line of complete 404 and 405 answers", () => {
  it.each([
    ["GET", "/nope", undefined, false, 404],
    ["GET", "/v2/x/y/z", undefined, true, 404],
    ["HEAD", "/nope", undefined, false, 404],
    ["PUT", "/v2/acme/app/manifests/1.0", "x".repeat(200_000), false, 405],
    ["POST", "/v2/acme/app/blobs/uploads/", "y".repeat(1000), true, 405],
    ["DELETE", "/v2/acme/app/manifests/1.0", undefined, false, 405],
  ] as const)("%s %s, not aborted", async (method, path, body, close, status) => {
    server = await start();
    const port = (server.address() as AddressInfo).port;
    expect(await send(port, method, path, body, close)).toBe(status);
    await new Promise((r) => setTimeout(r, 50));
    const access = lines.filter((l) => l.msg === "request");
    expect(access).toHaveLength(1);
    expect(access[0]).toMatchObject({ status });
    expect(access[0]?.outcome).toBeUndefined();
  });
});
