/**
 * Trusted Notary metadata per GUN under `<stateDir>/notary/<sha256 hex of the GUN>.json`: one file
 * per GUN holding the exact verified bytes of every role, replaced atomically as a whole, so the
 * stored set is always one that verified together. It is read back at start and verified again
 * (update.ts with `reloading`), which carries rollback protection across restarts.
 *
 * Format 2 adds what must outlive one update beyond the bytes (trusted-state.ts TrustedRepo):
 * `floors`, the highest version ever trusted of every targets role, also of roles the current
 * snapshot does not list (T2); and `broken`, the delegated roles skipped as unverifiable, with
 * why (T5), so a restart does not forget that they are refused. Format 1 files (bytes only) are
 * still read: their floors are the versions of the roles they hold, which is all format 1 kept.
 *
 * File names are a hash (REVIEW U7): a repository name may be 255 characters and more
 * (distribution's grammar bounds only the whole name), so `encodeURIComponent(gun)`, the name up
 * to now, did not fit in a file name (NAME_MAX 255) once the temp-file suffix was added. The GUN
 * stays inside the file and is checked on read. A file under the old name is moved to the new one
 * when its GUN is first read (`load`).
 *
 * A file's mtime is when its GUN was last used (`markUsed` on every successful update), so `prune`
 * can remove the state of GUNs long unused (REVIEW U5).
 */
