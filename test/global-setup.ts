/**
 * One scratch directory for the whole test run. Every temp dir the tests and the peers they start
 * create (os.tmpdir() in the test workers, TMPDIR for skopeo, containerd, dockerd, notary) lands
 * under it, and it is removed when the run ends, so a CI machine keeps nothing behind.
 * TRUSTGATE_KEEP_TEST_DIRS=1 keeps it for a post-mortem (the path is printed).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const scratch = mkdtempSync(join(tmpdir(), "trustgate-tests-"));
  // Set before vitest starts its workers, which inherit the environment.
  process.env.TMPDIR = scratch;
  return () => {
    if (process.env.TRUSTGATE_KEEP_TEST_DIRS) {
      process.stdout.write(`test scratch kept: ${scratch}\n`);
      return;
    }
    try {
      rmSync(scratch, { recursive: true, force: true });
    } catch (err) {
      process.stdout.write(`could not remove test scratch ${scratch}: ${String(err)}\n`);
    }
  };
}
