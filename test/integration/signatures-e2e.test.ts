/**
 * Issue 15 end to end: signatures made by the real tools (test/fixtures/signatures/), pushed
 * byte-exactly into a real docker-registry (distribution 2.8: no referrers API, so the referrers
 * tag schema and the cosign .sig tag are what is read), tags resolved through verified TUF trust
 * (test/helpers/tuf-repo.ts signs each subject digest), pulled through trustgate (dist/cli.js
 * serve) with skopeo and ctr. Valid cases are served; wrong key, unknown key, wrong identity,
 * modified manifest and a bundle on an image it does not name are refused with a reason naming
 * the rule. `tagTrust: registry` serves a signed digest with no TUF target at all.
 *
 * The cosign-legacy subjects cannot be pushed to distribution 2.8 (their blobs are not in the
 * source): a static front serves those subject manifests from the layouts (signature-registry.ts),
 * so with them skopeo inspects the manifest (`--raw`) rather than copying blobs.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ContainerdPeer, ctrContentGet, ctrPull } from "../helpers/containerd.js";
import { OciLayout } from "../helpers/oci-layout.js";
import { runCommand, tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import {
  pushCase,
  SIGNATURE_FIXTURES,
  type StaticFront,
  startSignedPullPeers,
  startStaticFront,
  stopSignedPullPeers,
} from "../helpers/signature-registry.js";
import { skopeoInspect } from "../helpers/skopeo.js";
import { auditFor, logMark, writePolicy } from "../helpers/trust-e2e.js";
import type { TrustgatePeer } from "../helpers/trustgate.js";
import { TestTufRepository } from "../helpers/tuf-repo.js";

const LEGACY_SUBJECT = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";
const MODIFIED_SUBJECT = "sha256:d9dcafdb480aa7c475e91737b96925e45844213dcb0290b4a90017459121f71f";
const BUNDLE_SUBJECT = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";
const SIGNED_AS = "192.168.64.2:5000/cosign-signed-single-sample";
const mat = (c: string, f: string) => join(SIGNATURE_FIXTURES, c, "material", f);
const KEY = mat("cosign-legacy/key-valid", "cosign.pub");
const KEY2 = mat("cosign-legacy/key-valid", "cosign2.pub");
const ROOT = mat("sigstore-bundle/cosign-v3-oci-attestation", "trusted_root.json");

const legacyPolicy = (name: string, repo: string, key: string, alias: boolean) => `name: ${name}
match: ["docker.io/${repo}"]
mode: enforce
trust:
  source: tuf
signatures:
  require: all
  rules:
    - cosign:
        keys: [${key}]
${alias ? `        dockerReferences: ["${SIGNED_AS}"]\n` : ""}`;

const bundlePolicy = (name: string, repo: string, subject: string, tagTrust = false) => `name: ${name}
match: ["docker.io/${repo}"]
mode: enforce
${tagTrust ? "tagTrust: registry\n" : "trust:\n  source: tuf\n"}signatures:
  rules:
    - cosign:
        trustedRoot: ${ROOT}
        requireTlog: true
        identities:
          - issuer: https://github.com/login/oauth
            subject: ${subject}
`;

describe("issue 15: cosign signatures enforced at pull time (real registry, TUF tag trust, skopeo, ctr)", () => {
  let registry: RegistryPeer;
  let front: StaticFront;
  let tuf: TestTufRepository;
  let trustgate: TrustgatePeer;
  let containerd: ContainerdPeer;
  let scratch: string;
  let hostsDir: string;

  beforeAll(async () => {
    scratch = await tempDir("signatures-e2e");
    [registry, tuf] = await Promise.all([startRegistry(), TestTufRepository.start()]);
    const reg = new URL(registry.url).host;
    const pushes: Array<[string, string]> = [
      ["cosign-legacy/key-valid", "legacy/valid"],
      ["cosign-legacy/key-valid", "legacy/wrongkey"],
      ["cosign-legacy/key-valid", "legacy/noalias"],
      ["cosign-legacy/key-two-valid-signatures", "legacy/two"],
      ["cosign-legacy/key-unknown-key-only", "legacy/unknown"],
      ["cosign-legacy/key-modified-manifest", "legacy/modified"],
      ["sigstore-bundle/cosign-v3-oci-attestation", "bundle/ok"],
      ["sigstore-bundle/cosign-v3-oci-attestation", "bundle/wrongid"],
      ["sigstore-bundle/cosign-v3-oci-attestation", "reg/bundle"],
    ];
    for (const [c, repo] of pushes) await pushCase(c, reg, repo);
    const subjects: Record<string, OciLayout> = {};
    for (const [c, repo] of pushes)
      if (c.startsWith("cosign-legacy/")) subjects[repo] = new OciLayout(join(SIGNATURE_FIXTURES, c));
    front = await startStaticFront(registry.url, subjects);

    // TUF signs every subject digest for its tag (the bundle's tag2 too: tag trust alone would serve it)
    for (const [c, repo] of pushes) {
      if (repo.startsWith("reg/")) continue; // tagTrust: registry: no TUF target at all
      const layout = new OciLayout(join(SIGNATURE_FIXTURES, c));
      for (const tag of c.startsWith("sigstore") ? ["tag", "tag2"] : ["latest"]) {
        const m = layout.manifest(tag);
        if (m) tuf.addTarget("targets", `docker.io/${repo}:${tag}`, m.bytes);
      }
    }
    const policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "valid.yaml", legacyPolicy("valid", "legacy/valid", KEY, true));
    await writePolicy(policies, "two.yaml", legacyPolicy("two", "legacy/two", KEY, true));
    await writePolicy(policies, "wrongkey.yaml", legacyPolicy("wrongkey", "legacy/wrongkey", KEY2, true));
    await writePolicy(policies, "noalias.yaml", legacyPolicy("noalias", "legacy/noalias", KEY, false));
    await writePolicy(policies, "unknown.yaml", legacyPolicy("unknown", "legacy/unknown", KEY, true));
    await writePolicy(policies, "modified.yaml", legacyPolicy("modified", "legacy/modified", KEY, true));
    await writePolicy(policies, "bundle.yaml", bundlePolicy("bundle", "bundle/ok", "cody@soyland.com"));
    await writePolicy(
      policies,
      "wrongid.yaml",
      bundlePolicy("wrongid", "bundle/wrongid", "someone@example.com"),
    );
    await writePolicy(
      policies,
      "registry.yaml",
      bundlePolicy("registry", "reg/bundle", "cody@soyland.com", true),
    );
    ({ trustgate, containerd, hostsDir } = await startSignedPullPeers({
      scratch,
      upstreamUrl: front.url,
      tuf,
      policies,
    }));
  }, 120_000);

  afterAll(async () => {
    await stopSignedPullPeers({ trustgate, containerd }, [front, registry, tuf], [scratch, registry?.dir]);
  });

  it.each([
    ["legacy/valid", "cosign.pub (ecdsa-p256)"],
    ["legacy/two", "cosign.pub (ecdsa-p256)"],
  ])("skopeo: %s (cosign .sig, TUF-signed tag) is served byte-exactly", async (repo, signer) => {
    const mark = await logMark(trustgate);
    const inspect = await skopeoInspect(`${trustgate.host}/${repo}:latest`, { raw: true });
    expect(inspect.stderr).toBe("");
    expect(inspect.code).toBe(0);
    expect(
      inspect.raw?.equals(
        new OciLayout(join(SIGNATURE_FIXTURES, "cosign-legacy/key-valid")).bytes(LEGACY_SUBJECT) as Buffer,
      ),
    ).toBe(true);
    const audit = await auditFor(trustgate, `docker.io/${repo}`, { tag: "latest" }, mark);
    expect(audit).toMatchObject({ decision: "allow", digest: LEGACY_SUBJECT, role: "targets" });
    expect(audit.signatures).toContain("signatures rule 1 (cosign) line 9: cosign signature by key");
    expect(audit.signatures).toContain(`${signer} for ${SIGNED_AS}`);
  });

  it.each([
    ["legacy/wrongkey", "signature does not verify with"],
    ["legacy/unknown", "signature does not verify with"],
    ["legacy/noalias", `signed for repository ${SIGNED_AS}, not docker.io/legacy/noalias`],
    ["legacy/modified", `the payload names ${LEGACY_SUBJECT}, not ${MODIFIED_SUBJECT}`],
  ])("%s is refused: skopeo shows the rule, ctr sees 403", async (repo, why) => {
    const mark = await logMark(trustgate);
    const inspect = await skopeoInspect(`${trustgate.host}/${repo}:latest`, { raw: true });
    expect(inspect.code).not.toBe(0);
    expect(inspect.stderr).toContain("signatures not verified");
    expect(inspect.stderr).toContain("signatures rule 1 (cosign) line 9");
    const audit = await auditFor(trustgate, `docker.io/${repo}`, { tag: "latest" }, mark);
    expect(audit).toMatchObject({ decision: "deny", mode: "enforce" });
    expect(audit.reason).toContain(why);
    const pull = await ctrPull(containerd, `docker.io/${repo}:latest`, { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain("403 Forbidden");
  });

  it("ctr and skopeo: a cosign v3 bundle (keyless, DSSE) found through the referrers tag is verified and the image pulled", async () => {
    const mark = await logMark(trustgate);
    const pull = await ctrPull(containerd, "docker.io/bundle/ok:tag", { hostsDir });
    expect(pull.code, pull.stderr).toBe(0);
    const layout = new OciLayout(join(SIGNATURE_FIXTURES, "sigstore-bundle/cosign-v3-oci-attestation"));
    expect(
      (await ctrContentGet(containerd, BUNDLE_SUBJECT))?.equals(layout.bytes(BUNDLE_SUBJECT) as Buffer),
    ).toBe(true);
    const audit = await auditFor(trustgate, "docker.io/bundle/ok", { tag: "tag" }, mark);
    expect(audit).toMatchObject({ decision: "allow", digest: BUNDLE_SUBJECT });
    expect(audit.signatures).toContain(
      "signed by identity cody@soyland.com (issuer https://github.com/login/oauth)",
    );
    const inspect = await skopeoInspect(`${trustgate.host}/bundle/ok:tag`, { raw: true });
    expect(inspect.code).toBe(0);
  });

  it("a bundle by another identity, and the same bundle on an image it does not name, are refused", async () => {
    const wrong = await skopeoInspect(`${trustgate.host}/bundle/wrongid:tag`, { raw: true });
    expect(wrong.code).not.toBe(0);
    // (the OCI error message shows URLs as "(trust server)"; the audit line keeps them)
    expect(wrong.stderr).toContain("signatures rule 1 (cosign) line 8");
    expect(wrong.stderr).toMatch(/signed by cody@soyland\.com \(issuer .*\), not an identity the rule lists/);
    const other = await skopeoInspect(`${trustgate.host}/bundle/ok:tag2`, { raw: true });
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain("signatures rule 1 (cosign)");
    expect(other.stderr).toContain("do not include sha256:3d56b3c0");
    const pull = await ctrPull(containerd, "docker.io/bundle/wrongid:tag", { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain("403 Forbidden");
  });

  it("tags/list lists only the TUF-signed tags whose digest also satisfies the signature rules", async () => {
    const tags = async (repo: string) => {
      const res = await fetch(`${trustgate.url}/v2/${repo}/tags/list`);
      expect(res.status).toBe(200);
      return ((await res.json()) as { tags: string[] }).tags;
    };
    // both tags are TUF-signed; the bundle names only `tag`'s digest (tag2: "other image, same bundle")
    expect(await tags("bundle/ok")).toEqual(["tag"]);
    expect(await tags("bundle/wrongid")).toEqual([]);
    expect(await tags("legacy/valid")).toEqual(["latest"]);
    expect(await tags("legacy/wrongkey")).toEqual([]);
  });

  it("warm answers: a verified tag is answered again warm, carrying the signature verdict; a refused one never is", async () => {
    const get = (repo: string) =>
      fetch(`${trustgate.url}/v2/${repo}/manifests/latest`, {
        headers: { accept: "application/vnd.docker.distribution.manifest.v2+json" },
      });
    const mark = await logMark(trustgate);
    for (let i = 0; i < 3; i++) {
      expect((await get("legacy/valid")).status).toBe(200);
      expect((await get("legacy/wrongkey")).status).toBe(403);
    }
    const lines = (await trustgate.logs()).slice(mark);
    const warm = lines.filter((l) => l.warm === true);
    expect(warm.length).toBeGreaterThanOrEqual(1);
    expect(warm.every((l) => l.path === "/v2/legacy/valid/manifests/latest")).toBe(true);
    expect(String(warm[0]?.signatures)).toContain("cosign signature by key");
  });

  it("resolve and policy explain (dist/cli.js) judge signatures the same way", async () => {
    const cli = (...args: string[]) =>
      runCommand(process.execPath, ["dist/cli.js", ...args], { timeoutMs: 30_000 });
    const ok = await cli(
      "resolve",
      "docker.io/legacy/valid:latest",
      "--config",
      trustgate.configFile,
      "--json",
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ decision: "allow", digest: LEGACY_SUBJECT });
    expect(JSON.parse(ok.stdout).signatures).toContain("cosign signature by key");
    const refused = await cli(
      "resolve",
      "docker.io/legacy/wrongkey:latest",
      "--config",
      trustgate.configFile,
      "--json",
    );
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout).reason).toContain("signatures rule 1 (cosign) line 9");
    const explained = await cli(
      "policy",
      "explain",
      "docker.io/reg/bundle:tag",
      "--config",
      trustgate.configFile,
    );
    expect(explained.code, explained.stderr).toBe(0);
    expect(explained.stdout).toContain(
      "tagTrust:    registry: the tag's digest is taken from the registry, unverified",
    );
    expect(explained.stdout).toContain(
      "rule 1 (cosign): identities cody@soyland.com (issuer https://github.com/login/oauth)",
    );
  });

  it("pull by digest: the signature requirement holds there too", async () => {
    const ok = await skopeoInspect(`${trustgate.host}/legacy/valid@${LEGACY_SUBJECT}`, { raw: true });
    expect(ok.code, ok.stderr).toBe(0);
    const refused = await skopeoInspect(`${trustgate.host}/legacy/wrongkey@${LEGACY_SUBJECT}`, { raw: true });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("signatures rule 1 (cosign)");
  });

  it("tagTrust: registry: the registry's tag is served when its bundle verifies; an unsigned tag is refused", async () => {
    const mark = await logMark(trustgate);
    const ok = await skopeoInspect(`${trustgate.host}/reg/bundle:tag`, { raw: true });
    expect(ok.code, ok.stderr).toBe(0);
    const audit = await auditFor(trustgate, "docker.io/reg/bundle", { tag: "tag" }, mark);
    expect(audit).toMatchObject({ decision: "allow", digest: BUNDLE_SUBJECT, role: "registry" });
    const unsigned = await skopeoInspect(`${trustgate.host}/reg/bundle:tag2`, { raw: true });
    expect(unsigned.code).not.toBe(0);
    expect(unsigned.stderr).toContain("signatures not verified");
    // tags/list: the registry's tags whose registry digest carries the bundle (not tag2, nor the
    // referrers tag sha256-<hex>, which names an index no signature covers)
    const res = await fetch(`${trustgate.url}/v2/reg/bundle/tags/list`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { tags: string[] }).tags).toEqual(["tag"]);
  });
});
