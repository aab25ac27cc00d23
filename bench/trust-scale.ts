/**
 * Trust at scale, through the Notary module's own API (src/trust/notary):
 * - a targets.json with 10,000 tags: time `updateRepository` from nothing (root, timestamp,
 *   snapshot, targets verified; every target indexed) — the work a cold GUN costs trustgate;
 * - N GUNs of cached trust: a separate process (gun-cache-child.ts) runs a NotarySource against
 *   an HTTP server holding N signed repositories, resolves one tag in each, and reports its RSS.
 * Metadata is made by the test signer (test/helpers/notary-signer.ts), laid out like notary-server.
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { updateRepository } from "../src/trust/notary/update.js";
import { TestRepo } from "../test/helpers/notary-signer.js";
import { runChildJson } from "./children.js";

function randomTargets(count: number): Record<string, { digest: string; size: number }> {
  const targets: Record<string, { digest: string; size: number }> = {};
  for (let i = 0; i < count; i++)
    targets[`tag-${i}`] = { digest: randomBytes(32).toString("hex"), size: 400 + i };
  return targets;
}

export interface IndexTiming {
  tags: number;
  targetsBytes: number;
  medianMs: number;
  minMs: number;
}

export async function timeTargetsIndex(tags: number, iterations: number): Promise<IndexTiming> {
  const gun = "bench.local/scale/app";
  const now = new Date();
  const repo = new TestRepo(gun, now);
  repo.targets = randomTargets(tags);
  const files = repo.publish();
  const source = async (file: string) => {
    const bytes = files.get(file);
    if (!bytes) throw new Error(`no ${file}`);
    return bytes;
  };
  const times: number[] = [];
  for (let i = 0; i <= iterations; i++) {
    const t0 = performance.now();
    const trusted = await updateRepository(null, { gun, now, source });
    const ms = performance.now() - t0;
    if (trusted.roles.get("targets")?.targets.get(`tag-${tags - 1}`)?.digest === undefined) {
      throw new Error("10k-tag index does not resolve its last tag");
    }
    if (i > 0) times.push(ms); // the first run warms the JIT
  }
  times.sort((a, b) => a - b);
  return {
    tags,
    targetsBytes: files.get("targets.json")?.length ?? 0,
    medianMs: times[Math.floor(times.length / 2)] ?? Number.NaN,
    minMs: times[0] ?? Number.NaN,
  };
}

export interface GunCacheResult {
  guns: number;
  tagsPerGun: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  heapUsedAfterBytes: number;
  elapsedMs: number;
}

/** Serve N signed repositories over HTTP; a child NotarySource caches all N; its RSS. */
export async function measureGunCache(
  guns: number,
  tagsPerGun: number,
  stateDir: string,
): Promise<GunCacheResult> {
  const now = new Date();
  const files = new Map<string, Buffer>();
  for (let g = 0; g < guns; g++) {
    const gun = `bench.local/scale/app-${g}`;
    const repo = new TestRepo(gun, now);
    repo.targets = randomTargets(tagsPerGun);
    for (const [file, bytes] of repo.publish()) files.set(`/v2/${gun}/_trust/tuf/${file}`, bytes);
  }
  const server = createServer((req, res) => {
    const bytes = files.get(req.url ?? "");
    if (!bytes) {
      res
        .writeHead(404, { "content-type": "application/json" })
        .end('{"errors":[{"code":"METADATA_NOT_FOUND"}]}');
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": bytes.length }).end(bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return await runChildJson<GunCacheResult>(
      "gun-cache-child.js",
      [url, stateDir, String(guns), String(tagsPerGun)],
      ["--expose-gc"],
    );
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
