/**
 * Trusted Notary metadata per GUN under `<stateDir>/notary/<url-encoded GUN>.json`: one file per
 * GUN holding the exact verified bytes of every role, replaced atomically as a whole, so the
 * stored set is always one that verified together. It is read back at start and verified again
 * (update.ts with `reloading`), which carries rollback protection across restarts.
 *
 * Format 2 adds what must outlive one update beyond the bytes (trusted-state.ts TrustedRepo):
 * `floors`, the highest version ever trusted of every targets role, also of roles the current
 * snapshot does not list (T2); and `broken`, the delegated roles skipped as unverifiable, with
 * why (T5), so a restart does not forget that they are refused. Format 1 files (bytes only) are
 * still read: their floors are the versions of the roles they hold, which is all format 1 kept.
 */
import { join } from "node:path";
import { TrustError, type TrustErrorCode } from "../errors.js";
import { readFileIfExists, writeFileAtomic } from "../state.js";
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

  pathFor(gun: string): string {
    return join(this.stateDir, "notary", `${encodeURIComponent(gun)}.json`);
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
    const raw = await readFileIfExists(path);
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
}
