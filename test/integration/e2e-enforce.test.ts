/**
 * Issue 4 end to end, all real: a docker-registry upstream, two notary-servers (one backed by
 * notary-signer, so every key is ECDSA as on Docker Hub; one with the built-in ed25519 trust
 * service), tags signed with the real `notary` CLI, trustgate in between, and the real clients:
 * skopeo (trustgate addressed as a registry, so a refusal is final), ctr (hosts.toml with
 * server = trustgate and its [host] table: no fallback) and dockerd (registry-mirrors).
 *
 * trustgate's registries: `docker.io` (the default registry, what dockerd's mirror requests and
 * direct skopeo pulls resolve to) trusts the ECDSA notary; `registry.test` (reached by a path
 * prefix) trusts the ed25519 one. Both have the test registry as upstream. GUN = `<that name>/<repo>`.
 *
 * Peers start once for the file; the test that stops a trust server and restarts trustgate under
 * faketime runs last.
 */
import { copyFile, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContainerdPeer,
  ctrContentGet,
  ctrImageComplete,
  ctrImageDigest,
  ctrPull,
  startContainerd,
  writeHostsDir,
} from "../helpers/containerd.js";
import {
  type DockerdPeer,
  dockerImageDigests,
  dockerPull,
  startDockerdIfAvailable,
} from "../helpers/dockerd.js";
import { type Image, makeImage, makeIndex, pushImage, sha256Digest } from "../helpers/image.js";
import { type NotaryClient, type NotaryLab, startNotary } from "../helpers/notary.js";
import { tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";
import { auditFor, digestHex, logMark, signTag, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgate, type TrustgateOptions, type TrustgatePeer } from "../helpers/trustgate.js";

/** trustRefreshSeconds for this file: small, so "one refresh window" is a short wait. */
const REFRESH_SECONDS = 2;
const oneRefreshWindow = () => new Promise((r) => setTimeout(r, REFRESH_SECONDS * 1000 + 1000));
const OTHER = "registry.test";

const ACME_POLICY = `name: acme
match: ["docker.io/acme/**", "${OTHER}/acme/**"]
mode: enforce
trust:
  roles: [targets/releases, targets]
digestPulls: signed
`;

describe("issue 4: trust-enforcing pulls through trustgate with real clients", () => {
  let registry: RegistryPeer;
  let notary: NotaryLab; // notary-server + notary-signer (ECDSA)
  let notaryLocal: NotaryLab; // notary-server, built-in trust service (ed25519)
  let signer: NotaryClient;
  let signerLocal: NotaryClient;
  let trustgate: TrustgatePeer;
  let trustgateOptions: TrustgateOptions;
  let containerd: ContainerdPeer;
  let dockerd: DockerdPeer | undefined;
  let dockerdUnavailable = "";
  let scratch: string;
  let hostsDir: string;
  let layouts = 0;
  const layout = () => join(scratch, `oci-${++layouts}`);

  const app = makeImage("e2e enforce: signed v1");
  const unsigned = makeImage("e2e enforce: never signed");
  const releasesOnly = makeImage("e2e enforce: signed by targets/releases only");
  const pinned = makeImage("e2e enforce: signed, later overwritten in the registry");
  const intruder = makeImage("e2e enforce: unsigned content pushed over a signed tag");
  const multi = makeIndex("e2e enforce: multi-arch", ["amd64", "arm64"]);
  const moving1 = makeImage("e2e enforce: first signed content of a moving tag");
  const moving2 = makeImage("e2e enforce: re-signed content of a moving tag");
  const offline = makeImage("e2e enforce: pulled while the trust server is down");

  beforeAll(async () => {
    scratch = await tempDir("e2e-enforce");
    [registry, notary, notaryLocal] = await Promise.all([
      startRegistry(),
      startNotary({ ecdsaSigner: true }),
      startNotary(),
    ]);
    // trustgate reads the CAs from here: the labs' own dirs go away when a lab stops, and the
    // restarted trustgate of the last test must still load its config.
    await copyFile(notary.ca, join(scratch, "notary-ca.crt"));
    await copyFile(notaryLocal.ca, join(scratch, "notary-local-ca.crt"));

    await pushImage(registry.url, "acme/app", "v1", app);
    await pushImage(registry.url, "acme/app", "unsigned", unsigned);
    await pushImage(registry.url, "acme/app", "rel", releasesOnly);
    await pushImage(registry.url, "acme/app", "pinned", pinned);
    await pushImage(registry.url, "acme/multi", "v1", multi);
    await pushImage(registry.url, "acme/moving", "v1", moving1);
    await pushImage(registry.url, "acme/offline", "v1", offline);

    signer = notary.client();
    signerLocal = notaryLocal.client();
    // One trust dir per CLI client: its calls run one after another (they share the key store).
    await Promise.all([
      (async () => {
        await signer.init("docker.io/acme/app");
        await signer.addhash("docker.io/acme/app", "v1", app.size, digestHex(app.digest));
        await signTag(signer, "docker.io/acme/app", "pinned", pinned);
        await signer.addDelegation("docker.io/acme/app", "targets/releases");
        await signTag(signer, "docker.io/acme/app", "rel", releasesOnly, "targets/releases");
        await signer.init("docker.io/acme/multi");
        await signTag(signer, "docker.io/acme/multi", "v1", multi);
        await signer.init("docker.io/acme/moving");
        await signTag(signer, "docker.io/acme/moving", "v1", moving1);
      })(),
      (async () => {
        await signerLocal.init(`${OTHER}/acme/offline`);
        await signTag(signerLocal, `${OTHER}/acme/offline`, "v1", offline);
      })(),
    ]);

    const policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "acme.yaml", ACME_POLICY);
    trustgateOptions = {
      registries: {
        "docker.io": {
          upstream: registry.url,
          notary: { url: notary.url, caFile: join(scratch, "notary-ca.crt") },
        },
        [OTHER]: {
          upstream: registry.url,
          notary: { url: notaryLocal.url, caFile: join(scratch, "notary-local-ca.crt") },
        },
      },
      defaultRegistry: "docker.io",
      extraConfig: { policies, trustRefreshSeconds: REFRESH_SECONDS },
    };
    trustgate = await startTrustgate(trustgateOptions);
    hostsDir = await writeHostsDir(trustgate.url, { dir: join(scratch, "hosts") });
    containerd = await startContainerd();
    ({ dockerd, unavailable: dockerdUnavailable } = await startDockerdIfAvailable({
      registryMirrors: [trustgate.url],
      insecureRegistries: [trustgate.host],
    }));
  });

  afterAll(async () => {
    await dockerd?.stop();
    await containerd?.stop();
    await trustgate?.stop();
    await Promise.all([registry?.stop(), notary?.stop(), notaryLocal?.stop()]);
    // the launchers leave their dirs (logs for post-mortems); this file's run is over
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, trustgate?.dir, registry?.dir])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("skopeo: a signed tag pulls, and the stored manifest is exactly the signed one", async () => {
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/acme/app:v1`, layout());
    expect(copy.stderr).toBe("");
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(app.digest);
    expect(copy.manifest?.equals(app.manifest)).toBe(true);
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "v1" });
    expect(audit).toMatchObject({ decision: "allow", digest: app.digest, role: "targets", policy: "acme" });
  });

  it("ctr (hosts.toml server = trustgate): a signed tag pulls with exactly the signed digest", async () => {
    const ref = "docker.io/acme/app:v1";
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(app.digest);
    expect(await ctrImageComplete(containerd, ref)).toBe(true);
    expect((await ctrContentGet(containerd, app.digest))?.equals(app.manifest)).toBe(true);
  });

  it("dockerd (registry-mirrors = trustgate): a signed tag pulls with exactly the signed digest", async (ctx) => {
    if (!dockerd) {
      console.warn(`skipping dockerd test: ${dockerdUnavailable}`);
      return ctx.skip(`dockerd unavailable: ${dockerdUnavailable}`);
    }
    const pull = await dockerPull(dockerd, "acme/app:v1");
    expect(pull.code).toBe(0);
    expect(await dockerImageDigests(dockerd, "acme/app:v1")).toEqual([`acme/app@${app.digest}`]);
  });

  it("an unsigned tag is refused: DENIED with the reason in skopeo's error and the audit log; ctr sees 403", async () => {
    const reason = "docker.io/acme/app:unsigned is not signed in targets/releases or targets";
    const mark = await logMark(trustgate);
    const inspect = await skopeoInspect(`${trustgate.host}/acme/app:unsigned`);
    expect(inspect.code).not.toBe(0);
    expect(inspect.stderr).toContain(`denied: ${reason}`);
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "unsigned" }, mark);
    expect(audit).toMatchObject({ decision: "deny", policy: "acme", mode: "enforce", reason });

    const pull = await ctrPull(containerd, "docker.io/acme/app:unsigned", { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain("403 Forbidden");
    expect(await ctrImageDigest(containerd, "docker.io/acme/app:unsigned")).toBeUndefined();
    expect(await ctrContentGet(containerd, unsigned.digest)).toBeUndefined();
  });

  it("dockerd through the mirror: an unsigned tag is refused by trustgate and not stored", async (ctx) => {
    if (!dockerd) {
      console.warn(`skipping dockerd test: ${dockerdUnavailable}`);
      return ctx.skip(`dockerd unavailable: ${dockerdUnavailable}`);
    }
    const mark = await logMark(trustgate);
    // dockerd falls back to registry-1.docker.io after the mirror's 403 (LAB.md); that has no
    // acme/app:unsigned (or is unreachable), so the pull fails either way. What trustgate decided
    // is in its log; dockerd's own message is the origin's, not ours.
    const pull = await dockerPull(dockerd, "acme/app:unsigned");
    expect(pull.code).not.toBe(0);
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "unsigned" }, mark);
    expect(audit.decision).toBe("deny");
    expect(await dockerImageDigests(dockerd, "acme/app:unsigned")).toEqual([]);
  });

  it("a tag signed only in targets/releases pulls (ctr), and the audit names that role", async () => {
    const ref = "docker.io/acme/app:rel";
    const mark = await logMark(trustgate);
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(releasesOnly.digest);
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "rel" }, mark);
    expect(audit).toMatchObject({ decision: "allow", role: "targets/releases", digest: releasesOnly.digest });
  });

  it("a multi-arch index signed by tag: ctr --platform pulls its platform manifest by digest", async () => {
    const ref = "docker.io/acme/multi:v1";
    const [amd64, arm64] = multi.platforms as [Image, Image];
    const pull = await ctrPull(containerd, ref, { hostsDir, platform: "linux/arm64" });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(multi.digest);
    expect((await ctrContentGet(containerd, arm64.digest))?.equals(arm64.manifest)).toBe(true);
    expect(await ctrContentGet(containerd, amd64.digest)).toBeUndefined();
    // the per-platform manifest is not a signed target itself: it is allowed because the signed index lists it
    const child = await auditFor(trustgate, "docker.io/acme/multi", { reference: arm64.digest });
    expect(child.decision).toBe("allow");
    expect(child.reason).toContain(`signed index ${multi.digest}`);
  });

  it("a tag overwritten in the registry with unsigned content still yields the signed content", async () => {
    await pushImage(registry.url, "acme/app", "pinned", intruder);
    // the registry itself now serves the intruder under the tag
    const direct = await fetch(`${registry.url}/v2/acme/app/manifests/pinned`, {
      headers: { accept: intruder.mediaType },
    });
    expect(sha256Digest(Buffer.from(await direct.arrayBuffer()))).toBe(intruder.digest);

    const copy = await skopeoCopyToOciDir(`${trustgate.host}/acme/app:pinned`, layout());
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(pinned.digest);
    expect(copy.manifest?.equals(pinned.manifest)).toBe(true);
    for (const blob of pinned.blobs)
      expect((await copy.readBlob(blob.digest))?.equals(blob.bytes)).toBe(true);
  });

  it("a re-signed tag is served within one refresh window; a removed target is refused after one", async () => {
    const gun = "docker.io/acme/moving";
    const first = await skopeoInspect(`${trustgate.host}/acme/moving:v1`, { raw: true });
    expect(first.code).toBe(0);
    expect(first.raw?.equals(moving1.manifest)).toBe(true);

    // the publisher pushes new content and signs it under the same tag
    await pushImage(registry.url, "acme/moving", "v1", moving2);
    await signTag(signer, gun, "v1", moving2);
    await oneRefreshWindow();
    const resigned = await skopeoCopyToOciDir(`${trustgate.host}/acme/moving:v1`, layout());
    expect(resigned.code).toBe(0);
    expect(resigned.digest).toBe(moving2.digest);

    await signer.remove(gun, "v1");
    await signer.publish(gun);
    await oneRefreshWindow();
    const mark = await logMark(trustgate);
    const removed = await skopeoInspect(`${trustgate.host}/acme/moving:v1`);
    expect(removed.code).not.toBe(0);
    expect(removed.stderr).toContain("denied: docker.io/acme/moving:v1 is not signed");
    expect((await auditFor(trustgate, gun, { tag: "v1" }, mark)).decision).toBe("deny");
  });

  // Last: stops a trust server and replaces trustgate.
  it("trust server stopped: verified tags keep pulling; past the metadata's expiry they are refused", async () => {
    const ref = `${trustgate.host}/${OTHER}/acme/offline:v1`;
    const verified = await skopeoCopyToOciDir(ref, layout());
    expect(verified.code).toBe(0);
    expect(verified.digest).toBe(offline.digest);

    await notaryLocal.stop();
    await oneRefreshWindow(); // the next pull must try the (stopped) server, and fall back to what it verified
    const whileDown = await skopeoCopyToOciDir(ref, layout());
    expect(whileDown.stderr).toBe("");
    expect(whileDown.code).toBe(0);
    expect(whileDown.digest).toBe(offline.digest);

    // A restart keeps the verified metadata (stateDir): still served while it has not expired.
    await trustgate.stop();
    trustgate = await startTrustgate({ ...trustgateOptions, dir: trustgate.dir });
    const afterRestart = await skopeoCopyToOciDir(`${trustgate.host}/${OTHER}/acme/offline:v1`, layout());
    expect(afterRestart.code).toBe(0);
    expect(afterRestart.digest).toBe(offline.digest);

    // 30 days on, notary-server's timestamp (valid 14 days) has expired: fail closed.
    await trustgate.stop();
    trustgate = await startTrustgate({
      ...trustgateOptions,
      dir: trustgate.dir,
      clockOffset: "+30d",
    });
    const mark = await logMark(trustgate);
    const expired = await skopeoInspect(`${trustgate.host}/${OTHER}/acme/offline:v1`);
    expect(expired.code).not.toBe(0);
    expect(expired.stderr).toContain(`denied: ${OTHER}/acme/offline:v1`);
    const audit = await auditFor(trustgate, `${OTHER}/acme/offline`, { tag: "v1" }, mark);
    expect(audit.decision).toBe("deny");
    expect(audit.reason).toMatch(/expired/);
  });
});
