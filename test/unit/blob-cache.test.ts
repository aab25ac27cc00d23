/**
 * The verified blob cache on a real directory: what gets in (only committed fills of the announced
 * length), who may read it (a repository the upstream confirmed), the byte bound, and a restart.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { beforeEach, describe, expect, it } from "vitest";
import { type Digest, parseDigest } from "../../src/oci/reference.js";
import { BlobCache } from "../../src/proxy/blob-cache.js";

const MiB = 1024 * 1024;

function blob(size: number): { bytes: Buffer; digest: Digest } {
  const bytes = randomBytes(size);
  const digest = parseDigest(`sha256:${createHash("sha256").update(bytes).digest("hex")}`);
  if (!digest) throw new Error("digest");
  return { bytes, digest };
}

/** Relay `bytes` into a fill in uneven chunks, then commit it. */
async function store(cache: BlobCache, b: { bytes: Buffer; digest: Digest }, repo = "acme/app") {
  const fill = cache.beginFill("r.test", repo, b.digest, b.bytes.length);
  if (!fill) throw new Error("no fill");
  for (let i = 0; i < b.bytes.length; i += 100_000) fill.write(b.bytes.subarray(i, i + 100_000));
  return fill.commit();
}

const never = async () => {
  throw new Error("the upstream was asked");
};

