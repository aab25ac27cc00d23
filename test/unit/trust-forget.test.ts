import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { NotaryStateStore } from "../../src/trust/notary/store.js";
import { fillNotaryState, runBuiltCli } from "../helpers/built-cli.js";
import { FIXTURES, readExpected } from "../helpers/notary-fixtures.js";

const BASIC = join(FIXTURES, "signer-ecdsa", "basic");
const { gun } = readExpected(BASIC);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const cli = runBuiltCli;

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), "tg-forget-"));
  dirs.push(dir);
  const state = join(dir, "state");
  const registry = gun.slice(0, gun.indexOf("/"));
  await fillNotaryState(state, BASIC, gun);
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    [
      `stateDir: ${state}`,
      `policies: ${join(dir, "policies")}`,
      "registries:",
      `  ${registry}:`,
      "    upstream: http://127.0.0.1:1",
      "    notary: { url: 'http://127.0.0.1:2' }",
      "  tuf.example:",
      "    upstream: http://127.0.0.1:1",
      "",
    ].join("\n"),
  );
  return { state, config, registry };
}

describe("trustgate trust forget", () => {
  it("removes the recorded state of a GUN, then says there is nothing left (exit 1)", async () => {
    const { state, config } = await setup();
    const path = new NotaryStateStore(state).pathFor(gun);
    expect(existsSync(path)).toBe(true);
    const r = cli("trust", "forget", gun, "--config", config);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`forgot ${gun}`);
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(join(state, "notary"))).toEqual([]);
    const again = cli("trust", "forget", gun, "--config", config);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `trustgate: no trust state recorded for ${gun} under ${state}/notary: nothing to forget\n`,
    );
  });

  it("an unknown GUN of a configured registry is refused with exit 1 and nothing removed", async () => {
    const { state, config, registry } = await setup();
    const r = cli("trust", "forget", `${registry}/someone/else`, "--config", config);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no trust state recorded/);
    expect(readdirSync(join(state, "notary"))).toHaveLength(1);
  });

  it("usage errors exit 2: no --config, not a GUN, a registry not configured or without notary", async () => {
    const { config } = await setup();
    expect(cli("trust", "forget", gun).code).toBe(2);
    expect(cli("trust", "forget", "nogun", "--config", config).stderr).toMatch(/is not a GUN/);
    const unknown = cli("trust", "forget", "ghcr.io/acme/app", "--config", config);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/registry ghcr.io is not configured/);
    const tuf = cli("trust", "forget", "tuf.example/acme/app", "--config", config);
    expect(tuf.code).toBe(2);
    expect(tuf.stderr).toMatch(/no notary: block/);
    expect(cli("trust", "forget", gun, "--config", config, "--json").code).toBe(2);
  });
});
