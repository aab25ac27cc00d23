/**
 * Writes of a static mirror: files another process (a web server, trustgate's `notary:` source
 * over file://) reads while we write. Each file is temp + fsync + rename + fsync of its directory
 * (a reader sees the old bytes or the new, never half), readable by any user (0644 files, 0755
 * directories: a web server usually runs as its own user), unlike trustgate's own 0600 state.
 */
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fsyncDir, tempName } from "../trust/state.js";

export async function writePublicFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = join(dir, tempName(basename(path)));
  let renamed = false;
  try {
    const fh = await open(tmp, "wx", 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    renamed = true;
    await fsyncDir(dir);
  } finally {
    if (!renamed) await rm(tmp, { force: true });
  }
}
