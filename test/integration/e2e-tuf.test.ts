/**
 * Issue 7 end to end: a registry whose trust source is a TUF 1.0 repository (`tuf:` block), the
 * repository built and served over HTTP by test/helpers/tuf-repo.ts, a real docker-registry
 * upstream, trustgate in between, and the real clients skopeo and ctr (hosts.toml server =
 * trustgate, no fallback). Target path = `{registry}/{repository}:{tag}` (the default template);
 * the target's sha256 and length are the manifest's digest and size.
 *
 * The repository delegates `docker.io/acme/*` to an `acme` role with its own key, as one TUF
 * repository serving many organisations would: acme's key signing a globex image does not count.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContainerdPeer,
  ctrContentGet,
  ctrImageDigest,
  ctrPull,
  startContainerd,
  writeHostsDir,
} from "../helpers/containerd.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";
import { auditFor, logMark, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";
import { TestKey, TestTufRepository } from "../helpers/tuf-repo.js";

// acme names its delegation: a signature counts in the `acme` role or the top-level targets role.
const ACME_POLICY = `name: acme
match: ["docker.io/acme/**", "docker.io/globex/**"]
mode: enforce
trust:
  source: tuf
  roles: [acme, targets]
digestPulls: signed
`;

// initech leaves roles at their default (Docker's [targets/releases, targets]); the TUF source
// reads that as "whatever role the repository's delegations let sign this path" (src/trust/tuf/source.ts).
const INITECH_POLICY = `name: initech
match: ["docker.io/initech/**"]
mode: enforce
trust:
  source: tuf
`;

describe("issue 7: pulls through trustgate with a TUF-backed registry (skopeo, ctr)", () => {
  let registry: RegistryPeer;
  let tuf: TestTufRepository;
  let trustgate: TrustgatePeer;
  let containerd: ContainerdPeer;
  let scratch: string;
  let hostsDir: string;
  let layouts = 0;
  const layout = () => join(scratch, `oci-${++layouts}`);

  const signed = makeImage("e2e tuf: signed by the top-level targets role");
  const delegated = makeImage("e2e tuf: signed by the acme delegation");
  const unsigned = makeImage("e2e tuf: never signed");
  const outOfPaths = makeImage("e2e tuf: globex image signed with acme's key");
  const initech = makeImage("e2e tuf: signed by the initech delegation, policy with default roles");

  beforeAll(async () => {
    scratch = await tempDir("e2e-tuf");
    [registry, tuf] = await Promise.all([startRegistry(), TestTufRepository.start()]);
    await pushImage(registry.url, "acme/app", "v1", signed);
    await pushImage(registry.url, "acme/app", "rel", delegated);
    await pushImage(registry.url, "acme/app", "unsigned", unsigned);
    await pushImage(registry.url, "globex/app", "v1", outOfPaths);
    await pushImage(registry.url, "initech/app", "v1", initech);

    tuf.delegate("targets", "acme", ["docker.io/acme/*"], [TestKey.generate()]);
    tuf.addTarget("targets", "docker.io/acme/app:v1", signed.manifest);
    tuf.addTarget("acme", "docker.io/acme/app:rel", delegated.manifest);
    tuf.addTarget("acme", "docker.io/globex/app:v1", outOfPaths.manifest);
    tuf.delegate("targets", "initech", ["docker.io/initech/*"], [TestKey.generate()]);
    tuf.addTarget("initech", "docker.io/initech/app:v1", initech.manifest);
    tuf.publish();
    const trustedRoot = join(scratch, "root.json");
    await writeFile(trustedRoot, tuf.initialRoot);

    const policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "acme.yaml", ACME_POLICY);
    await writePolicy(policies, "initech.yaml", INITECH_POLICY);
    trustgate = await startTrustgate({
      registries: {
        "docker.io": { upstream: registry.url, tuf: { metadataUrl: tuf.metadataUrl, trustedRoot } },
      },
      extraConfig: { policies },
    });
    hostsDir = await writeHostsDir(trustgate.url, { dir: join(scratch, "hosts") });
    containerd = await startContainerd();
  });

  afterAll(async () => {
    await containerd?.stop();
    await trustgate?.stop();
    await registry?.stop();
    await tuf?.close();
    // the launchers leave their dirs (logs for post-mortems); this file's run is over
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, trustgate?.dir, registry?.dir])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("skopeo: a TUF-signed tag pulls with exactly the signed manifest", async () => {
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/acme/app:v1`, layout());
    expect(copy.stderr).toBe("");
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(signed.digest);
    expect(copy.manifest?.equals(signed.manifest)).toBe(true);
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "v1" });
    expect(audit).toMatchObject({
      decision: "allow",
      digest: signed.digest,
      role: "targets",
      policy: "acme",
    });
    expect(audit.source).toMatch(/tuf/);
  });

  it("ctr: a tag signed by the path-delegated role pulls with the signed digest", async () => {
    const ref = "docker.io/acme/app:rel";
    const mark = await logMark(trustgate);
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(delegated.digest);
    expect((await ctrContentGet(containerd, delegated.digest))?.equals(delegated.manifest)).toBe(true);
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "rel" }, mark);
    expect(audit).toMatchObject({ decision: "allow", role: "acme", digest: delegated.digest });
  });

  it("an unsigned tag is refused: skopeo shows DENIED with the reason, ctr sees 403", async () => {
    const mark = await logMark(trustgate);
    const inspect = await skopeoInspect(`${trustgate.host}/acme/app:unsigned`);
    expect(inspect.code).not.toBe(0);
    expect(inspect.stderr).toContain("denied: docker.io/acme/app:unsigned is not signed");
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "unsigned" }, mark);
    expect(audit).toMatchObject({ decision: "deny", policy: "acme", mode: "enforce" });

    const pull = await ctrPull(containerd, "docker.io/acme/app:unsigned", { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain("403 Forbidden");
    expect(await ctrContentGet(containerd, unsigned.digest)).toBeUndefined();
  });

  it("a delegated key signing outside its paths does not count: globex's image is refused", async () => {
    const inspect = await skopeoInspect(`${trustgate.host}/globex/app:v1`);
    expect(inspect.code).not.toBe(0);
    expect(inspect.stderr).toContain("denied: docker.io/globex/app:v1 is not signed");
    const pull = await ctrPull(containerd, "docker.io/globex/app:v1", { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain("403 Forbidden");
  });

  it("default roles: a tag signed by a path-delegated TUF role pulls (skopeo)", async () => {
    const mark = await logMark(trustgate);
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/initech/app:v1`, layout());
    expect(copy.stderr).toBe("");
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(initech.digest);
    const audit = await auditFor(trustgate, "docker.io/initech/app", { tag: "v1" }, mark);
    expect(audit).toMatchObject({ decision: "allow", policy: "initech", digest: initech.digest });
  });
});
