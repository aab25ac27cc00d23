/**
 * Blob hashing off the request thread: the worker's digests are node:crypto's, memory is bounded
 * by back-pressure, and a dead worker fails its streams (never a silent pass) and is replaced.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import {
  BlobHashers,
  InlineHasher,
  type StreamHasher,
  WORKER_HASH_MIN_BYTES,
} from "../../src/proxy/blob-hasher.js";

const MiB = 1024 * 1024;

async function feed(hasher: StreamHasher, chunks: Buffer[]): Promise<string> {
  for (const c of chunks) await hasher.update(c);
  return hasher.digest();
}

/** `total` random bytes cut at random points (chunks of 1 byte to 300 KiB). */
function randomChunks(total: number): Buffer[] {
  const out: Buffer[] = [];
  for (let left = total; left > 0; ) {
    const n = Math.min(left, 1 + Math.floor(Math.random() * 300 * 1024));
    out.push(randomBytes(n));
    left -= n;
  }
  return out;
}

describe("BlobHashers", () => {
  let hashers: BlobHashers;
  afterEach(() => hashers.close());

  it("hashes on a worker exactly as node:crypto does, for any cut of the stream", async () => {
    hashers = new BlobHashers(1);
    for (const total of [0, 1, MiB - 1, MiB, MiB + 1, 5.5 * MiB]) {
      const chunks = randomChunks(total);
      const expected = createHash("sha256").update(Buffer.concat(chunks)).digest("hex");
      expect(await feed(hashers.forBlob("sha256", undefined), chunks), `${total} bytes`).toBe(expected);
    }
    const chunks = randomChunks(3 * MiB);
    expect(await feed(hashers.forBlob("sha512", undefined), chunks)).toBe(
      createHash("sha512").update(Buffer.concat(chunks)).digest("hex"),
    );
  });

  it("keeps streams apart when several hash at once", async () => {
    hashers = new BlobHashers(1);
    const inputs = [randomChunks(3 * MiB), randomChunks(2 * MiB), randomChunks(4 * MiB)];
    const digests = await Promise.all(
      inputs.map((chunks) => feed(hashers.forBlob("sha256", undefined), chunks)),
    );
    expect(digests).toEqual(inputs.map((c) => createHash("sha256").update(Buffer.concat(c)).digest("hex")));
  });

  it("asks the feeder to wait once 4 MiB are handed over and not yet hashed", async () => {
    hashers = new BlobHashers(1);
    const hasher = hashers.forBlob("sha256", undefined);
    const waits = [0, 1, 2, 3, 4].map(() => hasher.update(Buffer.alloc(MiB, 7)));
    // the worker cannot answer before this synchronous loop ends: the fourth full batch is the limit
    expect(waits.map((w) => w !== undefined)).toEqual([false, false, false, true, true]);
    await Promise.all(waits);
    expect(await hasher.digest()).toBe(
      createHash("sha256")
        .update(Buffer.alloc(5 * MiB, 7))
        .digest("hex"),
    );
  });

  it("hashes small blobs inline, and everything inline with no workers", () => {
    hashers = new BlobHashers(1);
    expect(hashers.forBlob("sha256", WORKER_HASH_MIN_BYTES - 1)).toBeInstanceOf(InlineHasher);
    expect(hashers.forBlob("sha256", WORKER_HASH_MIN_BYTES)).not.toBeInstanceOf(InlineHasher);
    expect(new BlobHashers(0).forBlob("sha256", 10 * MiB)).toBeInstanceOf(InlineHasher);
  });

  it("fails the streams of a worker that dies, and hashes the next blob on a new one", async () => {
    hashers = new BlobHashers(1);
    const doomed = hashers.forBlob("sha256", undefined);
    doomed.update(Buffer.alloc(2 * MiB, 1));
    await hashers.close(); // terminates the worker under the stream
    await expect(doomed.digest()).rejects.toThrow(/hashing worker exited/);
    const chunks = randomChunks(2 * MiB);
    expect(await feed(hashers.forBlob("sha256", undefined), chunks)).toBe(
      createHash("sha256").update(Buffer.concat(chunks)).digest("hex"),
    );
  });
});
