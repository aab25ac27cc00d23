/**
 * Writes of a static mirror: files another process (a web server, trustgate's `notary:` source
 * over file://) reads while we write. Each file is temp + fsync + rename + fsync of its directory
 * (a reader sees the old bytes or the new, never half), readable by any user (0644 files, 0755
 * directories: a web server usually runs as its own user), unlike trustgate's own 0600 state.
 */
import { type FileModes, replaceFile } from "../trust/state.js";

/** Readable by the web server's own user. */
const PUBLIC: FileModes = { file: 0o644, dir: 0o755 };

export function writePublicFileAtomic(path: string, data: Uint8Array): Promise<void> {
  return replaceFile(path, data, PUBLIC);
}
