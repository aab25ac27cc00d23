/**
 * Cache fills after the relay (src/proxy/blob-cache-filler.ts), on a real BlobCache directory with
 * the upstream's second answer made here: only verified bytes are kept, a second answer that lies
 * or is not the whole blob keeps nothing, one fill per digest, and the bounds on running and
 * waiting fills hold.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { type Digest, parseDigest } from "../../src/oci/reference.js";
import { BlobCache } from "../../src/proxy/blob-cache.js";
import { DeferredFills, type FillRequest } from "../../src/proxy/blob-cache-filler.js";
import type { UpstreamResponse } from "../../src/upstream/client.js";

function blob(size: number): { bytes: Buffer; digest: Digest } {
  const bytes = randomBytes(size);
  const digest = parseDigest(`sha256:${createHash("sha256").update(bytes).digest("hex")}`);
  if (!digest) throw new Error("digest");
  return { bytes, digest };
}

/** An upstream answer with `bytes` as its body, in 64 KiB chunks. */
function answer(bytes: Buffer, statusCode = 200): UpstreamResponse {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 64 * 1024) chunks.push(bytes.subarray(i, i + 64 * 1024));
  return {
    statusCode,
    headers: {},
    body: Readable.from(chunks, { objectMode: false }),
    url: new URL("http://upstream.test/"),
  };
}

/** A logger whose lines are kept for the test to read. */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger("info", {
    write(line: string) {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { logger, lines };
}

describe("DeferredFills", () => {
  let cache: BlobCache;
  beforeEach(async () => {
    cache = await BlobCache.open({
      dir: await mkdtemp(join(tmpdir(), "tg-fills-")),
      maxBytes: 64 * 1024 * 1024,
    });
  });
  const request = (b: { bytes: Buffer; digest: Digest }, open: FillRequest["open"]): FillRequest => ({
    registry: "r.test",
    repository: "acme/app",
    digest: b.digest,
    size: b.bytes.length,
    open,
  });

  it("keeps the blob once its second answer verifies, for the repository it was fetched for", async () => {
    const { logger, lines } = capturingLogger();
    const fills = new DeferredFills(cache, logger);
    const b = blob(1024 * 1024 + 7);
    fills.schedule(request(b, async () => answer(b.bytes)));
    await fills.idle();
    expect(cache.has(b.digest.value)).toBe(true);
    expect(lines.some((l) => l.msg === "blob kept in the cache" && l.digest === b.digest.value)).toBe(true);
    const kept = await cache.open("r.test", "acme/app", b.digest, async () => {
      throw new Error("the upstream was asked");
    });
    expect(kept?.size).toBe(b.bytes.length);
  });

  it("a second answer with other bytes, or not the whole blob, keeps nothing and says why", async () => {
    const { logger, lines } = capturingLogger();
    const fills = new DeferredFills(cache, logger);
    const lied = blob(300_000);
    fills.schedule(request(lied, async () => answer(randomBytes(lied.bytes.length))));
    const partial = blob(300_000);
    fills.schedule(request(partial, async () => answer(partial.bytes.subarray(0, 1000), 206)));
    const failing = blob(300_000);
    fills.schedule(
      request(failing, async () => {
        throw new Error("connect ECONNREFUSED");
      }),
    );
    await fills.idle();
    for (const b of [lied, partial, failing]) expect(cache.has(b.digest.value)).toBe(false);
    const notKept = lines.filter((l) => String(l.msg).startsWith("blob not kept in the cache"));
    expect(notKept.map((l) => l.digest).sort()).toEqual(
      [lied, partial, failing].map((b) => b.digest.value).sort(),
    );
    expect(JSON.stringify(notKept)).toContain("BlobDigestMismatchError");
    expect(JSON.stringify(notKept)).toContain("ECONNREFUSED");
    // and nothing half-written is left under a digest
    expect(cache.bytes).toBe(0);
  });

  it("one fill per digest, at most `concurrent` at once and `queued` waiting; more are dropped and logged", async () => {
    const { logger, lines } = capturingLogger();
    const fills = new DeferredFills(cache, logger, { concurrent: 2, queued: 3 });
    let open = 0;
    let most = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const blobs = Array.from({ length: 6 }, () => blob(100_000));
    const asked: string[] = [];
    for (const b of blobs) {
      const req = request(b, async () => {
        asked.push(b.digest.value);
        open++;
        most = Math.max(most, open);
        await gate;
        open--;
        return answer(b.bytes);
      });
      fills.schedule(req);
      fills.schedule(req); // the same digest again: no second fill
    }
    // 2 running + 3 waiting; the sixth is dropped (both times it was asked for)
    expect(fills.pending).toBe(5);
    const dropped = lines.filter((l) => String(l.msg).includes("too many fills waiting"));
    expect(dropped.map((l) => l.digest)).toEqual([blobs[5]?.digest.value, blobs[5]?.digest.value]);
    release();
    await fills.idle();
    expect(most).toBe(2);
    expect(asked).toHaveLength(5);
    expect(new Set(asked).size).toBe(5);
    expect(blobs.slice(0, 5).every((b) => cache.has(b.digest.value))).toBe(true);
    expect(cache.has((blobs[5] as { digest: Digest }).digest.value)).toBe(false);
    // a blob already kept is not fetched again
    fills.schedule(
      request(blobs[0] as { bytes: Buffer; digest: Digest }, async () => {
        throw new Error("asked again");
      }),
    );
    expect(fills.pending).toBe(0);
  });
});
