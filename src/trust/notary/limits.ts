/**
 * Every bound the Notary client puts on what a trust server sends, in one place (as python-tuf's
 * `tuf/ngclient/config.py` and tuf-js's `config.ts` hold theirs), so a reviewer can see at once
 * how much memory, how many requests and how much time one hostile server can cost.
 */

/**
 * Size caps. Snapshot, targets and delegations are capped at the exact length the referring
 * metadata signed (read no more than that); root and timestamp are fetched before anything
 * tells us their length, so they get fixed caps far above real files (a root with four x509
 * keys is ~3 KiB, a timestamp ~0.5 KiB) and far below anything that could exhaust memory.
 * (python-tuf: root_max_length 512000, timestamp_max_length 16384.)
 */
export const ROOT_MAX_BYTES = 512 * 1024;
export const TIMESTAMP_MAX_BYTES = 64 * 1024;
/** Upper bound for any snapshot/targets file even when the referring metadata claims more. */
export const TARGETS_MAX_BYTES = 32 * 1024 * 1024;

/** Bound on the number of targets roles walked, so a delegation tree cannot make the client loop or balloon. */
export const MAX_ROLES = 256;

/**
 * Root versions followed in one update (TUF §5.3.2-5.3.9 walk). python-tuf's
 * `max_root_rotations` is 32, tuf-js's `maxRootRotations` 256; we follow python-tuf: a Notary
 * root rotates after a key compromise or a certificate renewal, a handful of times in a
 * repository's life, and this bounds a hostile `root.json` claiming version 1e9 to at most 32
 * requests. A root further ahead than this is refused before anything is fetched (see
 * TrustedState.latestRoot for why we refuse instead of walking part of the way).
 */
export const MAX_ROOT_ROTATIONS = 32;

/**
 * Wall-clock budget of one root walk (all its `N.root.json` requests together), on top of each
 * request's own timeout: a server that drips 32 roots just under the per-request timeout cannot
 * hold an update for 32 timeouts.
 */
export const ROOT_WALK_MAX_MS = 30_000;
