/**
 * What one TUF repository's durable metadata directory holds, for `trustgate trust status` and
 * the admin listener's /trust (issue 12 item 7). Read-only: nothing is written, moved or
 * re-verified. Every `.json` there was verified by tuf-js before persistence.ts promoted it
 * (temp file + fsync + rename), so its `signed` fields are what the source trusts; `serve`
 * verifies them again when it loads them.
 *
 *  - roles: root, timestamp, snapshot, targets (TUF spec 5.3-5.6 load order), then every
 *    delegated role tuf-js has loaded and persisted (the roles the delegation walks reached);
 *  - root keys: the key IDs of the trusted root's `root` role (TUF key IDs are already the
 *    sha256 of the canonical public key, TUF spec 4.2);
 *  - last check: CHECK_RECORD's mtime (markChecked, on every online refresh that verified);
 *  - anchor: whether the chain grew from the `tuf.trustedRoot` configured now (PIN_RECORD), or
 *    `serve` will re-anchor it at that root on its next start (persistence.ts `open`).
 */
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { CHECK_RECORD, isMetadataFile, PIN_RECORD } from "./persistence.js";
import { repositoryStateDir } from "./source.js";

export interface TufRoleState {
  role: string;
  version: number;
  /** `expires` exactly as signed */
  expires: string;
}

export interface TufStateListing {
  /** the durable metadata directory */
  dir: string;
  roles: TufRoleState[];
  rootKeyIds: string[];
  /** ISO time the last successful online refresh started; undefined: none recorded */
  lastChecked: string | undefined;
  /**
   * "configured": the chain grew from the configured trustedRoot; "other": from another root
   * (serve re-anchors at the configured one on start); "unknown": no pin given
   */
  anchor: "configured" | "other" | "unknown";
}

const TOP_LEVEL = ["root", "timestamp", "snapshot", "targets"];

/** `<stateDir>/tuf/<id>/metadata`, the directory TufSource.open uses for `metadataUrl`. */
export function tufMetadataDir(stateDir: string, metadataUrl: string): string {
  return join(repositoryStateDir(stateDir, metadataUrl), "metadata");
}

/** The per-repository directories under `<stateDir>/tuf/` (each holds `metadata/`). */
export async function listTufStateDirs(stateDir: string): Promise<string[]> {
  const base = join(stateDir, "tuf");
  let names: string[];
  try {
    names = await readdir(base);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const dirs: string[] = [];
  for (const name of names.sort()) {
    const info = await stat(join(base, name, "metadata")).catch(() => undefined);
    if (info?.isDirectory()) dirs.push(join(base, name, "metadata"));
  }
  return dirs;
}

/**
 * Read one durable metadata directory; undefined when it does not exist. Throws an Error saying
 * what is wrong when a file cannot be read as metadata (the caller lists it with the reason).
 * `pin`: the configured trustedRoot's bytes, to tell whether the chain grew from it.
 */
export async function readTufState(dir: string, pin?: Uint8Array): Promise<TufStateListing | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const byRole = new Map<string, Record<string, unknown>>();
  for (const name of names.filter(isMetadataFile)) {
    const role = decodeURIComponent(name.slice(0, -".json".length));
    let signed: unknown;
    try {
      signed = (JSON.parse(await readFile(join(dir, name), "utf8")) as { signed?: unknown }).signed;
    } catch (err) {
      throw new Error(`${name}: ${(err as Error).message}`);
    }
    if (typeof signed !== "object" || signed === null) throw new Error(`${name} has no signed part`);
    byRole.set(role, signed as Record<string, unknown>);
  }
  const root = byRole.get("root");
  if (root === undefined) throw new Error("no root.json: not a trustgate TUF metadata directory");
  const delegated = [...byRole.keys()].filter((r) => !TOP_LEVEL.includes(r)).sort();
  const roles = [...TOP_LEVEL.filter((r) => byRole.has(r)), ...delegated].map((role) => {
    const s = byRole.get(role) as Record<string, unknown>;
    if (!Number.isSafeInteger(s.version) || typeof s.expires !== "string")
      throw new Error(`${role} lacks version or expires`);
    return { role, version: s.version as number, expires: s.expires };
  });
  const keyids = (root.roles as { root?: { keyids?: unknown } } | undefined)?.root?.keyids;
  const rootKeyIds = Array.isArray(keyids) ? keyids.filter((k): k is string => typeof k === "string") : [];
  const checked = await stat(join(dir, CHECK_RECORD)).catch(() => undefined);
  return {
    dir,
    roles,
    rootKeyIds,
    lastChecked: checked?.isFile() ? checked.mtime.toISOString() : undefined,
    anchor: await anchorOf(dir, pin),
  };
}

async function anchorOf(dir: string, pin: Uint8Array | undefined): Promise<TufStateListing["anchor"]> {
  if (pin === undefined) return "unknown";
  const digest = createHash("sha256").update(pin).digest("hex");
  const recorded = await readFile(join(dir, PIN_RECORD), "utf8").catch(() => undefined);
  if (recorded !== undefined) return recorded.trim() === digest ? "configured" : "other";
  // No record (a state from before it was kept): open() keeps the chain only if root.json is the pin.
  const root = await readFile(join(dir, "root.json")).catch(() => undefined);
  if (root === undefined) return "unknown";
  return createHash("sha256").update(root).digest("hex") === digest ? "configured" : "other";
}
