/**
 * What metrics cost on the warm by-tag path (issue 12 item 4): trustgate's HTTP server with one
 * warm answer, as `serve` builds it (access lines through the asynchronous logger at `info`),
 * with and without Metrics, alternated. Bounded: RUNS runs of REQUESTS requests each.
 *
 *   npm run bench -- --only metrics          (a row of the bench table: run.ts calls measureMetricsCost)
 *   npx tsc -p tsconfig.tools.json && node .build/bench/metrics-overhead.js [pairs] [requests]
 *
 * The server runs in a child process (stdout to /dev/null, as logs to a file would be) and
 * reports its own CPU time per request; the load comes from this process over 32 keep-alive
 * connections. CPU per request is the number to trust on a shared machine: the throughput also
 * depends on the Node client, which is slower than wrk.
 */
import { fork } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Pool } from "undici";

const PATH = "/v2/r.test/acme/app/manifests/v1";

// Run as a script (or as the forked server) only; run.ts imports measureMetricsCost.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === "--server") await serve(process.argv[3] === "on");
  else if (process.argv[2] === "--hook") await hookCost(Number(process.argv[3] ?? 5));
  else await main(Number(process.argv[2] ?? 3), Number(process.argv[3] ?? 40_000));
}

/**
 * The warm path's metrics alone, in-process: what one warm answer adds (its pre-bound counter,
 * histogram, decision and warm increments), 1,000,000 calls per run. Less noisy than the HTTP
 * runs on a busy machine; compare with their CPU per request.
 */
async function hookCost(runs: number): Promise<void> {
  const { Metrics } = await import("../src/metrics.js");
  const metrics = new Metrics();
  const record = metrics.warmRecorder({
    decision: "allow",
    image: "r.test/acme/app",
    policy: "acme",
    mode: "enforce",
    role: "targets",
    reason: "signed",
  });
  const ns: number[] = [];
  for (let r = 0; r < runs; r++) {
    const n = 1_000_000;
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) record(0.00004 + (i % 7) * 1e-6);
    ns.push(Number(process.hrtime.bigint() - t) / n);
  }
  const s = stats(ns);
  process.stdout.write(
    `warm-path metrics per answer: median ${s.median.toFixed(0)} ns (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)}); n=${runs}\n`,
  );
}

async function serve(withMetrics: boolean): Promise<void> {
  const { asyncStdout, createLogger, fixedFieldsLogger } = await import("../src/log.js");
  const { Metrics } = await import("../src/metrics.js");
  const { WarmAnswers } = await import("../src/proxy/warm.js");
  const { createApp, createHttpServer } = await import("../src/server.js");
  const logger = createLogger("info", asyncStdout());
  const metrics = withMetrics ? new Metrics() : undefined;
  const warm = new WarmAnswers({
    maxBytes: 1 << 20,
    now: Date.now,
    access: fixedFieldsLogger(logger),
    ...(metrics ? { metrics } : {}),
  });
  const body = Buffer.from(
    JSON.stringify({ schemaVersion: 2, layers: [{ size: 1, digest: "x".repeat(71) }] }),
  );
  const digest = `sha256:${"1".repeat(64)}`;
  const decision = {
    decision: "allow" as const,
    image: "r.test/acme/app",
    tag: "v1",
    digest,
    role: "targets/releases",
    policy: "acme",
    mode: "enforce",
    source: "notary",
    reason: "r.test/acme/app:v1 is signed in targets/releases (notary)",
  };
  warm.remember({
    url: PATH,
    path: PATH,
    body,
    headers: {
      "content-type": "application/vnd.oci.image.manifest.v1+json",
      "content-length": String(body.length),
      "docker-content-digest": digest,
      etag: `"${digest}"`,
    },
    lineFields: { ns: undefined, registry: "r.test", audit: true, ...decision, warm: true },
    decision,
    reuse: { until: Date.now() + 3_600_000, stillValid: () => true },
  });
  const app = createApp({
    config: { registries: new Map(), defaultRegistry: undefined, blobRedirect: false },
    clients: new Map(),
    manifests: { resolve: () => Promise.reject(new Error("not warm")) },
    tags: { list: () => Promise.reject(new Error("not warm")) },
    logger,
    ...(metrics ? { metrics } : {}),
  });
  const server = createHttpServer(app, warm);
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    process.send?.({ port: typeof address === "object" && address ? address.port : 0 });
  });
  let mark = process.cpuUsage();
  process.on("message", (m: string) => {
    if (m === "mark") mark = process.cpuUsage();
    if (m === "cpu") {
      const d = process.cpuUsage(mark);
      process.send?.({ cpuMicros: d.user + d.system });
    }
    if (m === "stop") server.close(() => process.exit(0));
  });
}

