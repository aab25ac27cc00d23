/**
 * Issue 13, scale-out without owning the bytes: containerd configured by `trustgate
 * containerd-hosts --pull-cache` (the generated files, not hand-written ones) resolves every tag
 * through trustgate while the blobs come from a real docker-registry pull-through cache. Counted
 * there: the layers land in the cache's storage and trustgate's access log shows no blob request.
 * An unsigned tag is still refused: the cache never resolves tags (capabilities = ["pull"]).
 */
import { access, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContainerdPeer,
  ctrImageComplete,
  ctrImageDigest,
  ctrPull,
  startContainerd,
} from "../helpers/containerd.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";
import { runCommand, tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { auditFor, logMark, signTag, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";

const POLICY = `name: acme
match: ["docker.io/acme/**"]
mode: enforce
trust:
  roles: [targets]
digestPulls: signed
`;

describe("issue 13: --pull-cache, blobs from a registry cache, tags only through trustgate", () => {
  let registry: RegistryPeer;
  let cache: RegistryPeer;
  let notary: NotaryLab;
  let trustgate: TrustgatePeer;
  let containerd: ContainerdPeer;
  let scratch: string;
  let hostsDir: string;
  const app = makeImage("pull-cache: signed v1", { extraBytes: 4096 });
  const unsigned = makeImage("pull-cache: never signed");

  beforeAll(async () => {
    scratch = await tempDir("pull-cache");
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    cache = await startRegistry({ proxyRemoteUrl: registry.url });
    await pushImage(registry.url, "acme/app", "v1", app);
    await pushImage(registry.url, "acme/app", "unsigned", unsigned);
    const signer = notary.client();
    await signer.init("docker.io/acme/app");
    await signTag(signer, "docker.io/acme/app", "v1", app);

    const policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "acme.yaml", POLICY);
    trustgate = await startTrustgate({
      registries: { "docker.io": { upstream: registry.url, notary: { url: notary.url, caFile: notary.ca } } },
      extraConfig: { policies },
    });
    hostsDir = join(scratch, "certs.d");
    const gen = await runCommand(
      process.execPath,
      [
        "dist/cli.js",
        "containerd-hosts",
        "--config",
        trustgate.configFile,
        "--out",
        hostsDir,
        "--server",
        trustgate.url,
        "--pull-cache",
        cache.url,
      ],
      { timeoutMs: 20_000 },
    );
    expect(gen.stderr).toBe("");
    expect(gen.code).toBe(0);
    containerd = await startContainerd();
  });

  afterAll(async () => {
    await containerd?.stop();
    await trustgate?.stop();
    await Promise.all([cache?.stop(), registry?.stop(), notary?.stop()]);
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, trustgate?.dir, registry?.dir, cache?.dir])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("a signed tag pulls as the signed digest; its blobs came from the cache, none through trustgate", async () => {
    const mark = await logMark(trustgate);
    const ref = "docker.io/acme/app:v1";
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(app.digest);
    expect(await ctrImageComplete(containerd, ref)).toBe(true);
    // trustgate resolved the tag ...
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "v1" }, mark);
    expect(audit).toMatchObject({ decision: "allow", digest: app.digest, policy: "acme" });
    // ... and served no blob
    const lines = (await trustgate.logs()).slice(mark);
    expect(lines.filter((l) => typeof l.path === "string" && l.path.includes("/blobs/"))).toEqual([]);
    // the cache fetched and stored every blob (distribution's filesystem layout)
    for (const blob of app.blobs) {
      const hex = blob.digest.replace(/^sha256:/, "");
      const data = join(
        cache.dir,
        "data",
        "docker",
        "registry",
        "v2",
        "blobs",
        "sha256",
        hex.slice(0, 2),
        hex,
        "data",
      );
      await expect(access(data)).resolves.toBeUndefined();
    }
  });

  it("an unsigned tag is still refused: the cache may not resolve it", async () => {
    const mark = await logMark(trustgate);
    const ref = "docker.io/acme/app:unsigned";
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain("403 Forbidden");
    expect(await ctrImageDigest(containerd, ref)).toBeUndefined();
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "unsigned" }, mark);
    expect(audit).toMatchObject({ decision: "deny", policy: "acme" });
  });
});