import { createHash } from "node:crypto";
import { readdir, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { TrustError, type TrustErrorCode } from "../errors.js";
import { fsyncDir, readFileIfExists, writeFileAtomic } from "../state.js";
import type { BrokenRole } from "./trusted-state.js";
import type { MetaSource, TrustedRepo } from "./update.js";

const FORMAT = 2;

interface StoredFile {
  format: 1 | 2;
  gun: string;
  /** role name -> base64 of the exact bytes served and verified */
  files: Record<string, string>;
  /** format 2: targets role -> highest version ever trusted */
  floors?: Record<string, number>;
  /** format 2: delegated role -> why it was skipped */
  broken?: Record<string, BrokenRole>;
}

/** What load() gives back: the bytes as a MetaSource, and the state beyond them. */
export interface StoredRepo {
  source: MetaSource;
  floors: Map<string, number>;
  broken: Map<string, BrokenRole>;
}

function validDoc(doc: StoredFile, gun: string): boolean {
  if ((doc.format !== 1 && doc.format !== FORMAT) || doc.gun !== gun) return false;
  if (typeof doc.files !== "object" || doc.files === null) return false;
  if (doc.format === 1) return true;
  const floorsOk =
    typeof doc.floors === "object" &&
    doc.floors !== null &&
    Object.values(doc.floors).every((v) => Number.isSafeInteger(v) && v >= 1);
  const brokenOk =
    typeof doc.broken === "object" &&
    doc.broken !== null &&
    Object.values(doc.broken).every(
      (b) =>
        typeof b === "object" && b !== null && typeof b.code === "string" && typeof b.message === "string",
    );
  return floorsOk && brokenOk;
}

export class NotaryStateStore {
  constructor(private readonly stateDir: string) {}

  private get dir(): string {
    return join(this.stateDir, "notary");
  }

  /** Bounded whatever the GUN's length: 64 hex characters + ".json". */
  pathFor(gun: string): string {
    return join(this.dir, `${createHash("sha256").update(gun).digest("hex")}.json`);
  }

  /** The name state was written under before REVIEW U7; read once, then moved to pathFor. */
  legacyPathFor(gun: string): string {
    return join(this.dir, `${encodeURIComponent(gun)}.json`);
  }

  async save(repo: TrustedRepo): Promise<void> {
    const files: Record<string, string> = {
      root: Buffer.from(repo.root.bytes).toString("base64"),
      timestamp: Buffer.from(repo.timestamp.bytes).toString("base64"),
      snapshot: Buffer.from(repo.snapshot.bytes).toString("base64"),
    };
    for (const [name, role] of repo.roles) files[name] = Buffer.from(role.bytes).toString("base64");
    const doc: StoredFile = {
      format: FORMAT,
      gun: repo.gun,
      files,
      floors: Object.fromEntries(repo.floors),
      broken: Object.fromEntries(repo.broken),
    };
    await writeFileAtomic(this.pathFor(repo.gun), JSON.stringify(doc));
  }

  /**
   * The stored state (a MetaSource over the stored bytes, checksum names mapping back to the
   * role, with the floors and broken roles), or undefined when nothing is stored. An unreadable
   * file is an error, not "nothing stored": silently starting over would throw away rollback
   * protection.
   */
  async load(gun: string): Promise<StoredRepo | undefined> {
    const path = this.pathFor(gun);
    const raw = (await readFileIfExists(path)) ?? (await this.migrate(gun));
    if (!raw) return undefined;
    let doc: StoredFile;
    try {
      doc = JSON.parse(raw.toString("utf8")) as StoredFile;
      if (!validDoc(doc, gun)) throw new Error("bad format");
    } catch (err) {
      throw new TrustError("METADATA_INVALID", gun, undefined, `${gun}: trust state ${path} is unreadable`, {
        cause: err,
      });
    }
    const source: MetaSource = async (_file, role) => {
      const b64 = Object.hasOwn(doc.files, role) ? doc.files[role] : undefined;
      if (b64 === undefined) {
        throw new TrustError("METADATA_INVALID", gun, role, `${gun}: trust state ${path} lacks ${role}`);
      }
      return Buffer.from(b64, "base64");
    };
    const broken = new Map<string, BrokenRole>();
    for (const [role, b] of Object.entries(doc.broken ?? {})) {
      broken.set(role, { code: b.code as TrustErrorCode, message: b.message });
    }
    return { source, floors: new Map(Object.entries(doc.floors ?? {})), broken };
  }

  /**
   * State under the old file name, moved to pathFor (atomic write, then the old file removed),
   * or undefined when there is none. An old name too long for the file system was never written.
   */
  private async migrate(gun: string): Promise<Buffer | undefined> {
    const legacy = this.legacyPathFor(gun);
    let raw: Buffer | undefined;
    try {
      raw = await readFileIfExists(legacy);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENAMETOOLONG") return undefined;
      throw err;
    }
    if (!raw) return undefined;
    await writeFileAtomic(this.pathFor(gun), raw);
    await rm(legacy, { force: true });
    return raw;
  }

  /**
   * Record a use of `gun` at `at` (the file's mtime, which prune reads). When the file is gone
   * (pruned meanwhile, e.g. by the source of another registry sharing this state dir, while the
   * GUN was still trusted in memory here) it is written again from `repo`. Any other failure
   * (e.g. a read-only state dir) is ignored: a missed mark only makes the GUN look older to
   * prune, which never removes a GUN in memory, and must not turn a verified answer into an error.
   */
  async markUsed(repo: TrustedRepo, at: Date): Promise<void> {
    try {
      await utimes(this.pathFor(repo.gun), at, at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") await this.save(repo);
    }
  }

  /**
   * Remove the state of every GUN not used since `unusedSince` (ms) for which `inUse` is false,
   * and temp files a crash left behind. `inUse` is asked right before each removal, with the GUN
   * read from the file. Returns the GUNs removed.
   *
   * The trade-off: a pruned GUN has no trusted root any more, so unless a policy pins its root it
   * is trusted on first use again, and a rollback to metadata older than what was pruned is no
   * longer detected. Hence only state long unused goes, and never a GUN held in memory.
   */
  async prune(unusedSince: number, inUse: (gun: string) => boolean): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const removed: string[] = [];
    for (const name of names) {
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => undefined);
      if (!info?.isFile()) continue;
      if (name.startsWith(".") && name.endsWith(".tmp")) {
        // writeFileAtomic renames or removes its temp file within one write; an hour-old one is
        // a crash's leftover.
        if (info.mtimeMs < Date.now() - TEMP_MAX_AGE_MS) await rm(path, { force: true });
        continue;
      }
      if (!name.endsWith(".json") || info.mtimeMs >= unusedSince) continue;
      const gun = await this.gunIn(path);
      if (gun === undefined || inUse(gun)) continue;
      await rm(path, { force: true });
      removed.push(gun);
    }
    return removed;
  }

  /**
   * Forget everything trusted for `gun` (`trustgate trust forget`): its state file, under the
   * hashed name or the old one, is unlinked (one atomic step per name) and the directory synced,
   * so after a crash it is either all there or gone. Returns the paths removed; none: nothing was
   * recorded for that GUN. The file's GUN is checked before removal, as `load` checks it.
   */
  async forget(gun: string): Promise<string[]> {
    const removed: string[] = [];
    for (const path of [this.pathFor(gun), this.legacyPathFor(gun)]) {
      let held: string | undefined;
      try {
        held = await this.gunIn(path);
      } catch {
        held = undefined;
      }
      if (held !== gun) continue;
      await rm(path);
      removed.push(path);
    }
    if (removed.length > 0) await fsyncDir(this.dir);
    return removed;
  }

  /** The GUN a state file says it holds, or undefined when it cannot be read. */
  private async gunIn(path: string): Promise<string | undefined> {
    try {
      const doc = JSON.parse((await readFileIfExists(path))?.toString("utf8") ?? "null") as StoredFile | null;
      return typeof doc?.gun === "string" ? doc.gun : undefined;
    } catch {
      return undefined;
    }
  }
}

/** How old a temp file must be before prune treats it as a crash's leftover. */
const TEMP_MAX_AGE_MS = 3600_000;
