/**
 * Hashing blob streams off the request thread.
 *
 * A blob relay is one thread moving bytes from the upstream socket to the client socket; hashing
 * them on the same thread (node:crypto SHA-256, ~1.8 GB/s here) made it a third slower, because
 * every chunk waited for its hash before the next read. So large blobs are hashed in a worker
 * thread: the relay copies each chunk into a 1 MiB batch (a memcpy) and hands full batches to the
 * worker by transfer (no second copy); the worker hashes them and hands the buffers back for reuse.
 * The relay keeps streaming while the worker hashes; it waits only when a stream has more than
 * `MAX_BATCHES_IN_FLIGHT` batches unhashed (memory stays bounded) and at the end, for the digest,
 * before it releases the last chunk (DigestVerifier).
 *
 * Small blobs hash inline: the round trip to the worker costs more than their hash. If the worker
 * dies, every stream it was hashing fails (their clients see a broken transfer, never an unverified
 * blob) and the next blob starts a new worker.
 */
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";

/** The hash of one blob stream, fed chunk by chunk. */
export interface StreamHasher {
  /**
   * Hash `chunk` (the caller may reuse or release it at once). Returns a promise when the caller
   * should wait before feeding more (the worker is behind), else undefined.
   */
  update(chunk: Buffer): Promise<void> | undefined;
  /** The hex digest of everything fed; call once, after the last update. */
  digest(): Promise<string>;
  /** The stream ended early: forget it. */
  abort(): void;
}

export type HashAlgorithm = "sha256" | "sha512";

/** Hashes on the calling thread. */
export class InlineHasher implements StreamHasher {
  readonly #hash;

  constructor(algorithm: HashAlgorithm) {
    this.#hash = createHash(algorithm);
  }

  update(chunk: Buffer): undefined {
    this.#hash.update(chunk);
    return undefined;
  }

