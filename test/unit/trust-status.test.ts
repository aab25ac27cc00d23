import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NotaryStateStore } from "../../src/trust/notary/store.js";
import { TufSource } from "../../src/trust/tuf/source.js";
import { fillNotaryState, runBuiltCli } from "../helpers/built-cli.js";
import { FIXTURE_NOW, FIXTURES, readExpected } from "../helpers/notary-fixtures.js";
import { TestKey, TestTufRepository } from "../helpers/tuf-repo.js";

const DELEG = join(FIXTURES, "signer-ecdsa", "delegation");
const { gun } = readExpected(DELEG);
const registry = gun.slice(0, gun.indexOf("/"));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const cli = runBuiltCli;

/** version and expires of a fixture file, as signed */
function signedOf(file: string): { version: number; expires: string } {
  const { signed } = JSON.parse(readFileSync(join(DELEG, file), "utf8"));
  return { version: signed.version, expires: signed.expires };
}

async function setup(opts: { fill?: boolean; policy?: string } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "tg-status-"));
  dirs.push(dir);
  const state = join(dir, "state");
  const policies = join(dir, "policies");
  mkdirSync(policies);
  if (opts.policy) writeFileSync(join(policies, "p.yaml"), opts.policy);
  if (opts.fill !== false) {
    await fillNotaryState(state, DELEG, gun);
  }
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    [
      `stateDir: ${state}`,
      `policies: ${policies}`,
      "registries:",
      `  ${registry}:`,
      "    upstream: http://127.0.0.1:1",
      "    notary: { url: 'http://127.0.0.1:2' }",
      "",
    ].join("\n"),
  );
  return { state, config, policies };
}

const ROLE_FILES: Record<string, string> = {
  root: "root.json",
  targets: "targets.json",
  snapshot: "snapshot.json",
  timestamp: "timestamp.json",
  "targets/releases": "targets/releases.json",
};

