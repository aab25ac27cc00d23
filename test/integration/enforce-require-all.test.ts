/**
 * `trust.requireAll` on every path (REVIEW T3), all real: docker-registry upstream, notary-server
 * with the `notary` CLI signing in `targets` and in a `targets/releases` delegation, and the built
 * trustgate CLI in between; plain fetch as the client. Kubernetes (the kubelet through
 * containerd), dockerd and containerd pull by digest after a HEAD by tag (shared/LAB.md), so a
 * digest must be judged by the policy's own tag rule, and so must the children of a signed index.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Image, makeImage, makeIndex, pushImage } from "../helpers/image.js";
import { type NotaryClient, type NotaryLab, startNotary } from "../helpers/notary.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { auditFor, digestHex, logMark, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

const policy = (r: string, requireAll: boolean) =>
  `match: ["${r}/acme/**"]\nmode: enforce\ntrust:\n  roles: [targets/releases, targets]\n  requireAll: ${requireAll}\ndigestPulls: signed\n`;

describe("requireAll with notary-server, docker-registry and the notary CLI (REVIEW T3)", () => {
  let registry: RegistryPeer;
  let notary: NotaryLab;
  let signer: NotaryClient;
  let proxy: TrustgatePeer;
  let R: string;
  let gun: string;
  const both = makeImage("signed by releases and by targets");
  const targetsOnly = makeImage("signed by targets only");
  const multi = makeIndex("index signed by targets only", ["amd64", "arm64"]);

  const get = (path: string, method = "GET") =>
    fetch(`${proxy.url}/v2/${R}/acme/app/${path}`, { method, headers: { accept: ACCEPT } });
  const message = async (res: Response) =>
    ((await res.json()) as { errors: { code: string; message: string }[] }).errors[0];
  const add = (tag: string, img: Image, role?: string) =>
    signer.addhash(gun, tag, img.size, digestHex(img.digest), role);

  /** Replace the policy file and wait until trustgate says it reloaded. */
  async function setPolicy(requireAll: boolean): Promise<void> {
    const mark = await logMark(proxy);
    await writePolicy(join(proxy.dir, "policies"), "acme.yaml", policy(R, requireAll));
    await expect
      .poll(async () => (await proxy.logs()).slice(mark).some((l) => l.msg === "policies reloaded"), {
        timeout: 10_000,
        interval: 100,
      })
      .toBe(true);
  }

  beforeAll(async () => {
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    R = registry.host;
    gun = `${R}/acme/app`;
    signer = notary.client();
    await pushImage(registry.url, "acme/app", "both", both);
    await pushImage(registry.url, "acme/app", "targets-only", targetsOnly);
    await pushImage(registry.url, "acme/app", "multi", multi);
    await signer.init(gun);
    await signer.addDelegation(gun, "targets/releases");
    await add("both", both, "targets/releases");
    await add("both", both);
    await add("targets-only", targetsOnly);
    await add("multi", multi);
    await signer.publish(gun);
    const config = [
      "logLevel: info",
      "trustRefreshSeconds: 1",
      "registries:",
      `  "${R}":`,
      `    upstream: ${registry.url}`,
      `    notary: { url: "${notary.url}", caFile: "${notary.ca}" }`,
    ].join("\n");
    proxy = await startTrustgateWithConfig(config, { policies: { "acme.yaml": policy(R, true) } });
  }, 180_000);

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await notary?.stop();
  });

  it("T3: with requireAll, a digest signed in targets only is refused by digest just as by tag", async () => {
    const byTag = await get("manifests/targets-only");
    expect(byTag.status).toBe(403);
    const byDigest = await get(`manifests/${targetsOnly.digest}`);
    expect(byDigest.status).toBe(403);
    expect(byDigest.statusText).toContain("digest not signed");
    expect(await message(byDigest)).toEqual({
      code: "DENIED",
      message: `${gun}@${targetsOnly.digest}, signed as tag targets-only in targets, is not signed in targets/releases (policy acme requires all of targets/releases, targets)`,
      detail: { digest: targetsOnly.digest, policy: "acme" },
    });
    expect(await auditFor(proxy, gun, { reference: targetsOnly.digest })).toMatchObject({
      decision: "deny",
      policy: "acme",
      mode: "enforce",
      source: "notary",
    });
    // signed by every role: allowed both ways, pinned to the same bytes
    for (const ref of ["both", both.digest]) {
      const res = await get(`manifests/${ref}`);
      expect(res.status, ref).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(both.manifest), ref).toBe(true);
    }
    expect(await auditFor(proxy, gun, { reference: both.digest })).toMatchObject({
      decision: "allow",
      role: "targets/releases+targets",
    });
  });

  it("T3: an index signed by one role stops vouching for its children once the policy requires all roles", async () => {
    await setPolicy(false);
    const index = await get("manifests/multi");
    expect(index.status).toBe(200);
    const platforms = multi.platforms ?? [];
    for (const p of platforms) expect((await get(`manifests/${p.digest}`)).status, p.digest).toBe(200);
    await setPolicy(true);
    expect((await get("manifests/multi")).status).toBe(403);
    expect((await get(`manifests/${multi.digest}`)).status).toBe(403);
    for (const p of platforms) {
      const res = await get(`manifests/${p.digest}`);
      expect(res.status, p.digest).toBe(403);
      expect((await message(res))?.message).toContain(
        `is listed in the index ${multi.digest}, which is not signed as policy acme demands`,
      );
    }
  });

  it("T3: tags/list lists only the tags signed as the policy demands", async () => {
    const res = await get("tags/list");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: "acme/app", tags: ["both"] });
  });
});