export interface Run {
  metrics: boolean;
  cpuMicrosPerRequest: number;
  requestsPerSecond: number;
}

async function runOnce(withMetrics: boolean, requests: number): Promise<Run> {
  const child = fork(fileURLToPath(import.meta.url), ["--server", withMetrics ? "on" : "off"], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const next = <T>() => new Promise<T>((resolve) => child.once("message", (m) => resolve(m as T)));
  const { port } = await next<{ port: number }>();
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 32 });
  const load = async (n: number) => {
    let left = n;
    const worker = async () => {
      while (left-- > 0) {
        const res = await pool.request({ path: PATH, method: "GET" });
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
        await res.body.arrayBuffer();
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
  };
  await load(Math.min(5_000, requests)); // warm-up: JIT, connections, histogram series
  child.send("mark");
  const started = performance.now();
  await load(requests);
  const seconds = (performance.now() - started) / 1000;
  child.send("cpu");
  const { cpuMicros } = await next<{ cpuMicros: number }>();
  child.send("stop");
  await pool.close();
  await new Promise((r) => child.once("exit", r));
  return {
    metrics: withMetrics,
    cpuMicrosPerRequest: cpuMicros / requests,
    requestsPerSecond: requests / seconds,
  };
}

function stats(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted.at(-1) as number };
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface MetricsCost {
  pairs: number;
  requests: number;
  /** CPU µs per request of the server, per setting */
  withMetrics: Spread;
  withoutMetrics: Spread;
  /** per pair: CPU per request with metrics / without, the two runs side by side */
  ratio: Spread;
  /** req/s per setting (the Node client limits these; CPU is the number to judge) */
  rpsWith: Spread;
  rpsWithout: Spread;
}

/**
 * `pairs` pairs of runs, each pair one run with and one without metrics, the order alternating
 * from pair to pair (with first, then without first), so drift on a shared machine hits both alike.
 * The cost is judged per pair (adjacent runs), then summarised: median, min, max.
 */
export async function measureMetricsCost(
  pairs: number,
  requests: number,
  onRun: (run: Run) => void = () => {},
): Promise<MetricsCost> {
  const ratios: number[] = [];
  const results: Run[] = [];
  for (let i = 0; i < pairs; i++) {
    const order = i % 2 === 0 ? [true, false] : [false, true];
    const pair: Run[] = [];
    for (const withMetrics of order) {
      const r = await runOnce(withMetrics, requests);
      onRun(r);
      pair.push(r);
    }
    const on = pair.find((r) => r.metrics) as Run;
    const off = pair.find((r) => !r.metrics) as Run;
    ratios.push(on.cpuMicrosPerRequest / off.cpuMicrosPerRequest);
    results.push(...pair);
  }
  const of = (on: boolean, pick: (r: Run) => number) =>
    stats(results.filter((r) => r.metrics === on).map(pick));
  return {
    pairs,
    requests,
    withMetrics: of(true, (r) => r.cpuMicrosPerRequest),
    withoutMetrics: of(false, (r) => r.cpuMicrosPerRequest),
    ratio: stats(ratios),
    rpsWith: of(true, (r) => r.requestsPerSecond),
    rpsWithout: of(false, (r) => r.requestsPerSecond),
  };
}

async function main(pairs: number, requests: number): Promise<void> {
  const cost = await measureMetricsCost(pairs, requests, (r) =>
    process.stdout.write(
      `${r.metrics ? "with   " : "without"} metrics: ${r.cpuMicrosPerRequest.toFixed(2)} µs CPU/request, ${Math.round(r.requestsPerSecond)} req/s\n`,
    ),
  );
  for (const [label, cpu, rps] of [
    ["without", cost.withoutMetrics, cost.rpsWithout],
    ["with   ", cost.withMetrics, cost.rpsWith],
  ] as const) {
    process.stdout.write(
      `${label}: CPU/request median ${cpu.median.toFixed(2)} µs (min ${cpu.min.toFixed(2)}, max ${cpu.max.toFixed(2)}); ` +
        `req/s median ${Math.round(rps.median)} (min ${Math.round(rps.min)}, max ${Math.round(rps.max)}); n=${cost.pairs}\n`,
    );
  }
  const r = cost.ratio;
  process.stdout.write(
    `with/without per pair: median ${r.median.toFixed(3)} (min ${r.min.toFixed(3)}, max ${r.max.toFixed(3)}); target <= 1.05\n`,
  );
}
