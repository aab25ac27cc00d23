/**
 * A TUF 1.0-backed registry enforced the same way as a Notary one: a TUF repository built and
 * served by the test (test/helpers/tuf-repo.ts), a real docker-registry upstream, and trustgate
 * both as the built CLI and in process (createApp with an injected clock, for expiry).
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildRuntime, type Runtime } from "../../src/app.js";
import { parseConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/log.js";
import { PolicyStore } from "../../src/policy/index.js";
import { createApp } from "../../src/server.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { runCommand } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";
import { TestKey, TestTufRepository } from "../helpers/tuf-repo.js";

const CLI = join(import.meta.dirname, "../../dist/cli.js");
const DAY_MS = 24 * 3600 * 1000;
const ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

describe("trust enforcement with a TUF 1.0 repository", () => {
  let registry: RegistryPeer;
  let tuf: TestTufRepository;
  let proxy: TrustgatePeer;
  let dir: string;
  const signed = makeImage("tuf signed");
  const unsigned = makeImage("tuf unsigned");
  const globex = makeImage("globex app");
  const narrow = makeImage("tuf signed by the narrow delegation acme-v3");
  const acmeKey = TestKey.generate();

  const policyFiles = {
    "tuf.yaml": 'match: ["tuf.test/**"]\nmode: enforce\ntrust:\n  source: tuf\ndigestPulls: signed\n',
  };
  const configText = (extra: string[] = []) =>
    [
      "logLevel: info",
      "trustRefreshSeconds: 1",
      ...extra,
      "registries:",
      "  tuf.test:",
      `    upstream: ${registry.url}`,
      `    tuf: { metadataUrl: "${tuf.metadataUrl}", trustedRoot: "${join(dir, "root.json")}" }`,
    ].join("\n");

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tg-enforce-tuf-"));
    [registry, tuf] = await Promise.all([startRegistry(), TestTufRepository.start()]);
    await writeFile(join(dir, "root.json"), tuf.initialRoot);
    await pushImage(registry.url, "acme/app", "v1", signed);
    await pushImage(registry.url, "acme/app", "unsigned", unsigned);
    await pushImage(registry.url, "globex/app", "v1", globex);
    await pushImage(registry.url, "acme/app", "v3.1", narrow);
    // acme's delegation may sign only acme's images; it tries to sign globex's too
    tuf.delegate("targets", "acme", ["tuf.test/acme/*"], [acmeKey]);
    tuf.addTarget("acme", "tuf.test/acme/app:v1", signed.manifest);
    tuf.addTarget("acme", "tuf.test/globex/app:v1", globex.manifest);
    // a delegation narrower than the repository: only acme/app's v3 tags
    tuf.delegate("targets", "acme-v3", ["tuf.test/acme/app:v3*"], [TestKey.generate()]);
    tuf.addTarget("acme-v3", "tuf.test/acme/app:v3.1", narrow.manifest);
    tuf.publish();
    proxy = await startTrustgateWithConfig(configText(), { policies: policyFiles });
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await tuf?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, method = "GET") =>
    fetch(`${proxy.url}/v2/${path}`, { method, headers: { accept: ACCEPT } });

  it("serves a TUF-signed tag as the signed bytes by the signed digest (GET and HEAD agree)", async () => {
    const res = await get("tuf.test/acme/app/manifests/v1");
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(signed.manifest)).toBe(true);
    expect(res.headers.get("docker-content-digest")).toBe(signed.digest);
    const head = await get("tuf.test/acme/app/manifests/v1", "HEAD");
    expect(head.headers.get("docker-content-digest")).toBe(signed.digest);
    expect(head.headers.get("content-length")).toBe(String(signed.size));
  });

  it("T6: a tag under a narrow delegation (tuf.test/acme/app:v3*): HEAD by tag, then GET by the digest it answered, as containerd and dockerd pull", async () => {
    const head = await get("tuf.test/acme/app/manifests/v3.1", "HEAD");
    expect(head.status).toBe(200);
    const digest = head.headers.get("docker-content-digest");
    expect(digest).toBe(narrow.digest);
    const res = await get(`tuf.test/acme/app/manifests/${digest}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(narrow.manifest)).toBe(true);
    // acme-v3's key signs nothing outside its paths: the same manifest is no other image's
    expect((await get(`tuf.test/globex/app/manifests/${digest}`)).status).toBe(403);
  });

  it("refuses an unsigned tag, and a tag signed by a delegation outside its paths", async () => {
    const res = await get("tuf.test/acme/app/manifests/unsigned");
    expect(res.status).toBe(403);
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]?.code).toBe("DENIED");
    expect(body.errors[0]?.message).toContain("tuf.test/acme/app:unsigned is not signed");
    expect((await get("tuf.test/globex/app/manifests/v1")).status).toBe(403);
  });

  it("follows a re-signed tag after one refresh window", async () => {
    const next = makeImage("tuf signed, second release");
    await pushImage(registry.url, "acme/app", "v2-build", next);
    tuf.addTarget("acme", "tuf.test/acme/app:v1", next.manifest);
    tuf.publish();
    await new Promise((r) => setTimeout(r, 1300));
    const res = await get("tuf.test/acme/app/manifests/v1");
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-content-digest")).toBe(next.digest);
  });

  it("refuses to start when a policy demands notary for a registry configured with tuf", async () => {
    const d = await mkdtemp(join(tmpdir(), "tg-enforce-tuf-mismatch-"));
    try {
      await writeFile(join(d, "config.yaml"), configText());
      const policies = join(d, "policies");
      await mkdir(policies);
      await writeFile(
        join(policies, "hub.yaml"),
        'match: ["tuf.test/**"]\nmode: enforce\ntrust:\n  source: notary\n',
      );
      const out = await runCommand(process.execPath, [
        CLI,
        "serve",
        "--config",
        join(d, "config.yaml"),
        "--listen",
        "127.0.0.1:0",
      ]);
      expect(out.code).toBe(2);
      expect(out.stderr).toContain("hub.yaml:1: policy hub demands trust.source notary");
      expect(out.stderr).toContain("configured with tuf");
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it("in process with an injected clock: serves while the repository is down, refuses past expiry", async () => {
    let clock = Date.now();
    const config = await parseConfig(
      configText([`stateDir: ${join(dir, "in-process-state")}`]),
      join(dir, "c.yaml"),
      {},
    );
    const policiesDir = join(dir, "in-process-policies");
    await mkdir(policiesDir);
    await writeFile(join(policiesDir, "tuf.yaml"), policyFiles["tuf.yaml"]);
    const runtime: Runtime = await buildRuntime(config, createLogger("silent"), {
      policies: await PolicyStore.open(policiesDir),
      now: () => new Date(clock),
    });
    try {
      const app = createApp(runtime.deps);
      const pull = () => app.request("/v2/tuf.test/acme/app/manifests/v1", { headers: { accept: ACCEPT } });
      expect((await pull()).status).toBe(200);
      tuf.down = true;
      clock += 5_000; // past the refresh window: the refresh fails, verified metadata still counts
      expect((await pull()).status).toBe(200);
      clock += 60 * DAY_MS; // past the timestamp's (1 day) and targets' (30 days) expiry
      const refused = await pull();
      expect(refused.status).toBe(403);
      const body = (await refused.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]?.code).toBe("DENIED");
      expect(body.errors[0]?.message).toMatch(/expired/);
    } finally {
      tuf.down = false;
      await runtime.close();
    }
  });
});
