/**
 * Trust enforcement end to end, all real: docker-registry upstream, notary-server with the `notary`
 * CLI signing (addhash), and the built trustgate CLI in between; plain fetch as the client.
 * Peers start once for the file; tests run in order (the last ones stop the trust server).
 */
import { copyFile, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditLine } from "../../src/proxy/enforce.js";
import { type Image, makeImage, makeIndex, pushImage } from "../helpers/image.js";
import { type NotaryClient, type NotaryLab, startNotary } from "../helpers/notary.js";
import { runCommand } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import {
  type CountingRelay,
  type LyingRegistry,
  startCountingRelay,
  startLyingRegistry,
} from "../helpers/relay.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

const CLI = join(import.meta.dirname, "../../dist/cli.js");
const REFRESH_S = 1;
const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (img: Image) => img.digest.replace(/^sha256:/, "");

/** A log line as read back: the access line's own fields, and the audit fields when it has them. */
type AuditRecord = Partial<AuditLine> & { msg: string; level?: number; audit?: boolean; status?: number };

async function logLines(peer: TrustgatePeer): Promise<AuditRecord[]> {
  const text = await readFile(peer.logFile, "utf8");
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as AuditRecord);
}

const POLL = { timeout: 5000, interval: 100 };

// A manifest request's decision is on its access line ("request", audit: true): README "Logs".
async function decisions(peer: TrustgatePeer): Promise<AuditRecord[]> {
  return (await logLines(peer)).filter((l) => l.audit === true && typeof l.decision === "string");
}

