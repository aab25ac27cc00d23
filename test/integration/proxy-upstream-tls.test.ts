import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand, tempDir } from "../helpers/process.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

// An https upstream whose certificate comes from a private CA: trustgate reaches it only with
// that CA in `caFile` (added to, not replacing, the system roots).
describe("https upstream with a private CA", () => {
  let upstream: Server;
  let withCa: TrustgatePeer;
  let withoutCa: TrustgatePeer;

  beforeAll(async () => {
    const dir = await tempDir("tls");
    const f = (name: string) => join(dir, name);
    const steps = [
      ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")],
      [
        "req",
        "-new",
        "-x509",
        "-key",
        f("ca.key"),
        "-out",
        f("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
      ],
      ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("server.key")],
      ["req", "-new", "-key", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=127.0.0.1"],
    ];
    for (const args of steps) {
      const r = await runCommand("openssl", args);
      if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
    }
    const { writeFile } = await import("node:fs/promises");
    await writeFile(f("san.ext"), "subjectAltName=IP:127.0.0.1\n");
    const sign = await runCommand("openssl", [
      "x509",
      "-req",
      "-in",
      f("server.csr"),
      "-CA",
      f("ca.pem"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-out",
      f("server.pem"),
      "-days",
      "2",
      "-extfile",
      f("san.ext"),
    ]);
    if (sign.code !== 0) throw new Error(`openssl x509: ${sign.stderr}`);

    upstream = createServer(
      { key: await readFile(f("server.key")), cert: await readFile(f("server.pem")) },
      (req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ name: "acme/app", tags: ["tls"], path: req.url }));
      },
    );
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const url = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const config = (ca: boolean) =>
      [
        "logLevel: silent",
        "defaultPolicy: off",
        "registries:",
        "  tls.test:",
        `    upstream: ${url}`,
        ...(ca ? [`    caFile: ${f("ca.pem")}`] : []),
      ].join("\n");
    withCa = await startTrustgateWithConfig(config(true));
    withoutCa = await startTrustgateWithConfig(config(false));
  });
  afterAll(async () => {
    await withCa?.stop();
    await withoutCa?.stop();
    await new Promise((resolve) => upstream?.close(resolve));
  });

  it("reaches the upstream with the configured CA", async () => {
    const res = await fetch(`${withCa.url}/v2/tls.test/acme/app/tags/list`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { tags: string[] }).tags).toEqual(["tls"]);
  });

  it("refuses the upstream without it (certificate not trusted)", async () => {
    const res = await fetch(`${withoutCa.url}/v2/tls.test/acme/app/tags/list`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { errors: { message: string }[] }).errors[0]?.message).toContain(
      "tls.test",
    );
  });
});
