/**
 * Crash-safe persistence around tuf-js's metadata directory.
 *
 * tuf-js 5 persists each verified metadata file with `fs.writeFileSync` straight into its
 * `metadataDir` (Updater.persistMetadata). A crash mid-write leaves a truncated `timestamp.json`;
 * on the next start the Updater silently ignores the unreadable local copy and accepts whatever
 * the repository serves, so rollback protection across restarts (TUF spec 5.4.3) would be lost.
 * `persistMetadata` is private, so rather than patching it we give tuf-js a disposable *work*
 * directory and own the *durable* one:
 *
 *   open:     durable/*.json  --copy-->  work/   (work is wiped first: it is never trusted as such;
 *             durable is re-anchored first when the operator's pin changed, see `open`)
 *   promote:  work/*.json  --temp file + fsync + rename + fsync(dir)-->  durable/
 *
 * Only files tuf-js wrote are promoted, and tuf-js writes a file only after verifying it, so the
 * durable directory only ever holds verified, complete files. Promotion runs root first (a newer
 * timestamp is only verifiable with the root that signed it), then timestamp, snapshot, targets,
 * then delegated roles.
 */
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, utimes } from "node:fs/promises";
import { join } from "node:path";
import { StateStorageError } from "../errors.js";
import { readFileIfExists, writeFileAtomic } from "../state.js";

const PROMOTION_ORDER = ["root.json", "timestamp.json", "snapshot.json", "targets.json"];

function promotionRank(name: string): number {
  const rank = PROMOTION_ORDER.indexOf(name);
  return rank === -1 ? PROMOTION_ORDER.length : rank;
}

/**
 * A file name tuf-js could have written: `encodeURIComponent(role) + ".json"` (Updater.persistMetadata),
 * i.e. ".json" after a stem that is its own canonical URI-component encoding. Such a name never
 * holds "/" or "\\", and `readdir` gives bare names, so `join(dir, name)` stays in `dir`. A leading
 * "." is allowed: a delegated role named `../x` is stored as `..%2Fx.json`, `.hidden` as
 * `.hidden.json` (python-tuf and tuf-js keep both; tuf-conformance test_unusual_role_name). Our own
 * temp files (`.<name>.<pid>.<hex>.tmp`, state.ts writeFileAtomic) do not end in ".json".
 */
export function isMetadataFile(name: string): boolean {
  if (!name.endsWith(".json")) return false;
  const stem = name.slice(0, -".json".length);
  try {
    return encodeURIComponent(decodeURIComponent(stem)) === stem;
  } catch {
    return false; // a malformed %-escape: not a name tuf-js writes
  }
}

export class MetadataDirectories {
  /** sha256 of each durable file as last written, so promotion rewrites only what changed */
  private readonly promoted = new Map<string, string>();
  private promotion: Promise<void> = Promise.resolve();

  private constructor(
    readonly durableDir: string,
    readonly workDir: string,
  ) {}

