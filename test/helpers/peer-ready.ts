/**
 * Waiting for a peer we spawned to become ready, failing at once if it exits instead (waitFor in
 * process.ts keeps polling through errors, which turns a crash at startup into a long timeout).
 */

/** Whether a process we started is still running (signal 0 only checks). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class PeerExited extends Error {
  constructor(readonly what: string) {
    super(`${what}: the process exited before it was ready`);
    this.name = "PeerExited";
  }
}

/** Poll `ready` until it returns true; throw PeerExited as soon as `pid` is gone, or time out. */
export async function waitUntilReady(
  what: string,
  pid: number,
  ready: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) throw new PeerExited(what);
    if (await ready().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
