/**
 * Issue 15, Notation half, end to end: the notation fixtures (signed by `notation sign`, JWS)
 * pushed byte-exactly into a real docker-registry (distribution 2.8: no referrers API, so the
 * `sha256-<hex>` referrers tag is what trustgate reads), the tag `v1` resolved through verified TUF
 * trust (or taken from the registry with `tagTrust: registry`), pulled through trustgate
 * (dist/cli.js serve) with skopeo and ctr. Each case is judged with the fixture's own Notation
 * trust policy and trust store, with the outcome its expected.json states.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ContainerdPeer, ctrPull } from "../helpers/containerd.js";
import { OciLayout } from "../helpers/oci-layout.js";
import { runCommand, tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import {
  pushCase,
  SIGNATURE_FIXTURES,
  startSignedPullPeers,
  stopSignedPullPeers,
} from "../helpers/signature-registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";
import { auditFor, logMark, writePolicy } from "../helpers/trust-e2e.js";
import type { TrustgatePeer } from "../helpers/trustgate.js";
import { TestTufRepository } from "../helpers/tuf-repo.js";

const SUBJECT = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";
const material = (c: string, f: string) => join(SIGNATURE_FIXTURES, "notation", c, "material", f);

/** repository -> [fixture case, trust policy file, trust store dir, tag trust from the registry] */
const REPOS: Record<string, [string, string, string, boolean?]> = {
  "n/valid": ["jws-valid", "trustpolicy.json", "truststore"],
  "n/identity": ["jws-valid", "valid_trusted_identity_trustpolicy.json", "truststore"],
  "n/wrongid": ["jws-valid", "invalid_trusted_identity_trustpolicy.json", "truststore"],
  "n/wrongcert": ["jws-valid", "trustpolicy.json", "truststore-wrong-cert"],
  "n/auditcert": ["jws-valid", "audit_trustpolicy.json", "truststore-wrong-cert"],
  "n/invalid": ["jws-invalid-signature", "audit_trustpolicy.json", "truststore"],
  "n/expired": ["jws-expired-signature", "trustpolicy.json", "truststore"],
  "n/expiredok": ["jws-expired-signature", "permissive_trustpolicy.json", "truststore"],
  "reg/valid": ["jws-valid", "trustpolicy.json", "truststore", true],
};

