/**
 * The verified blob cache (optional, `blobCache:` in config.yaml): blobs kept on local disk by
 * digest, so a layer the cluster pulls again is served from disk instead of the upstream.
 *
 * Only verified bytes are kept. A blob new to the cache is fetched again once its relay ended
 * verified (blob-cache-filler.ts: the client never waits for the disk) and written to a temp file
 * as it streams (written in batches; the fill waits when the disk is 16 MiB behind, so memory
 * stays flat); the file enters the cache only when the fill ended with the digest verified and
 * exactly the announced length, after fsync, by rename (so a crash leaves a temp file, which the
 * next start removes, never a half-written blob under its digest).
 *
 * A cached blob is served for a repository only once the upstream has answered that blob for that
 * repository (by the relay that filled it, or by a HEAD when another repository asks): the cache
 * never lets one repository's blob show up in another, as the manifest cache keys by repository.
 *
 * Bounded by `maxBytes`: least recently used first. An evicted file still being served stays
 * readable (it is unlinked, and the open handle keeps it) until that answer ends.
 *
 * Why: relaying verifies every byte on the request thread, below a filled pull-through cache,
 * which serves from its own disk without verifying. A hit is written from two reused 256 KiB
 * buffers straight into the response (pipeFile; README Performance, bench/README.md "Blobs").
 */
