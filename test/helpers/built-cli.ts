/**
 * The built CLI (`dist/cli.js`, as users run it) and a Notary state directory filled the way the
 * proxy fills it, for the `trust` subcommand tests.
 */
import { spawn, spawnSync } from "node:child_process";
import { NotarySource } from "../../src/trust/notary/source.js";
import { FIXTURE_NOW, loadRepoFiles, MapFetcher, queryFor } from "./notary-fixtures.js";

export function runBuiltCli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  return runBuiltCliWithEnv({}, ...args);
}

/** The same, with variables added to the environment (a config's passwordEnv). */
export function runBuiltCliWithEnv(
  env: Record<string, string>,
  ...args: string[]
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ["dist/cli.js", ...args], {
    encoding: "utf8",
    timeout: 20_000,
    env: { ...process.env, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The built CLI run asynchronously: for commands that talk to servers living in the test's own
 * process (a static web server), which a synchronous spawn would starve.
 */
export function spawnBuiltCli(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["dist/cli.js", ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += String(d);
    });
    child.stderr.on("data", (d) => {
      stderr += String(d);
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Verify a Notary fixture repository with a real NotarySource, which persists it in `stateDir`. */
export async function fillNotaryState(stateDir: string, fixtureDir: string, gun: string): Promise<void> {
  const source = new NotarySource({
    url: "http://x",
    stateDir,
    fetcher: new MapFetcher(loadRepoFiles(fixtureDir)),
    now: () => FIXTURE_NOW,
  });
  await source.listSigned(queryFor(gun));
  await source.close();
}
