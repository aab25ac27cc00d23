import type { Readable } from "node:stream";

/**
 * How many bytes each stage of a blob relay buffers: undici's response body, the verifier, and
 * the client socket. With Node's defaults (64 KiB and 16 KiB) a 512 MiB blob relayed (no hashing)
 * at 0.57-0.61 GB/s here, the relay idling between small reads and writes; with 256 KiB at every
 * stage 0.90-0.93 GB/s (same run, curl). A threshold, not an allocation: memory grows by it only
 * for a stream whose reader is slower than its writer.
 */
export const BLOB_HIGH_WATER_MARK = 256 * 1024;

/** Read a body completely, failing once it exceeds `max` bytes (the rest is never buffered). */
export async function readCapped(body: Readable, max: number, onTooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) {
      body.destroy();
      throw onTooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}