describe("issue 15: Notation signatures enforced at pull time (real registry, TUF tag trust, skopeo, ctr)", () => {
  let registry: RegistryPeer;
  let tuf: TestTufRepository;
  let trustgate: TrustgatePeer;
  let containerd: ContainerdPeer;
  let scratch: string;
  let hostsDir: string;

  beforeAll(async () => {
    scratch = await tempDir("notation-e2e");
    [registry, tuf] = await Promise.all([startRegistry(), TestTufRepository.start()]);
    const policies = join(scratch, "policies");
    await mkdir(policies);
    for (const [repo, [c, trustPolicy, store, fromRegistry]] of Object.entries(REPOS)) {
      await pushCase(`notation/${c}`, registry.host, repo);
      if (!fromRegistry) {
        const m = new OciLayout(join(SIGNATURE_FIXTURES, "notation", c)).manifest("v1");
        tuf.addTarget("targets", `docker.io/${repo}:v1`, m?.bytes as Buffer);
      }
      await writePolicy(
        policies,
        `${repo.replace("/", "-")}.yaml`,
        `name: ${repo.replace("/", "-")}
match: ["docker.io/${repo}"]
mode: enforce
${fromRegistry ? "tagTrust: registry\n" : "trust:\n  source: tuf\n"}signatures:
  rules:
    - notation:
        trustPolicy: ${material(c, `trustpolicies/${trustPolicy}`)}
        trustStore: ${material(c, store)}
`,
      );
    }
    ({ trustgate, containerd, hostsDir } = await startSignedPullPeers({
      scratch,
      upstreamUrl: registry.url,
      tuf,
      policies,
    }));
  }, 180_000);

  afterAll(async () => {
    await stopSignedPullPeers({ trustgate, containerd }, [registry, tuf], [scratch, registry?.dir]);
  });

  it.each([
    ["n/valid", "verified"],
    ["n/identity", "verified"],
    ["n/auditcert", 'accepted (trust policy "e2e", level audit) with logged failures: authenticity (logged)'],
    ["n/expiredok", "expiry (logged)"],
  ])("skopeo: %s is served byte-exactly and the audit line names the signer", async (repo, what) => {
    const mark = await logMark(trustgate);
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/${repo}:v1`);
    expect(copy.code, copy.stderr).toBe(0);
    expect(copy.digest).toBe(SUBJECT);
    const layout = new OciLayout(join(SIGNATURE_FIXTURES, "notation/jws-valid"));
    expect(copy.manifest?.equals(layout.bytes(SUBJECT) as Buffer)).toBe(true);
    const audit = await auditFor(trustgate, `docker.io/${repo}`, { tag: "v1" }, mark);
    expect(audit).toMatchObject({ decision: "allow", digest: SUBJECT, role: "targets" });
    expect(audit.signatures).toContain("signatures rule 1 (notation)");
    expect(audit.signatures).toContain('signed by "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"');
    expect(audit.signatures).toContain(what);
  });

  it.each([
    ["n/wrongid", "does not match the X.509 trusted identities"],
    ["n/wrongcert", "does not contain any trusted certificate"],
    [
      "n/invalid",
      "integrity validation failed: unsupported envelope media type application/vnd.oci.image.layer.v1.tar",
    ],
    ["n/expired", "expiry validation failed: digital signature has expired"],
  ])("%s is refused: skopeo shows the notation rule, ctr sees 403", async (repo, why) => {
    const mark = await logMark(trustgate);
    const inspect = await skopeoInspect(`${trustgate.host}/${repo}:v1`, { raw: true });
    expect(inspect.code).not.toBe(0);
    expect(inspect.stderr).toContain("signatures not verified");
    expect(inspect.stderr).toContain("signatures rule 1 (notation)");
    const audit = await auditFor(trustgate, `docker.io/${repo}`, { tag: "v1" }, mark);
    expect(audit).toMatchObject({ decision: "deny", mode: "enforce" });
    expect(audit.reason).toContain(why);
    const pull = await ctrPull(containerd, `docker.io/${repo}:v1`, { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain("403 Forbidden");
  });

  it("pull by digest: the notation requirement holds there too", async () => {
    const ok = await skopeoInspect(`${trustgate.host}/n/valid@${SUBJECT}`, { raw: true });
    expect(ok.code, ok.stderr).toBe(0);
    const refused = await skopeoInspect(`${trustgate.host}/n/wrongcert@${SUBJECT}`, { raw: true });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("signatures rule 1 (notation)");
  });

  it("tagTrust: registry: the registry's v1 is served when its Notation signature verifies", async () => {
    const mark = await logMark(trustgate);
    const ok = await skopeoInspect(`${trustgate.host}/reg/valid:v1`, { raw: true });
    expect(ok.code, ok.stderr).toBe(0);
    const audit = await auditFor(trustgate, "docker.io/reg/valid", { tag: "v1" }, mark);
    expect(audit).toMatchObject({ decision: "allow", digest: SUBJECT, role: "registry" });
  });

  it("resolve and policy explain (dist/cli.js) judge the notation rule like a pull", async () => {
    const cli = (...args: string[]) =>
      runCommand(process.execPath, ["dist/cli.js", ...args], { timeoutMs: 30_000 });
    const ok = await cli("resolve", "docker.io/n/valid:v1", "--config", trustgate.configFile, "--json");
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ decision: "allow", digest: SUBJECT });
    expect(JSON.parse(ok.stdout).signatures).toContain('signed by "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"');
    const refused = await cli(
      "resolve",
      "docker.io/n/wrongid:v1",
      "--config",
      trustgate.configFile,
      "--json",
    );
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout).reason).toContain("signatures rule 1 (notation)");
    const explained = await cli(
      "policy",
      "explain",
      "docker.io/n/valid:v1",
      "--config",
      trustgate.configFile,
    );
    expect(explained.code, explained.stderr).toBe(0);
    expect(explained.stdout).toContain("rule 1 (notation): trust policy");
  });

  it("warm answers: a verified tag is answered again warm with its verdict; a refused one never is", async () => {
    const get = (repo: string) =>
      fetch(`${trustgate.url}/v2/${repo}/manifests/v1`, {
        headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
      });
    const mark = await logMark(trustgate);
    for (let i = 0; i < 3; i++) {
      expect((await get("n/valid")).status).toBe(200);
      expect((await get("n/wrongcert")).status).toBe(403);
    }
    const warm = (await trustgate.logs()).slice(mark).filter((l) => l.warm === true);
    expect(warm.length).toBeGreaterThanOrEqual(1);
    expect(warm.every((l) => l.path === "/v2/n/valid/manifests/v1")).toBe(true);
    expect(String(warm[0]?.signatures)).toContain("signatures rule 1 (notation)");
  });
});
