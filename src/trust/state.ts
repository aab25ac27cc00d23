/**
 * Persisted trust state: whole-file replacement only, so a crash never leaves a corrupt or
 * half-trusted file. A write goes to a temp file in the same directory, is fsync'd, renamed
 * over the target (atomic on POSIX), and the directory is fsync'd so the rename itself survives
 * a power loss. Readers see the old file or the new one, never a mix.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { StateStorageError } from "./errors.js";

/** Throws StateStorageError (with the errno) when the file system refuses (REVIEW U8). */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  try {
    await replaceFile(path, data);
  } catch (err) {
    throw asStorageError("write", path, err);
  }
}

/** Modes of a replaced file and of directories made for it: trustgate's own state is private. */
export interface FileModes {
  readonly file: number;
  readonly dir: number;
}
const PRIVATE: FileModes = { file: 0o600, dir: 0o700 };

/** temp + fsync + rename + fsync of the directory; errors as the file system gives them. */
export async function replaceFile(
  path: string,
  data: Uint8Array | string,
  modes: FileModes = PRIVATE,
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: modes.dir });
  const tmp = join(dir, tempName(basename(path)));
  let renamed = false;
  try {
    const fh = await open(tmp, "wx", modes.file);
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

/**
 * `.<name>.<pid>.<random>.tmp`, with `name` cut to 128 bytes (UTF-8): the temp file must fit in a
 * file name (NAME_MAX, 255 bytes on Linux) whenever the target does (REVIEW U7: a 197-character
 * name plus the suffix did not). Uniqueness comes from pid and random, the name is only a hint.
 */
export function tempName(name: string): string {
  const hint = Buffer.from(name)
    .subarray(0, TEMP_HINT_BYTES)
    .toString("utf8")
    .replace(/\uFFFD+$/, "");
  return `.${hint}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
}

const TEMP_HINT_BYTES = 128;

/** fsync a directory, so a rename into it survives a power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** The file's bytes, or undefined when it does not exist. */
export async function readFileIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw asStorageError("read", path, err);
  }
}

/** A file-system failure (it has an errno code) as a StateStorageError; anything else as is. */
function asStorageError(operation: "write" | "read", path: string, err: unknown): unknown {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof errno !== "string" || !errno.startsWith("E")) return err;
  return new StateStorageError(operation, path, errno, { cause: err });
}