import { randomUUID } from "node:crypto";
import { type FileHandle, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { LRUCache } from "lru-cache";
import type { Digest } from "../oci/reference.js";
import { fsyncDir } from "../trust/state.js";

export interface BlobCacheOptions {
  dir: string;
  maxBytes: number;
}

/** A cached blob opened for one answer: use exactly one of `stream` and `pipeTo`. */
export interface CachedBlob {
  size: number;
  /** the file's bytes, read 256 KiB at a time; closes the file when it ends or is destroyed */
  stream(): Readable;
  /**
   * Write the file's bytes to `out` and end it, reading into two buffers reused for the whole
   * answer (a buffer is read into again only once its write has completed); closes the file.
   * Rejects when the write fails (the client went away, or `out` was destroyed).
   */
  pipeTo(out: Writable): Promise<void>;
}

/**
 * Reads from the cache: 256 KiB. Alternating A/B of a filled cache, 256 MiB, 2 cores under load
 * (bench/ab-blob.ts): against 1 MiB, 1.61 (min 1.37, max 2.09) vs 1.41 (1.13-1.48) GB/s and
 * 1.39 (0.88-2.52) vs 1.25 (1.02-1.29); 4 MiB reads fell to 0.76 GB/s and 128 KiB to 0.76 GB/s
 * (each read is a new buffer: large ones are fresh pages, small ones more reads per byte).
 * pipeFile then reuses two buffers of this size: 2.47 (2.24-3.29) vs main's 0.94 (0.73-1.10) GB/s.
 */
const READ_CHUNK_BYTES = 256 * 1024;
/** A fill whose disk is further behind than this waits for it: memory stays bounded. */
const MAX_FILL_BACKLOG_BYTES = 16 * 1024 * 1024;
const ALGORITHMS = ["sha256", "sha512"] as const;

export class BlobCache {
  /** digest -> size, least recently used first (Map order; a use moves it to the end) */
  readonly #files = new Map<string, number>();
  #bytes = 0;
  /** registry NUL repository NUL digest: the upstream answered this blob for this repository */
  readonly #confirmed = new LRUCache<string, true>({ max: 100_000 });
  /** digests being written now (one fill per digest) */
  readonly #filling = new Set<string>();

  private constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {}

  /** Prepare the directory: temp files of an earlier run are removed, cached blobs are indexed. */
  static async open(opts: BlobCacheOptions): Promise<BlobCache> {
    const cache = new BlobCache(opts.dir, opts.maxBytes);
    await rm(join(opts.dir, "tmp"), { recursive: true, force: true });
    await mkdir(join(opts.dir, "tmp"), { recursive: true, mode: 0o700 });
    const found: { digest: string; size: number; used: number }[] = [];
    for (const algorithm of ALGORITHMS) {
      const sub = join(opts.dir, algorithm);
      await mkdir(sub, { recursive: true, mode: 0o700 });
      for (const name of await readdir(sub)) {
        const s = await stat(join(sub, name)).catch(() => undefined);
        if (s?.isFile()) found.push({ digest: `${algorithm}:${name}`, size: s.size, used: s.mtimeMs });
      }
    }
    found.sort((a, b) => a.used - b.used);
    for (const f of found) cache.#add(f.digest, f.size);
    await cache.#evict();
    return cache;
  }

  get bytes(): number {
    return this.#bytes;
  }

  has(digest: string): boolean {
    return this.#files.has(digest);
  }

  /** The upstream answered `digest` for this repository. */
  confirm(registry: string, repository: string, digest: string): void {
    this.#confirmed.set(confirmKey(registry, repository, digest), true);
  }

  /**
   * The cached blob, opened, when it may be served for this repository: `askUpstream` is called
   * (and must resolve, or throw the upstream's answer) when the repository was not yet seen with
   * this blob. Undefined when the blob is not cached (or was evicted meanwhile).
   */
  async open(
    registry: string,
    repository: string,
    digest: Digest,
    askUpstream: () => Promise<void>,
  ): Promise<CachedBlob | undefined> {
    const size = this.#files.get(digest.value);
    if (size === undefined) return undefined;
    const key = confirmKey(registry, repository, digest.value);
    if (!this.#confirmed.has(key)) {
      await askUpstream();
      this.#confirmed.set(key, true);
    }
    let fh: FileHandle;
    try {
      fh = await open(this.pathOf(digest.value), "r");
    } catch {
      return undefined; // evicted between the lookup and the open
    }
    if ((await fh.stat()).size !== size) {
      await fh.close();
      return undefined;
    }
    this.#files.delete(digest.value);
    this.#files.set(digest.value, size);
    const handle = fh;
    return {
      size,
      stream: () => handle.createReadStream({ highWaterMark: READ_CHUNK_BYTES }),
      pipeTo: (out) => pipeFile(handle, size, out),
    };
  }

  /**
   * Start keeping a copy of a blob being relayed for this repository; undefined when it is cached
   * already, being kept by another relay, or larger than the whole cache.
   */
  beginFill(registry: string, repository: string, digest: Digest, size: number): BlobFill | undefined {
    if (this.#files.has(digest.value) || this.#filling.has(digest.value) || size > this.maxBytes)
      return undefined;
    this.#filling.add(digest.value);
    return new BlobFill(this, registry, repository, digest.value, size);
  }

  /** @internal BlobFill: where its temp file goes */
  tempPath(): string {
    return join(this.dir, "tmp", randomUUID());
  }

  /** @internal BlobFill: the verified file is in place */
  async stored(registry: string, repository: string, digest: string, size: number): Promise<void> {
    this.#filling.delete(digest);
    this.#add(digest, size);
    this.confirm(registry, repository, digest);
    await this.#evict();
  }

  /** @internal BlobFill: gave up */
  abandoned(digest: string): void {
    this.#filling.delete(digest);
  }

  /** where the blob with this digest is (or would be) kept */
  pathOf(digest: string): string {
    const [algorithm, hex] = digest.split(":") as [string, string];
    return join(this.dir, algorithm, hex);
  }

  #add(digest: string, size: number): void {
    this.#bytes += size - (this.#files.get(digest) ?? 0);
    this.#files.delete(digest);
    this.#files.set(digest, size);
  }

  async #evict(): Promise<void> {
    for (const [digest, size] of this.#files) {
      if (this.#bytes <= this.maxBytes) return;
      this.#files.delete(digest);
      this.#bytes -= size;
      await rm(this.pathOf(digest), { force: true });
    }
  }
}

/**
 * One blob being copied to disk while it is relayed. `write` asks the relay to wait only when the
 * disk is far behind; `commit`
 * (call only once the relay verified the digest) puts the file in the cache; `abort` drops it.
 */
export class BlobFill {
  readonly #file: string;
  readonly #handle: Promise<FileHandle>;
  /** chunks not yet written; the pump writes all of them with one writev */
  #queue: Buffer[] = [];
  #backlog = 0;
  #pumping: Promise<void> | undefined;
  #written = 0;
  #failed: unknown;
  #done = false;
  /** the relay waiting for the disk to catch up */
  #caughtUp: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    private readonly cache: BlobCache,
    private readonly registry: string,
    private readonly repository: string,
    private readonly digest: string,
    private readonly size: number,
  ) {
    this.#file = cache.tempPath();
    this.#handle = open(this.#file, "wx", 0o600);
    this.#handle.catch((err: unknown) => this.#fail(err));
  }

  /** Why the copy was given up, if it was (for the log line). */
  get failure(): string | undefined {
    if (this.#failed !== undefined) return String((this.#failed as Error).message ?? this.#failed);
    if (this.#done && this.#written !== this.size) return `${this.#written} of ${this.size} bytes written`;
    return undefined;
  }

  /**
   * Queue `chunk` for the file. Returns a promise while the disk is more than
   * MAX_FILL_BACKLOG_BYTES behind: the relay waits for it (DigestVerifier), so memory stays
   * bounded however slow the disk; undefined otherwise, and once the copy has failed.
   */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.#failed !== undefined || this.#done) return undefined;
    this.#backlog += chunk.length;
    this.#queue.push(chunk);
    this.#pumping ??= this.#pump();
    if (this.#backlog <= MAX_FILL_BACKLOG_BYTES) return undefined;
    if (!this.#caughtUp) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.#caughtUp = { promise, resolve };
    }
    return this.#caughtUp.promise;
  }

  /** Writes what is queued, one writev per round, until the queue is empty. */
  async #pump(): Promise<void> {
    try {
      const fh = await this.#handle;
      while (this.#queue.length > 0 && this.#failed === undefined) {
        const batch = this.#queue;
        this.#queue = [];
        const { bytesWritten } = await fh.writev(batch);
        this.#written += bytesWritten;
        for (const b of batch) this.#backlog -= b.length;
        if (this.#backlog <= MAX_FILL_BACKLOG_BYTES) this.#release();
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#pumping = undefined;
      this.#release();
    }
  }

  #release(): void {
    const waiting = this.#caughtUp;
    this.#caughtUp = undefined;
    waiting?.resolve();
  }

  /** After the relay ended verified: fsync, rename into the cache. Resolves false when not kept. */
  async commit(): Promise<boolean> {
    if (this.#done) return false;
    this.#done = true;
    while (this.#pumping) await this.#pumping;
    if (this.#failed !== undefined || this.#written !== this.size) {
      await this.#discard();
      return false;
    }
    try {
      const fh = await this.#handle;
      await fh.sync();
      await fh.close();
      const target = this.cache.pathOf(this.digest);
      await rename(this.#file, target);
      await fsyncDir(dirname(target));
    } catch (err) {
      this.#fail(err);
      await this.#discard();
      return false;
    }
    await this.cache.stored(this.registry, this.repository, this.digest, this.size);
    return true;
  }

  abort(): void {
    if (this.#done) return;
    this.#done = true;
    this.#queue = [];
    this.#release();
    // The digest is free for another fill at once; this temp file goes once its writes settle.
    this.cache.abandoned(this.digest);
    void (this.#pumping ?? Promise.resolve()).then(() => this.#removeTemp());
  }

  #fail(err: unknown): void {
    this.#failed ??= err;
    this.#queue = [];
    this.#release();
  }

  async #discard(): Promise<void> {
    await this.#removeTemp();
    this.cache.abandoned(this.digest);
  }

  async #removeTemp(): Promise<void> {
    await this.#handle.then((fh) => fh.close()).catch(() => undefined);
    await rm(this.#file, { force: true });
  }
}

/** CachedBlob.pipeTo: read the next chunk while the previous one is being written. */
async function pipeFile(fh: FileHandle, size: number, out: Writable): Promise<void> {
  const buffers = [Buffer.allocUnsafeSlow(READ_CHUNK_BYTES), Buffer.allocUnsafeSlow(READ_CHUNK_BYTES)];
  let writing: Promise<void> | undefined;
  // A client that goes away mid-answer may leave a write's callback uncalled: the close ends the
  // loop (as a premature close, like pipeline's), so the file is closed either way.
  let onClose!: () => void;
  const closed = new Promise<never>((_, reject) => {
    onClose = () => {
      if (!out.writableFinished)
        reject(Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" }));
    };
    out.once("close", onClose);
  });
  closed.catch(() => undefined);
  try {
    for (let pos = 0, turn = 0; pos < size; turn ^= 1) {
      const buffer = buffers[turn] as Buffer;
      const { bytesRead } = await fh.read(buffer, 0, Math.min(READ_CHUNK_BYTES, size - pos), pos);
      if (bytesRead === 0) throw new Error(`cached file ended at ${pos} of ${size} bytes`);
      pos += bytesRead;
      await Promise.race([writing, closed]); // the other buffer's write: done before that buffer is read into again
      const chunk = buffer.subarray(0, bytesRead);
      writing = new Promise<void>((resolve, reject) => {
        out.write(chunk, (err) => (err ? reject(err) : resolve()));
      });
      // It may fail while the next read is pending: handled here, rethrown where it is awaited.
      writing.catch(() => undefined);
    }
    await Promise.race([writing, closed]);
    await Promise.race([
      new Promise<void>((resolve, reject) => {
        out.end((err?: Error | null) => (err ? reject(err) : resolve()));
      }),
      closed,
    ]);
  } catch (err) {
    out.destroy(err as Error);
    throw err;
  } finally {
    out.off("close", onClose);
    await fh.close().catch(() => undefined);
  }
}

function confirmKey(registry: string, repository: string, digest: string): string {
  return `${registry}\u0000${repository}\u0000${digest}`;
}
