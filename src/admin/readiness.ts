/**
 * What /readyz answers (issue 12 item 4): ready while the state directory takes writes, the OCI
 * listener is up, and no stop has begun. The configuration and the policies are loaded before the
 * admin listener even starts (serve.ts), so until then /readyz refuses connections, which every
 * probe counts as not ready; a rejected policy reload keeps the previous set in force, still ready.
 *
 * Deliberately NOT a check: whether the trust servers or upstreams answer. Verified trust keeps
 * serving until its own expiry while a trust server is down (README "Freshness"); a readiness
 * that followed the trust server would take every replica out of the load balancer at once during
 * a short trust-server outage, which is exactly when the cached trust is worth having. Trust
 * trouble shows in the metrics (refresh results, seconds to expiry) and in refusals.
 *
 * The state directory is probed on a timer (write, fsync, remove a small file), not per request:
 * probes and load balancers ask often, and a probe that writes on every call would be the disk's
 * busiest client. A probe that hangs (a wedged network mount) counts as a failure once it has run
 * longer than its timeout.
 */
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";

export type CheckName = "stateDir" | "listener" | "shutdown";

export interface ReadinessReport {
  ready: boolean;
  /** the checks that failed, in a fixed order */
  failed: CheckName[];
  /** each check's state in words: "ok", or why not */
  checks: Record<CheckName, string>;
}

export interface StateDirProbeOptions {
  intervalMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

/** The cached answer to "can trust state be written?", refreshed every `intervalMs`. */
export class StateDirProbe {
  readonly #dir: string;
  readonly #file: string;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  #problem: string | undefined = "not probed yet";
  #startedAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(dir: string, opts: StateDirProbeOptions = {}) {
    this.#dir = dir;
    this.#file = join(dir, `.trustgate-ready-${process.pid}`);
    this.#intervalMs = opts.intervalMs ?? 10_000;
    this.#timeoutMs = opts.timeoutMs ?? 2_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Probe once now, then every interval (the timer does not keep the process alive). */
  async start(): Promise<void> {
    await this.probe();
    this.#timer = setInterval(() => void this.probe(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** undefined when the last probe wrote and removed its file; else why not */
  problem(): string | undefined {
    if (this.#startedAt !== undefined && this.#now() - this.#startedAt > this.#timeoutMs)
      return `a write probe has not finished after ${this.#timeoutMs} ms`;
    return this.#problem;
  }

  /** One probe (single-flight: a probe still running is not doubled). */
  async probe(): Promise<void> {
    if (this.#startedAt !== undefined) return;
    this.#startedAt = this.#now();
    try {
      // The trust stores create the directory on their first write (trust/state.ts): so may we.
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      const handle = await open(this.#file, "w", 0o600);
      try {
        await handle.writeFile("ready\n");
        // A full disk can accept the write and fail only when the data must reach it.
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rm(this.#file, { force: true });
      this.#problem = undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.#problem = `not writable (${code ?? (err as Error).message})`;
      await rm(this.#file, { force: true }).catch(() => {});
    } finally {
      this.#startedAt = undefined;
    }
  }
}

export interface ReadinessDeps {
  stateDir: { problem(): string | undefined };
  /** whether the OCI listener is accepting */
  listening: () => boolean;
}

export class Readiness {
  readonly #deps: ReadinessDeps;
  #stopping: string | undefined;

  constructor(deps: ReadinessDeps) {
    this.#deps = deps;
  }

  /** From now on not ready: a stop has begun (serve's shutdown, before the listener closes). */
  beginShutdown(signal: string): void {
    this.#stopping ??= `stopping (${signal})`;
  }

  report(): ReadinessReport {
    const checks: Record<CheckName, string> = {
      stateDir: this.#deps.stateDir.problem() ?? "ok",
      listener: this.#deps.listening() ? "ok" : "not listening",
      shutdown: this.#stopping ?? "ok",
    };
    const failed = (Object.keys(checks) as CheckName[]).filter((k) => checks[k] !== "ok");
    return { ready: failed.length === 0, failed, checks };
  }
}
