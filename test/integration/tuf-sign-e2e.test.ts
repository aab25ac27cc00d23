/**
 * Issue 14 points 1-2 end to end: a TUF 1.0 repository made only with `trustgate tuf` (the built
 * CLI, real encrypted keys), its metadata/ directory served by a plain static file server on
 * loopback, used as trustgate's `tuf:` source in front of a real docker-registry; skopeo pulls a
 * tag signed into the acme delegation and is refused an unsigned tag, and the same tag after
 * `tuf unsign` + `tuf publish`. Another organisation's key cannot sign acme's namespace.
 */

import { mkdir, readFile, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnBuiltCli } from "../helpers/built-cli.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";
import { staticServer } from "../helpers/static-server.js";
import { auditFor, logMark, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";
import { tufArgs } from "../helpers/tuf-args.js";

// the organisation's own role must have signed; Docker's default roles would accept any reachable role
const POLICY = `name: acme
match: ["docker.io/acme/**", "docker.io/globex/**"]
mode: enforce
trust:
  source: tuf
  roles: [acme, globex]
`;

const ENV = { TRUSTGATE_TUF_PASSPHRASE: "e2e passphrase" };

const tuf = (...args: string[]) => spawnBuiltCli(ENV, "tuf", ...args);

describe("issue 14: a repository made with trustgate tuf, served statically, enforced by trustgate", () => {
  let registry: RegistryPeer;
  let trustgate: TrustgatePeer;
  let web: { server: Server; url: string };
  let scratch: string;
  let repo: string;
  let keys: string;
  const signed = makeImage("tuf-sign e2e: signed by acme");
  const later = makeImage("tuf-sign e2e: signed, then unsigned");
  const unsigned = makeImage("tuf-sign e2e: never signed");
  const publish = () =>
    tuf(...tufArgs.publish(repo, join(keys, "snapshot.pem"), join(keys, "timestamp.pem")));
  const sign = (tag: string, image: { digest: string; manifest: Buffer }, role = "acme", key = "acme.pem") =>
    tuf(
      ...tufArgs.sign(
        `docker.io/acme/app:${tag}`,
        repo,
        role,
        join(scratch, key),
        image.digest,
        String(image.manifest.length),
      ),
    );

  beforeAll(async () => {
    scratch = await tempDir("tuf-sign-e2e");
    repo = join(scratch, "repo");
    keys = join(scratch, "keys");
    registry = await startRegistry();
    await pushImage(registry.url, "acme/app", "v1", signed);
    await pushImage(registry.url, "acme/app", "v2", later);
    await pushImage(registry.url, "acme/app", "unsigned", unsigned);

    for (const step of [
      await tuf("init", repo, "--keys", keys),
      await tuf("keygen", join(scratch, "acme.pem"), "--type", "ecdsa"),
      await tuf("keygen", join(scratch, "globex.pem")),
      await tuf(
        ...tufArgs.delegate(
          repo,
          "acme",
          "docker.io/acme/*",
          join(scratch, "acme.pem.pub"),
          join(keys, "targets.pem"),
        ),
      ),
      await tuf(
        ...tufArgs.delegate(
          repo,
          "globex",
          "docker.io/globex/*",
          join(scratch, "globex.pem.pub"),
          join(keys, "targets.pem"),
        ),
      ),
      // v1: digest and size read from the registry by tag (no --digest/--size)
      await tuf(
        "sign",
        "docker.io/acme/app:v1",
        "--repo",
        repo,
        "--role",
        "acme",
        "--key",
        join(scratch, "acme.pem"),
        "--upstream",
        registry.url,
      ),
      await sign("v2", later),
      await tuf(
        ...tufArgs.sign(
          "docker.io/globex/app:v1",
          repo,
          "globex",
          join(scratch, "globex.pem"),
          unsigned.digest,
          String(unsigned.manifest.length),
        ),
      ),
      await publish(),
    ]) {
      expect(step.stderr).toBe("");
      expect(step.code).toBe(0);
    }
    web = await staticServer(repo);
    const policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "acme.yaml", POLICY);
    trustgate = await startTrustgate({
      registries: {
        "docker.io": {
          upstream: registry.url,
          tuf: { metadataUrl: `${web.url}/metadata/`, trustedRoot: join(repo, "metadata", "1.root.json") },
        },
      },
      extraConfig: { policies, trustRefreshSeconds: 1 },
    });
  });

  afterAll(async () => {
    await trustgate?.stop();
    await registry?.stop();
    web?.server.closeAllConnections();
    web?.server.close();
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, trustgate?.dir, registry?.dir])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("skopeo pulls the tag acme signed, with exactly the signed manifest", async () => {
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/acme/app:v1`, join(scratch, "oci-1"));
    expect(copy.stderr).toBe("");
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(signed.digest);
    expect(copy.manifest?.equals(signed.manifest)).toBe(true);
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "v1" });
    expect(audit).toMatchObject({ decision: "allow", digest: signed.digest, role: "acme" });
    const role = JSON.parse(await readFile(join(repo, "metadata", "1.acme.json"), "utf8"));
    expect(role.signed.targets["docker.io/acme/app:v1"]).toEqual({
      length: signed.manifest.length,
      hashes: { sha256: signed.digest.slice("sha256:".length) },
      custom: { mediaType: "application/vnd.oci.image.manifest.v1+json" },
    });
  });

  it("an unsigned tag is refused", async () => {
    const inspect = await skopeoInspect(`${trustgate.host}/acme/app:unsigned`);
    expect(inspect.code).not.toBe(0);
    expect(inspect.stderr).toContain("denied: docker.io/acme/app:unsigned is not signed");
  });

  it("globex's key cannot sign acme's namespace, neither as globex nor as acme", async () => {
    const asGlobex = await sign("unsigned", unsigned, "globex", "globex.pem");
    expect(asGlobex.code).toBe(1);
    expect(asGlobex.stderr).toContain("outside the paths delegated to 'globex'");
    const asAcme = await sign("unsigned", unsigned, "acme", "globex.pem");
    expect(asAcme.code).toBe(1);
    expect(asAcme.stderr).toContain("do not sign role 'acme'");
  });

  it("after tuf unsign + publish, a tag that pulled before is refused", async () => {
    const before = await skopeoInspect(`${trustgate.host}/acme/app:v2`);
    expect(before.code).toBe(0);
    const un = await tuf(
      "unsign",
      "docker.io/acme/app:v2",
      "--repo",
      repo,
      "--role",
      "acme",
      "--key",
      join(scratch, "acme.pem"),
    );
    expect(un.code).toBe(0);
    expect((await publish()).code).toBe(0);
    // trustRefreshSeconds 1: the next query after a second refreshes from the repository
    await new Promise((r) => setTimeout(r, 1_100));
    const mark = await logMark(trustgate);
    const after = await skopeoInspect(`${trustgate.host}/acme/app:v2`);
    expect(after.code).not.toBe(0);
    expect(after.stderr).toContain("denied: docker.io/acme/app:v2 is not signed");
    const audit = await auditFor(trustgate, "docker.io/acme/app", { tag: "v2" }, mark);
    expect(audit).toMatchObject({ decision: "deny" });
  });

  it("tuf verify lists what the proxy sees, each target with its role", async () => {
    const r = await tuf("verify", repo, "--json");
    expect(r.code).toBe(0);
    const { targets } = JSON.parse(r.stdout) as {
      targets: Array<{ target: string; role: string; digest: string }>;
    };
    expect(targets).toEqual([
      { target: "docker.io/acme/app:v1", digest: signed.digest, size: signed.manifest.length, role: "acme" },
      {
        target: "docker.io/globex/app:v1",
        digest: unsigned.digest,
        size: unsigned.manifest.length,
        role: "globex",
      },
    ]);
  });
});
