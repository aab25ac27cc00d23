/**
 * REVIEW U7 end to end, all real: a repository name of the longest legal length (255 characters,
 * distribution's bound on the whole name) pushed to docker-registry, signed with the `notary` CLI
 * on notary-server, and pulled through the built trustgate CLI. Its state file name used to be the
 * URL-encoded GUN, too long for a file name with the temp-file suffix: 500 ENAMETOOLONG.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeImage, pushImage } from "../helpers/image.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { digestHex, signTag } from "../helpers/trust-e2e.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

const REPOSITORY = `acme/${"long-name-".repeat(25).slice(0, -1)}s`; // a component ends alphanumeric
const ACCEPT =
  "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

describe("U7: a 255-character repository name through trustgate", () => {
  let registry: RegistryPeer;
  let notary: NotaryLab;
  let proxy: TrustgatePeer;
  const signed = makeImage("long name: signed v1");
  const unsigned = makeImage("long name: never signed");

  beforeAll(async () => {
    expect(REPOSITORY).toHaveLength(255);
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    await pushImage(registry.url, REPOSITORY, "v1", signed);
    await pushImage(registry.url, REPOSITORY, "unsigned", unsigned);
    const gun = `${registry.host}/${REPOSITORY}`;
    const signer = notary.client();
    await signer.init(gun);
    await signTag(signer, gun, "v1", signed);
    expect(digestHex(signed.digest)).toHaveLength(64);
    proxy = await startTrustgateWithConfig(
      [
        "logLevel: info",
        "stateDir: ./state",
        "registries:",
        `  "${registry.host}":`,
        `    upstream: ${registry.url}`,
        `    notary: { url: "${notary.url}", caFile: "${notary.ca}" }`,
      ].join("\n"),
      { policies: { "acme.yaml": `match: ["${registry.host}/acme/**"]\nmode: enforce\n` } },
    );
  }, 180_000);

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await notary?.stop();
  });

  it("U7: the signed tag is served (200, the signed digest), the unsigned one refused (403), never 500", async () => {
    const get = (tag: string) =>
      fetch(`${proxy.url}/v2/${registry.host}/${REPOSITORY}/manifests/${tag}`, {
        headers: { accept: ACCEPT },
      });
    const ok = await get("v1");
    expect(ok.status).toBe(200);
    expect(ok.headers.get("docker-content-digest")).toBe(signed.digest);
    const refused = await get("unsigned");
    expect(refused.status).toBe(403);
    // the trust state was written, under a bounded name
    const files = (await readdir(join(proxy.dir, "state", "notary"))).filter((f) => f.endsWith(".json"));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{64}\.json$/);
  });
});
