/**
 * Old code against new code on one blob path, in one run (issue 16: keep a change only if its
 * median moves outside the other's min-max band). Two trustgates, one from this checkout's
 * dist/ and one from another checkout's (`--base DIR`, built), in front of one docker-registry;
 * reads alternate A B, B A, ... so both see the same load and go first equally often.
 *
 *   node .build/bench/ab-blob.js --base /path/to/other/checkout [--mode cache|relay|first|first-nocache]
 *                                [--mib 256] [--rounds 7] [--cpu-prof DIR]
 *
 * cache: each trustgate fills its blob cache, is read until steady (two reads within 5%), then
 * measured. relay: no blob cache, every read relayed and verified. first: a fresh trustgate with
 * a blob cache per read (relayed, verified, kept), then one more read of it, the first hit (a
 * change that only moves work from the fill to the first hit shows there); first-nocache: a fresh
 * trustgate without one. Prints speeds and trustgate CPU s/GB, median (min, max), the CPU by
 * thread kind, and the load before and after.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runCommand, tempDir, waitFor } from "../test/helpers/process.js";
import { startRegistry } from "../test/helpers/registry.js";
import {
  type CpuSplit,
  cpuByThread,
  cpuSeconds,
  curlDownload,
  flushDirtyPages,
  pushBlobFile,
  readUntilSteady,
  spread,
  writeRandomBlob,
} from "./blob.js";
import { own, ownDir, ownWithDir, stopAll, stopOnSignals } from "./lifecycle.js";
import { REPO_ROOT, startTrustgate, type TrustgateProcess, trustgateConfig } from "./trustgate.js";

const { values: flags } = parseArgs({
  options: {
    base: { type: "string" },
    mode: { type: "string", default: "cache" },
    mib: { type: "string", default: "256" },
    rounds: { type: "string", default: "7" },
    /** B (this checkout) runs under `node --cpu-prof` and writes its profile here */
    "cpu-prof": { type: "string" },
    /**
     * KEY=VALUE in B's environment only (repeatable): a process-level setting measured against
     * the same build, e.g. `--base . --b-env MALLOC_TRIM_THRESHOLD_=...`
     */
    "b-env": { type: "string", multiple: true },
  },
  strict: true,
});
const MiB = 1024 * 1024;
const REPO = "bench/app";

