/**
 * `trustgate containerd-hosts --config FILE --out DIR [--server URL] [--pull-cache URL] [--ca FILE]
 *  [--client-cert FILE --client-key FILE]`
 *
 * Writes containerd's `DIR/<registry>/hosts.toml` for every registry in config.yaml (rendering and
 * the reasons for each line: src/containerd/hosts-toml.ts). DIR is what containerd's CRI plugin
 * reads as `config_path` (usually /etc/containerd/certs.d); containerd re-reads it on every pull,
 * so no restart. Each file is written atomically (temp file + rename in the same directory): a
 * pull that starts meanwhile reads the old file or the new one, never half of one.
 *
 * A file this command wrote earlier for a registry no longer in the config is removed (it would
 * send that registry's pulls to a trustgate that answers NAME_UNKNOWN); files it did not write
 * (no marker line) are never touched.
 *
 * trustgate's URL: --server, else config.yaml's `listen` (https when `tls` is set). A wildcard
 * listen address (0.0.0.0, ::) names no host a node can dial, so --server is required then.
 * Paths given to --ca, --client-cert and --client-key are written as absolute paths: they are
 * read by containerd on the node, so give them as the node sees them.
 *
 * stdout: one line per file written or removed (the command's product); exit 0, 2 on bad
 * configuration or usage, 1 when a file cannot be written.
 */
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/types.js";
import {
  GENERATED_MARKER,
  type HostsTomlOptions,
  hostsDirName,
  registryBaseUrl,
  renderHostsToml,
} from "../containerd/hosts-toml.js";
import { ConfigError, TrustgateError, UsageError } from "../errors.js";
import { parseCommandArgs } from "./args.js";

export const USAGE = `usage: trustgate containerd-hosts --config FILE --out DIR [--server URL] [--pull-cache URL]
                                [--ca FILE] [--client-cert FILE --client-key FILE]`;

/** A file could not be written or removed: exit 1, one line naming the path. */
export class HostsWriteError extends TrustgateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("HOSTS_WRITE_FAILED", message, options);
  }
}

export interface WriteResult {
  written: string[];
  removed: string[];
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    {
      args: argv,
      options: {
        config: { type: "string" },
        out: { type: "string" },
        server: { type: "string" },
        "pull-cache": { type: "string" },
        ca: { type: "string" },
        "client-cert": { type: "string" },
        "client-key": { type: "string" },
      },
    },
    USAGE,
  );
  if (positionals.length > 0) throw new UsageError(USAGE);
  if (values.config === undefined) throw new UsageError(`--config is required\n${USAGE}`);
  if (values.out === undefined) throw new UsageError(`--out is required\n${USAGE}`);
  if ((values["client-cert"] === undefined) !== (values["client-key"] === undefined))
    throw new UsageError(`--client-cert and --client-key go together\n${USAGE}`);

  const config = await loadConfig(values.config);
  const opts: HostsTomlOptions = {
    server:
      values.server !== undefined ? registryBaseUrl(values.server, "--server") : serverFromConfig(config),
    source: config.file,
  };
  if (values["pull-cache"] !== undefined) {
    opts.pullCache = registryBaseUrl(values["pull-cache"], "--pull-cache");
    if (opts.pullCache === opts.server)
      throw new UsageError("--pull-cache is trustgate itself: a pull cache is another registry");
  }
  if (values.ca !== undefined) opts.ca = resolve(values.ca);
  if (values["client-cert"] !== undefined && values["client-key"] !== undefined)
    opts.client = { cert: resolve(values["client-cert"]), key: resolve(values["client-key"]) };

  const result = await writeHostsDir(resolve(values.out), [...config.registries.keys()], opts);
  for (const file of result.written) process.stdout.write(`wrote ${file}\n`);
  for (const file of result.removed) process.stdout.write(`removed ${file}\n`);
  return 0;
}

/** trustgate's URL from `listen` (and `tls`), when it names a host a node can dial. */
export function serverFromConfig(config: Pick<Config, "file" | "listen" | "tls">): string {
  const { host, port } = config.listen;
  if (host === "0.0.0.0" || host === "::" || host === "")
    throw new ConfigError(
      `${config.file}: listen: ${host}:${port} names no address a node can dial; give trustgate's URL with --server`,
    );
  const authority = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return `${config.tls ? "https" : "http"}://${authority}`;
}

/** Write every registry's hosts.toml under `dir` and remove this command's stale ones. */
export async function writeHostsDir(
  dir: string,
  registries: readonly string[],
  opts: HostsTomlOptions,
): Promise<WriteResult> {
  const written: string[] = [];
  await mkdir(dir, { recursive: true }).catch((err: unknown) => {
    throw new HostsWriteError(`cannot create ${dir}: ${(err as Error).message}`, { cause: err });
  });
  const wanted = new Set<string>();
  for (const registry of registries) {
    const name = hostsDirName(registry);
    wanted.add(name);
    const file = join(dir, name, "hosts.toml");
    await atomicWrite(file, renderHostsToml(registry, opts));
    written.push(file);
  }
  return { written, removed: await removeStale(dir, wanted) };
}

async function atomicWrite(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await mkdir(join(file, ".."), { recursive: true });
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new HostsWriteError(`cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** hosts.toml files under `dir` that carry the marker and belong to no configured registry. */
async function removeStale(dir: string, wanted: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || wanted.has(entry.name)) continue;
    const file = join(dir, entry.name, "hosts.toml");
    const text = await readFile(file, "utf8").catch(() => undefined);
    if (text === undefined || !text.startsWith(GENERATED_MARKER)) continue;
    try {
      await rm(file);
    } catch (err) {
      throw new HostsWriteError(`cannot remove stale ${file}: ${(err as Error).message}`, { cause: err });
    }
    removed.push(file);
    // the directory goes too when nothing else (a CA someone put there) is left in it
    await rmdir(join(dir, entry.name)).catch(() => undefined);
  }
  return removed;
}
