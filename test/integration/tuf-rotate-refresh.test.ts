/**
 * Issue 14, what done looks like: the running proxy (dist/cli.js serve, a `tuf:` source over
 * HTTP) follows root rotations made with `trustgate tuf rotate` (TUF 1.0 client workflow 5.3:
 * N.root.json fetched and checked against the trusted root), and `tuf refresh` keeps pulls
 * working past the old timestamp's expiry (the proxy's clock moved by libfaketime while it runs).
 * After the targets key is rotated, a repository re-signed with the OLD targets key is refused.
 */

import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  Metadata,
  MetadataKind,
  MetaFile,
  Snapshot,
  TargetFile,
  type Targets,
  Timestamp,
} from "@tufjs/models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSigningKey } from "../../src/tuf-repo/keys.js";
import { spawnBuiltCli } from "../helpers/built-cli.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoInspect } from "../helpers/skopeo.js";
import { staticServer } from "../helpers/static-server.js";
import { auditFor, logMark, writePolicy } from "../helpers/trust-e2e.js";
import { libfaketime, startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";
import { tufArgs } from "../helpers/tuf-args.js";

const POLICY = `name: acme
match: ["docker.io/acme/**"]
mode: enforce
trust:
  source: tuf
`;
const PASSPHRASE = "rotate e2e passphrase";
const ENV = { TRUSTGATE_TUF_PASSPHRASE: PASSPHRASE };

const tuf = (...args: string[]) => spawnBuiltCli(ENV, "tuf", ...args);

async function ok(step: Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<string> {
  const r = await step;
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("issue 14: tuf rotate and tuf refresh, followed by the running proxy", () => {
  let registry: RegistryPeer;
  let proxy: TrustgatePeer;
  let clocked: TrustgatePeer;
  let web: Awaited<ReturnType<typeof staticServer>>;
  let scratch: string;
  let repo: string;
  let keys: string;
  let clockFile: string;
  const v1 = makeImage("tuf-rotate e2e: v1");
  const v2 = makeImage("tuf-rotate e2e: v2");
  const k = (name: string) => join(keys, name);
  const publish = (timestampKey = "timestamp.pem") =>
    tuf(...tufArgs.publish(repo, k("snapshot.pem"), k(timestampKey)));
  const pull = (peer: TrustgatePeer, tag: string) => skopeoInspect(`${peer.host}/acme/app:${tag}`);

  beforeAll(async () => {
    scratch = await tempDir("tuf-rotate-e2e");
    repo = join(scratch, "repo");
    keys = join(scratch, "keys");
    registry = await startRegistry();
    await pushImage(registry.url, "acme/app", "v1", v1);
    await pushImage(registry.url, "acme/app", "v2", v2);
    await ok(tuf("init", repo, "--keys", keys));
    for (const name of ["acme", "root-new", "targets-new"]) await ok(tuf("keygen", k(`${name}.pem`)));
    await ok(tuf(...tufArgs.delegate(repo, "acme", "docker.io/acme/*", k("acme.pem.pub"), k("targets.pem"))));
    await ok(
      tuf(
        ...tufArgs.sign(
          "docker.io/acme/app:v1",
          repo,
          "acme",
          k("acme.pem"),
          v1.digest,
          String(v1.manifest.length),
        ),
      ),
    );
    await ok(publish());
    web = await staticServer(repo);
    const policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "acme.yaml", POLICY);
    const registries = {
      "docker.io": {
        upstream: registry.url,
        tuf: { metadataUrl: `${web.url}/metadata/`, trustedRoot: join(repo, "metadata", "1.root.json") },
      },
    };
    proxy = await startTrustgate({ registries, extraConfig: { policies, trustRefreshSeconds: 1 } });
    // a second proxy whose clock the test moves while it runs (libfaketime re-reads this file)
    clockFile = join(scratch, "faketime");
    await writeFile(clockFile, "+0d\n");
    clocked = await startTrustgate({
      registries,
      extraConfig: { policies, trustRefreshSeconds: 1 },
      env: {
        LD_PRELOAD: libfaketime(),
        FAKETIME_TIMESTAMP_FILE: clockFile,
        FAKETIME_CACHE_DURATION: "1",
        FAKETIME_DONT_FAKE_MONOTONIC: "1",
      },
    });
  });

  afterAll(async () => {
    await proxy?.stop();
    await clocked?.stop();
    await registry?.stop();
    web?.server.closeAllConnections();
    web?.server.close();
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, proxy?.dir, clocked?.dir, registry?.dir])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("tuf refresh keeps pulls working past the old timestamp's expiry; without it they fail closed", async () => {
    expect((await pull(clocked, "v1")).code).toBe(0);
    // two days on: the timestamp published with a 1-day expiry has expired
    await writeFile(clockFile, "+2d\n");
    await sleep(2_100);
    const mark = await logMark(clocked);
    const stale = await pull(clocked, "v1");
    expect(stale.code).not.toBe(0);
    expect(stale.stderr).toContain("denied");
    const audit = await auditFor(clocked, "docker.io/acme/app", { tag: "v1" }, mark);
    expect(audit).toMatchObject({ decision: "deny" });
    expect(String(audit?.reason)).toMatch(/expired|EXPIRED/);
    // the cron job: a new timestamp, 7 days from (real) now, still valid on the moved clock
    await ok(tuf("refresh", repo, "--key", k("timestamp.pem"), "--expires", "7"));
    await sleep(1_100);
    const fresh = await pull(clocked, "v1");
    expect(fresh.stderr).toBe("");
    expect(fresh.code).toBe(0);
  });

  it("follows a root key rotation: 2.root.json is fetched, pulls keep working", async () => {
    expect((await pull(proxy, "v1")).code).toBe(0);
    await ok(tuf("rotate", "root", "--repo", repo, "--key", k("root-new.pem"), "--old-key", k("root.pem")));
    await ok(publish());
    await sleep(1_100);
    const r = await pull(proxy, "v1");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    // tuf-js asks for N+1.root.json once it trusts N (5.3.3): 3 is asked only after 2 was accepted
    expect(web.requests).toContain("/metadata/3.root.json");
  });

  it("follows a targets key rotation (root v3 signed by the new root key); a tag signed after it pulls", async () => {
    await ok(
      tuf(
        "rotate",
        "targets",
        "--repo",
        repo,
        "--key",
        k("targets-new.pem"),
        "--root-key",
        k("root-new.pem"),
      ),
    );
    await ok(
      tuf(
        ...tufArgs.sign(
          "docker.io/acme/app:v2",
          repo,
          "acme",
          k("acme.pem"),
          v2.digest,
          String(v2.manifest.length),
        ),
      ),
    );
    await ok(publish());
    await sleep(1_100);
    for (const tag of ["v1", "v2"]) {
      const r = await pull(proxy, tag);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
    }
    // v2's targets are signed by a key only root 3 names: the pulls above prove root 3 is trusted
    expect(web.requests).toContain("/metadata/4.root.json");
  });

  it("a repository re-signed with the OLD targets key after the rotation is refused", async () => {
    // what the CLI refuses to write (the old key no longer signs targets), written by hand: a
    // new targets version, signed by the rotated-out key, that would sign v2 as a top-level target
    const load = async (name: string) => loadSigningKey(await readFile(k(name), "utf8"), PASSPHRASE, name);
    const meta = join(repo, "metadata");
    const timestamp = Metadata.fromJSON(
      MetadataKind.Timestamp,
      JSON.parse(await readFile(join(meta, "timestamp.json"), "utf8")),
    );
    const snapshot = Metadata.fromJSON(
      MetadataKind.Snapshot,
      JSON.parse(
        await readFile(join(meta, `${timestamp.signed.snapshotMeta.version}.snapshot.json`), "utf8"),
      ),
    );
    const targetsVersion = snapshot.signed.meta["targets.json"]?.version ?? 0;
    const targets = Metadata.fromJSON(
      MetadataKind.Targets,
      JSON.parse(await readFile(join(meta, `${targetsVersion}.targets.json`), "utf8")),
    ) as Metadata<Targets>;
    const forged = new Metadata(
      Object.assign(Object.create(Object.getPrototypeOf(targets.signed)), targets.signed, {
        version: targetsVersion + 1,
        targets: {
          "docker.io/acme/app:forged": new TargetFile({
            path: "docker.io/acme/app:forged",
            length: v2.manifest.length,
            hashes: { sha256: v2.digest.slice("sha256:".length) },
          }),
        },
      }) as Targets,
    );
    forged.sign((await load("targets.pem")).signer, false);
    const forgedBytes = Buffer.from(JSON.stringify(forged.toJSON()));
    await writeFile(join(meta, `${targetsVersion + 1}.targets.json`), forgedBytes);
    const { createHash } = await import("node:crypto");
    const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    const nextSnapshot = new Metadata(
      new Snapshot({
        version: snapshot.signed.version + 1,
        specVersion: snapshot.signed.specVersion,
        expires: snapshot.signed.expires,
        meta: {
          ...snapshot.signed.meta,
          "targets.json": new MetaFile({
            version: targetsVersion + 1,
            length: forgedBytes.length,
            hashes: { sha256: sha(forgedBytes) },
          }),
        },
      }),
    );
    nextSnapshot.sign((await load("snapshot.pem")).signer, false);
    const snapshotBytes = Buffer.from(JSON.stringify(nextSnapshot.toJSON()));
    await writeFile(join(meta, `${nextSnapshot.signed.version}.snapshot.json`), snapshotBytes);
    const nextTimestamp = new Metadata(
      new Timestamp({
        version: timestamp.signed.version + 1,
        specVersion: timestamp.signed.specVersion,
        expires: timestamp.signed.expires,
        snapshotMeta: new MetaFile({
          version: nextSnapshot.signed.version,
          length: snapshotBytes.length,
          hashes: { sha256: sha(snapshotBytes) },
        }),
      }),
    );
    nextTimestamp.sign((await load("timestamp.pem")).signer, false);
    await writeFile(join(meta, "timestamp.json"), JSON.stringify(nextTimestamp.toJSON()));
    await sleep(1_100);
    const mark = await logMark(proxy);
    const r = await pull(proxy, "forged");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("denied");
    const audit = await auditFor(proxy, "docker.io/acme/app", { tag: "forged" }, mark);
    expect(audit).toMatchObject({ decision: "deny" });
    expect(String(audit?.reason)).toMatch(/targets/);
    expect(String(audit?.reason)).toContain("targets was signed by 0/1 keys");
  });
});
