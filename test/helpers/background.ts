/**
 * For tests of work that runs in the background (refresh-ahead): holding test doubles' requests
 * open for as long as a test needs, and catching rejections nobody handled.
 */
import { expect } from "vitest";

/** While held, work handed to `pass` waits; `release` lets all of it go, in order. */
export class Hold {
  private waiting: (() => void)[] | undefined;

  /** how many are waiting now */
  get held(): number {
    return this.waiting?.length ?? 0;
  }

  hold(): void {
    this.waiting ??= [];
  }

  release(): void {
    const waiting = this.waiting ?? [];
    this.waiting = undefined;
    for (const go of waiting) go();
  }

  /** Runs `go` now, or on release when held. */
  pass(go: () => void): void {
    if (this.waiting) this.waiting.push(go);
    else go();
  }
}

/**
 * Runs `run`, then fails if any promise rejection went unhandled meanwhile (vitest would report it
 * too, but later and without the test's name).
 */
export async function expectNoUnhandledRejection(run: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const onUnhandled = (reason: unknown) => seen.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    await run();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
  expect(seen).toEqual([]);
}
