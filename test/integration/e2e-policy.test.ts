/**
 * Issue 5 end to end: policy files in a temp policies dir decide what real clients get through a
 * real trustgate, with a real docker-registry upstream and a real notary-server whose tags are
 * signed with the `notary` CLI. One organisation per mode (enforce, audit, off), each with a
 * signed and an unsigned tag; a pinned root key that is not the server's; a required delegation
 * missing; and a live reload (audit -> enforce by rewriting the file; a broken file rejected).
 */
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContainerdPeer,
  ctrImageDigest,
  ctrPull,
  startContainerd,
  writeHostsDir,
} from "../helpers/containerd.js";
import { type Image, makeImage, pushImage } from "../helpers/image.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";
import { tempDir, waitFor } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";
import { auditFor, logMark, signTag, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";

const PINNED_ELSEWHERE = "0123456789abcdef".repeat(4);

const policy = (name: string, mode: string, extra = "") =>
  `name: ${name}
match: ["docker.io/${name}/**"]
mode: ${mode}
trust:
  roles: [targets/releases, targets]
${extra}`;

const POLICIES: Record<string, string> = {
  "enf.yaml": policy("enf", "enforce"),
  "aud.yaml": policy("aud", "audit"),
  "off.yaml": policy("off", "off"),
  "pinned.yaml": `name: pinned
match: ["docker.io/pinned/**"]
mode: enforce
trust:
  rootKeys: ["${PINNED_ELSEWHERE}"]
  roles: [targets]
`,
  "strict.yaml": `name: strict
match: ["docker.io/strict/**"]
mode: enforce
trust:
  roles: [targets/releases]   # a targets-only signature does not count
`,
};

describe("issue 5: policy modes decide real pulls through trustgate", () => {
  let registry: RegistryPeer;
  let notary: NotaryLab;
  let trustgate: TrustgatePeer;
  let containerd: ContainerdPeer;
  let scratch: string;
  let policiesDir: string;
  let hostsDir: string;
  let layouts = 0;
  const layout = () => join(scratch, `oci-${++layouts}`);
  /** per organisation: a signed and an unsigned image */
  const images = new Map<string, { signed: Image; unsigned: Image }>();

  beforeAll(async () => {
    scratch = await tempDir("e2e-policy");
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    await copyFile(notary.ca, join(scratch, "notary-ca.crt"));
    const signer = notary.client();
    for (const org of ["enf", "aud", "off", "pinned", "strict"]) {
      const pair = {
        signed: makeImage(`e2e policy: ${org} signed`),
        unsigned: makeImage(`e2e policy: ${org} unsigned`),
      };
      images.set(org, pair);
      await pushImage(registry.url, `${org}/app`, "signed", pair.signed);
      await pushImage(registry.url, `${org}/app`, "unsigned", pair.unsigned);
      await signer.init(`docker.io/${org}/app`);
      await signTag(signer, `docker.io/${org}/app`, "signed", pair.signed);
    }
    await pushImage(registry.url, "nobody/app", "v1", makeImage("e2e policy: no policy covers it"));

    policiesDir = join(scratch, "policies");
    await mkdir(policiesDir);
    for (const [file, yaml] of Object.entries(POLICIES)) await writePolicy(policiesDir, file, yaml);
    trustgate = await startTrustgate({
      registries: {
        "docker.io": {
          upstream: registry.url,
          notary: { url: notary.url, caFile: join(scratch, "notary-ca.crt") },
        },
      },
      extraConfig: { policies: policiesDir, defaultPolicy: "refuse" },
    });
    hostsDir = await writeHostsDir(trustgate.url, { dir: join(scratch, "hosts") });
    containerd = await startContainerd();
  });

  afterAll(async () => {
    await containerd?.stop();
    await trustgate?.stop();
    await Promise.all([registry?.stop(), notary?.stop()]);
    // the launchers leave their dirs (logs for post-mortems); this file's run is over
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, trustgate?.dir, registry?.dir])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  const pair = (org: string) => images.get(org) as { signed: Image; unsigned: Image };

  it("enforce: the signed tag pulls, the unsigned one is refused (skopeo DENIED, ctr 403)", async () => {
    const { signed, unsigned } = pair("enf");
    const ok = await skopeoCopyToOciDir(`${trustgate.host}/enf/app:signed`, layout());
    expect(ok.code).toBe(0);
    expect(ok.digest).toBe(signed.digest);

    const mark = await logMark(trustgate);
    const refused = await skopeoInspect(`${trustgate.host}/enf/app:unsigned`);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(
      "denied: docker.io/enf/app:unsigned is not signed in targets/releases or targets",
    );
    const audit = await auditFor(trustgate, "docker.io/enf/app", { tag: "unsigned" }, mark);
    expect(audit).toMatchObject({ decision: "deny", policy: "enf", mode: "enforce" });

    const ctr = await ctrPull(containerd, "docker.io/enf/app:unsigned", { hostsDir });
    expect(ctr.code).not.toBe(0);
    expect(ctr.stderr).toContain("403 Forbidden");
    expect(await ctrImageDigest(containerd, "docker.io/enf/app:unsigned")).toBeUndefined();
    expect(unsigned.digest).not.toBe(signed.digest);
  });

  it("audit: the unsigned tag pulls (skopeo, ctr) and the log has the would-be refusal", async () => {
    const { unsigned } = pair("aud");
    const mark = await logMark(trustgate);
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/aud/app:unsigned`, layout());
    expect(copy.stderr).toBe("");
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(unsigned.digest);
    const audit = await auditFor(trustgate, "docker.io/aud/app", { tag: "unsigned" }, mark);
    expect(audit).toMatchObject({ decision: "allow", wouldDeny: true, policy: "aud", mode: "audit" });
    expect(audit.reason).toBe(
      "audit: would deny: docker.io/aud/app:unsigned is not signed in targets/releases or targets",
    );

    const ctr = await ctrPull(containerd, "docker.io/aud/app:unsigned", { hostsDir });
    expect(ctr.code).toBe(0);
    expect(await ctrImageDigest(containerd, "docker.io/aud/app:unsigned")).toBe(unsigned.digest);
  });

  it("off: the unsigned tag passes without a trust check; no policy at all is refused", async () => {
    const { unsigned } = pair("off");
    const mark = await logMark(trustgate);
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/off/app:unsigned`, layout());
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(unsigned.digest);
    const audit = await auditFor(trustgate, "docker.io/off/app", { tag: "unsigned" }, mark);
    expect(audit).toMatchObject({ decision: "allow", policy: "off", mode: "off" });
    expect(audit.wouldDeny).toBeUndefined();
    expect(audit.source).toBeUndefined(); // the trust server was not asked

    const none = await skopeoInspect(`${trustgate.host}/nobody/app:v1`);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/denied: docker\.io\/nobody\/app:v1: .*no policy/);
  });

  it("a pinned root key that is not the server's refuses, naming both key IDs", async () => {
    const mark = await logMark(trustgate);
    const res = await skopeoInspect(`${trustgate.host}/pinned/app:signed`);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain("denied:");
    expect(res.stderr).toContain(PINNED_ELSEWHERE);
    const audit = await auditFor(trustgate, "docker.io/pinned/app", { tag: "signed" }, mark);
    expect(audit.decision).toBe("deny");
    // the server's own root key ID is named too
    const ids = audit.reason.match(/\b[a-f0-9]{64}\b/g) ?? [];
    expect(ids).toContain(PINNED_ELSEWHERE);
    expect(ids.filter((id) => id !== PINNED_ELSEWHERE).length).toBeGreaterThan(0);
  });

  it("a required delegation missing refuses a tag signed only in targets", async () => {
    const res = await skopeoInspect(`${trustgate.host}/strict/app:signed`);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain("denied: docker.io/strict/app:signed is not signed in targets/releases");
  });

  it("live reload: audit rewritten to enforce refuses the next pull; a broken file is rejected and the set stays", async () => {
    const before = await skopeoInspect(`${trustgate.host}/aud/app:unsigned`);
    expect(before.code).toBe(0);

    let mark = await logMark(trustgate);
    await writePolicy(policiesDir, "aud.yaml", policy("aud", "enforce"));
    await waitFor("the policy reload", async () =>
      (await trustgate.logs()).slice(mark).some((l) => l.msg === "policies reloaded"),
    );
    mark = await logMark(trustgate);
    const after = await skopeoInspect(`${trustgate.host}/aud/app:unsigned`);
    expect(after.code).not.toBe(0);
    expect(after.stderr).toContain("denied: docker.io/aud/app:unsigned is not signed");
    const audit = await auditFor(trustgate, "docker.io/aud/app", { tag: "unsigned" }, mark);
    expect(audit).toMatchObject({ decision: "deny", mode: "enforce", policy: "aud" });

    // A broken rewrite (back to audit, with an unknown key) is rejected: enforce stays in force.
    mark = await logMark(trustgate);
    await writeFile(join(policiesDir, "aud.yaml"), `${policy("aud", "audit")}colour: blue\n`);
    await waitFor("the rejected reload", async () =>
      (await trustgate.logs())
        .slice(mark)
        .some((l) => l.msg === "policy reload rejected: the previous policies stay in force"),
    );
    const rejected = (await trustgate.logs()).slice(mark).find((l) => Array.isArray(l.problems));
    expect(String(rejected?.problems)).toMatch(/aud\.yaml:\d+: .*colour/);
    mark = await logMark(trustgate);
    const still = await skopeoInspect(`${trustgate.host}/aud/app:unsigned`);
    expect(still.code).not.toBe(0);
    expect(still.stderr).toContain("denied:");
    expect((await auditFor(trustgate, "docker.io/aud/app", { tag: "unsigned" }, mark)).mode).toBe("enforce");
  });
});
