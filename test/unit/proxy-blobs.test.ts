import { createHash } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { parseDigest } from "../../src/oci/reference.js";
import { BlobDigestMismatchError, blobHeaders, DigestVerifier } from "../../src/proxy/blobs.js";

function digestOf(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Collects what reaches the client, and whether the stream ended cleanly. */
async function run(chunks: Buffer[], digest: string) {
  const d = parseDigest(digest);
  if (!d) throw new Error("bad digest");
  const received: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      received.push(chunk);
      cb();
    },
  });
  const verifier = new DigestVerifier(d);
  let error: unknown;
  try {
    await pipeline(Readable.from(chunks), verifier, sink);
  } catch (err) {
    error = err;
  }
  return { received: Buffer.concat(received), error, passed: verifier.bytesPassed };
}

describe("streaming digest verification", () => {
  const chunks = [Buffer.alloc(1000, 1), Buffer.alloc(2000, 2), Buffer.alloc(500, 3)];
  const whole = Buffer.concat(chunks);

  it("passes every byte of a matching blob", async () => {
    const r = await run(chunks, digestOf(whole));
    expect(r.error).toBeUndefined();
    expect(r.received.equals(whole)).toBe(true);
    expect(r.passed).toBe(whole.length);
  });

  it("holds back the last chunk of a mismatching blob and fails the stream", async () => {
    const r = await run(chunks, digestOf(Buffer.from("something else")));
    expect(r.error).toBeInstanceOf(BlobDigestMismatchError);
    // the client never had the whole body: it cannot see a clean end of a wrong blob
    expect(r.received.length).toBeLessThan(whole.length);
    expect(r.received.length).toBe(3000);
  });

  it("fails a one-chunk mismatch without passing any byte", async () => {
    const r = await run([Buffer.from("x")], digestOf(Buffer.from("y")));
    expect(r.error).toBeInstanceOf(BlobDigestMismatchError);
    expect(r.received.length).toBe(0);
  });

  it("verifies an empty blob", async () => {
    expect((await run([], digestOf(Buffer.alloc(0)))).error).toBeUndefined();
    expect((await run([], digestOf(Buffer.from("z")))).error).toBeInstanceOf(BlobDigestMismatchError);
  });

  it("verifies sha512 digests", async () => {
    const sha512 = `sha512:${createHash("sha512").update(whole).digest("hex")}`;
    expect((await run(chunks, sha512)).error).toBeUndefined();
  });
});

describe("blob response headers", () => {
  const digest = parseDigest(`sha256:${"a".repeat(64)}`);
  if (!digest) throw new Error("bad digest");
  it("keeps length, type and range; answers for the requested digest", () => {
    expect(
      blobHeaders(
        {
          "content-length": "1000",
          "content-type": "application/octet-stream",
          "content-range": "bytes 0-999/5000",
          "docker-content-digest": "sha256:other",
          "set-cookie": "x=y",
        },
        digest,
        206,
      ),
    ).toEqual({
      "content-length": "1000",
      "content-type": "application/octet-stream",
      "content-range": "bytes 0-999/5000",
      "docker-content-digest": digest.value,
    });
    expect(blobHeaders({ "content-length": "12abc" }, digest, 200)["content-length"]).toBeUndefined();
  });
});