async function main(): Promise<void> {
  stopOnSignals();
  if (!flags.base) throw new Error("--base DIR (a built checkout) is required");
  const mode = flags.mode as string;
  if (!["cache", "relay", "first", "first-nocache"].includes(mode))
    throw new Error(`--mode: cache, relay, first or first-nocache, not ${mode}`);
  const fresh = mode.startsWith("first");
  const size = Number(flags.mib) * MiB;
  const rounds = Number(flags.rounds);
  const work = ownDir(await tempDir("bench-ab"));
  const peer = await startRegistry();
  const direct = ownWithDir("docker-registry", peer, peer.dir);
  const blob = await writeRandomBlob(join(work, "blob.bin"), size);
  await pushBlobFile(direct.url, REPO, blob);
  const path = `/v2/${REPO}/blobs/${blob.digest}`;
  const builds = { A: join(resolve(flags.base), "dist/cli.js"), B: join(REPO_ROOT, "dist/cli.js") };
  const bEnv = flags["b-env"]
    ? Object.fromEntries(
        flags["b-env"].map((kv) => {
          const eq = kv.indexOf("=");
          if (eq <= 0) throw new Error(`--b-env: KEY=VALUE, not ${JSON.stringify(kv)}`);
          return [kv.slice(0, eq), kv.slice(eq + 1)];
        }),
      )
    : undefined;
  let n = 0;
  const start = async (cli: string, withCache: boolean, isB: boolean): Promise<TrustgateProcess> => {
    const dir = ownDir(join(work, `tg${n++}`));
    const extra = withCache
      ? [`blobCache: { dir: ${JSON.stringify(join(dir, "blobs"))}, maxBytes: ${4 * size} }`]
      : [];
    return startTrustgate(
      dir,
      trustgateConfig(dir, { name: "bench.local", upstream: direct.url }, "info", extra),
      {
        cli,
        nodeArgs: flags["cpu-prof"] && isB ? ["--cpu-prof", "--cpu-prof-dir", flags["cpu-prof"]] : [],
        ...(isB && bEnv ? { env: bEnv } : {}),
      },
    );
  };
  const kept = async (tg: TrustgateProcess) => {
    const file = join(tg.dir, "blobs", "sha256", blob.digest.slice(7));
    await waitFor("the blob in the cache", async () => existsSync(file), 30_000);
  };
  const read = async (tg: TrustgateProcess) => {
    await flushDirtyPages();
    const split0 = await cpuByThread(tg.pid);
    const before = await cpuSeconds(tg.pid);
    const bps = await curlDownload(`${tg.url}${path}`, size);
    const cpu = ((await cpuSeconds(tg.pid)) - before) * (1e9 / size);
    const split1 = await cpuByThread(tg.pid);
    const split = Object.fromEntries(
      Object.entries(split1).map(([k, v]) => [k, (v - split0[k as keyof CpuSplit]) * (1e9 / size)]),
    ) as unknown as CpuSplit;
    return { bps, cpu, split };
  };
  const load0 = (await runCommand("uptime", [])).stdout.trim();
  const long: Record<string, TrustgateProcess> = {};
  if (!fresh) {
    for (const [k, cli] of Object.entries(builds)) {
      const tg = own(`trustgate ${k}`, await start(cli, mode === "cache", k === "B"));
      long[k] = tg;
      if (mode === "cache") {
        await curlDownload(`${tg.url}${path}`, size);
        await kept(tg);
      }
      const s = await readUntilSteady(`${tg.url}${path}`, size, 10);
      process.stdout.write(
        `${k} warm-up GB/s ${s.speeds.map((v) => (v / 1e9).toFixed(2)).join(",")}${s.steady ? "" : " NOT steady"}\n`,
      );
    }
  }
  const got: Record<string, { bps: number[]; cpu: number[]; split: CpuSplit[] }> = {
    A: { bps: [], cpu: [], split: [] },
    B: { bps: [], cpu: [], split: [] },
  };
  /** mode first: the read right after the fill was kept */
  const hit: Record<string, { bps: number[]; cpu: number[] }> = {
    A: { bps: [], cpu: [] },
    B: { bps: [], cpu: [] },
  };
  for (let r = 0; r < rounds; r++) {
    for (const k of r % 2 === 0 ? ["A", "B"] : ["B", "A"]) {
      let res: { bps: number; cpu: number; split: CpuSplit };
      if (fresh) {
        const tg = await start(builds[k as "A" | "B"], mode === "first", k === "B");
        try {
          res = await read(tg);
          if (mode === "first") {
            await kept(tg);
            const h = await read(tg);
            hit[k]?.bps.push(h.bps);
            hit[k]?.cpu.push(h.cpu);
          }
        } finally {
          await tg.stop();
        }
      } else res = await read(long[k] as TrustgateProcess);
      got[k]?.bps.push(res.bps);
      got[k]?.cpu.push(res.cpu);
      got[k]?.split.push(res.split);
    }
  }
  const load1 = (await runCommand("uptime", [])).stdout.trim();
  const f = (xs: number[], scale: number) => {
    const s = spread(xs);
    return `${(s.median / scale).toFixed(2)} (min ${(s.min / scale).toFixed(2)}, max ${(s.max / scale).toFixed(2)}, n=${s.n})`;
  };
  process.stdout.write(
    `mode ${mode}, ${flags.mib} MiB, ${rounds} rounds alternating (A first in even rounds)\n`,
  );
  for (const k of ["A", "B"] as const) {
    const g = got[k] as { bps: number[]; cpu: number[]; split: CpuSplit[] };
    process.stdout.write(
      `${k} ${k === "A" ? "base" : "this"}: GB/s ${f(g.bps, 1e9)}; CPU s/GB ${f(g.cpu, 1)}\n`,
    );
    // Per thread kind, s/GB: main user (JS: parsing, hashing), main sys (socket and other
    // syscalls), other threads user (GC helpers) and sys (libuv's pool: file writes).
    const parts = (["mainUser", "mainSys", "otherUser", "otherSys"] as const).map(
      (p) => `${p} ${spread(g.split.map((s) => s[p])).median.toFixed(2)}`,
    );
    process.stdout.write(`${k} CPU s/GB medians by thread: ${parts.join(", ")}\n`);
    const h = hit[k] as { bps: number[]; cpu: number[] };
    if (h.bps.length > 0)
      process.stdout.write(`${k} first hit after the fill: GB/s ${f(h.bps, 1e9)}; CPU s/GB ${f(h.cpu, 1)}\n`);
  }
  const ratios = (got.B?.bps ?? []).map((v, i) => v / (got.A?.bps[i] ?? Number.NaN));
  process.stdout.write(`B/A per round ${f(ratios, 1)}\nload before: ${load0}\nload after:  ${load1}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`ab-blob: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
