import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Digest } from "../helpers/image.js";
import { waitFor } from "../helpers/process.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

// A tiny upstream that lies: it serves bytes that do not match the digest asked for. The
// client must see a failed transfer, never a clean end of a wrong blob. It also records the
// headers it receives, to prove client credentials never travel upstream.
describe("proxy in front of a lying upstream", () => {
  const good = Buffer.alloc(300_000, 7);
  const goodDigest = sha256Digest(good);
  const wrong = Buffer.alloc(300_000, 8);
  // The lie: asked for this digest, the upstream sends `wrong`: same length, other content.
  const liedDigest = sha256Digest(Buffer.alloc(300_000, 9));
  const received: IncomingHttpHeaders[] = [];
  let upstream: Server;
  let proxy: TrustgatePeer;

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      received.push(req.headers);
      const path = req.url ?? "";
      if (path === "/v2/") return res.writeHead(200, { "content-type": "application/json" }).end("{}");
      const chunked = path.includes("/chunked/");
      const send = (body: Buffer, type: string) => {
        res.writeHead(200, {
          "content-type": type,
          ...(chunked ? {} : { "content-length": String(body.length) }),
        });
        // Several writes, so the proxy sees more than one chunk.
        for (let i = 0; i < body.length; i += 65536) res.write(body.subarray(i, i + 65536));
        res.end();
      };
      if (path.endsWith(`/blobs/${goodDigest}`)) return send(good, "application/octet-stream");
      if (path.endsWith(`/blobs/${liedDigest}`)) return send(wrong, "application/octet-stream");
      if (path.endsWith(`/manifests/${liedDigest}`))
        return send(Buffer.from('{"schemaVersion":2}'), "application/vnd.oci.image.manifest.v1+json");
      res
        .writeHead(404, { "content-type": "application/json" })
        .end('{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const port = (upstream.address() as AddressInfo).port;
    proxy = await startTrustgateWithConfig(
      [
        "defaultPolicy: off",
        "logLevel: info",
        "registries:",
        "  liar.test:",
        `    upstream: http://127.0.0.1:${port}`,
      ].join("\n"),
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    await new Promise((resolve) => upstream?.close(resolve));
  });

  for (const mode of ["length", "chunked"]) {
    it(`passes an honest blob (${mode})`, async () => {
      const res = await fetch(`${proxy.url}/v2/liar.test/${mode}/app/blobs/${goodDigest}`);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(good)).toBe(true);
    });

    it(`breaks the transfer of a blob whose bytes do not match its digest (${mode})`, async () => {
      const res = await fetch(`${proxy.url}/v2/liar.test/${mode}/app/blobs/${liedDigest}`);
      // Headers went out before the bytes could be checked; the body must fail.
      expect(res.status).toBe(200);
      await expect(res.arrayBuffer()).rejects.toThrow();
    });
  }

  it("logs the mismatch", async () => {
    const { readFile } = await import("node:fs/promises");
    // Logs are written asynchronously: the line may land just after the client saw the break.
    await waitFor("the mismatch log line", async () =>
      (await readFile(proxy.logFile, "utf8")).includes("blob digest mismatch"),
    );
    const log = await readFile(proxy.logFile, "utf8");
    expect(log).toContain("blob digest mismatch");
    expect(log).toContain(liedDigest);
  });

  it("refuses a manifest whose bytes do not match the digest asked for", async () => {
    const res = await fetch(`${proxy.url}/v2/liar.test/app/manifests/${liedDigest}`);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { errors: { code: string }[] };
    expect(body.errors[0]?.code).toBe("UPSTREAM_ERROR");
  });

  it("never forwards the client's credentials upstream", async () => {
    received.length = 0;
    const res = await fetch(`${proxy.url}/v2/liar.test/length/app/blobs/${goodDigest}`, {
      headers: { authorization: "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M=", cookie: "session=secret" },
    });
    await res.arrayBuffer();
    const reqId = res.headers.get("x-request-id") ?? "none";
    expect(received.length).toBeGreaterThan(0);
    for (const h of received) {
      expect(h.authorization).toBeUndefined();
      expect(h.cookie).toBeUndefined();
    }
    const { readFile } = await import("node:fs/promises");
    // Wait for this request's access line before asserting what the log does not hold.
    await waitFor("the access line", async () => (await readFile(proxy.logFile, "utf8")).includes(reqId));
    expect(await readFile(proxy.logFile, "utf8")).not.toContain("c2VjcmV0");
  });
});
