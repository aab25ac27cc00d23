/**
 * Blobs stream through without buffering: undici's body (a Node Readable) is piped into the
 * raw ServerResponse with backpressure; Content-Length, Docker-Content-Digest and Range pass
 * through; HEAD never downloads. While a full blob streams its digest is computed, and the
 * last chunk is held back until the digest is verified: with Content-Length set, a client
 * that already had every byte would see a clean end of a wrong blob. On a mismatch the
 * connection is destroyed instead, so the client sees a failed transfer, and the event is logged.
 */
import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { TrustgateError } from "../errors.js";
import type { Digest } from "../oci/reference.js";
import { BLOB_HIGH_WATER_MARK } from "../streaming.js";
import { header, type RegistryClient } from "../upstream/client.js";

/** Where a verified relay also sends its bytes: the blob cache's fill (blob-cache.ts BlobFill). */
export interface BlobCopy {
  /** a promise when the relay should wait for the copy to catch up */
  write(chunk: Buffer): Promise<void> | undefined;
}

export class BlobDigestMismatchError extends TrustgateError {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super("BLOB_DIGEST_MISMATCH", `blob bytes hash to ${actual}, not ${expected}`);
  }
}

/**
 * Passes bytes through while hashing them, always one chunk behind: the held chunk is
 * released in flush() only when the digest matches; otherwise the stream errors and the
 * pipeline destroys the client connection before the response is complete.
 */
export class DigestVerifier extends Transform {
  readonly #hash: Hash;
  readonly #expected: Digest;
  readonly #copy: BlobCopy | undefined;
  #held: Buffer | undefined;
  /** bytes handed on to the client so far */
  bytesPassed = 0;

  /** `copy` receives every chunk too (the blob cache's fill); the relay waits when it asks to. */
  constructor(expected: Digest, copy?: BlobCopy) {
    // Buffers in, buffers out, with the relay's buffer size (see BLOB_HIGH_WATER_MARK).
    super({ highWaterMark: BLOB_HIGH_WATER_MARK });
    this.#expected = expected;
    this.#hash = createHash(expected.algorithm);
    this.#copy = copy;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    const copyBehind = this.#copy?.write(chunk);
    const previous = this.#held;
    this.#held = chunk;
    if (previous) {
      this.bytesPassed += previous.length;
      this.push(previous);
    }
    if (copyBehind) copyBehind.then(() => callback());
    else callback();
  }

  override _flush(callback: TransformCallback): void {
    const actual = `${this.#expected.algorithm}:${this.#hash.digest("hex")}`;
    if (actual !== this.#expected.value) {
      this.#held = undefined;
      callback(new BlobDigestMismatchError(this.#expected.value, actual));
      return;
    }
    if (this.#held) {
      this.bytesPassed += this.#held.length;
      this.push(this.#held);
      this.#held = undefined;
    }
    callback();
  }
}

/** Response headers for a blob answer, taken from the upstream's answer. */
export function blobHeaders(
  upstream: Record<string, string | string[] | undefined>,
  digest: Digest,
  status: number,
): Record<string, string> {
  const out: Record<string, string> = {
    "content-type": header(upstream, "content-type") ?? "application/octet-stream",
    // We answer for the digest the client asked for: the bytes are verified against it (200)
    // or are a slice of it (206).
    "docker-content-digest": digest.value,
  };
  const length = header(upstream, "content-length");
  if (length !== undefined && /^[0-9]+$/.test(length)) out["content-length"] = length;
  const acceptRanges = header(upstream, "accept-ranges");
  if (acceptRanges) out["accept-ranges"] = acceptRanges;
  if (status === 206) {
    const range = header(upstream, "content-range");
    if (range) out["content-range"] = range;
  }
  return out;
}

/** The upstream URL of a blob, for `blobRedirect` mode (clients verify blob digests themselves). */
export function blobRedirectUrl(client: RegistryClient, repository: string, digest: Digest): string {
  return client.apiUrl(repository, `blobs/${digest.value}`).href;
}
