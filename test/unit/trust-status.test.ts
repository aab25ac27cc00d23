import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NotaryStateStore } from "../../src/trust/notary/store.js";
import { fillNotaryState, runBuiltCli } from "../helpers/built-cli.js";
import { FIXTURE_NOW, FIXTURES, readExpected } from "../helpers/notary-fixtures.js";

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
    expect(r.stdout).toBe(`no trust state recorded under ${state}/notary\n`);
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
