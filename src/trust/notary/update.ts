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
 */
import { TrustError } from "../errors.js";
import { ROOT_MAX_BYTES, ROOT_WALK_MAX_MS, TIMESTAMP_MAX_BYTES } from "./limits.js";
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