  digest(): Promise<string> {
    return Promise.resolve(this.#hash.digest("hex"));
  }

  abort(): void {}
}

const BATCH_BYTES = 1024 * 1024;
/** Per stream: batches handed to the worker and not yet hashed (bounds memory at ~4 MiB a stream). */
const MAX_BATCHES_IN_FLIGHT = 4;
/** Blobs smaller than this (by Content-Length) hash inline. */
export const WORKER_HASH_MIN_BYTES = 1024 * 1024;

/**
 * The worker: a hash per open stream; batches arrive transferred and go back the same way. Plain
 * CommonJS run with `eval`, so it needs no file of its own next to compiled or source modules.
 */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const hashes = new Map();
parentPort.on("message", (m) => {
  if (m.kind === "open") hashes.set(m.id, createHash(m.algorithm));
  else if (m.kind === "data") {
    hashes.get(m.id)?.update(new Uint8Array(m.buffer, 0, m.length));
    parentPort.postMessage({ kind: "hashed", id: m.id, buffer: m.buffer }, [m.buffer]);
  } else if (m.kind === "end") {
    const hash = hashes.get(m.id);
    hashes.delete(m.id);
    parentPort.postMessage({ kind: "digest", id: m.id, hex: hash ? hash.digest("hex") : "" });
  } else if (m.kind === "abort") hashes.delete(m.id);
});
`;

type FromWorker =
  | { kind: "hashed"; id: number; buffer: ArrayBuffer }
  | { kind: "digest"; id: number; hex: string };

/** One worker thread and the streams it hashes. */
class HashWorker {
  readonly #worker: Worker;
  readonly #streams = new Map<number, WorkerHasher>();
  #nextId = 1;
  /** batch buffers handed back by the worker, reused by any stream */
  readonly spare: ArrayBuffer[] = [];
  #dead: Error | undefined;

  constructor(onExit: (w: HashWorker) => void) {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true });
    // The worker never keeps the process alive: `serve` ends when its server closes.
    this.#worker.unref();
    this.#worker.on("message", (m: FromWorker) => {
      const stream = this.#streams.get(m.id);
      if (m.kind === "hashed") {
        if (this.spare.length < 16) this.spare.push(m.buffer);
        stream?.hashed();
      } else {
        this.#streams.delete(m.id);
        stream?.finished(m.hex);
      }
    });
    const fail = (err: Error) => {
      if (this.#dead) return;
      this.#dead = err;
      for (const stream of this.#streams.values()) stream.failed(err);
      this.#streams.clear();
      onExit(this);
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", (code) => fail(new Error(`the hashing worker exited (code ${code})`)));
  }

  get load(): number {
    return this.#streams.size;
  }

  open(algorithm: HashAlgorithm): WorkerHasher {
    const id = this.#nextId++;
    const stream = new WorkerHasher(this, id);
    this.#streams.set(id, stream);
    this.#worker.postMessage({ kind: "open", id, algorithm });
    return stream;
  }

  send(message: { kind: "data"; id: number; buffer: ArrayBuffer; length: number }): void {
    this.#worker.postMessage(message, [message.buffer]);
  }

  end(id: number): void {
    this.#worker.postMessage({ kind: "end", id });
  }

  abort(id: number): void {
    if (this.#streams.delete(id)) this.#worker.postMessage({ kind: "abort", id });
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}

interface Room {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

class WorkerHasher implements StreamHasher {
  #batch: Buffer | undefined;
  #fill = 0;
  #inFlight = 0;
  #room: Room | undefined;
  #digest: { resolve: (hex: string) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;

  constructor(
    private readonly worker: HashWorker,
    private readonly id: number,
  ) {}

  update(chunk: Buffer): Promise<void> | undefined {
    if (this.#failure) return Promise.reject(this.#failure);
    for (let offset = 0; offset < chunk.length; ) {
      this.#batch ??= Buffer.from(this.worker.spare.pop() ?? new ArrayBuffer(BATCH_BYTES));
      const n = chunk.copy(this.#batch, this.#fill, offset);
      this.#fill += n;
      offset += n;
      if (this.#fill === BATCH_BYTES) this.#send();
    }
    if (this.#inFlight < MAX_BATCHES_IN_FLIGHT) return undefined;
    // one promise for every caller that feeds before there is room again
    if (!this.#room) {
      let settle!: Omit<Room, "promise">;
      const promise = new Promise<void>((resolve, reject) => {
        settle = { resolve, reject };
      });
      this.#room = { promise, ...settle };
    }
    return this.#room.promise;
  }

  digest(): Promise<string> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#fill > 0) this.#send();
    return new Promise((resolve, reject) => {
      this.#digest = { resolve, reject };
      this.worker.end(this.id);
    });
  }

  abort(): void {
    this.worker.abort(this.id);
  }

  #send(): void {
    const batch = this.#batch as Buffer;
    this.worker.send({ kind: "data", id: this.id, buffer: batch.buffer as ArrayBuffer, length: this.#fill });
    this.#batch = undefined;
    this.#fill = 0;
    this.#inFlight++;
  }

  hashed(): void {
    this.#inFlight--;
    if (this.#room && this.#inFlight < MAX_BATCHES_IN_FLIGHT) {
      const room = this.#room;
      this.#room = undefined;
      room.resolve();
    }
  }

  finished(hex: string): void {
    this.#digest?.resolve(hex);
  }

  failed(err: Error): void {
    this.#failure = err;
    this.#room?.reject(err);
    this.#digest?.reject(err);
  }
}

/** Hands out a hasher per blob: inline for small blobs, else on the least busy worker. */
export class BlobHashers {
  readonly #workers: (HashWorker | undefined)[];

  /** `workers`: worker threads to hash on; 0 hashes every blob inline. */
  constructor(workers: number) {
    this.#workers = new Array(Math.max(0, workers)).fill(undefined);
  }

  forBlob(algorithm: HashAlgorithm, size: number | undefined): StreamHasher {
    if (this.#workers.length === 0 || (size !== undefined && size < WORKER_HASH_MIN_BYTES))
      return new InlineHasher(algorithm);
    let best = 0;
    for (let i = 0; i < this.#workers.length; i++) {
      const w = this.#workers[i];
      if (!w) {
        best = i;
        break;
      }
      if (w.load < (this.#workers[best]?.load ?? 0)) best = i;
    }
    let worker = this.#workers[best];
    if (!worker) {
      worker = new HashWorker((dead) => {
        const at = this.#workers.indexOf(dead);
        if (at >= 0) this.#workers[at] = undefined;
      });
      this.#workers[best] = worker;
    }
    return worker.open(algorithm);
  }

  /** Stop the workers (their streams fail). */
  async close(): Promise<void> {
    const running = this.#workers.filter((w): w is HashWorker => w !== undefined);
    this.#workers.fill(undefined);
    await Promise.all(running.map((w) => w.terminate()));
  }
}
