/**
 * REVIEW U8: an unwritable trust state directory. At start, `serve` refuses (exit 2, the key
 * named); at run time a state write (or read) the disk refuses answers 503 UNAVAILABLE with one
 * log line and no stack, and pulls recover once the directory is usable again.
 *
 * Peers: docker-registry as the upstream, a loopback stand-in for notary-server serving metadata
 * signed by the test signer (test/helpers/notary-signer.ts), and the built trustgate CLI. As root,
 * chmod does not stop writes, so the directory is made unusable by replacing it with a regular
 * file: every path under it then fails with ENOTDIR (or EEXIST for mkdir), as EROFS or ENOSPC
 * would on a real disk.
 */

import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Image, makeImage, pushImage } from "../helpers/image.js";
import { TestRepo } from "../helpers/notary-signer.js";
import { runCommand, tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { ensureBuilt, startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

const CLI = join(import.meta.dirname, "../../dist/cli.js");
const ACCEPT = "application/vnd.oci.image.manifest.v1+json";

/** notary-server's read API for several GUNs: `/v2/<gun>/_trust/tuf/<file>`. */
async function serveGuns(guns: Map<string, Map<string, Buffer>>): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const m = /^\/v2\/(.+)\/_trust\/tuf\/([^/]+)$/.exec((req.url ?? "").split("?")[0] ?? "");
    const body = m?.[1] && m[2] ? guns.get(m[1])?.get(m[2]) : undefined;
    if (!body) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"errors":[{"code":"METADATA_NOT_FOUND"}]}');
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const hex = (img: Image) => img.digest.replace(/^sha256:/, "");

describe("U8: an unwritable stateDir", () => {
  let dir: string;
  beforeAll(async () => {
    await ensureBuilt();
    dir = await tempDir("tg-statedir");
    await writeFile(join(dir, "not-a-dir"), "a regular file\n");
    await mkdir(join(dir, "policies"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const serve = (config: string) =>
    writeFile(join(dir, "config.yaml"), config).then(() =>
      runCommand(
        process.execPath,
        [CLI, "serve", "--config", join(dir, "config.yaml"), "--listen", "127.0.0.1:0"],
        {
          timeoutMs: 30_000,
        },
      ),
    );

  it("U8: serve refuses to start when stateDir is not writable: exit 2, one line naming the key", async () => {
    const out = await serve(
      [
        `stateDir: ${join(dir, "not-a-dir", "state")}`,
        "registries:",
        "  registry.test:",
        "    upstream: http://127.0.0.1:1",
        "    notary: { url: http://127.0.0.1:1 }",
      ].join("\n"),
    );
    expect(out.code).toBe(2);
    expect(out.stderr.trim().split("\n")).toEqual([
      `trustgate: ${join(dir, "config.yaml")}: stateDir: ${join(dir, "not-a-dir", "state")} is not writable (ENOTDIR)`,
    ]);
    expect(out.stdout).not.toContain("trustgate listening");
  });

  it("U8: serve refuses to start when blobCache.dir is not writable", async () => {
    const out = await serve(
      [
        "registries:",
        "  registry.test:",
        "    upstream: http://127.0.0.1:1",
        `blobCache: { dir: ${join(dir, "not-a-dir", "blobs")} }`,
      ].join("\n"),
    );
    expect(out.code).toBe(2);
    expect(out.stderr).toContain(": blobCache.dir: ");
    expect(out.stderr).toContain("is not writable (ENOTDIR)");
  });
});

describe("U8: trust state the disk refuses at run time", () => {
  let registry: RegistryPeer;
  let notary: { url: string; server: Server };
  let proxy: TrustgatePeer;
  const guns = new Map<string, Map<string, Buffer>>();
  let app: TestRepo;
  const v1 = makeImage("state dir v1");
  const v2 = makeImage("state dir v2");

  beforeAll(async () => {
    registry = await startRegistry();
    notary = await serveGuns(guns);
    await pushImage(registry.url, "acme/app", "v1", v1);
    await pushImage(registry.url, "acme/app", "v2", v2);
    await pushImage(registry.url, "acme/new", "v1", v1);
    app = new TestRepo(`${registry.host}/acme/app`, new Date());
    app.targets.v1 = { digest: hex(v1), size: v1.size };
    guns.set(app.gun, app.publish());
    proxy = await startTrustgateWithConfig(
      [
        "stateDir: ./state",
        "trustRefreshSeconds: 1",
        "registries:",
        `  "${registry.host}":`,
        `    upstream: ${registry.url}`,
        `    notary: { url: "${notary.url}" }`,
      ].join("\n"),
      {
        policies: {
          "acme.yaml": `match: ["${registry.host}/acme/**"]\nmode: enforce\ntrust:\n  roles: [targets]\n`,
        },
      },
    );
  }, 60_000);
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await new Promise((r) => notary?.server.close(r));
  });

  const get = (repo: string, tag: string) =>
    fetch(`${proxy.url}/v2/${registry.host}/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT } });

  it("U8: 503 UNAVAILABLE (not 500) while the state cannot be saved or read, one log line without a stack, then recovery", async () => {
    expect((await get("acme/app", "v1")).status).toBe(200);
    const stateNotary = join(proxy.dir, "state", "notary");
    await rm(stateNotary, { recursive: true });
    await writeFile(stateNotary, "no longer a directory\n");

    // The trusted repository's metadata changes: the new verified state cannot be persisted.
    app.targets.v2 = { digest: hex(v2), size: v2.size };
    guns.set(app.gun, app.publish());
    let res: Response | undefined;
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      res = await get("acme/app", "v2");
      if (res.status !== 200 && res.status !== 403) break; // 403: the old metadata, not refreshed yet
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(res?.status).toBe(503);
    expect(await res?.json()).toEqual({
      errors: [{ code: "UNAVAILABLE", message: "trust state could not be saved; try again later" }],
    });

    // A repository seen for the first time: its state cannot even be looked up.
    const fresh = new TestRepo(`${registry.host}/acme/new`, new Date());
    fresh.targets.v1 = { digest: hex(v1), size: v1.size };
    guns.set(fresh.gun, fresh.publish());
    const first = await get("acme/new", "v1");
    expect(first.status).toBe(503);
    expect(((await first.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe("UNAVAILABLE");

    const line = await proxy.waitForLog((l) => l.code === "UNAVAILABLE" && l.level === 40);
    expect(String(line.cause)).toMatch(/^trust state could not be (saved|read): (ENOTDIR|EEXIST) at /);
    const logs = await proxy.logs();
    expect(logs.some((l) => l.msg === "internal error" || JSON.stringify(l).includes('"stack"'))).toBe(false);

    // Space returns: the same pulls succeed, with no restart.
    await rm(stateNotary);
    expect((await get("acme/app", "v2")).status).toBe(200);
    expect((await get("acme/new", "v1")).status).toBe(200);
  }, 60_000);
});
