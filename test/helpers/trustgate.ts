/**
 * trustgate itself as a test peer: writes a config.yaml (issue 2's format) into a temp dir and runs
 * `node dist/cli.js serve --config FILE` on a free loopback port, exactly as a user would. Its pino
 * log (JSON, one line per request) is kept in a file so tests can assert what the proxy saw.
 */
import { existsSync, readdirSync } from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { PeerExited, waitUntilReady } from "./peer-ready.js";
import { freePort, type Peer, runCommand, startPeer, tempDir, waitFor } from "./process.js";

/**
 * The repository root: the nearest directory above this file holding package.json. Tests run this
 * file from test/helpers/, the demo from its compiled copy in .build/test/helpers/ (tsconfig.tools.json).
 */
function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));
const CLI = join(REPO_ROOT, "dist", "cli.js");

export interface RegistryConfig {
  /** e.g. http://127.0.0.1:PORT */
  upstream: string;
  [key: string]: unknown;
}

/** How the process is run, whichever way its config is given. */
export interface LaunchOptions {
  /** extra environment (e.g. a passwordEnv secret, or FAKETIME settings) */
  env?: NodeJS.ProcessEnv;
  /**
   * Run trustgate's clock this far ahead, e.g. "+30d" (libfaketime's FAKETIME syntax; Node honours
   * it, the Go peers never see it). Preloaded into node itself rather than through the `faketime`
   * wrapper, so the PID we stop is trustgate's own: stopping the wrapper would orphan node.
   */
  clockOffset?: string;
  startTimeoutMs?: number;
  /** reuse this directory (its state/ survives: a restart keeps persisted trust state) */
  dir?: string;
}

export interface TrustgateOptions extends LaunchOptions {
  /** registries.<name>: the canonical registry name → its upstream (and any later keys) */
  registries: Record<string, RegistryConfig>;
  defaultRegistry?: string;
  /** more top-level config keys, merged over the generated ones */
  extraConfig?: Record<string, unknown>;
}

/** One pino line; the fields are the proxy's (method, path, registry, status, ...). */
export type LogLine = Record<string, unknown>;

export interface TrustgatePeer extends Peer {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, the proxy's name in image references */
  host: string;
  port: number;
  dir: string;
  configFile: string;
  /** every JSON line the proxy has logged so far (non-JSON lines are skipped) */
  logs(): Promise<LogLine[]>;
  /** resolves with the first line matching `predicate`, waiting for it to be written */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const mtime = entry.isDirectory() ? await newestMtime(path) : (await stat(path)).mtimeMs;
    newest = Math.max(newest, mtime);
  }
  return newest;
}

/**
 * Build dist/ when it is missing or older than src/ (`npm test` builds first; this keeps a single
 * `npx vitest run <file>` honest instead of testing a stale proxy).
 */
export async function ensureBuilt(): Promise<void> {
  const built = existsSync(CLI) ? (await stat(CLI)).mtimeMs : 0;
  if (built > 0 && built >= (await newestMtime(join(REPO_ROOT, "src")))) return;
  const res = await runCommand("npx", ["tsc", "-p", "tsconfig.json"], { cwd: REPO_ROOT, timeoutMs: 180_000 });
  if (res.code !== 0) throw new Error(`build failed:\n${res.stdout}${res.stderr}`);
}

async function readLogLines(file: string): Promise<LogLine[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  const lines: LogLine[] = [];
  for (const raw of text.split("\n")) {
    if (!raw.startsWith("{")) continue;
    try {
      lines.push(JSON.parse(raw) as LogLine);
    } catch {
      // a line still being written
    }
  }
  return lines;
}

/** The config.yaml the structured options describe (policies in ./policies of the same dir). */
function configFromOptions(opts: TrustgateOptions, dir: string): string {
  return stringify({
    stateDir: join(dir, "state"),
    defaultRegistry: opts.defaultRegistry ?? "docker.io",
    registries: opts.registries,
    policies: join(dir, "policies"),
    ...opts.extraConfig,
  });
}

