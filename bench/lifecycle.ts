/**
 * Everything the bench starts is registered here and stopped by its own PID, in reverse order,
 * at the end of the run, on an error, and on Ctrl-C / SIGTERM. Nothing else is ever signalled.
 */
import { rm } from "node:fs/promises";

type Stopper = { what: string; stop: () => Promise<void> };

const stoppers: Stopper[] = [];
let stopping: Promise<void> | undefined;

/** Register something to stop (a peer, a server, a temp dir). Returns `stop` for early stops. */
export function own<T extends { stop: () => Promise<void> }>(what: string, thing: T): T {
  stoppers.push({ what, stop: () => thing.stop() });
  return thing;
}

/** Like own(), and once `thing` has stopped, remove `dir` (a peer's storage). */
export function ownWithDir<T extends { stop: () => Promise<void> }>(what: string, thing: T, dir: string): T {
  stoppers.push({
    what,
    stop: async () => {
      await thing.stop();
      await rm(dir, { recursive: true, force: true });
    },
  });
  return thing;
}

/** A temp dir removed at the end of the run. */
export function ownDir(dir: string): string {
  stoppers.push({ what: `rm ${dir}`, stop: () => rm(dir, { recursive: true, force: true }) });
  return dir;
}

/** Stop everything registered so far (idempotent; later calls wait for the first). */
export function stopAll(): Promise<void> {
  stopping ??= (async () => {
    while (stoppers.length > 0) {
      const s = stoppers.pop() as Stopper;
      try {
        await s.stop();
      } catch (err) {
        process.stderr.write(`bench: could not stop ${s.what}: ${(err as Error).message}\n`);
      }
    }
  })();
  return stopping;
}

/** On Ctrl-C or SIGTERM: stop what we started, then exit 130 / 143. */
export function stopOnSignals(): void {
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}: stopping every process the bench started\n`);
      void stopAll().finally(() => process.exit(code));
    });
  }
}