describe("trust enforcement with notary-server, docker-registry and the notary CLI", () => {
  let registry: RegistryPeer;
  let notary: NotaryLab;
  let signer: NotaryClient;
  let proxy: TrustgatePeer;
  let liar: LyingRegistry;
  let R: string; // the registry's name: 127.0.0.1:PORT (GUN prefix)
  let notaryCa: string; // a copy: the notary lab removes its own dir when stopped
  let notaryStopped = false;
  const signed = makeImage("signed v1");
  const unsigned = makeImage("never signed");
  const overwrite = makeImage("pushed over the signed tag");
  const movingA = makeImage("moving a");
  const movingB = makeImage("moving b");
  const released = makeImage("released");
  const targetsOnly = makeImage("targets only");
  const multi = makeIndex("multi", ["amd64", "arm64"]);
  const stranger = makeImage("a stranger in the repository");

  const policies = (r: string): Record<string, string> => ({
    "acme.yaml": `match: ["${r}/acme/**", "liar.test/**"]\nmode: enforce\ntrust:\n  roles: [targets/releases, targets]\ndigestPulls: signed\n`,
    "releases.yaml": `match: ["${r}/acme/rel"]\nmode: enforce\ntrust:\n  roles: [targets/releases]\n`,
    "anydigest.yaml": `match: ["${r}/acme/anydigest"]\nmode: enforce\ndigestPulls: any\n`,
    "audit.yaml": `match: ["${r}/audit/**"]\nmode: audit\n`,
    "off.yaml": `match: ["${r}/off/**"]\nmode: off\n`,
    "pinned.yaml": `match: ["${r}/pinned/**"]\nmode: enforce\ntrust:\n  rootKeys: ["${"ab".repeat(32)}"]\n`,
  });

  const configFor = (r: string, extra: string[] = []) =>
    [
      "logLevel: info",
      `trustRefreshSeconds: ${REFRESH_S}`,
      ...extra,
      "registries:",
      `  "${r}":`,
      `    upstream: ${registry.url}`,
      `    notary: { url: "${notary.url}", caFile: "${notaryCa}" }`,
      "  liar.test:",
      `    upstream: ${liar.url}`,
      `    notary: { url: "${notary.url}", caFile: "${notaryCa}" }`,
    ].join("\n");

  async function sign(gun: string, tag: string, img: Image, role?: string): Promise<void> {
    await signer.addhash(gun, tag, img.size, hex(img), role);
    await signer.publish(gun);
  }

  const get = (path: string, method = "GET") =>
    fetch(`${proxy.url}/v2/${path}`, { method, headers: { accept: ACCEPT } });

  beforeAll(async () => {
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    R = registry.host;
    notaryCa = join(await mkdtemp(join(tmpdir(), "tg-enforce-")), "notary-ca.crt");
    await copyFile(notary.ca, notaryCa);
    liar = await startLyingRegistry(registry.url);
    signer = notary.client();
    await pushImage(registry.url, "acme/app", "v1", signed);
    await pushImage(registry.url, "acme/app", "unsigned", unsigned);
    await pushImage(registry.url, "acme/app", "moving", movingA);
    await pushImage(registry.url, "acme/app", "moving-b", movingB);
    await pushImage(registry.url, "acme/rel", "v1", released);
    await pushImage(registry.url, "acme/rel", "tonly", targetsOnly);
    await pushImage(registry.url, "acme/multi", "v1", multi);
    await pushImage(registry.url, "acme/multi", "stranger", stranger);
    await pushImage(registry.url, "acme/anydigest", "stranger", stranger);
    await pushImage(registry.url, "audit/app", "unsigned", unsigned);
    await pushImage(registry.url, "off/app", "unsigned", unsigned);
    await pushImage(registry.url, "pinned/app", "v1", signed);

    const app = `${R}/acme/app`;
    await signer.init(app);
    await signer.addhash(app, "v1", signed.size, hex(signed));
    await signer.addhash(app, "moving", movingA.size, hex(movingA));
    await signer.publish(app);
    const rel = `${R}/acme/rel`;
    await signer.init(rel);
    await signer.addDelegation(rel, "targets/releases");
    await signer.addhash(rel, "v1", released.size, hex(released), "targets/releases");
    await signer.addhash(rel, "tonly", targetsOnly.size, hex(targetsOnly));
    await signer.publish(rel);
    await signer.init(`${R}/acme/multi`);
    await sign(`${R}/acme/multi`, "v1", multi);
    await signer.init(`${R}/pinned/app`);
    await sign(`${R}/pinned/app`, "v1", signed);
    await signer.init("liar.test/acme/app");
    await sign("liar.test/acme/app", "v1", signed);

    proxy = await startTrustgateWithConfig(configFor(R), { policies: policies(R) });
  }, 180_000);

  afterAll(async () => {
    await proxy?.stop();
    await liar?.close();
    await registry?.stop();
    if (!notaryStopped) await notary?.stop();
  });

  it("serves a signed tag as exactly the signed bytes, by the signed digest; GET and HEAD agree", async () => {
    const res = await get(`${R}/acme/app/manifests/v1`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(signed.manifest)).toBe(true);
    expect(res.headers.get("docker-content-digest")).toBe(signed.digest);
    expect(res.headers.get("content-length")).toBe(String(signed.size));
    const head = await get(`${R}/acme/app/manifests/v1`, "HEAD");
    expect(head.status).toBe(200);
    for (const h of ["docker-content-digest", "content-length", "content-type"])
      expect(head.headers.get(h), h).toBe(res.headers.get(h));
    // the digest from HEAD is what dockerd/containerd GET next
    const byDigest = await get(`${R}/acme/app/manifests/${head.headers.get("docker-content-digest")}`);
    expect(byDigest.status).toBe(200);
    expect(Buffer.from(await byDigest.arrayBuffer()).equals(signed.manifest)).toBe(true);
  });

  it("refuses an unsigned tag with 403 DENIED, the reason in the body, the status line and the log", async () => {
    const res = await get(`${R}/acme/app/manifests/unsigned`);
    expect(res.status).toBe(403);
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]?.code).toBe("DENIED");
    expect(body.errors[0]?.message).toBe(
      `${R}/acme/app:unsigned is not signed in targets/releases or targets`,
    );
    expect(res.statusText).toContain("not signed");
    const head = await get(`${R}/acme/app/manifests/unsigned`, "HEAD");
    expect(head.status).toBe(403);
    expect(head.statusText).toContain(`${R}/acme/app:unsigned`);
    // the log line is written by the proxy's own stream: poll until it is on disk
    const lines = () => decisions(proxy);
    await expect.poll(lines, POLL).toContainEqual(
      expect.objectContaining({
        // the access-log line of the same request, at warn level (pino 40) as every refusal
        msg: "request",
        reqId: res.headers.get("x-request-id"),
        level: 40,
        status: 403,
        decision: "deny",
        image: `${R}/acme/app`,
        tag: "unsigned",
        policy: "acme",
        mode: "enforce",
        reason: `${R}/acme/app:unsigned is not signed in targets/releases or targets`,
      }),
    );
    await expect.poll(lines, POLL).toContainEqual(
      expect.objectContaining({
        level: 30,
        status: 200,
        decision: "allow",
        tag: "v1",
        digest: signed.digest,
        role: "targets",
        policy: "acme",
        source: expect.stringContaining("notary"),
      }),
    );
  });

  it("pulls a tag signed only in targets/releases; refuses one signed only in targets when releases are required", async () => {
    const ok = await get(`${R}/acme/rel/manifests/v1`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("docker-content-digest")).toBe(released.digest);
    const refused = await get(`${R}/acme/rel/manifests/tonly`);
    expect(refused.status).toBe(403);
    const body = (await refused.json()) as { errors: { message: string }[] };
    expect(body.errors[0]?.message).toBe(`${R}/acme/rel:tonly is not signed in targets/releases`);
  });

  it("a signed multi-arch index: its platform manifests pull by digest, an unrelated digest does not", async () => {
    const index = await get(`${R}/acme/multi/manifests/v1`);
    expect(index.status).toBe(200);
    expect(index.headers.get("docker-content-digest")).toBe(multi.digest);
    for (const platform of multi.platforms ?? []) {
      const res = await get(`${R}/acme/multi/manifests/${platform.digest}`);
      expect(res.status, platform.digest).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(platform.manifest)).toBe(true);
    }
    const refused = await get(`${R}/acme/multi/manifests/${stranger.digest}`);
    expect(refused.status).toBe(403);
    const body = (await refused.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]?.code).toBe("DENIED");
    expect(body.errors[0]?.message).toContain("is not a signed manifest");
    // digestPulls: any lets the same digest through (the bytes are still checked against it)
    const any = await get(`${R}/acme/anydigest/manifests/${stranger.digest}`);
    expect(any.status).toBe(200);
    expect(Buffer.from(await any.arrayBuffer()).equals(stranger.manifest)).toBe(true);
  });

  it("a tag overwritten in the registry with unsigned content still yields the signed bytes", async () => {
    await pushImage(registry.url, "acme/app", "v1", overwrite);
    const direct = await fetch(`${registry.url}/v2/acme/app/manifests/v1`, { headers: { accept: ACCEPT } });
    expect(direct.headers.get("docker-content-digest")).toBe(overwrite.digest);
    const res = await get(`${R}/acme/app/manifests/v1`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(signed.manifest)).toBe(true);
  });

  it("a lying upstream (other bytes for the signed digest) is refused with DENIED, by tag and by digest", async () => {
    const byTag = await get("liar.test/acme/app/manifests/v1");
    expect(byTag.status).toBe(403);
    const body = (await byTag.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]?.code).toBe("DENIED");
    expect(body.errors[0]?.message).toContain(`does not match the signed digest ${signed.digest}`);
    const byDigest = await get(`liar.test/acme/app/manifests/${signed.digest}`);
    expect(byDigest.status).toBe(403);
    expect(((await byDigest.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe("DENIED");
  });

  it("a re-signed tag is served within one refresh window; a removed target is refused after one", async () => {
    const gun = `${R}/acme/app`;
    expect((await get(`${R}/acme/app/manifests/moving`)).headers.get("docker-content-digest")).toBe(
      movingA.digest,
    );
    await sign(gun, "moving", movingB);
    await sleep(REFRESH_S * 1000 + 300);
    const resigned = await get(`${R}/acme/app/manifests/moving`);
    expect(resigned.status).toBe(200);
    expect(resigned.headers.get("docker-content-digest")).toBe(movingB.digest);
    await signer.remove(gun, "moving");
    await signer.publish(gun);
    await sleep(REFRESH_S * 1000 + 300);
    expect((await get(`${R}/acme/app/manifests/moving`)).status).toBe(403);
  });

  it("policy modes: audit lets an unsigned tag through and logs wouldDeny; off passes it untouched", async () => {
    const audited = await get(`${R}/audit/app/manifests/unsigned`);
    expect(audited.status).toBe(200);
    expect(Buffer.from(await audited.arrayBuffer()).equals(unsigned.manifest)).toBe(true);
    const off = await get(`${R}/off/app/manifests/unsigned`);
    expect(off.status).toBe(200);
    // the log line is written by the proxy's own stream: poll until it is on disk
    const lines = () => decisions(proxy);
    await expect.poll(lines, POLL).toContainEqual(
      expect.objectContaining({
        level: 40,
        decision: "allow",
        wouldDeny: true,
        image: `${R}/audit/app`,
        tag: "unsigned",
        policy: "audit",
        mode: "audit",
      }),
    );
    await expect
      .poll(lines, POLL)
      .toContainEqual(
        expect.objectContaining({ decision: "allow", image: `${R}/off/app`, mode: "off", policy: "off" }),
      );
  });

  it("a pinned root key that does not match the server's root is refused, naming both key IDs", async () => {
    const ca = await readFile(notary.ca, "utf8");
    const rootRes = await undiciFetch(`${notary.url}/v2/${R}/pinned/app/_trust/tuf/root.json`, {
      dispatcher: new Agent({ connect: { ca } }),
    });
    const root = (await rootRes.json()) as { signed: { roles: { root: { keyids: string[] } } } };
    const serverRootKey = root.signed.roles.root.keyids[0] as string;
    const res = await get(`${R}/pinned/app/manifests/v1`);
    expect(res.status).toBe(403);
    const message = ((await res.json()) as { errors: { message: string }[] }).errors[0]?.message ?? "";
    expect(message).toContain("ab".repeat(32));
    expect(message).toContain(serverRootKey);
    expect(res.statusText).toContain("ROOT_PIN_MISMATCH");
  });

  it("tags/list of an enforced repository lists only its signed tags", async () => {
    const res = await get(`${R}/acme/rel/tags/list`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: "acme/rel", tags: ["v1"] });
  });

  it("resolve answers what the proxy would decide, without pulling", async () => {
    const config = join(proxy.dir, "config.yaml");
    const allow = await runCommand(process.execPath, [
      CLI,
      "resolve",
      `${R}/acme/app:v1`,
      "--config",
      config,
      "--json",
    ]);
    expect(allow.code, allow.stderr).toBe(0);
    expect(JSON.parse(allow.stdout)).toEqual({
      image: `${R}/acme/app:v1`,
      decision: "allow",
      digest: signed.digest,
      role: "targets",
      policy: "acme",
      source: expect.stringMatching(/^notary https:/),
      reason: expect.stringContaining("is signed in targets"),
    });
    const deny = await runCommand(process.execPath, [
      CLI,
      "resolve",
      `${R}/acme/app:unsigned`,
      "--config",
      config,
      "--json",
    ]);
    expect(deny.code).toBe(1);
    expect(JSON.parse(deny.stdout)).toMatchObject({
      decision: "deny",
      digest: null,
      policy: "acme",
      reason: `${R}/acme/app:unsigned is not signed in targets/releases or targets`,
    });
    const usage = await runCommand(process.execPath, [CLI, "resolve", "--config", config]);
    expect(usage.code).toBe(2);
  });

  it("the warm path does no network I/O: repeated pulls by tag within the refresh window reach neither peer", async () => {
    const registryRelay: CountingRelay = await startCountingRelay(Number(new URL(registry.url).port));
    const notaryRelay: CountingRelay = await startCountingRelay(Number(new URL(notary.url).port));
    const warm = await startTrustgateWithConfig(
      [
        "logLevel: warn",
        "trustRefreshSeconds: 3600",
        "registries:",
        `  "${R}":`,
        `    upstream: http://${registryRelay.host}`,
        `    notary: { url: "https://${notaryRelay.host}", caFile: "${notaryCa}" }`,
      ].join("\n"),
      { policies: { "acme.yaml": policies(R)["acme.yaml"] as string } },
    );
    try {
      const pull = async () => {
        for (const method of ["HEAD", "GET"]) {
          const res = await fetch(`${warm.url}/v2/${R}/acme/rel/manifests/v1`, {
            method,
            headers: { accept: ACCEPT },
          });
          expect(res.status).toBe(200);
          await res.arrayBuffer();
        }
      };
      await pull(); // warm-up: trust metadata and the manifest are fetched once
      expect(notaryRelay.bytesIn).toBeGreaterThan(0);
      expect(registryRelay.bytesIn).toBeGreaterThan(0);
      const before = { registry: registryRelay.bytesIn, notary: notaryRelay.bytesIn };
      for (let i = 0; i < 20; i++) await pull();
      expect({ registry: registryRelay.bytesIn, notary: notaryRelay.bytesIn }).toEqual(before);
    } finally {
      await warm.stop();
      await registryRelay.close();
      await notaryRelay.close();
    }
  });

  it("a warm answer is the routed answer again (headers, bytes, log line); a policy reload ends it", async () => {
    const warm = await startTrustgateWithConfig(
      [
        "logLevel: info",
        "trustRefreshSeconds: 3600",
        "registries:",
        `  "${R}":`,
        `    upstream: ${registry.url}`,
        `    notary: { url: "${notary.url}", caFile: "${notaryCa}" }`,
      ].join("\n"),
      { policies: { "acme.yaml": policies(R)["acme.yaml"] as string } },
    );
    try {
      const url = `${warm.url}/v2/${R}/acme/rel/manifests/v1`;
      const pull = async (method: string) => {
        const res = await fetch(url, { method, headers: { accept: ACCEPT } });
        const headers = Object.fromEntries(res.headers);
        return { status: res.status, headers, body: Buffer.from(await res.arrayBuffer()) };
      };
      const routed = await pull("GET"); // decided, and remembered
      const [head, again] = [await pull("HEAD"), await pull("GET")]; // answered warm
      const requestLines = async () =>
        (await warm.logs()).filter((l) => l.msg === "request" && String(l.path).includes("/manifests/"));
      await expect.poll(async () => (await requestLines()).length, POLL).toBe(3);
      const lines = (await requestLines()) as Record<string, unknown>[];
      expect(lines.map((l) => l.warm === true)).toEqual([false, true, true]);
      // per answer, or chosen by the client (undici's fetch asks HEAD with "connection: close")
      const perAnswer = [
        "reqId",
        "time",
        "durationMs",
        "warm",
        "date",
        "connection",
        "keep-alive",
        "x-request-id",
      ];
      const without = (o: Record<string, unknown>, more: string[] = []) =>
        Object.fromEntries(Object.entries(o).filter(([k]) => !perAnswer.includes(k) && !more.includes(k)));
      expect(routed.status).toBe(200);
      expect(routed.body.equals(released.manifest)).toBe(true);
      for (const [res, line] of [
        [again, lines[2]],
        [head, lines[1]],
      ] as const) {
        expect(res.status).toBe(200);
        expect(without(res.headers)).toEqual(without(routed.headers));
        expect(res.headers["x-request-id"]).not.toBe(routed.headers["x-request-id"]);
        expect(line?.reqId).toBe(res.headers["x-request-id"]);
        // the same access line as the decided request's, but for this request's id and timing
        expect(without(line ?? {}, ["method", "bytes"])).toEqual(
          without(lines[0] ?? {}, ["method", "bytes"]),
        );
      }
      expect(again.body.equals(routed.body)).toBe(true);
      expect(head.body.length).toBe(0);
      expect(lines[0]).toMatchObject({
        method: "GET",
        bytes: released.size,
        decision: "allow",
        digest: released.digest,
      });
      expect(lines[1]).toMatchObject({ method: "HEAD", bytes: 0 });
      expect(lines[2]).toMatchObject({ method: "GET", bytes: released.size });

      // The tag is signed in targets/releases; a policy that demands a role that does not sign it
      // refuses it at once, warm answer or not.
      await writeFile(
        join(warm.dir, "policies", "acme.yaml"),
        `match: ["${R}/acme/**"]\nmode: enforce\ntrust:\n  roles: [targets]\n`,
      );
      process.kill(warm.pid, "SIGHUP");
      await expect
        .poll(async () => (await warm.logs()).map((l) => l.msg), POLL)
        .toContain("policies reloaded");
      const refused = await pull("GET");
      expect(refused.status).toBe(403);
      expect(JSON.parse(refused.body.toString()).errors[0].message).toBe(
        `${R}/acme/rel:v1 is not signed in targets`,
      );
    } finally {
      await warm.stop();
    }
  });

  it("reloads policies under concurrent pulls: each pull sees the old rules or the new, never an error", async () => {
    const path = `${R}/audit/app/manifests/unsigned`;
    expect((await get(path)).status).toBe(200);
    await writeFile(join(proxy.dir, "policies", "audit.yaml"), `match: ["${R}/audit/**"]\nmode: enforce\n`);
    const statuses: number[] = [];
    const puller = async () => {
      for (let i = 0; i < 15; i++) {
        const res = await get(path);
        await res.arrayBuffer();
        statuses.push(res.status);
      }
    };
    const pulls = Promise.all([puller(), puller(), puller(), puller()]);
    process.kill(proxy.pid, "SIGHUP");
    await pulls;
    expect(
      statuses.every((s) => s === 200 || s === 403),
      String(statuses),
    ).toBe(true);
    // after the reload (SIGHUP or the directory watch) the new rules hold for every new request
    const deadline = Date.now() + 5000;
    while ((await get(path)).status !== 403 && Date.now() < deadline) await sleep(100);
    expect((await get(path)).status).toBe(403);
    // an invalid file is rejected with the error logged; the set in force stays
    await writeFile(join(proxy.dir, "policies", "audit.yaml"), "match: [not a pattern\nmode: enforce\n");
    process.kill(proxy.pid, "SIGHUP");
    const messages = async () => (await logLines(proxy)).map((l) => l.msg);
    await expect
      .poll(messages, POLL)
      .toContain("policy reload rejected: the previous policies stay in force");
    expect(await messages()).toContain("policies reloaded");
    expect((await get(path)).status).toBe(403);
    expect((await get(`${R}/acme/app/manifests/v1`)).status).toBe(200);
  });

  it("with the trust server stopped, recently verified tags are still served; past expiry they are refused", async () => {
    expect((await get(`${R}/acme/app/manifests/v1`)).status).toBe(200); // verified while up
    notaryStopped = true;
    await notary.stop();
    await sleep(REFRESH_S * 1000 + 300);
    const offline = await get(`${R}/acme/app/manifests/v1`);
    expect(offline.status).toBe(200);
    expect(offline.headers.get("docker-content-digest")).toBe(signed.digest);
    // A second trustgate on the same state dir, its clock 30 days on (Notary's timestamp lives 14
    // days): the persisted metadata has expired and the server is down, so refusal.
    const later = await startTrustgateWithConfig(
      configFor(R, [`stateDir: ${join(proxy.dir, "var", "trustgate")}`]),
      {
        policies: policies(R),
        clockOffset: "+30d",
      },
    );
    try {
      const res = await fetch(`${later.url}/v2/${R}/acme/app/manifests/v1`, { headers: { accept: ACCEPT } });
      expect(res.status).toBe(403);
      const message = ((await res.json()) as { errors: { message: string }[] }).errors[0]?.message ?? "";
      expect(message).toMatch(/expired/);
    } finally {
      await later.stop();
    }
  });
});