  /**
   * Prepare both directories, anchored at `initialRoot` (the operator's pin, `tuf.trustedRoot`).
   *
   * Once tuf-js has verified a newer root, that one is trusted (TUF spec 5.3.8), never the older
   * pin: the durable chain grows from the pin. `PIN_RECORD` names the pin it grew from. When the
   * configured pin is no longer that one (or there is no record, from a state written before it
   * was kept), the chain is re-anchored at the configured root: every durable metadata file is
   * dropped and `root.json` becomes the pin, so the next refresh walks the repository's root
   * chain (5.3) from the operator's root and accepts timestamp, snapshot and targets afresh.
   *
   * Why re-anchor rather than refuse: the pin is the one root of trust the operator controls, and
   * changing it is how they recover from a compromise (a key that signed the old chain, or a
   * fast-forwarded timestamp, 5.3.11). Keeping the old chain would ignore that silently; refusing
   * to start would leave them to delete the state directory by hand, which ends in the same place
   * with more room for error. We cannot check offline that the old chain descends from the new pin
   * (only the newest root is kept, not the chain), and trust must not hinge on state the operator
   * has just said not to trust. The price is the rollback protection that state carried (5.4.3),
   * given up only when the operator changes the pin; the root chain itself is verified again.
   * A pin equal to the durable root (re-pinning to the current root) keeps everything.
   *
   * Crash-safe in order: files dropped, then root.json written, then the record; a crash before
   * the record leaves a mismatch, and the next open re-anchors again.
   */
  static async open(
    durableDir: string,
    workDir: string,
    initialRoot?: Uint8Array,
  ): Promise<MetadataDirectories> {
    await mkdir(durableDir, { recursive: true, mode: 0o700 });
    await rm(workDir, { recursive: true, force: true });
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    const dirs = new MetadataDirectories(durableDir, workDir);
    if (initialRoot !== undefined) await anchorAt(durableDir, initialRoot);
    const names = (await readdir(durableDir)).filter(isMetadataFile);
    for (const name of names) {
      const bytes = await readFile(join(durableDir, name));
      dirs.promoted.set(name, sha256(bytes));
      await copyFile(join(durableDir, name), join(workDir, name));
    }
    return dirs;
  }

  /**
   * Record that an online refresh that started at `at` ended verified: the mtime of
   * CHECK_RECORD, as the Notary store stamps a state file (markUsed). `trustgate trust status`
   * and the admin listener's /trust show it as the last successful check; no decision reads it.
   * A utimes is atomic; the file is created (atomically) only the first time.
   */
  async markChecked(at: Date): Promise<void> {
    const path = join(this.durableDir, CHECK_RECORD);
    try {
      await utimes(path, at, at);
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException).code;
      if (errno !== "ENOENT") throw new StateStorageError("write", path, errno ?? "EIO", { cause: err });
      await writeFileAtomic(path, "its mtime: the start of the last online refresh that verified\n");
      await utimes(path, at, at).catch((e: NodeJS.ErrnoException) => {
        throw new StateStorageError("write", path, e.code ?? "EIO", { cause: e });
      });
    }
  }

  /** Copy every file tuf-js changed in the work directory to the durable one, atomically. */
  promote(): Promise<void> {
    // Serialised: two promotions of the same file must not interleave their renames.
    const next = this.promotion.then(() => this.promoteNow());
    this.promotion = next.catch(() => undefined);
    return next;
  }

  private async promoteNow(): Promise<void> {
    const names = (await readdir(this.workDir)).filter(isMetadataFile);
    names.sort((a, b) => promotionRank(a) - promotionRank(b) || a.localeCompare(b));
    for (const name of names) {
      const bytes = await readFile(join(this.workDir, name));
      const digest = sha256(bytes);
      if (this.promoted.get(name) === digest) continue;
      await writeFileAtomic(join(this.durableDir, name), bytes);
      this.promoted.set(name, digest);
    }
  }
}

/** The sha256 of the pin the durable chain grew from (not a ".json" name: never metadata). */
export const PIN_RECORD = "trusted-root.sha256";

/** Its mtime: when the last successful online refresh started (markChecked; never metadata). */
export const CHECK_RECORD = "last-check";

/** See MetadataDirectories.open: keep the durable chain when it grew from `pin`, else re-anchor. */
async function anchorAt(durableDir: string, pin: Uint8Array): Promise<void> {
  const pinDigest = sha256(pin);
  const recorded = (await readFileIfExists(join(durableDir, PIN_RECORD)))?.toString("utf8").trim();
  if (recorded === pinDigest) return;
  const root = await readFileIfExists(join(durableDir, "root.json"));
  if (root === undefined || sha256(root) !== pinDigest) {
    for (const name of (await readdir(durableDir)).filter(isMetadataFile)) {
      if (name !== "root.json") await rm(join(durableDir, name), { force: true });
    }
    await writeFileAtomic(join(durableDir, "root.json"), pin);
  }
  await writeFileAtomic(join(durableDir, PIN_RECORD), `${pinDigest}\n`);
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
