/**
 * `migrate notary` on a recorded notary-server fixture (targets + targets/releases) into a TUF
 * repository made with the built `trustgate tuf`: the tags the proxy resolves are signed and the
 * parity holds; a TUF repository whose delegations make another role answer for the same paths
 * fails the parity (report.ok false: the command exits 1); a failed Notary verification writes
 * nothing into the TUF repository.
 */
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { migrateNotary } from "../../src/migrate/migrate.js";
import { parseGun } from "../../src/notary-mirror/gun.js";
import { PolicySet } from "../../src/policy/index.js";
import { loadSigningKey } from "../../src/tuf-repo/keys.js";
import { runBuiltCli } from "../helpers/built-cli.js";
import {
  FIXTURE_NOW,
  FIXTURES,
  loadRepoFiles,
  MapFetcher,
  readExpected,
} from "../helpers/notary-fixtures.js";
import { tempDir } from "../helpers/process.js";

const DELEG = join(FIXTURES, "local-ed25519", "delegation");
const PASS = "migrate unit passphrase";

describe("migrateNotary", () => {
  let scratch: string;
  let repo: string;
  let keys: string;
  const saved = process.env.TRUSTGATE_TUF_PASSPHRASE;
  const tuf = (...args: string[]) => {
    const r = runBuiltCli("tuf", ...args);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  };
  const key = async (file: string) => loadSigningKey(await readFile(file, "utf8"), PASS, file);
  const { gun } = readExpected(DELEG);
  const registry = gun.slice(0, gun.indexOf("/"));

  beforeEach(async () => {
    process.env.TRUSTGATE_TUF_PASSPHRASE = PASS;
    scratch = await tempDir("migrate-unit");
    repo = join(scratch, "tuf");
    keys = join(scratch, "keys");
    tuf("init", repo, "--keys", keys);
    tuf("keygen", join(scratch, "acme.pem"));
  });
  afterEach(async () => {
    if (saved === undefined) delete process.env.TRUSTGATE_TUF_PASSPHRASE;
    else process.env.TRUSTGATE_TUF_PASSPHRASE = saved;
    await rm(scratch, { recursive: true, force: true });
  });

  const delegate = (org: string, pub: string) =>
    tuf(
      "delegate",
      repo,
      org,
      "--paths",
      `${registry}/acme/*`,
      "--key",
      pub,
      "--targets-key",
      join(keys, "targets.pem"),
    );

  const run = async (opts: { pins?: string[] } = {}) =>
    migrateNotary({
      gun: parseGun(gun),
      notaryUrl: "file:///fixture",
      fetcher: new MapFetcher(loadRepoFiles(DELEG)),
      pins: opts.pins ?? [],
      policies: PolicySet.empty(),
      defaultPolicy: "enforce",
      repoDir: repo,
      role: "acme",
      keys: [await key(join(scratch, "acme.pem"))],
      snapshotKeys: [await key(join(keys, "snapshot.pem"))],
      timestampKeys: [await key(join(keys, "timestamp.pem"))],
      registry,
      now: () => FIXTURE_NOW,
    });

  it("signs every tag as the proxy resolves it and the parity holds", async () => {
    delegate("acme", join(scratch, "acme.pem.pub"));
    const report = await run();
    const expected = readExpected(DELEG).signed;
    expect(
      Object.fromEntries(
        report.migrated.map((m) => [m.tag, { digest: m.digest, size: m.size, role: m.notaryRole }]),
      ),
    ).toEqual(expected);
    expect(report.refused).toEqual([]);
    expect(report.parity.every((p) => p.ok && p.tuf?.role === "acme")).toBe(true);
    expect(report.ok).toBe(true);
  });

  it("another delegation answering first for the same paths is a parity mismatch", async () => {
    // 'early' is delegated first (terminating, docs/tuf-for-oci.md section 3): the walk stops there
    tuf("keygen", join(scratch, "early.pem"));
    delegate("early", join(scratch, "early.pem.pub"));
    tuf(
      "sign",
      `${registry}/acme/deleg:rel`,
      "--repo",
      repo,
      "--role",
      "early",
      "--key",
      join(scratch, "early.pem"),
      "--digest",
      `sha256:${"0".repeat(64)}`,
      "--size",
      "1",
    );
    delegate("acme", join(scratch, "acme.pem.pub"));
    const report = await run();
    expect(report.ok).toBe(false);
    const rel = report.parity.find((p) => p.tag === "rel");
    expect(rel).toMatchObject({
      ok: false,
      tuf: { digest: `sha256:${"0".repeat(64)}`, size: 1, role: "early" },
    });
    expect(report.parity.find((p) => p.tag === "base")).toMatchObject({ ok: false, tuf: null });
  });

  it("a Notary root that fails the pin writes nothing into the TUF repository", async () => {
    delegate("acme", join(scratch, "acme.pem.pub"));
    const before = await readdir(join(repo, "metadata"));
    await expect(run({ pins: ["ab".repeat(32)] })).rejects.toMatchObject({ code: "ROOT_PIN_MISMATCH" });
    expect(await readdir(join(repo, "metadata"))).toEqual(before);
    expect(await readdir(join(repo, "staged"))).toEqual(["targets.json"]);
  });
});
