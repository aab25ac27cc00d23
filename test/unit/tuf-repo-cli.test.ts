/**
 * `trustgate tuf ...` (src/commands/tuf.ts, src/tuf-repo/): each subcommand against a repository
 * in a temp dir, and the result loaded by tuf-js through trustgate's own session (verify), the
 * same client path the proxy uses. Keys are real ed25519 / ECDSA P-256 keys, encrypted on disk.
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/commands/tuf.js";
import { UsageError } from "../../src/errors.js";
import { tuf } from "../helpers/tuf-cli.js";

const D1 = `sha256:${"a".repeat(64)}`;
const D2 = `sha256:${"b".repeat(64)}`;

describe("trustgate tuf", () => {
  let dir: string;
  let repo: string;
  let keys: string;
  const publish = () =>
    tuf(
      "publish",
      repo,
      "--snapshot-key",
      join(keys, "snapshot.pem"),
      "--timestamp-key",
      join(keys, "timestamp.pem"),
    );
  const verifyJson = async () => {
    const r = await tuf("verify", repo, "--json");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    return (
      JSON.parse(r.out) as { targets: Array<{ target: string; digest: string; size: number; role: string }> }
    ).targets;
  };

  beforeAll(async () => {
    process.env.TRUSTGATE_TUF_PASSPHRASE = "correct horse";
    dir = await mkdtemp(join(tmpdir(), "tuf-cli-"));
    repo = join(dir, "repo");
    keys = join(dir, "keys");
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("init writes encrypted keys and a valid, published, empty repository", async () => {
    const r = await tuf("init", repo, "--keys", keys, "--root-keys", "2", "--root-threshold", "2");
    expect(r.code).toBe(0);
    expect((await readdir(keys)).sort()).toContain("root-2.pem");
    const pem = await readFile(join(keys, "root-1.pem"), "utf8");
    expect(pem).toContain("BEGIN ENCRYPTED PRIVATE KEY");
    expect((await readdir(join(repo, "metadata"))).sort()).toEqual([
      "1.root.json",
      "1.snapshot.json",
      "1.targets.json",
      "root.json",
      "timestamp.json",
    ]);
    const root = JSON.parse(await readFile(join(repo, "metadata", "1.root.json"), "utf8"));
    expect(root.signed.consistent_snapshot).toBe(true);
    expect(root.signed.roles.root.threshold).toBe(2);
    expect(Object.keys(root.signatures)).toHaveLength(2);
    expect(await verifyJson()).toEqual([]);
    expect((await tuf("init", repo, "--keys", join(dir, "k2"))).code).toBe(1);
  });

  it("keygen, delegate, sign (ecdsa and ed25519 orgs), publish: verify lists every target with its role", async () => {
    expect((await tuf("keygen", join(dir, "acme.pem"), "--type", "ecdsa")).code).toBe(0);
    expect((await tuf("keygen", join(dir, "globex.pem"))).code).toBe(0);
    for (const org of ["acme", "globex"]) {
      const r = await tuf(
        "delegate",
        repo,
        org,
        "--paths",
        `docker.io/${org}/*`,
        "--key",
        join(dir, `${org}.pem.pub`),
        "--targets-key",
        join(keys, "targets.pem"),
      );
      expect(r.code).toBe(0);
    }
    // globex has signed nothing: a delegation to a role with no metadata is not published
    expect(
      (
        await tuf(
          "sign",
          "acme/app:v1",
          "--repo",
          repo,
          "--role",
          "acme",
          "--key",
          join(dir, "acme.pem"),
          "--digest",
          D1,
          "--size",
          "10",
          "--media-type",
          "application/vnd.oci.image.manifest.v1+json",
        )
      ).code,
    ).toBe(0);
    const early = await publish();
    expect(early.code).toBe(1);
    expect(early.err).toContain("'globex' is delegated but has signed nothing yet");
    expect(
      (
        await tuf(
          "sign",
          "docker.io/globex/app:v1",
          "--repo",
          repo,
          "--role",
          "globex",
          "--key",
          join(dir, "globex.pem"),
          "--digest",
          D2,
          "--size",
          "20",
        )
      ).code,
    ).toBe(0);
    expect((await publish()).code).toBe(0);
    expect(await verifyJson()).toEqual([
      { target: "docker.io/acme/app:v1", digest: D1, size: 10, role: "acme" },
      { target: "docker.io/globex/app:v1", digest: D2, size: 20, role: "globex" },
    ]);
    const acme = JSON.parse(await readFile(join(repo, "metadata", "1.acme.json"), "utf8"));
    expect(acme.signed.targets["docker.io/acme/app:v1"].custom).toEqual({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
    });
  });

  it("another organisation's key cannot sign outside its paths, nor into another role", async () => {
    const outside = await tuf(
      "sign",
      "acme/app:evil",
      "--repo",
      repo,
      "--role",
      "globex",
      "--key",
      join(dir, "globex.pem"),
      "--digest",
      D2,
      "--size",
      "1",
    );
    expect(outside.code).toBe(1);
    expect(outside.err).toContain("docker.io/acme/app:evil is outside the paths delegated to 'globex'");
    const wrongKey = await tuf(
      "sign",
      "acme/app:evil",
      "--repo",
      repo,
      "--role",
      "acme",
      "--key",
      join(dir, "globex.pem"),
      "--digest",
      D2,
      "--size",
      "1",
    );
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.err).toContain("the keys given do not sign role 'acme'");
    expect(await readdir(join(repo, "staged")).catch(() => [])).toEqual([]);
  });

  it("unsign and revoke take targets away after publish; refresh re-signs the timestamp only", async () => {
    expect(
      (await tuf("unsign", "acme/app:v1", "--repo", repo, "--role", "acme", "--key", join(dir, "acme.pem")))
        .code,
    ).toBe(0);
    expect((await tuf("revoke", repo, "globex", "--targets-key", join(keys, "targets.pem"))).code).toBe(0);
    // nothing changes for clients until publish
    expect(await verifyJson()).toHaveLength(2);
    expect((await publish()).code).toBe(0);
    expect(await verifyJson()).toEqual([]);
    const before = JSON.parse(await readFile(join(repo, "metadata", "timestamp.json"), "utf8"));
    const r = await tuf("refresh", repo, "--key", join(keys, "timestamp.pem"), "--expires", "3");
    expect(r.code).toBe(0);
    const after = JSON.parse(await readFile(join(repo, "metadata", "timestamp.json"), "utf8"));
    expect(after.signed.version).toBe(before.signed.version + 1);
    expect(after.signed.meta).toEqual(before.signed.meta);
    expect(Date.parse(after.signed.expires) - Date.now()).toBeGreaterThan(2.9 * 86_400_000);
    await verifyJson();
  });

  it("fails closed with one line: wrong passphrase, wrong role key, missing passphrase (usage)", async () => {
    process.env.TRUSTGATE_TUF_PASSPHRASE = "wrong";
    const bad = await tuf("refresh", repo, "--key", join(keys, "timestamp.pem"));
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("wrong passphrase");
    process.env.TRUSTGATE_TUF_PASSPHRASE = "correct horse";
    const wrong = await tuf("refresh", repo, "--key", join(keys, "snapshot.pem"));
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain("do not sign role 'timestamp'");
    await expect(run(["refresh", repo, "--key", "x", "--passphrase-env", "NO_SUCH_VAR_SET"])).rejects.toThrow(
      UsageError,
    );
    await expect(run(["sign", "acme/app", "--repo", repo, "--role", "acme"])).rejects.toThrow(
      /must name a tag/,
    );
    await expect(run(["frobnicate"])).rejects.toThrow(/unknown subcommand 'tuf frobnicate'/);
  });

  it("verify refuses a tampered repository", async () => {
    const { writeFile } = await import("node:fs/promises");
    const ts = join(repo, "metadata", "timestamp.json");
    const json = JSON.parse(await readFile(ts, "utf8"));
    json.signed.version += 10;
    await writeFile(ts, JSON.stringify(json));
    const r = await tuf("verify", repo);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/verification failed \[SIGNATURE_INVALID\]/);
  });
});
