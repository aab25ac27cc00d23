/**
 * The direct fill writer (src/proxy/blob-direct.ts) against a file handle that fails: a failed or
 * short write gives the copy up, releases a relay waiting on it, and leaves no write in flight
 * when it reports, so its staging buffers can be handed to another fill.
 */
import type { FileHandle } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { DirectWriter, SLOT_BYTES, SLOTS_PER_FILL, StagingPool } from "../../src/proxy/blob-direct.js";

/** A handle whose writes answer after a tick: `answer` says how each one ends. */
function fakeHandle(answer: (n: number, bytes: number) => number | Error) {
  const writes: { bytes: number; offset: number }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const fh = {
    async write(_b: Buffer, _o: number, bytes: number, offset: number) {
      const n = writes.push({ bytes, offset });
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      const got = answer(n, bytes);
      if (got instanceof Error) throw got;
      return { bytesWritten: got, buffer: _b };
    },
    async truncate() {},
  };
  return {
    fh: fh as unknown as FileHandle,
    writes,
    inFlight: () => inFlight,
    maxInFlight: () => maxInFlight,
  };
}

function slots(): Buffer[] {
  const pool = StagingPool.create(SLOTS_PER_FILL);
  const got = pool?.take();
  if (!got) throw new Error("no staging memory");
  return got;
}

describe("DirectWriter", () => {
  it("writes whole aligned buffers at their offsets, the last one padded, with at most all its buffers in flight", async () => {
    const h = fakeHandle((_n, bytes) => bytes);
    const w = new DirectWriter(Promise.resolve(h.fh), slots());
    const size = 6 * SLOT_BYTES + 10;
    const chunk = Buffer.alloc(SLOT_BYTES / 2 + 3, 1);
    for (let sent = 0; sent < size; ) {
      const part = chunk.subarray(0, Math.min(chunk.length, size - sent));
      sent += part.length;
      const wait = w.write(part);
      if (wait) await wait;
    }
    await w.finish(size);
    expect(w.written).toBe(size);
    expect(h.writes.map((x) => x.offset)).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => i * SLOT_BYTES));
    expect(h.writes.at(-1)?.bytes).toBe(4096);
    expect(h.maxInFlight()).toBeLessThanOrEqual(SLOTS_PER_FILL);
  });

  it("a failed write gives the copy up: the waiting relay is released, finish() throws once nothing is in flight", async () => {
    const h = fakeHandle((n, bytes) => (n === 2 ? Object.assign(new Error("EIO"), { code: "EIO" }) : bytes));
    const w = new DirectWriter(Promise.resolve(h.fh), slots());
    const waits = Array.from({ length: 8 }, () => w.write(Buffer.alloc(SLOT_BYTES)));
    expect(waits.filter((x) => x !== undefined).length).toBeGreaterThan(0);
    await Promise.all(waits); // released, not left hanging
    await expect(w.finish(8 * SLOT_BYTES)).rejects.toThrow("EIO");
    expect(h.inFlight()).toBe(0);
    expect(w.write(Buffer.alloc(10))).toBeUndefined(); // nothing more is staged
  });

  it("a short write is a failure too", async () => {
    const h = fakeHandle((_n, bytes) => bytes - 512);
    const w = new DirectWriter(Promise.resolve(h.fh), slots());
    w.write(Buffer.alloc(SLOT_BYTES));
    await expect(w.finish(SLOT_BYTES)).rejects.toThrow(/short write/);
  });

  it("a file that could not be opened: every write is refused, finish() throws the open error", async () => {
    const opened = Promise.reject(Object.assign(new Error("EACCES"), { code: "EACCES" }));
    const w = new DirectWriter(opened as Promise<FileHandle>, slots());
    await Promise.resolve();
    await w.write(Buffer.alloc(5 * SLOT_BYTES));
    await expect(w.finish(5 * SLOT_BYTES)).rejects.toThrow("EACCES");
  });

  it("stop() waits for the writes in flight", async () => {
    const h = fakeHandle((_n, bytes) => bytes);
    const w = new DirectWriter(Promise.resolve(h.fh), slots());
    w.write(Buffer.alloc(3 * SLOT_BYTES));
    await new Promise((r) => setImmediate(r));
    expect(h.inFlight()).toBe(3);
    await w.stop();
    expect(h.inFlight()).toBe(0);
  });
});