describe("BlobCache", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "tg-blob-cache-"));
  });

  it("keeps a committed fill and serves it to the repository it came from without asking upstream", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 10 * MiB });
    const b = blob(MiB + 7);
    expect(await store(cache, b)).toBe(true);
    expect((await readFile(join(dir, "sha256", b.digest.hex))).equals(b.bytes)).toBe(true);
    const hit = await cache.open("r.test", "acme/app", b.digest, never);
    expect(hit?.size).toBe(b.bytes.length);
    if (!hit) throw new Error("not served");
    expect((await buffer(hit.stream())).equals(b.bytes)).toBe(true);
    expect(await readdir(join(dir, "tmp"))).toEqual([]);
  });

  it("pipeTo: writes the exact bytes, reusing its buffers only after each write completed", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 10 * MiB });
    const b = blob(3 * MiB + 5);
    await store(cache, b);
    const hit = await cache.open("r.test", "acme/app", b.digest, never);
    const got: Buffer[] = [];
    // A slow sink that keeps each chunk by reference: a buffer reused too early would show here.
    const out = new Writable({
      highWaterMark: 0,
      write(chunk: Buffer, _enc, cb) {
        got.push(chunk);
        setTimeout(() => {
          got[got.length - 1] = Buffer.from(chunk); // copied only once "written"
          cb();
        }, 1);
      },
    });
    await hit?.pipeTo(out);
    expect(Buffer.concat(got).equals(b.bytes)).toBe(true);
  });

  it("pipeTo: a write that fails while the next read is pending rejects the answer, never unhandled", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 10 * MiB });
    const b = blob(3 * MiB);
    await store(cache, b);
    const hit = await cache.open("r.test", "acme/app", b.digest, never);
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on("unhandledRejection", onUnhandled);
    try {
      // the write's failure arrives at once, before the file read that follows it completes
      const out = new Writable({
        write(_chunk, _enc, cb) {
          process.nextTick(() => cb(new Error("client gone")));
        },
      });
      out.on("error", () => {});
      await expect(hit?.pipeTo(out)).rejects.toThrow("client gone");
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("asks the upstream once before serving the blob to another repository, and not at all on refusal", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 10 * MiB });
    const b = blob(1000);
    await store(cache, b);
    let asked = 0;
    const yes = async () => {
      asked++;
    };
    expect(await cache.open("r.test", "other/app", b.digest, yes)).toBeDefined();
    expect(await cache.open("r.test", "other/app", b.digest, yes)).toBeDefined();
    expect(asked).toBe(1);
    await expect(
      cache.open("r.test", "third/app", b.digest, async () => {
        throw new Error("404 from upstream");
      }),
    ).rejects.toThrow("404 from upstream");
    await expect(cache.open("other.test", "acme/app", b.digest, never)).rejects.toThrow("was asked");
  });

  it("keeps nothing from a fill that was aborted or short of its announced length", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 10 * MiB });
    const b = blob(5000);
    const aborted = cache.beginFill("r.test", "acme/app", b.digest, 5000);
    aborted?.write(b.bytes);
    aborted?.abort();
    const short = cache.beginFill("r.test", "acme/app", b.digest, 5000);
    expect(short).toBeDefined(); // the aborted fill no longer holds the digest
    short?.write(b.bytes.subarray(0, 4999));
    expect(await short?.commit()).toBe(false);
    expect(cache.has(b.digest.value)).toBe(false);
    await expect.poll(() => readdir(join(dir, "tmp"))).toEqual([]);
    expect(await readdir(join(dir, "sha256"))).toEqual([]);
  });

  it("asks the relay to wait while the disk is more than 16 MiB behind, and keeps the blob", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 64 * MiB });
    const b = blob(20 * MiB);
    const fill = cache.beginFill("r.test", "acme/app", b.digest, b.bytes.length);
    // written in one synchronous burst: the disk cannot have caught up before the 17th MiB
    const waits = Array.from({ length: 20 }, (_, i) => fill?.write(b.bytes.subarray(i * MiB, (i + 1) * MiB)));
    expect(waits.slice(0, 16).every((w) => w === undefined)).toBe(true);
    expect(waits.slice(16).every((w) => w instanceof Promise)).toBe(true);
    await Promise.all(waits);
    expect(await fill?.commit()).toBe(true);
    expect((await readFile(join(dir, "sha256", b.digest.hex))).equals(b.bytes)).toBe(true);
  });

  it("one fill per digest; none for a cached blob or one larger than the cache", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 2 * MiB });
    const b = blob(100);
    const first = cache.beginFill("r.test", "acme/app", b.digest, 100);
    expect(cache.beginFill("r.test", "acme/app", b.digest, 100)).toBeUndefined();
    first?.write(b.bytes);
    await first?.commit();
    expect(cache.beginFill("r.test", "acme/app", b.digest, 100)).toBeUndefined();
    expect(cache.beginFill("r.test", "acme/app", blob(10).digest, 3 * MiB)).toBeUndefined();
  });

  it("stays within maxBytes, dropping the least recently served blob first", async () => {
    const cache = await BlobCache.open({ dir, maxBytes: 2 * MiB + 10 });
    const [a, b, c] = [blob(MiB), blob(MiB), blob(MiB)];
    await store(cache, a);
    await store(cache, b);
    (await cache.open("r.test", "acme/app", a.digest, never))?.stream().destroy(); // a is now the newest
    await store(cache, c);
    expect([a, b, c].map((x) => cache.has(x.digest.value))).toEqual([true, false, true]);
    expect(cache.bytes).toBe(2 * MiB);
    expect((await readdir(join(dir, "sha256"))).sort()).toEqual([a.digest.hex, c.digest.hex].sort());
  });

  it("after a restart: cached blobs are indexed, temp files removed, repositories confirmed again", async () => {
    const first = await BlobCache.open({ dir, maxBytes: 10 * MiB });
    const b = blob(2000);
    await store(first, b);
    await writeFile(join(dir, "tmp", "half-written"), "partial");
    const again = await BlobCache.open({ dir, maxBytes: 10 * MiB });
    expect(await readdir(join(dir, "tmp"))).toEqual([]);
    expect(again.bytes).toBe(2000);
    let asked = 0;
    const hit = await again.open("r.test", "acme/app", b.digest, async () => {
      asked++;
    });
    expect(asked).toBe(1);
    if (!hit) throw new Error("not served after the restart");
    expect((await buffer(hit.stream())).equals(b.bytes)).toBe(true);
  });
});
