/**
 * The command line as a person meets it: `--help` on every subcommand answers its usage with exit
 * 0, `--version` names the package version, and a bad option is one line in our words (node's
 * parseArgs advice about `--` never leaks), exit 2. Runs the built CLI (npm test builds first).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const CLI = "dist/cli.js";
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("trustgate CLI", () => {
  for (const command of ["serve", "resolve", "policy", "trust", "containerd-hosts", "tuf"]) {
    it(`${command} --help prints its usage and exits 0`, () => {
      const r = cli(command, "--help");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: trustgate ${command} `));
      expect(r.stderr).toBe("");
    });
    it(`${command} with an unknown option: one usage error in our words, exit 2`, () => {
      const r = cli(command, ...(command === "policy" ? ["lint"] : []), "--no-such-option");
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^trustgate: unknown option '--no-such-option'\nusage: trustgate /);
      expect(r.stderr).not.toContain("positional argument");
    });
  }
  it("-h after other arguments is still help", () => {
    const r = cli("resolve", "docker.io/acme/app:1", "-h");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: trustgate resolve /);
  });
  it("--version prints the package version", () => {
    const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    const r = cli("--version");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`trustgate ${version}\n`);
  });
  it("a missing option value is a usage error", () => {
    const r = cli("resolve", "--config");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^trustgate: option '--config <value>' argument missing\n/);
  });
});