/** Debian's libfaketime (package faketime), wherever the architecture puts it. */
export function libfaketime(): string {
  for (const entry of readdirSync("/usr/lib", { withFileTypes: true })) {
    const candidate = join("/usr/lib", entry.name, "faketime", "libfaketime.so.1");
    if (entry.isDirectory() && existsSync(candidate)) return candidate;
  }
  throw new Error("libfaketime.so.1 not found under /usr/lib/*/faketime: install the faketime package");
}

/** Spawn `serve` on `port`; undefined if the port was taken meanwhile (then retry). */
async function spawnTrustgate(opts: LaunchOptions, dir: string, configFile: string, port: number) {
  const logFile = join(dir, `trustgate-${port}.log`);
  const clock = opts.clockOffset ? { LD_PRELOAD: libfaketime(), FAKETIME: opts.clockOffset } : {};
  const peer = startPeer(
    "trustgate",
    process.execPath,
    [CLI, "serve", "--config", configFile, "--listen", `127.0.0.1:${port}`],
    { cwd: dir, env: { ...process.env, ...opts.env, ...clock }, logFile },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntilReady(
      `trustgate (GET ${url}/v2/ answering 200, or 401 behind clients:)`,
      peer.pid,
      async () => [200, 401].includes((await fetch(`${url}/v2/`)).status),
      opts.startTimeoutMs ?? 20_000,
    );
  } catch (err) {
    await peer.stop();
    const log = await readFile(logFile, "utf8").catch(() => "");
    // freePort releases the port before trustgate binds it: another process may have taken it.
    if (err instanceof PeerExited && log.includes("EADDRINUSE")) return undefined;
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- trustgate output ---\n${log}`);
  }
  return { peer, url };
}

/** Write `configYaml` and `policies` into `dir`, then start `serve` on a free port (3 tries). */
async function launch(
  opts: LaunchOptions,
  dir: string,
  configYaml: string,
  policies: Record<string, string> = {},
): Promise<TrustgatePeer> {
  await ensureBuilt();
  const configFile = join(dir, "config.yaml");
  await writeFile(configFile, configYaml);
  await mkdir(join(dir, "policies"), { recursive: true });
  for (const [name, text] of Object.entries(policies)) await writeFile(join(dir, "policies", name), text);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const started = await spawnTrustgate(opts, dir, configFile, port);
    if (started) return peerFor(started.peer, started.url, port, dir, configFile);
    if (attempt === 3)
      throw new Error("trustgate: three free ports in a row were taken before it could bind");
  }
}

/** trustgate from structured options (registries, defaultRegistry, extra top-level keys). */
export async function startTrustgate(opts: TrustgateOptions): Promise<TrustgatePeer> {
  const dir = opts.dir ?? (await tempDir("trustgate"));
  return launch(opts, dir, configFromOptions(opts, dir));
}

/**
 * trustgate from a config.yaml text written by the test (relative paths resolve in its temp dir),
 * with `policies` (file name -> YAML text) in its `./policies`, the config's default directory.
 */
export async function startTrustgateWithConfig(
  configYaml: string,
  opts: LaunchOptions & { policies?: Record<string, string> } = {},
): Promise<TrustgatePeer> {
  return launch(opts, opts.dir ?? (await tempDir("trustgate")), configYaml, opts.policies);
}

function peerFor(peer: Peer, url: string, port: number, dir: string, configFile: string): TrustgatePeer {
  return {
    ...peer,
    url,
    host: `127.0.0.1:${port}`,
    port,
    dir,
    configFile,
    logs: () => readLogLines(peer.logFile),
    async waitForLog(predicate, timeoutMs = 5_000) {
      let found: LogLine | undefined;
      await waitFor(
        "a matching trustgate log line",
        async () => {
          found = (await readLogLines(peer.logFile)).find(predicate);
          return found !== undefined;
        },
        timeoutMs,
      );
      return found as LogLine;
    },
  };
}
