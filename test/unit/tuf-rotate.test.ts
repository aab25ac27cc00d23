/**
 * `trustgate tuf rotate` (src/tuf-repo/rotate.ts): each new root version is checked the way a
 * client checks it (TUF 1.0 client workflow 5.3.4: a threshold of the old root's keys AND of the
 * new root's own keys; 5.3.5: version N+1), here with @tufjs/models' verifyDelegate on the files
 * written, and end to end with `tuf verify` (tuf-js Updater from 1.root.json, walking N.root.json).
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, MetadataKind } from "@tufjs/models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/commands/tuf.js";
import { UsageError } from "../../src/errors.js";
import { tufArgs } from "../helpers/tuf-args.js";
import { tuf } from "../helpers/tuf-cli.js";

const D1 = `sha256:${"c".repeat(64)}`;

async function rootFile(repo: string, version: number): Promise<Metadata<never>> {
  const json = JSON.parse(await readFile(join(repo, "metadata", `${version}.root.json`), "utf8"));
  return Metadata.fromJSON(MetadataKind.Root, json) as never;
}

describe("trustgate tuf rotate", () => {
  let dir: string;
  let repo: string;
  let keys: string;
  const k = (name: string) => join(keys, name);
  const publish = (snapshot = k("snapshot.pem"), timestamp = k("timestamp.pem")) =>
    tuf(...tufArgs.publish(repo, snapshot, timestamp));
  /** `tuf rotate ROLE --repo REPO`, each [flag, key file] as `flag keys/FILE`, then `extra` */
  const rotate = (role: string, keyArgs: Array<[string, string]>, ...extra: string[]) =>
    tuf("rotate", role, "--repo", repo, ...keyArgs.flatMap(([flag, name]) => [flag, k(name)]), ...extra);
  const verify = async () => {
    const r = await tuf("verify", repo, "--json");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    return (JSON.parse(r.out) as { targets: Array<{ target: string; role: string }> }).targets;
  };

  beforeAll(async () => {
    process.env.TRUSTGATE_TUF_PASSPHRASE = "rotate passphrase";
    dir = await mkdtemp(join(tmpdir(), "tuf-rotate-"));
    repo = join(dir, "repo");
    keys = join(dir, "keys");
    expect((await tuf("init", repo, "--keys", keys, "--root-keys", "2", "--root-threshold", "2")).code).toBe(
      0,
    );
    for (const name of ["root-new-1", "root-new-2", "root-new-3", "targets-new", "timestamp-new", "stranger"])
      expect((await tuf("keygen", k(`${name}.pem`))).code).toBe(0);
    expect((await tuf("keygen", k("acme.pem"))).code).toBe(0);
    const delegate = await tuf(
      ...tufArgs.delegate(repo, "acme", "docker.io/acme/*", k("acme.pem.pub"), k("targets.pem")),
    );
    expect(delegate.code).toBe(0);
    const sign = await tuf(...tufArgs.sign("docker.io/acme/app:v1", repo, "acme", k("acme.pem"), D1, "42"));
    expect(sign.code).toBe(0);
    expect((await publish()).code).toBe(0);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses old keys that do not meet the old threshold, naming the key that is not a root key", async () => {
    // 1 of 2 old root keys: below root v1's threshold 2
    const short = await rotate("root", [
      ["--key", "root-new-1.pem"],
      ["--old-key", "root-1.pem"],
    ]);
    expect(short.code).toBe(1);
    expect(short.err).toContain(
      "root version 1 needs 2 of its root keys to sign the new root, the keys given hold 1",
    );
    // a key that was never a root key
    const wrong = await rotate("root", [
      ["--key", "root-new-1.pem"],
      ["--old-key", "root-1.pem"],
      ["--old-key", "stranger.pem"],
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/hold 1 \([0-9a-f]{12} is not a root key of root version 1\): give --old-key/);
    expect(await readdir(join(repo, "staged")).catch(() => [])).toEqual([]);
    expect(await readdir(join(repo, "metadata"))).not.toContain("2.root.json");
  });

  it("root v2 is signed by the old keys (old threshold) and the new ones (new threshold)", async () => {
    const r = await rotate(
      "root",
      [
        ["--key", "root-new-1.pem"],
        ["--key", "root-new-2.pem"],
        ["--key", "root-new-3.pem"],
        ["--old-key", "root-1.pem"],
        ["--old-key", "root-2.pem"],
      ],
      "--threshold",
      "2",
    );
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("staged root version 2 (from 1)");
    // a second rotation before publish would give clients at v1 a v3 they cannot verify
    const again = await rotate("root", [["--key", "root-new-1.pem"]]);
    expect(again.code).toBe(1);
    expect(again.err).toContain("root version 2 is already staged: publish it");
    expect((await publish()).code).toBe(0);
    const v1 = await rootFile(repo, 1);
    const v2 = await rootFile(repo, 2);
    const signed = v2 as unknown as Metadata<import("@tufjs/models").Root>;
    expect(signed.signed.version).toBe(2);
    expect(signed.signed.roles.root?.threshold).toBe(2);
    expect(signed.signed.roles.root?.keyIDs).toHaveLength(3);
    expect(Object.keys(signed.signatures)).toHaveLength(5);
    // 5.3.4 (1) and (2), as a client checks them
    expect(() =>
      (v1 as never as Metadata<import("@tufjs/models").Root>).verifyDelegate("root", signed),
    ).not.toThrow();
    expect(() => signed.verifyDelegate("root", signed)).not.toThrow();
    // old root keys no longer listed
    const oldIds = (v1 as never as Metadata<import("@tufjs/models").Root>).signed.roles.root?.keyIDs ?? [];
    for (const id of oldIds) expect(signed.signed.keys[id]).toBeUndefined();
    const files = await readdir(join(repo, "metadata"));
    expect(files).toContain("2.root.json");
    const current = JSON.parse(await readFile(join(repo, "metadata", "root.json"), "utf8"));
    expect(current.signed.version).toBe(2);
    // a client pinned to 1.root.json follows to v2
    expect(await verify()).toEqual([
      expect.objectContaining({ target: "docker.io/acme/app:v1", role: "acme" }),
    ]);
  });

  it("the new threshold holds: one new root key alone cannot rotate again", async () => {
    const one = await rotate("timestamp", [
      ["--key", "timestamp-new.pem"],
      ["--root-key", "root-new-1.pem"],
    ]);
    expect(one.code).toBe(1);
    expect(one.err).toContain(
      "root version 2 needs 2 of its root keys to sign the new root, the keys given hold 1",
    );
    const old = await rotate("timestamp", [
      ["--key", "timestamp-new.pem"],
      ["--root-key", "root-1.pem"],
      ["--root-key", "root-2.pem"],
    ]);
    expect(old.code).toBe(1);
    expect(old.err).toContain("the keys given hold 0");
  });

  it("rotate targets re-signs targets with the new key; the old targets key no longer signs", async () => {
    const r = await rotate("targets", [
      ["--key", "targets-new.pem"],
      ["--root-key", "root-new-1.pem"],
      ["--root-key", "root-new-3.pem"],
    ]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect((await publish()).code).toBe(0);
    const v3 = await rootFile(repo, 3);
    const root = v3 as never as Metadata<import("@tufjs/models").Root>;
    expect(root.signed.roles.targets?.keyIDs).toHaveLength(1);
    expect(await verify()).toHaveLength(1);
    // the old targets key is refused for what it used to sign
    const revoke = await tuf("revoke", repo, "acme", "--targets-key", k("targets.pem"));
    expect(revoke.code).toBe(1);
    expect(revoke.err).toContain("do not sign role 'targets'");
  });

  it("rotate timestamp: publish with the old timestamp key is refused before anything is written", async () => {
    const r = await rotate("timestamp", [
      ["--key", "timestamp-new.pem"],
      ["--root-key", "root-new-2.pem"],
      ["--root-key", "root-new-3.pem"],
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("--timestamp-key");
    const stale = await publish(k("snapshot.pem"), k("timestamp.pem"));
    expect(stale.code).toBe(1);
    expect(stale.err).toContain("do not sign role 'timestamp'");
    expect(await readdir(join(repo, "metadata"))).not.toContain("4.root.json");
    expect((await publish(k("snapshot.pem"), k("timestamp-new.pem"))).code).toBe(0);
    expect(await readdir(join(repo, "metadata"))).toContain("4.root.json");
    expect(await verify()).toHaveLength(1);
    // refresh now needs the new timestamp key
    expect((await tuf("refresh", repo, "--key", k("timestamp.pem"))).code).toBe(1);
    expect((await tuf("refresh", repo, "--key", k("timestamp-new.pem"))).code).toBe(0);
    await verify();
  });

  it("usage errors: an organisation's role, missing --root-key, options of the other form", async () => {
    await expect(run(["rotate", "acme", "--repo", repo, "--key", k("acme.pem")])).rejects.toThrow(
      /tuf delegate/,
    );
    await expect(run(["rotate", "targets", "--repo", repo, "--key", k("targets-new.pem")])).rejects.toThrow(
      /--root-key is required/,
    );
    await expect(
      run([
        "rotate",
        "root",
        "--repo",
        repo,
        "--key",
        k("root-new-1.pem"),
        "--root-key",
        k("root-new-2.pem"),
      ]),
    ).rejects.toThrow(UsageError);
    const tooMany = await rotate("root", [["--key", "root-new-1.pem"]], "--threshold", "2");
    expect(tooMany.code).toBe(1);
    expect(tooMany.err).toContain("--threshold 2 is more than the 1 new keys given");
  });
});
