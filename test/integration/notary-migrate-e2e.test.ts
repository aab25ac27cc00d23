/**
 * Issue 14 points 3-4 end to end, all real peers: tags signed with the real `notary` CLI into a
 * real notary-server (targets, the targets/releases delegation, and another delegation Docker
 * does not count), `trustgate notary mirror` of it, the notary-server STOPPED, pulls through
 * trustgate (`serve`, built CLI) from the mirror as `file://` and over a static web server (skopeo);
 * then `trustgate migrate notary` into a TUF 1.0 repository made with `trustgate tuf`, served over
 * HTTP, pulled through trustgate's TUF source with skopeo and ctr: the same digests. An unsigned
 * tag and a tag signed by another delegation's key are refused on every path; another
 * organisation's key cannot migrate into acme's delegation.
 */

import { copyFile, mkdir, readFile, rm, stat } from "node:fs/promises";
import type { Server } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnBuiltCli } from "../helpers/built-cli.js";
import {
  type ContainerdPeer,
  ctrImageDigest,
  ctrPull,
  startContainerd,
  writeHostsDir,
} from "../helpers/containerd.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";
import { tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";
import { staticServer } from "../helpers/static-server.js";
import { auditFor, signTag, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";
import { tufArgs } from "../helpers/tuf-args.js";

const GUN = "docker.io/acme/app";
// Docker's roles (the default): targets/releases, then targets. For the TUF source the same
// default means "whatever role the repository's delegations let sign the path".
const POLICY = `name: acme\nmatch: ["docker.io/acme/**"]\nmode: enforce\n`;
const ENV = { TRUSTGATE_TUF_PASSPHRASE: "migrate e2e passphrase" };

const cli = (...args: string[]) => spawnBuiltCli(ENV, ...args);

describe("issue 14: mirror a Notary repository, switch the server off, migrate to TUF with parity", () => {
  let registry: RegistryPeer;
  let notary: NotaryLab;
  let containerd: ContainerdPeer;
  const proxies: TrustgatePeer[] = [];
  const webs: Server[] = [];
  let scratch: string;
  let mirrorDir: string;
  let repo: string;
  let keys: string;
  let policies: string;
  let ca: string;
  const v1 = makeImage("migrate e2e: v1 signed in targets");
  const rel = makeImage("migrate e2e: rel signed in targets/releases");
  const other = makeImage("migrate e2e: signed by another delegation's key");
  const unsigned = makeImage("migrate e2e: never signed");
  /** digests pulled through trustgate from the mirror, per tag: the TUF side must give the same */
  const viaNotary = new Map<string, string>();

  const proxy = async (trust: Record<string, unknown>) => {
    const p = await startTrustgate({
      registries: { "docker.io": { upstream: registry.url, ...trust } },
      extraConfig: { policies },
    });
    proxies.push(p);
    return p;
  };

  beforeAll(async () => {
    scratch = await tempDir("notary-migrate-e2e");
    mirrorDir = join(scratch, "mirror");
    repo = join(scratch, "tuf");
    keys = join(scratch, "keys");
    policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "acme.yaml", POLICY);
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    ca = join(scratch, "notary-ca.crt");
    await copyFile(notary.ca, ca);
    for (const [tag, img] of [
      ["v1", v1],
      ["rel", rel],
      ["other", other],
      ["unsigned", unsigned],
    ] as const)
      await pushImage(registry.url, "acme/app", tag, img);
    const signer = notary.client();
    await signer.init(GUN);
    await signTag(signer, GUN, "v1", v1);
    await signer.addDelegation(GUN, "targets/releases");
    await signTag(signer, GUN, "rel", rel, "targets/releases");
    await signer.addDelegation(GUN, "targets/other");
    await signTag(signer, GUN, "other", other, "targets/other");
    containerd = await startContainerd();
  });

  afterAll(async () => {
    await containerd?.stop();
    for (const p of proxies) await p.stop();
    await registry?.stop();
    await notary?.stop();
    for (const w of webs) {
      w.closeAllConnections();
      w.close();
    }
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, registry?.dir, ...proxies.map((p) => p.dir)])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("notary mirror verifies and writes notary-server's layout, timestamp included", async () => {
    const r = await cli(
      "notary",
      "mirror",
      GUN,
      "--server",
      notary.url,
      "--ca",
      ca,
      "--out",
      mirrorDir,
      "--json",
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { files: string[]; roles: string[]; tags: number };
    expect(result.roles).toEqual(["targets", "targets/other", "targets/releases"]);
    expect(result.tags).toBe(2);
    expect(result.files.at(-1)).toBe(`v2/${GUN}/_trust/tuf/timestamp.json`);
    // the bytes are notary-server's own
    const dispatcher = new Agent({ connect: { ca: await readFile(ca, "utf8") } });
    const served = await undiciFetch(`${notary.url}/v2/${GUN}/_trust/tuf/timestamp.json`, {
      dispatcher,
    }).then((res) => res.arrayBuffer());
    await dispatcher.close();
    expect(
      Buffer.from(served).equals(
        await readFile(join(mirrorDir, "v2", GUN, "_trust", "tuf", "timestamp.json")),
      ),
    ).toBe(true);
  });

  it("with the notary-server stopped, skopeo pulls from the mirror through trustgate (file:// and HTTP)", async () => {
    await notary.stop();
    const web = await staticServer(mirrorDir);
    webs.push(web.server);
    for (const url of [pathToFileURL(mirrorDir).href, web.url]) {
      const tg = await proxy({ notary: { url } });
      for (const [tag, img] of [
        ["v1", v1],
        ["rel", rel],
      ] as const) {
        const copy = await skopeoCopyToOciDir(
          `${tg.host}/acme/app:${tag}`,
          join(scratch, `oci-${proxies.length}-${tag}`),
        );
        expect(copy.stderr).toBe("");
        expect(copy.code).toBe(0);
        expect(copy.digest).toBe(img.digest);
        viaNotary.set(tag, copy.digest as string);
      }
      const audit = await auditFor(tg, "docker.io/acme/app", { tag: "rel" });
      expect(audit).toMatchObject({ decision: "allow", role: "targets/releases", digest: rel.digest });
      for (const tag of ["unsigned", "other"]) {
        const inspect = await skopeoInspect(`${tg.host}/acme/app:${tag}`);
        expect(inspect.code).not.toBe(0);
        expect(inspect.stderr).toContain(`denied: docker.io/acme/app:${tag} is not signed`);
      }
    }
    expect(web.requests).toContain(`/v2/${GUN}/_trust/tuf/timestamp.json`);
  });

  it("migrate refuses another organisation's key and writes nothing", async () => {
    for (const step of [
      await cli("tuf", "init", repo, "--keys", keys),
      await cli("tuf", "keygen", join(scratch, "acme.pem")),
      await cli("tuf", "keygen", join(scratch, "globex.pem")),
      await cli(
        "tuf",
        ...tufArgs.delegate(
          repo,
          "acme",
          "docker.io/acme/*",
          join(scratch, "acme.pem.pub"),
          join(keys, "targets.pem"),
        ),
      ),
    ]) {
      expect(step.stderr).toBe("");
      expect(step.code).toBe(0);
    }
    const r = await migrate("globex.pem");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("do not sign role 'acme'");
    await expect(stat(join(repo, "metadata", "1.acme.json"))).rejects.toThrow();
  });

  const migrate = (key: string) =>
    cli(
      "migrate",
      "notary",
      GUN,
      "--mirror",
      mirrorDir,
      "--to",
      repo,
      "--role",
      "acme",
      "--key",
      join(scratch, key),
      "--snapshot-key",
      join(keys, "snapshot.pem"),
      "--timestamp-key",
      join(keys, "timestamp.pem"),
      "--json",
    );

  it("migrate signs what the proxy resolved, refuses the rest, and proves parity", async () => {
    const r = await migrate("acme.pem");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.migrated).toEqual([
      {
        tag: "rel",
        target: "docker.io/acme/app:rel",
        digest: rel.digest,
        size: rel.size,
        notaryRole: "targets/releases",
      },
      { tag: "v1", target: "docker.io/acme/app:v1", digest: v1.digest, size: v1.size, notaryRole: "targets" },
    ]);
    expect(report.refused).toEqual([
      { tag: "other", reason: expect.stringContaining("docker.io/acme/app:other is not signed") },
    ]);
    expect(report.parity).toEqual([
      { tag: "other", notary: null, tuf: null, ok: true },
      {
        tag: "rel",
        notary: { digest: rel.digest, size: rel.size },
        tuf: { digest: rel.digest, size: rel.size, role: "acme" },
        ok: true,
      },
      {
        tag: "v1",
        notary: { digest: v1.digest, size: v1.size },
        tuf: { digest: v1.digest, size: v1.size, role: "acme" },
        ok: true,
      },
    ]);
    expect(report.ok).toBe(true);
    const verify = await cli("tuf", "verify", repo, "--json");
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout).targets.map((t: { target: string }) => t.target)).toEqual([
      "docker.io/acme/app:rel",
      "docker.io/acme/app:v1",
    ]);
  });

  it("the migrated repository over HTTP: skopeo and ctr pull the same digests through trustgate's TUF source", async () => {
    const web = await staticServer(repo);
    webs.push(web.server);
    const tg = await proxy({
      tuf: { metadataUrl: `${web.url}/metadata/`, trustedRoot: join(repo, "metadata", "1.root.json") },
    });
    for (const tag of ["v1", "rel"]) {
      const copy = await skopeoCopyToOciDir(`${tg.host}/acme/app:${tag}`, join(scratch, `oci-tuf-${tag}`));
      expect(copy.stderr).toBe("");
      expect(copy.code).toBe(0);
      expect(copy.digest).toBe(viaNotary.get(tag));
    }
    const audit = await auditFor(tg, "docker.io/acme/app", { tag: "v1" });
    // Docker's default roles: the policy's `targets` stands for the delegation that signed it
    expect(audit).toMatchObject({ decision: "allow", role: "targets", digest: v1.digest });
    expect(audit.source).toMatch(/^tuf .*\(signed by delegation acme\)$/);
    const hostsDir = await writeHostsDir(tg.url, { dir: join(scratch, "hosts") });
    const pull = await ctrPull(containerd, "docker.io/acme/app:rel", { hostsDir });
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, "docker.io/acme/app:rel")).toBe(viaNotary.get("rel"));
    for (const tag of ["unsigned", "other"]) {
      const inspect = await skopeoInspect(`${tg.host}/acme/app:${tag}`);
      expect(inspect.code).not.toBe(0);
      expect(inspect.stderr).toContain(`denied: docker.io/acme/app:${tag} is not signed`);
      const refused = await ctrPull(containerd, `docker.io/acme/app:${tag}`, { hostsDir });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain("403 Forbidden");
    }
  });
});
