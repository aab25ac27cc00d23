/**
 * An asynchronous log destination whose exit flush cannot splice or lose lines.
 *
 * Why not sonic-boom (pino.destination, 4.2.1 and 5.0.2 alike): its asynchronous writes are
 * fs.write calls run on a libuv thread-pool thread, and its exit flush (flushSync) skips the
 * buffer of a write in flight (`if (!this._writing && ...)`) and writes the queued rest from the
 * main thread at once. The event loop is gone at exit, so the in-flight write's callback never
 * runs and its progress cannot be known. On a full pipe or socket the thread-pool thread is still
 * blocked in write(2) when the main thread's write goes in, and the kernel puts those bytes
 * between two chunks of the in-flight one (no atomicity above PIPE_BUF, none at all on the unix
 * socket a spawned child's stdout is): one line spliced into the middle of another (strace: the
 * thread's write(1, 453802) unfinished, the main thread's write(1, 91) = 91, then the thread's
 * write resumed). On a non-blocking descriptor the in-flight write stops at EAGAIN with a retry
 * timer that never fires, and the remainder is lost. Upstream: pinojs/sonic-boom#101 ("flushSync
 * doesn't wait for pending async writes to finish", closed).
 *
 * Here the one asynchronous writer is a worker thread that writes each batch whole (blocking
 * writes, EAGAIN waited out) and counts finished batches in shared memory. The exit flush waits on
 * that counter (Atomics.wait), so no batch is in flight, and only then writes the rest itself.
 */
import { writeSync } from "node:fs";
import { Worker } from "node:worker_threads";

/** The most the exit flush waits for the worker (a log reader that stopped reading). */
const EXIT_WAIT_MS = 10_000;
/** Pause between retries of a write refused with EAGAIN (non-blocking descriptor, pipe full). */
const EAGAIN_PAUSE_MS = 10;

// Plain JavaScript evaluated as the worker, so it runs the same from src/ (tests) and dist/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { writeSync } = require("node:fs");
const { fd, done, pauseMs } = workerData;
const pause = new Int32Array(new SharedArrayBuffer(4));
parentPort.on("message", (text) => {
  const bytes = Buffer.from(text, "utf8");
  let ok = true;
  for (let offset = 0; offset < bytes.length; ) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (err) {
      if (err.code === "EAGAIN" || err.code === "EINTR") { Atomics.wait(pause, 0, 0, pauseMs); continue; }
      ok = false;
      break;
    }
  }
  Atomics.add(done, 0, 1);
  Atomics.notify(done, 0);
  parentPort.postMessage(ok);
});
`;

/** Writes all of `text` from this thread; false when the descriptor fails (EPIPE...) or time runs out. */
function writeWholeSync(fd: number, text: string, deadline: number): boolean {
  const bytes = Buffer.from(text, "utf8");
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let offset = 0; offset < bytes.length; ) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === "EAGAIN" || code === "EINTR") && Date.now() < deadline) {
        Atomics.wait(pause, 0, 0, EAGAIN_PAUSE_MS);
        continue;
      }
      return false;
    }
  }
  return true;
}

export class WorkerLogDestination {
  readonly #fd: number;
  readonly #maxBatchChars: number;
  readonly #worker: Worker;
  /** [0]: batches the worker has finished. */
  readonly #done = new Int32Array(new SharedArrayBuffer(4));
  /** Lines not yet handed to the worker, joined into batches of at most maxBatchChars. */
  #queued: string[] = [];
  #handed = 0;
  #inFlight = false;
  /** The descriptor failed (reader gone): lines are dropped, as pino does on EPIPE. */
  #failed = false;
  /** Set by the exit flush: from then on lines are written synchronously. */
  #exited = false;
  #flushWaiters: (() => void)[] = [];

  constructor(fd: number, maxBatchChars: number) {
    this.#fd = fd;
    this.#maxBatchChars = maxBatchChars;
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // Not the parent's flags: under --input-type=module the source would be read as ESM.
      execArgv: [],
      workerData: { fd, done: this.#done, pauseMs: EAGAIN_PAUSE_MS },
    });
    this.#worker.on("message", (ok: boolean) => this.#batchWritten(ok));
    this.#worker.on("error", () => this.#batchWritten(false));
    // After the listeners (a 'message' listener refs the worker again): logging never keeps the
    // process alive; the exit flush writes what is left.
    this.#worker.unref();
    process.on("exit", () => this.flushSync());
  }

  /** pino calls this once per line. */
  write(line: string): boolean {
    if (this.#failed) return true;
    if (this.#exited) {
      if (!writeWholeSync(this.#fd, line, Date.now() + EXIT_WAIT_MS)) this.#failed = true;
      return true;
    }
    const last = this.#queued.length - 1;
    const tail = this.#queued[last];
    if (tail !== undefined && tail.length + line.length <= this.#maxBatchChars)
      this.#queued[last] = tail + line;
    else this.#queued.push(line);
    // A line goes out as soon as no batch is in flight: a quiet proxy logs at once, a busy one
    // batches by itself.
    if (!this.#inFlight) this.#handOver();
    return true;
  }

  /** Calls back once every line written so far is out (pino's logger.flush, serve's shutdown). */
  flush(callback: () => void): void {
    if (!this.#inFlight && this.#queued.length === 0) process.nextTick(callback);
    else this.#flushWaiters.push(callback);
  }

  /**
   * The exit flush: wait until the worker has finished every batch handed to it, then write the
   * rest from this thread. If the worker does not finish in time, the rest is dropped rather than
   * written beside a write in flight.
   */
  flushSync(): void {
    if (this.#exited) return;
    this.#exited = true;
    if (this.#failed) return;
    const deadline = Date.now() + EXIT_WAIT_MS;
    for (let done = Atomics.load(this.#done, 0); done < this.#handed; done = Atomics.load(this.#done, 0)) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      Atomics.wait(this.#done, 0, done, left);
    }
    this.#inFlight = false;
    const rest = this.#queued;
    this.#queued = [];
    for (const batch of rest) {
      if (this.#failed || !writeWholeSync(this.#fd, batch, deadline)) {
        this.#failed = true;
        return;
      }
    }
  }

  #handOver(): void {
    const batch = this.#queued.shift();
    if (batch === undefined) {
      const waiters = this.#flushWaiters;
      this.#flushWaiters = [];
      for (const waiter of waiters) waiter();
      return;
    }
    this.#inFlight = true;
    this.#handed++;
    this.#worker.postMessage(batch);
  }

  #batchWritten(ok: boolean): void {
    if (this.#exited) return;
    this.#inFlight = false;
    if (!ok) {
      this.#failed = true;
      this.#queued = [];
    }
    this.#handOver();
  }
}
