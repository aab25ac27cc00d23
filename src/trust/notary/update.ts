/**
 * The client update workflow for one GUN: the I/O half of TUF 1.0.x §5 ("Detailed client
 * workflow") as Notary's client runs it (client/tufclient.go). Every decision about what is
 * trusted is made by TrustedState (trusted-state.ts); this file only asks it which file comes
 * next, fetches that file from a MetaSource (the trust server, or the state dir when re-reading
 * it), and hands the bytes back:
 *
 *   §5.3 root: `root.json`, then every version between the trusted one and it, `N.root.json`
 *        (at most MAX_ROOT_ROTATIONS, within ROOT_WALK_MAX_MS: T9).
 *   §5.4 timestamp: `timestamp.json`, capped at TIMESTAMP_MAX_BYTES.
 *   §5.5 snapshot: by checksum from the timestamp, capped at its signed length.
 *   §5.6 targets and delegations: by checksum from the snapshot, breadth-first, each capped at
 *        its signed length.
 *
 * A file whose trusted bytes already match the referring hash is not fetched again. Any
 * failure throws a TrustError naming the GUN, the role and the check; nothing half-verified is
 * returned. A delegated role that fails verification does not fail the update: TrustedState
 * records it as broken, and only queries that need it are refused (T5).
 *
 * Also here, for now: the pin rule (checkPins) and the delegation path rule (pathAllowed),
 * which TrustedState applies.
 */
import { createHash } from "node:crypto";
import { TrustError } from "../errors.js";
import { canonicalKeyId } from "./keys.js";
import { ROOT_MAX_BYTES, ROOT_WALK_MAX_MS, TIMESTAMP_MAX_BYTES } from "./limits.js";
import type { DelegatedRole, Envelope, RootSigned } from "./models.js";
import { keysResolver, requireThreshold } from "./signatures.js";
import { type BrokenRole, type TrustedRepo, TrustedState } from "./trusted-state.js";

export { MAX_ROLES, ROOT_MAX_BYTES, TARGETS_MAX_BYTES, TIMESTAMP_MAX_BYTES } from "./limits.js";
export {
  earliestExpiry,
  expiredRole,
  type TrustedRepo,
  type VerifiedFile,
  type VerifiedRole,
  type VerifiedTarget,
} from "./trusted-state.js";

/** Bytes for one metadata file: `file` is the name under `/_trust/tuf/` (e.g. `snapshot.<hex>.json`). */
export type MetaSource = (file: string, role: string, maxBytes: number) => Promise<Uint8Array>;

export interface UpdateOptions {
  gun: string;
  source: MetaSource;
  /** TUF §5.1: the update start time */
  now: Date;
  /** root key IDs to bootstrap from (cert key ID or canonical key ID); empty = trust on first use */
  pins?: readonly string[];
  /**
   * For re-reading the state dir only: accept expired metadata and root certificates (they
   * were verified when stored; freshness is checked before anything is answered from them).
   */
  reloading?: boolean;
  /** Reloading: the floors and broken roles stored with the bytes (store.ts). */
  stored?: { floors: ReadonlyMap<string, number>; broken: ReadonlyMap<string, BrokenRole> };
}

/** Runs the whole update and returns the newly trusted repository. */
export async function updateRepository(
  trusted: TrustedRepo | null,
  opts: UpdateOptions,
): Promise<TrustedRepo> {
  const { gun, source } = opts;
  const state = new TrustedState(trusted, opts);

  // §5.3 root. T9: the walk is bounded in count (latestRoot refuses more than
  // MAX_ROOT_ROTATIONS) and in time, on the real clock (the injected `now` is the trust clock).
  const versions = state.latestRoot(await source("root.json", "root", ROOT_MAX_BYTES));
  const walkStart = performance.now();
  for (const v of versions) {
    if (performance.now() - walkStart > ROOT_WALK_MAX_MS) {
      throw new TrustError(
        "TRUST_UNAVAILABLE",
        gun,
        "root",
        `${gun}: root: the walk to the latest root took longer than ${ROOT_WALK_MAX_MS} ms (at version ${v})`,
      );
    }
    state.updateRoot(await source(`${v}.root.json`, "root", ROOT_MAX_BYTES));
  }
  state.finishRoot();

  // §5.4 timestamp
  state.updateTimestamp(await source("timestamp.json", "timestamp", TIMESTAMP_MAX_BYTES));

  // §5.5 snapshot
  const snap = state.snapshotRequest();
  state.updateSnapshot(snap.trusted ?? (await source(snap.file, snap.role, snap.maxBytes)));

  // §5.6 targets, then delegations
  for (let next = state.nextTargets(); next; next = state.nextTargets()) {
    state.updateTargets(next.role, next.trusted ?? (await source(next.file, next.role, next.maxBytes)));
  }
  return state.result();
}

/**
 * Trust pinning (Notary trustpinning: `certs` pins per GUN) at bootstrap: the root must be
 * signed by a threshold of keys that are pinned, by certificate key ID or by the canonical key
 * ID of the public key inside the certificate.
 */
function checkPins(gun: string, root: RootSigned, env: Envelope<RootSigned>, pins: readonly string[]): void {
  const pinned = new Set(pins);
  const resolve = keysResolver(root.keys);
  const offered: string[] = [];
  const pinnedIds = root.roles.root.keyids.filter((id) => {
    const r = resolve(id);
    const canonical = "key" in r ? canonicalKeyId(r.key, id) : id;
    offered.push(canonical === id ? id : `${id} (canonical ${canonical})`);
    return pinned.has(id) || pinned.has(canonical);
  });
  const mismatch = () =>
    new TrustError(
      "ROOT_PIN_MISMATCH",
      gun,
      "root",
      `${gun}: root: signed by root key ${offered.join(", ")}, but pinned to ${[...pinned].join(", ")}`,
    );
  if (pinnedIds.length === 0) throw mismatch();
  try {
    requireThreshold(
      gun,
      "root",
      env,
      { keyids: pinnedIds, threshold: root.roles.root.threshold },
      resolve,
      "pinned keys",
    );
  } catch (err) {
    throw Object.assign(mismatch(), { cause: err });
  }
}

/** Does every delegation from `targets` down to this role allow `name`? (Notary CheckPaths, prefixes) */
function pathAllowed(name: string, chain: readonly DelegatedRole[]): boolean {
  if (chain.length === 0) return true; // the top-level targets role speaks for every path
  let hashHex: string | undefined;
  return chain.every((d) => {
    if (d.paths?.some((p) => name.startsWith(p))) return true;
    if (d.path_hash_prefixes?.length) {
      hashHex ??= createHash("sha256").update(name).digest("hex");
      return d.path_hash_prefixes.some((p) => hashHex?.startsWith(p));
    }
    return false;
  });
}

export { checkPins, pathAllowed };