describe("trustgate trust status", () => {
  it("--json: per role the version and expiry the source verified, root keys, last check, trust on first use", async () => {
    const { state, config } = await setup();
    const r = cli("trust", "status", "--config", config, "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.stateDir).toBe(state);
    expect(out.repositories).toHaveLength(1);
    const repo = out.repositories[0];
    expect(repo).toMatchObject({ gun, registry, source: "notary", rootTrust: "trust on first use" });
    expect(repo.file).toBe(new NotaryStateStore(state).pathFor(gun));
    const expected = Object.entries(ROLE_FILES).map(([role, file]) => ({ role, ...signedOf(file) }));
    expect([...repo.roles].sort((a, b) => a.role.localeCompare(b.role))).toEqual(
      expected.sort((a, b) => a.role.localeCompare(b.role)),
    );
    // the rotated root (version 2) is the one trusted, not 2.root.json's predecessor
    expect(repo.roles.find((x: { role: string }) => x.role === "root").version).toBe(
      signedOf("root.json").version,
    );
    // markUsed stamped the check's start time (the source's clock) on the state file
    expect(repo.lastChecked).toBe(FIXTURE_NOW.toISOString());
    const rootJson = JSON.parse(readFileSync(join(DELEG, "root.json"), "utf8"));
    expect(repo.rootKeys.map((k: { id: string }) => k.id)).toEqual(rootJson.signed.roles.root.keyids);
    // the IDs are the ones `docker trust inspect` shows as the Root key (certificate key IDs);
    // canonical is the ID of the public key inside the certificate (`notary key list`)
    const inspect = JSON.parse(readFileSync(join(DELEG, "docker-trust-inspect.json"), "utf8"));
    const adminRoot = inspect[0].AdministrativeKeys.find((k: { Name: string }) => k.Name === "Root");
    expect(repo.rootKeys.map((k: { id: string }) => k.id)).toEqual(
      adminRoot.Keys.map((k: { ID: string }) => k.ID),
    );
    for (const k of repo.rootKeys) expect(k.canonical).toMatch(/^[0-9a-f]{64}$/);
    expect(repo.rootKeys[0].canonical).not.toBe(repo.rootKeys[0].id);
  });

  it("the table shows the same versions and expiries, and a later check moves last checked", async () => {
    const { state, config } = await setup();
    const later = new Date("2026-11-30T08:00:00Z");
    utimesSync(new NotaryStateStore(state).pathFor(gun), later, later);
    const r = cli("trust", "status", "--config", config);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`GUN:           ${gun}`);
    expect(r.stdout).toContain("trust on first use");
    expect(r.stdout).toContain(`last checked:  ${later.toISOString()}`);
    for (const [role, file] of Object.entries(ROLE_FILES)) {
      const { version, expires } = signedOf(file);
      const line = r.stdout.split("\n").find((l) => l.startsWith(`  ${role} `));
      expect(line, role).toBeDefined();
      expect(line?.trim().split(/\s+/)).toEqual([role, String(version), expires]);
    }
  });

  it("a policy with trust.rootKeys for the GUN makes it pinned", async () => {
    const pin = "b6d4f6769d8496da4c39329b6017e6dbe0f7365c52e2f272cf52abd49404968f";
    const { config } = await setup({
      policy: [
        "name: pinned",
        "match:",
        `  - ${registry}/**`,
        "mode: enforce",
        "trust:",
        "  rootKeys:",
        `    - ${pin}`,
        "",
      ].join("\n"),
    });
    const json = JSON.parse(cli("trust", "status", "--config", config, "--json").stdout);
    expect(json.repositories[0]).toMatchObject({ rootTrust: "pinned", policy: "pinned", pins: [pin] });
    expect(cli("trust", "status", "--config", config).stdout).toContain(`pinned by policy pinned: ${pin}`);
  });

  it("an empty state dir: one line, exit 0", async () => {
    const { config, state } = await setup({ fill: false });
    const r = cli("trust", "status", "--config", config);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`no trust state recorded under ${state}/notary or ${state}/tuf\n`);
    expect(JSON.parse(cli("trust", "status", "--config", config, "--json").stdout).repositories).toEqual([]);
  });

  it("an unreadable state file is listed with why, exit 1", async () => {
    const { config, state } = await setup();
    writeFileSync(join(state, "notary", `${"0".repeat(64)}.json`), "{not json");
    const r = cli("trust", "status", "--config", config);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/0{64}\.json: cannot be used: /);
    expect(r.stdout).toContain(`GUN:           ${gun}`);
  });

  it("a state file not named for the GUN it holds is flagged (serve never reads it), exit 1", async () => {
    const { config, state } = await setup();
    const stray = join(state, "notary", `${"1".repeat(64)}.json`);
    writeFileSync(stray, readFileSync(new NotaryStateStore(state).pathFor(gun)));
    const r = cli("trust", "status", "--config", config);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${stray}: cannot be used: holds ${gun}, but is not named for it`);
  });

  it("usage and config errors exit 2 naming the problem; --help shows status", async () => {
    const { config, policies } = await setup();
    expect(cli("trust", "status").code).toBe(2);
    expect(cli("trust", "status").stderr).toMatch(/--config is required/);
    expect(cli("trust", "status", "--config", config, "--server", "x").stderr).toMatch(
      /unknown option '--server'/,
    );
    const missing = cli("trust", "status", "--config", join(policies, "nope.yaml"));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.yaml/);
    const bad = join(policies, "..", "bad.yaml");
    writeFileSync(bad, "stateDir: /tmp\nbogusKey: 1\n");
    const unknown = cli("trust", "status", "--config", bad);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/bogusKey/);
    const help = cli("trust", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("trustgate trust status --config <file> [--json]");
  });
});

describe("trustgate trust status: TUF repositories", () => {
  const query = { registry: "r.test", repository: "acme/app", roles: ["targets/releases", "targets"] };
  let repo: TestTufRepository | undefined;
  afterEach(async () => {
    await repo?.close();
    repo = undefined;
  });

  /** A real TUF repository with a rotated root and a delegation, verified by a real TufSource. */
  async function setupTuf() {
    repo = await TestTufRepository.start();
    const dir = mkdtempSync(join(tmpdir(), "tg-status-tuf-"));
    dirs.push(dir);
    const state = join(dir, "state");
    const policies = join(dir, "policies");
    mkdirSync(policies);
    const rootFile = join(dir, "root.json");
    writeFileSync(rootFile, repo.initialRoot);
    const acmeKey = TestKey.generate();
    repo.delegate("targets", "acme", ["r.test/acme/*"], [acmeKey]);
    repo.addTarget("acme", "r.test/acme/app:v1", Buffer.from("manifest v1"));
    repo.rotateRoot([TestKey.generate()]);
    repo.publish();
    const config = join(dir, "config.yaml");
    const writeConfig = (trustedRoot: string) =>
      writeFileSync(
        config,
        [
          `stateDir: ${state}`,
          `policies: ${policies}`,
          "registries:",
          "  r.test:",
          "    upstream: http://127.0.0.1:1",
          // as an operator writes it: no trailing slash (config normalises; the state dir must match)
          `    tuf: { metadataUrl: '${(repo as TestTufRepository).metadataUrl.replace(/\/$/, "")}', trustedRoot: ${trustedRoot} }`,
          "",
        ].join("\n"),
      );
    writeConfig(rootFile);
    return { dir, state, config, rootFile, writeConfig };
  }

  async function verifyOnce(state: string, rootFile: string, now: Date): Promise<void> {
    const source = await TufSource.open({
      metadataUrl: (repo as TestTufRepository).metadataUrl,
      trustedRoot: rootFile,
      stateDir: state,
      refreshSeconds: 0,
      now: () => now,
      fetchTimeoutMs: 2000,
    });
    try {
      await source.resolveTag(query, "v1");
    } finally {
      await source.close();
    }
  }

  const signedOfServed = (name: string) => {
    const { signed } = JSON.parse((repo as TestTufRepository).files.get(name)?.toString("utf8") ?? "{}");
    return { version: signed.version, expires: signed.expires };
  };

  it("--json: source tuf, root key IDs, every role's version and expiry (delegated too), last check, pinned by trustedRoot", async () => {
    const { state, config, rootFile } = await setupTuf();
    const checkedAt = new Date(Date.now() - 60_000);
    await verifyOnce(state, rootFile, checkedAt);
    const r = cli("trust", "status", "--config", config, "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.repositories).toHaveLength(1);
    const tuf = out.repositories[0];
    const served = repo as TestTufRepository;
    expect(tuf).toMatchObject({
      registry: "r.test",
      source: "tuf",
      metadataUrl: served.metadataUrl,
      rootTrust: "pinned",
      pinnedBy: "tuf.trustedRoot",
      trustedRoot: rootFile,
      anchor: "configured trustedRoot",
      lastChecked: checkedAt.toISOString(),
    });
    expect(tuf.gun).toBeUndefined();
    // the rotated root's keys (version 2), not the pinned version 1's
    expect(tuf.rootKeys).toEqual(served.rootKeys.map((k) => ({ id: k.keyId, canonical: k.keyId })));
    expect(tuf.roles).toEqual([
      { role: "root", ...signedOfServed("2.root.json") },
      { role: "timestamp", ...signedOfServed("timestamp.json") },
      { role: "snapshot", ...signedOfServed(`${served.snapshotVersion}.snapshot.json`) },
      { role: "targets", ...signedOfServed(`${served.roles.get("targets")?.version}.targets.json`) },
      { role: "acme", ...signedOfServed(`${served.roles.get("acme")?.version}.acme.json`) },
    ]);
    expect(tuf.roles[0].version).toBe(2);
  });

  it("last check moves with a later verified refresh, not with a failed one; the table shows it all", async () => {
    const { state, config, rootFile } = await setupTuf();
    const first = new Date(Date.now() - 120_000);
    await verifyOnce(state, rootFile, first);
    const second = new Date(Date.now() - 60_000);
    await verifyOnce(state, rootFile, second);
    const served = repo as TestTufRepository;
    served.down = true;
    // down: answered from the persisted metadata, but that is no successful check
    await verifyOnce(state, rootFile, new Date()).catch(() => undefined);
    const json = JSON.parse(cli("trust", "status", "--config", config, "--json").stdout);
    expect(json.repositories[0].lastChecked).toBe(second.toISOString());
    const table = cli("trust", "status", "--config", config);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(`TUF repository: ${served.metadataUrl}`);
    expect(table.stdout).toContain("registry:      r.test (trust source: tuf)");
    expect(table.stdout).toContain(
      `root trust:    pinned by tuf.trustedRoot ${rootFile} (the chain on disk grew from it)`,
    );
    expect(table.stdout).toContain(
      `last checked:  ${second.toISOString()} (start of the last successful refresh)`,
    );
    for (const role of json.repositories[0].roles) {
      const line = table.stdout.split("\n").find((l) => l.startsWith(`  ${role.role} `));
      expect(line?.trim().split(/\s+/), role.role).toEqual([role.role, String(role.version), role.expires]);
    }
  });

  it("a trustedRoot changed since the chain grew: said (serve re-anchors); a directory no registry names: not configured", async () => {
    const { dir, state, config, rootFile, writeConfig } = await setupTuf();
    await verifyOnce(state, rootFile, new Date());
    const other = join(dir, "other-root.json");
    writeFileSync(other, (repo as TestTufRepository).files.get("2.root.json") as Buffer);
    writeConfig(other);
    const json = JSON.parse(cli("trust", "status", "--config", config, "--json").stdout);
    expect(json.repositories[0]).toMatchObject({ anchor: "another root", trustedRoot: other });
    expect(cli("trust", "status", "--config", config).stdout).toContain(
      "serve re-anchors at this one on start",
    );

    // the registry renamed away: its state is still listed, as not configured
    writeFileSync(config, `stateDir: ${state}\npolicies: ${join(dir, "policies")}\nregistries: {}\n`);
    const stray = JSON.parse(cli("trust", "status", "--config", config, "--json").stdout).repositories;
    expect(stray).toHaveLength(1);
    expect(stray[0]).toMatchObject({ registry: "?", source: "not configured", anchor: "unknown" });
    expect(stray[0].roles.map((x: { role: string }) => x.role)).toEqual([
      "root",
      "timestamp",
      "snapshot",
      "targets",
      "acme",
    ]);
  });

  it("an unreadable TUF metadata file is listed with why, exit 1", async () => {
    const { state, config, rootFile } = await setupTuf();
    await verifyOnce(state, rootFile, new Date());
    const out = JSON.parse(cli("trust", "status", "--config", config, "--json").stdout);
    writeFileSync(join(out.repositories[0].dir, "snapshot.json"), "{torn");
    const r = cli("trust", "status", "--config", config);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/metadata: cannot be used: snapshot\.json: /);
  });
});
