/**
 * `notary mirror` and the file:// Notary fetcher on the recorded notary-server fixtures
 * (test/fixtures/notary): a mirror verifies before it writes (nothing written on any failure),
 * is read back by the proxy's NotarySource over file:// exactly as the server was, refuses a
 * rollback against an earlier mirror and follows a root rotation; the fetcher caps reads and
 * never leaves its directory. The CLI's usage and transport errors are checked on the built CLI.
 */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { MirrorError, mirrorRepository } from "../../src/notary-mirror/mirror.js";
import { TrustError } from "../../src/trust/errors.js";
import { FileMetadataFetcher, openMetadataFetcher } from "../../src/trust/notary/file-fetcher.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import { runBuiltCli } from "../helpers/built-cli.js";
import {
  FIXTURE_NOW,
  FIXTURES,
  loadRepoFiles,
  MapFetcher,
  queryFor,
  readExpected,
} from "../helpers/notary-fixtures.js";
import { tempDir } from "../helpers/process.js";

const DELEG = join(FIXTURES, "local-ed25519", "delegation");
const ROTATE = join(FIXTURES, "local-ed25519", "rotate-root");

async function listing(dir: string): Promise<string[]> {
  return readdir(dir, { recursive: true }).catch(() => []);
}

describe("notary mirror", () => {
  let scratch: string;
  let out: string;
  beforeEach(async () => {
    scratch = await tempDir("notary-mirror-unit");
    out = join(scratch, "mirror");
  });
  afterEach(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("writes notary-server's layout, and the notary: source reads it over file:// as it read the server", async () => {
    const expected = readExpected(DELEG);
    const result = await mirrorRepository({
      gun: expected.gun,
      fetcher: new MapFetcher(loadRepoFiles(DELEG)),
      outDir: out,
      now: FIXTURE_NOW,
    });
    expect(result.roles).toEqual(["targets", "targets/releases"]);
    expect(result.tags).toBe(2);
    expect(result.files.at(-1)).toBe(`v2/${expected.gun}/_trust/tuf/timestamp.json`);
    const source = new NotarySource({
      url: pathToFileURL(out).href,
      stateDir: join(scratch, "state"),
      now: () => FIXTURE_NOW,
    });
    try {
      const listed = await source.listSigned(queryFor(expected.gun));
      expect(
        Object.fromEntries(listed.map((t) => [t.name, { digest: t.digest, size: t.size, role: t.role }])),
      ).toEqual(expected.signed);
    } finally {
      await source.close();
    }
  });

  it("writes nothing when verification fails: a pin the root does not satisfy, a tampered delegation", async () => {
    const { gun } = readExpected(DELEG);
    await expect(
      mirrorRepository({
        gun,
        fetcher: new MapFetcher(loadRepoFiles(DELEG)),
        outDir: out,
        pins: ["ab".repeat(32)],
        now: FIXTURE_NOW,
      }),
    ).rejects.toMatchObject({ code: "ROOT_PIN_MISMATCH" });
    expect(await listing(out)).toEqual([]);

    // a delegation whose bytes differ from what the snapshot signed: skipped by the proxy (T5),
    // refused by the mirror
    const files = loadRepoFiles(DELEG);
    for (const [name, bytes] of files)
      if (name.startsWith("targets/releases")) {
        const flipped = Buffer.from(bytes);
        const at = flipped.length - 3;
        flipped[at] = (flipped[at] as number) ^ 1; // same length: the hash check, not the cap, finds it
        files.set(name, flipped);
      }
    const err = await mirrorRepository({
      gun,
      fetcher: new MapFetcher(files),
      outDir: out,
      now: FIXTURE_NOW,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MirrorError);
    expect((err as Error).message).toContain("targets/releases [HASH_MISMATCH]");
    expect(await listing(out)).toEqual([]);

    // expired metadata (the fixtures' timestamps expire 2026-12-08)
    await expect(
      mirrorRepository({
        gun,
        fetcher: new MapFetcher(loadRepoFiles(DELEG)),
        outDir: out,
        now: new Date("2027-01-01T00:00:00Z"),
      }),
    ).rejects.toMatchObject({ code: "EXPIRED" });
    expect(await listing(out)).toEqual([]);
  });

  it("an earlier mirror is the trusted state: a root rotation is walked and written, a rollback refused", async () => {
    const { gun } = readExpected(ROTATE);
    const before = join(ROTATE, "before");
    const after = join(ROTATE, "after");
    await mirrorRepository({
      gun,
      fetcher: new MapFetcher(loadRepoFiles(before)),
      outDir: out,
      now: FIXTURE_NOW,
    });
    const result = await mirrorRepository({
      gun,
      fetcher: new MapFetcher(loadRepoFiles(after)),
      outDir: out,
      now: FIXTURE_NOW,
    });
    expect(result.rootVersion).toBe(2);
    // a proxy that trusted version 1 from the server can walk to 2 from the mirror
    const state = join(scratch, "state");
    const old = new NotarySource({
      url: "http://x",
      stateDir: state,
      fetcher: new MapFetcher(loadRepoFiles(before)),
      now: () => FIXTURE_NOW,
    });
    await old.listSigned(queryFor(gun));
    await old.close();
    const viaMirror = new NotarySource({
      url: pathToFileURL(out).href,
      stateDir: state,
      refreshSeconds: 0,
      now: () => FIXTURE_NOW,
    });
    try {
      expect((await viaMirror.listSigned(queryFor(gun))).map((t) => t.name)).toEqual(["v1"]);
    } finally {
      await viaMirror.close();
    }
    // the server now serves the old repository again: refused, the mirror left as it was
    const snapshot = await listing(out);
    await expect(
      mirrorRepository({
        gun,
        fetcher: new MapFetcher(loadRepoFiles(before)),
        outDir: out,
        now: FIXTURE_NOW,
      }),
    ).rejects.toBeInstanceOf(TrustError);
    expect(await listing(out)).toEqual(snapshot);
  });
});

describe("FileMetadataFetcher", () => {
  let dir: string;
  const gun = "example.com/acme/app";
  beforeEach(async () => {
    dir = await tempDir("notary-file-fetcher");
    await mkdir(join(dir, "v2", gun, "_trust", "tuf"), { recursive: true });
    await writeFile(join(dir, "v2", gun, "_trust", "tuf", "timestamp.json"), "x".repeat(100));
    await writeFile(join(dir, "secret.json"), "outside");
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads within the cap, refuses a larger file, a missing file is TRUST_NOT_FOUND", async () => {
    const f = new FileMetadataFetcher(pathToFileURL(dir));
    expect((await f.fetch(gun, "timestamp.json", 100)).length).toBe(100);
    await expect(f.fetch(gun, "timestamp.json", 99)).rejects.toMatchObject({ code: "METADATA_INVALID" });
    await expect(f.fetch(gun, "snapshot.json", 100)).rejects.toMatchObject({ code: "TRUST_NOT_FOUND" });
  });

  it("never leaves its directory: `..` in a role name or a GUN is refused", async () => {
    const f = new FileMetadataFetcher(pathToFileURL(dir));
    await expect(f.fetch(gun, "targets/../../../../../../../secret.json", 100)).rejects.toMatchObject({
      code: "METADATA_INVALID",
    });
    await expect(f.fetch("example.com/../..", "root.json", 100)).rejects.toMatchObject({
      code: "TRUST_NOT_FOUND",
    });
  });

  it("a file:// notary URL takes no credentials or CA", () => {
    expect(() => openMetadataFetcher({ url: pathToFileURL(dir).href, caFile: "/etc/ca.pem" })).toThrow(
      /takes no credentials, token realms or CA/,
    );
    expect(() => new FileMetadataFetcher("file://otherhost/srv/mirror")).toThrow(/local directory/);
  });
});

describe("config: a notary url may be file://", () => {
  const yaml = (notary: string) =>
    `registries:\n  docker.io:\n    upstream: https://registry-1.docker.io\n    notary: ${notary}\n`;
  it("takes file:// and refuses what only a server uses", async () => {
    const c = await parseConfig(yaml("{ url: file:///srv/mirror }"), "/tmp/config.yaml", {});
    expect(c.registries.get("docker.io")?.notary?.url.href).toBe("file:///srv/mirror");
    await expect(
      parseConfig(yaml("{ url: file:///srv/mirror, tokenRealms: [auth.docker.io] }"), "/tmp/config.yaml", {}),
    ).rejects.toThrow(/notary\.tokenRealms: does not apply to a file:\/\/ url/);
  });
});

describe("notary mirror and migrate notary on the command line (built CLI)", () => {
  let scratch: string;
  beforeEach(async () => {
    scratch = await tempDir("notary-mirror-cli");
  });
  afterEach(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("a bad GUN is a usage error (exit 2)", () => {
    for (const gun of ["noslash", "Docker.io/Acme/App", "docker.io/../x", "/acme/app"]) {
      const r = runBuiltCli("notary", "mirror", gun, "--server", "http://127.0.0.1:1", "--out", scratch);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/is not a GUN|expected a GUN/);
    }
  });

  it("an unreachable server: exit 1, one line, nothing written", () => {
    const out = join(scratch, "out");
    const r = runBuiltCli(
      "notary",
      "mirror",
      "docker.io/acme/app",
      "--server",
      "http://127.0.0.1:1",
      "--out",
      out,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^trustgate: notary mirror: verification failed \[TRUST_UNAVAILABLE\]: .*nothing written\n$/,
    );
    expect(r.stdout).toBe("");
    return expect(readdir(out)).rejects.toThrow();
  });

  it("migrate without the key passphrase in the environment is a usage error naming the variable", () => {
    const r = runBuiltCli(
      "migrate",
      "notary",
      "docker.io/acme/app",
      "--mirror",
      scratch,
      "--to",
      scratch,
      "--role",
      "acme",
      "--key",
      "k.pem",
      "--snapshot-key",
      "s.pem",
      "--timestamp-key",
      "t.pem",
      "--passphrase-env",
      "TRUSTGATE_TEST_UNSET_PASSPHRASE",
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("$TRUSTGATE_TEST_UNSET_PASSPHRASE, which is not set");
  });

  it("migrate from an unreachable server: exit 1, one line, the TUF repository untouched", async () => {
    const saved = process.env.TRUSTGATE_TUF_PASSPHRASE;
    process.env.TRUSTGATE_TUF_PASSPHRASE = "unit";
    try {
      const repo = join(scratch, "tuf");
      const keys = join(scratch, "keys");
      expect(runBuiltCli("tuf", "init", repo, "--keys", keys).code).toBe(0);
      const before = await listing(repo);
      const key = (k: string) => join(keys, `${k}.pem`);
      const r = runBuiltCli(
        "migrate",
        "notary",
        "docker.io/acme/app",
        "--server",
        "https://127.0.0.1:1",
        "--to",
        repo,
        "--role",
        "acme",
        "--key",
        key("targets"),
        "--snapshot-key",
        key("snapshot"),
        "--timestamp-key",
        key("timestamp"),
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /^trustgate: migrate notary: verification failed \[TRUST_UNAVAILABLE\]: [^\n]*\n$/,
      );
      expect(await listing(repo)).toEqual(before);
    } finally {
      if (saved === undefined) delete process.env.TRUSTGATE_TUF_PASSPHRASE;
      else process.env.TRUSTGATE_TUF_PASSPHRASE = saved;
    }
  });

  it("migrate needs exactly one of --server and --mirror", () => {
    const r = runBuiltCli("migrate", "notary", "docker.io/acme/app", "--to", scratch, "--role", "acme");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("give one of --server URL or --mirror DIR");
  });
});
