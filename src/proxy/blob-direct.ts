/**
 * Writing a blob cache fill around the page cache (O_DIRECT), from aligned staging buffers.
 *
 * Why: a fill written through the page cache cost the relay more CPU than the relay itself. On
 * this 2-core VM, a first pull with the copy kept took 4.6-4.8 CPU s/GB against 2.0-2.1 without
 * it, and the difference was the kernel copying into new page-cache pages
 * (`copy_folio_from_iter_atomic`, 38% of the process in `perf`; libuv's pool threads 1.7-2.4 s/GB
 * of system time). `dd` on the same disk: 256 MiB buffered 0.43-0.60 s of system time, with
 * `oflag=direct` 0.02 s. A blob written for the cache is not read again by this answer, so it
 * need not sit in the page cache; the first hit reads it from disk (and the kernel caches it then).
 *
 * Direct I/O wants the memory, the file offset and the length aligned to the device's blocks.
 * Node Buffers give no alignment guarantee (malloc'd: 16 bytes), but a WebAssembly.Memory is a
 * page-aligned mapping (V8 maps it with guard pages), so the staging buffers are views of one.
 * Every write is a whole number of ALIGN bytes at an offset that is one too: a fill's last
 * partial slot is written padded to ALIGN and the file truncated to the blob's length.
 *
 * Where this cannot work (no O_DIRECT on the platform or the filesystem, tmpfs before Linux 6.6,
 * alignment other than assumed) `probeDirectWrites` says so once, at cache open, and fills are
 * written through the page cache as before.
 */
import { constants } from "node:fs";
import { type FileHandle, open, rm } from "node:fs/promises";

/** One staging buffer: one direct write. 1 MiB: at 2.5 GB/s (`dd oflag=direct`) ~0.4 ms a write. */
export const SLOT_BYTES = 1024 * 1024;
/** Staging buffers per fill: one being filled while the others are written. Bounds a fill's memory. */
export const SLOTS_PER_FILL = 4;
/**
 * Staging buffers for the whole cache (32 MiB, touched only as used): 8 fills at once write
 * directly; a fill that finds none free is written through the page cache (it never waits on
 * another fill, so a stalled relay cannot hold up the others).
 */
const POOL_SLOTS = 32;
/** Offset, length and memory alignment of every direct write: the largest block size in common use. */
export const ALIGN = 4096;
const WASM_PAGE = 65_536;

/** The WebAssembly global (not in this project's TypeScript libs); only Memory is used. */
const wasm = (
  globalThis as {
    WebAssembly?: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };
  }
).WebAssembly;

/** A fixed set of page-aligned staging buffers, handed out SLOTS_PER_FILL at a time. */
export class StagingPool {
  readonly #free: Buffer[] = [];

  /** undefined when the runtime cannot map the memory (then there is no direct writing) */
  static create(slots = POOL_SLOTS): StagingPool | undefined {
    let memory: { buffer: ArrayBuffer };
    try {
      const pages = (slots * SLOT_BYTES) / WASM_PAGE;
      if (!wasm) return undefined;
      memory = new wasm.Memory({ initial: pages, maximum: pages });
    } catch {
      return undefined;
    }
    const pool = new StagingPool();
    for (let i = 0; i < slots; i++) pool.#free.push(Buffer.from(memory.buffer, i * SLOT_BYTES, SLOT_BYTES));
    return pool;
  }

  get free(): number {
    return this.#free.length;
  }

  /** SLOTS_PER_FILL buffers, or undefined when fewer are free (that fill writes buffered). */
  take(): Buffer[] | undefined {
    if (this.#free.length < SLOTS_PER_FILL) return undefined;
    return this.#free.splice(this.#free.length - SLOTS_PER_FILL, SLOTS_PER_FILL);
  }

  /** Give buffers back: only once no write from them is in flight. */
  give(buffers: Buffer[]): void {
    this.#free.push(...buffers);
  }
}

/** O_DIRECT where the platform has it (Linux); 0 elsewhere. */
const O_DIRECT: number = (constants as { O_DIRECT?: number }).O_DIRECT ?? 0;

/** Open a new file for direct writes (exclusive create, like the buffered fill's "wx"). */
export function openDirect(path: string): Promise<FileHandle> {
  return open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_DIRECT, 0o600);
}

/**
 * Whether direct writes work in `tempDir`: one aligned write, a truncate to an unaligned length
 * and a close, on a file removed again. Any failure means no.
 */
