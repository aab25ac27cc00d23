/**
 * trustgate as users run it: `node dist/cli.js serve --config FILE --listen 127.0.0.1:PORT`,
 * ready once `GET /v2/` answers 200. Its log goes straight to a file descriptor (not through
 * this process), so relaying log lines costs the bench nothing at high request rates.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { freePort, waitFor } from "../test/helpers/process.js";

export const REPO_ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(REPO_ROOT, "dist/cli.js");

export interface TrustgateProcess {
  pid: number;
  url: string;
  dir: string;
  logFile: string;
  stop(): Promise<void>;
}

export interface TrustgateRegistry {
  name: string;
  upstream: string;
  notary?: { url: string; caFile: string };
}

export function trustgateConfig(
  dir: string,
  registry: TrustgateRegistry,
  logLevel: string,
  /** more top-level config lines, e.g. a blobCache block */
  extra: string[] = [],
): string {
  const lines = [
    ...extra,
    `stateDir: ${JSON.stringify(join(dir, "state"))}`,
    `policies: ${JSON.stringify(join(dir, "policies"))}`,
    `defaultRegistry: ${JSON.stringify(registry.name)}`,
    `logLevel: ${logLevel}`,
    // serve refuses images no policy covers (defaultPolicy: refuse): the pass-through scenarios
    // enforce nothing; with a trust server, Docker's default roles are enforced.
    `defaultPolicy: ${registry.notary ? "enforce" : "off"}`,
    "registries:",
    `  ${JSON.stringify(registry.name)}:`,
    `    upstream: ${registry.upstream}`,
  ];
  if (registry.notary) {
    lines.push(
      "    notary:",
      `      url: ${registry.notary.url}`,
      `      caFile: ${JSON.stringify(registry.notary.caFile)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export async function startTrustgate(
  dir: string,
  configYaml: string,
  /** cli: another build's dist/cli.js (bench/ab-blob.ts runs two builds side by side) */
  opts: { nodeArgs?: string[]; cli?: string; env?: Record<string, string> } = {},
): Promise<TrustgateProcess> {
  await mkdir(join(dir, "policies"), { recursive: true });
  const configFile = join(dir, "config.yaml");
  await writeFile(configFile, configYaml);
  const port = await freePort();
  const logFile = join(dir, "trustgate.log");
  const fd = openSync(logFile, "a");
  const child = spawn(
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      opts.cli ?? CLI,
      "serve",
      "--config",
      configFile,
      "--listen",
      `127.0.0.1:${port}`,
    ],
    { cwd: dir, stdio: ["ignore", fd, fd], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) },
  );
  closeSync(fd);
  if (child.pid === undefined) throw new Error("could not start trustgate");
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`trustgate on port ${port} (log: ${logFile})`, async () => {
      if (child.exitCode !== null) throw new Error(`trustgate exited with ${child.exitCode}; see ${logFile}`);
      return (await fetch(`${url}/v2/`)).status === 200;
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: child.pid, url, dir, logFile, stop };
}
