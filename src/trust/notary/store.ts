/**
 * Trusted Notary metadata per GUN under `<stateDir>/notary/<url-encoded GUN>.json`: one file per
 * GUN holding the exact verified bytes of every role, replaced atomically as a whole, so the
 * stored set is always one that verified together. It is read back at start and verified again
 * (update.ts with `reloading`), which carries rollback protection across restarts.
 */
import { join } from "node:path";
import { TrustError } from "../errors.js";
import { readFileIfExists, writeFileAtomic } from "../state.js";
import type { MetaSource, TrustedRepo } from "./update.js";

const FORMAT = 1;

interface StoredFile {
  format: number;
  gun: string;
  /** role name -> base64 of the exact bytes served and verified */
  files: Record<string, string>;
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
    const doc: StoredFile = { format: FORMAT, gun: repo.gun, files };
    await writeFileAtomic(this.pathFor(repo.gun), JSON.stringify(doc));
  }

  /**
   * A MetaSource over the stored bytes (checksum names map back to the role), or undefined when
   * nothing is stored. An unreadable file is an error, not "nothing stored": silently starting
   * over would throw away rollback protection.
   */
  async load(gun: string): Promise<MetaSource | undefined> {
    const path = this.pathFor(gun);
    const raw = await readFileIfExists(path);
    if (!raw) return undefined;
    let doc: StoredFile;
    try {
      doc = JSON.parse(raw.toString("utf8")) as StoredFile;
      if (doc.format !== FORMAT || doc.gun !== gun || typeof doc.files !== "object")
        throw new Error("bad format");
    } catch (err) {
      throw new TrustError("METADATA_INVALID", gun, undefined, `${gun}: trust state ${path} is unreadable`, {
        cause: err,
      });
    }
    return async (_file, role) => {
      const b64 = doc.files[role];
      if (b64 === undefined) {
        throw new TrustError("METADATA_INVALID", gun, role, `${gun}: trust state ${path} lacks ${role}`);
      }
      return Buffer.from(b64, "base64");
    };
  }
}