export async function probeDirectWrites(tempDir: string, pool: StagingPool | undefined): Promise<boolean> {
  if (!pool || O_DIRECT === 0) return false;
  const slots = pool.take();
  if (!slots) return false;
  const file = `${tempDir}/direct-probe`;
  try {
    const fh = await openDirect(file);
    try {
      const { bytesWritten } = await fh.write(slots[0] as Buffer, 0, ALIGN, 0);
      await fh.truncate(ALIGN - 1);
      return bytesWritten === ALIGN;
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  } finally {
    pool.give(slots);
    await rm(file, { force: true });
  }
}

/**
 * Copies a fill's chunks into its staging buffers and writes each full one at its offset, up to
 * SLOTS_PER_FILL - 1 writes in flight. `write` returns a promise while a chunk could not be
 * staged whole (every buffer full or being written): the relay waits for it, so a fill holds at
 * most SLOTS_PER_FILL * SLOT_BYTES however slow the disk. The chunks themselves are not kept.
 */
export class DirectWriter {
  readonly #handle: Promise<FileHandle>;
  readonly #slots: Buffer[];
  /** free staging buffers */
  readonly #free: Buffer[];
  #current: Buffer | undefined;
  /** bytes in #current */
  #used = 0;
  /** file offset of #current */
  #offset = 0;
  readonly #inFlight = new Set<Promise<void>>();
  /** the rest of a chunk that found no free buffer */
  #pending: Buffer | undefined;
  #caughtUp: { promise: Promise<void>; resolve: () => void } | undefined;
  /** bytes of the blob written to the file (padding not counted) */
  written = 0;
  failed: unknown;

  constructor(handle: Promise<FileHandle>, slots: Buffer[]) {
    this.#handle = handle;
    this.#slots = slots;
    this.#free = [...slots];
    handle.catch((err: unknown) => this.#fail(err));
  }

  write(chunk: Buffer): Promise<void> | undefined {
    if (this.failed !== undefined) return undefined;
    if (this.#pending) {
      // The relay did not wait: keep the order, stage after what is pending.
      this.#pending = Buffer.concat([this.#pending, chunk]);
    } else this.#stage(chunk);
    if (!this.#pending) return undefined;
    if (!this.#caughtUp) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.#caughtUp = { promise, resolve };
    }
    return this.#caughtUp.promise;
  }

  #stage(chunk: Buffer): void {
    let from = 0;
    while (from < chunk.length) {
      if (!this.#current) {
        const slot = this.#free.pop();
        if (!slot) {
          this.#pending = chunk.subarray(from);
          return;
        }
        this.#current = slot;
        this.#used = 0;
      }
      const n = chunk.copy(this.#current, this.#used, from);
      from += n;
      this.#used += n;
      if (this.#used === SLOT_BYTES) this.#submit(SLOT_BYTES);
    }
  }

  /** Write #current's first `bytes` (of which #used are the blob's) at #offset. */
  #submit(bytes: number): void {
    const slot = this.#current as Buffer;
    const offset = this.#offset;
    const blobBytes = this.#used;
    this.#current = undefined;
    this.#used = 0;
    this.#offset += bytes;
    const write = this.#handle
      .then((fh) => fh.write(slot, 0, bytes, offset))
      .then(({ bytesWritten }) => {
        if (bytesWritten !== bytes) throw new Error(`short write: ${bytesWritten} of ${bytes} bytes`);
        this.written += blobBytes;
      })
      .catch((err: unknown) => this.#fail(err))
      .finally(() => {
        this.#inFlight.delete(write);
        this.#free.push(slot);
        if (this.#pending && this.failed === undefined) {
          const rest = this.#pending;
          this.#pending = undefined;
          this.#stage(rest);
        }
        if (!this.#pending) this.#release();
      });
    this.#inFlight.add(write);
  }

  /** Every byte written; the file cut to `size` (the last write was padded). Throws what failed. */
  async finish(size: number): Promise<FileHandle> {
    await this.#settle();
    if (this.failed === undefined && this.#current && this.#used > 0) {
      const padded = Math.ceil(this.#used / ALIGN) * ALIGN;
      // The padding is cut off below; zeroed so no earlier fill's bytes reach this file meanwhile.
      this.#current.fill(0, this.#used, padded);
      this.#submit(padded);
    }
    await this.#settle();
    if (this.failed !== undefined) throw this.failed;
    const fh = await this.#handle;
    if (this.written === size) await fh.truncate(size);
    return fh;
  }

  /** Wait until no write is in flight (then the staging buffers may be given back). */
  async #settle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  /** Stop: nothing more is written; resolves once no write is in flight. */
  async stop(err?: unknown): Promise<void> {
    this.#fail(err ?? new Error("stopped"));
    await this.#settle();
  }

  /** the staging buffers, to give back once stop() or finish() settled */
  get slots(): Buffer[] {
    return this.#slots;
  }

  #fail(err: unknown): void {
    this.failed ??= err;
    this.#pending = undefined;
    this.#current = undefined;
    this.#release();
  }

  #release(): void {
    const waiting = this.#caughtUp;
    this.#caughtUp = undefined;
    waiting?.resolve();
  }
}
