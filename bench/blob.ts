/**
 * Blob throughput: a large random blob written to disk once (hashed while written), pushed to
 * the direct registry as one monolithic upload streamed from the file, then downloaded with
 * curl, which discards the bytes and reports its average speed.
 */
import { createHash, randomFillSync } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, readFile } from "node:fs/promises";
import { request } from "undici";
import { runCommand } from "../test/helpers/process.js";

const CHUNK = 4 * 1024 * 1024;

export interface BlobFile {
  file: string;
  digest: string;
  size: number;
}

/** Random bytes so nothing on the path can compress or dedupe them. */
export async function writeRandomBlob(file: string, size: number): Promise<BlobFile> {
  const hash = createHash("sha256");
  const fh = await open(file, "w");
  try {
    const chunk = Buffer.allocUnsafe(CHUNK);
    for (let written = 0; written < size; ) {
      const n = Math.min(CHUNK, size - written);
      randomFillSync(chunk, 0, n);
      const part = chunk.subarray(0, n);
      hash.update(part);
      await fh.write(part);
      written += n;
    }
  } finally {
    await fh.close();
  }
  return { file, digest: `sha256:${hash.digest("hex")}`, size };
}

/** POST an upload, then PUT the whole file with `?digest=` (distribution spec: monolithic upload). */
export async function pushBlobFile(registryUrl: string, repo: string, blob: BlobFile): Promise<void> {
  const start = await request(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  await start.body.dump();
  if (start.statusCode !== 202) throw new Error(`start upload: HTTP ${start.statusCode}`);
  const location = new URL(String(start.headers.location ?? ""), registryUrl);
  location.searchParams.set("digest", blob.digest);
  const put = await request(location, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream", "content-length": String(blob.size) },
    body: createReadStream(blob.file, { highWaterMark: CHUNK }),
  });
  const text = await put.body.text();
  if (put.statusCode !== 201) throw new Error(`upload of ${blob.digest}: HTTP ${put.statusCode} ${text}`);
}

/** Download `url` with curl into /dev/null; bytes per second, after checking status and size. */
export async function curlDownload(url: string, expectedSize: number): Promise<number> {
  const out = await runCommand(
    "curl",
    ["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}", url],
    { timeoutMs: 300_000 },
  );
  const [status, size, speed] = out.stdout.trim().split(" ").map(Number);
  if (out.code !== 0 || status !== 200 || size !== expectedSize) {
    throw new Error(`curl ${url}: exit ${out.code}, HTTP ${status}, ${size} of ${expectedSize} bytes`);
  }
  return speed ?? 0;
}

/**
 * Write back every dirty page before a measured read (`sync`): a side that filled a cache without
 * fsync (the pull-through cache) leaves its file to the kernel's flusher, which otherwise runs ~30 s
 * later (vm.dirty_expire_centisecs), on the 2 shared cores, in whichever read comes next.
 */
export async function flushDirtyPages(): Promise<void> {
  const out = await runCommand("sync", [], { timeoutMs: 120_000 });
  if (out.code !== 0) throw new Error(`sync: exit ${out.code}`);
}

/** Peak resident set size of a process (VmHWM, /proc/<pid>/status), in bytes. */
export async function peakRss(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far (/proc/<pid>/stat fields 14 and 15). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
/**
 * CPU seconds so far by thread kind: the main (JavaScript) thread, and every other thread (V8's
 * GC helpers and libuv's pool, where file writes run), each user and system (/proc/<pid>/task).
 * Says which stage a CPU change came from: hashing and parsing are main-thread user time, socket
 * writes main-thread system time, file writes pool system time (issue 16: CPU per stage).
 */
export async function cpuByThread(pid: number): Promise<CpuSplit> {
  const out: CpuSplit = { mainUser: 0, mainSys: 0, otherUser: 0, otherSys: 0 };
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8").catch(() => undefined);
    if (stat === undefined) continue; // the thread ended meanwhile
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const user = Number(fields[11]) / CLOCK_TICKS;
    const sys = Number(fields[12]) / CLOCK_TICKS;
    if (Number(tid) === pid) {
      out.mainUser += user;
      out.mainSys += sys;
    } else {
      out.otherUser += user;
      out.otherSys += sys;
    }
  }
  return out;
}

export interface CpuSplit {
  mainUser: number;
  mainSys: number;
  otherUser: number;
  otherSys: number;
}

/** USER_HZ: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS = 100;

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
  return { median, min: s[0] ?? 0, max: s[s.length - 1] ?? 0, n: s.length };
}

/**
 * Read `url` until two successive reads agree within `tolerance` (a filled pull-through cache
 * speeds up over its first reads after the fill: issue 16), at most `maxReads` times. Returns
 * every speed read, and whether it settled.
 */
export async function readUntilSteady(
  url: string,
  size: number,
  maxReads: number,
  tolerance = 0.05,
): Promise<{ speeds: number[]; steady: boolean }> {
  const speeds: number[] = [];
  for (let i = 0; i < maxReads; i++) {
    speeds.push(await curlDownload(url, size));
    const [a, b] = speeds.slice(-2);
    if (a !== undefined && b !== undefined && Math.abs(b - a) <= tolerance * Math.max(a, b))
      return { speeds, steady: true };
  }
  return { speeds, steady: false };
}
