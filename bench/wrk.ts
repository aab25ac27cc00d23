/**
 * The load generator: `wrk` (Debian package `wrk`), bounded by duration (-d), connections (-c)
 * and threads (-t); it stops by itself. A small Lua `done()` hook prints the latency percentiles
 * and counts as one JSON line, so nothing is scraped from wrk's human-readable output.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../test/helpers/process.js";

/** What clients send when they ask for a manifest (containerd/dockerd list these types). */
export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

const MARK = "BENCH_WRK_JSON ";

// wrk's latency object is in microseconds; summary.errors counts socket errors and non-2xx/3xx.
const LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '${MARK}{"requests":%d,"durationUs":%d,"bytes":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d,' ..
    '"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`;

export interface WrkOptions {
  connections: number;
  threads: number;
  durationSeconds: number;
  headers?: Record<string, string>;
}

export interface WrkResult {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** socket errors + non-2xx/3xx answers; a run with errors is not a valid measurement */
  errors: number;
}

let scriptPath: string | undefined;

export async function prepareWrk(dir: string): Promise<void> {
  scriptPath = join(dir, "report.lua");
  await writeFile(scriptPath, LUA);
}

export async function runWrk(url: string, opts: WrkOptions): Promise<WrkResult> {
  if (!scriptPath) throw new Error("prepareWrk() first");
  const args = [
    `-t${opts.threads}`,
    `-c${opts.connections}`,
    `-d${opts.durationSeconds}s`,
    "--timeout",
    "5s",
    "-s",
    scriptPath,
  ];
  for (const [name, value] of Object.entries(opts.headers ?? {})) args.push("-H", `${name}: ${value}`);
  args.push(url);
  const out = await runCommand("wrk", args, { timeoutMs: (opts.durationSeconds + 30) * 1000 });
  const line = out.stdout.split("\n").find((l) => l.startsWith(MARK));
  if (out.code !== 0 || !line) {
    throw new Error(`wrk ${url} failed (exit ${out.code}): ${out.stderr.trim() || out.stdout.trim()}`);
  }
  const r = JSON.parse(line.slice(MARK.length)) as Record<string, number>;
  const n = (k: string) => r[k] ?? 0;
  return {
    requests: n("requests"),
    rps: n("requests") / (n("durationUs") / 1e6),
    p50Ms: n("p50Us") / 1000,
    p99Ms: n("p99Us") / 1000,
    maxMs: n("maxUs") / 1000,
    errors: n("connectErrors") + n("readErrors") + n("writeErrors") + n("statusErrors") + n("timeouts"),
  };
}
