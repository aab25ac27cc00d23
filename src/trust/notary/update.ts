/**
 * The client update workflow for one GUN, in the order of the TUF specification §5 ("Detailed
 * client workflow") as Notary's client applies it (client/tufclient.go, tuf/builder.go,
 * trustpinning/certs.go):
 *
 *   §5.3 root: start from the trusted root (state dir), else trust pinning / trust on first use;
 *        walk every newer version N+1.root.json ..., each signed by a threshold of the OLD and of
 *        the NEW root keys; the final root must not be expired; root certificates must be leaf
 *        certs named for the GUN and valid now.
 *   §5.4 timestamp: signed by the root's timestamp keys, version never lower than trusted, not expired.
 *   §5.5 snapshot: hashes and length from the timestamp (fetched by checksum), signed, version, expiry,
 *        and the root it lists must be the root we trust (Notary checks root against snapshot).
 *   §5.6 targets and delegations: hashes and lengths from the snapshot (fetched by checksum),
 *        signatures and thresholds, version, expiry; a delegated role only speaks for the paths
 *        every delegation above it allows (Notary: DelegationRole.CheckPaths / Restrict).
 *
 * Section numbers are those of the current TUF specification 1.0.x (where §5.1 records the fixed
 * update start time: one `now` is used for every check of one update).
 *
 * Deliberate difference from Notary: Notary skips a delegation whose metadata is expired or under
 * threshold; here any role that fails verification fails the whole update (fail closed).
 *
 * Any failure throws a TrustError naming the GUN, the role and the check; nothing half-verified
 * is returned. Sources of bytes are abstract (MetaSource): the network or the state dir.
 */
import { createHash } from "node:crypto";
import { TrustError } from "../errors.js";
import { rootCertProblem } from "./keys.js";
import {
  type AnySigned,
  type DelegatedRole,
  type Envelope,
  type FileMeta,
  type PublicKeyJson,
  parseEnvelope,
  parseExpires,
  type RoleKeys,
  type RootSigned,
  type SnapshotSigned,
  type TargetsSigned,
  type TimestampSigned,
} from "./models.js";
import { requirePinnedRoot } from "./pinning.js";
import { keysResolver, requireThreshold } from "./signatures.js";

/**
 * Size caps. Snapshot, targets and delegations are capped at the exact length the referring
 * metadata signed (read no more than that); root and timestamp are fetched before anything
 * tells us their length, so they get fixed caps far above real files (a root with four x509
 * keys is ~3 KiB, a timestamp ~0.5 KiB) and far below anything that could exhaust memory.
 */
export const ROOT_MAX_BYTES = 512 * 1024;
export const TIMESTAMP_MAX_BYTES = 64 * 1024;
/** Upper bound for any snapshot/targets file even when the referring metadata claims more. */
export const TARGETS_MAX_BYTES = 32 * 1024 * 1024;
/** Bound on the number of roles walked, so a delegation tree cannot make the client loop or balloon. */
export const MAX_ROLES = 256;

/** Bytes for one metadata file: `file` is the name under `/_trust/tuf/` (e.g. `snapshot.<hex>.json`). */
export type MetaSource = (file: string, role: string, maxBytes: number) => Promise<Uint8Array>;

export interface VerifiedFile<T extends AnySigned> {
  bytes: Uint8Array;
  env: Envelope<T>;
  /** ms since epoch */
  expires: number;
}

export interface VerifiedTarget {
  /** "sha256:<hex>" */
  digest: string;
  size: number;
}

export interface VerifiedRole extends VerifiedFile<TargetsSigned> {
  name: string;
  /** targets this role may speak for (inside every parent's paths) that carry a sha256 */
  targets: Map<string, VerifiedTarget>;
}

/** Everything trusted about one GUN after a successful update. */
export interface TrustedRepo {
  gun: string;
  root: VerifiedFile<RootSigned>;
  timestamp: VerifiedFile<TimestampSigned>;
  snapshot: VerifiedFile<SnapshotSigned>;
  /** "targets" and every delegated role reachable from it that the snapshot lists */
  roles: Map<string, VerifiedRole>;
}

export interface UpdateOptions {
  gun: string;
  source: MetaSource;
  now: Date;
  /** root key IDs to bootstrap from (cert key ID or canonical key ID); empty = trust on first use */
  pins?: readonly string[];
  /**
   * For re-reading the state dir only: accept expired metadata and root certificates (they
   * were verified when stored; freshness is checked before anything is answered from them).
   */
  reloading?: boolean;
}

function fail(code: TrustError["code"], gun: string, role: string, message: string): never {
  throw new TrustError(code, gun, role, `${gun}: ${role}: ${message}`);
}

function parse<T extends AnySigned>(
  gun: string,
  role: string,
  bytes: Uint8Array,
  now: Date,
  checkExpiry: boolean,
) {
  const env = parseEnvelope<T>(gun, role, bytes);
  const expires = parseExpires(gun, role, env.signed.expires);
  if (checkExpiry && now.getTime() >= expires) {
    fail("EXPIRED", gun, role, `metadata expired at ${env.signed.expires} (version ${env.signed.version})`);
  }
  return { bytes, env, expires };
}

/** §5.4.3 / §5.5.5 / §5.6.5: a role's version may never go below the one already trusted. */
function checkNoRollback(gun: string, role: string, version: number, trusted: number | undefined): void {
  if (trusted !== undefined && version < trusted) {
    fail("ROLLBACK", gun, role, `version ${version} is lower than the trusted version ${trusted}`);
  }
}

/** The bytes must have the signed length and every hash we know (sha256, sha512); at least one. */
function checkFileMeta(gun: string, role: string, bytes: Uint8Array, meta: FileMeta): void {
  if (bytes.length !== meta.length) {
    fail("HASH_MISMATCH", gun, role, `length ${bytes.length} differs from the signed length ${meta.length}`);
  }
  let checked = 0;
  for (const alg of ["sha256", "sha512"] as const) {
    const want = meta.hashes[alg];
    if (want === undefined) continue;
    const got = createHash(alg).update(bytes).digest("base64");
    if (got !== want) fail("HASH_MISMATCH", gun, role, `${alg} ${got} differs from the signed ${want}`);
    checked++;
  }
  if (checked === 0) fail("METADATA_INVALID", gun, role, "referring metadata gives no sha256/sha512 hash");
}

function sameBytes(meta: FileMeta, bytes: Uint8Array | undefined): boolean {
  if (!bytes || bytes.length !== meta.length) return false;
  const want = meta.hashes.sha256;
  return want !== undefined && createHash("sha256").update(bytes).digest("base64") === want;
}

/** Checksum-addressed name (`<role>.<sha256-hex>.json`) when the referring role gives a sha256. */
function consistentName(role: string, meta: FileMeta): string {
  const b64 = meta.hashes.sha256;
  return b64 ? `${role}.${Buffer.from(b64, "base64").toString("hex")}.json` : `${role}.json`;
}

function sameKeySet(a: RoleKeys, b: RoleKeys): boolean {
  return a.threshold === b.threshold && [...a.keyids].sort().join() === [...b.keyids].sort().join();
}

/** A root's own root keys, counting only certificates Notary would count (leaf, CN == GUN, valid now). */
function ownRootKeys(gun: string, root: RootSigned, now: Date, checkCerts: boolean) {
  return keysResolver(root.keys, (_id, key) => {
    if (!key.cert) return "is not an x509 certificate (Notary root keys are ecdsa-x509/rsa-x509)";
    return checkCerts ? rootCertProblem(key.cert, gun, now) : undefined;
  });
}

/** §5.3: establish the root: pinned/TOFU bootstrap, or walk the version chain from the trusted one. */
async function updateRoot(
  trusted: TrustedRepo | null,
  opts: UpdateOptions,
): Promise<VerifiedFile<RootSigned>> {
  const { gun, source, now } = opts;
  const checkCerts = !opts.reloading;
  const latestBytes = await source("root.json", "root", ROOT_MAX_BYTES);
  const latest = parse<RootSigned>(gun, "root", latestBytes, now, false);
  let current: VerifiedFile<RootSigned>;

  if (!trusted) {
    // Bootstrap (trustpinning/certs.go ValidateRoot without a previous root): the root must be
    // signed by a threshold of its own valid certificates and, when pinned, by a pinned key.
    requireThreshold(
      gun,
      "root",
      latest.env,
      latest.env.signed.roles.root,
      ownRootKeys(gun, latest.env.signed, now, checkCerts),
      "self-signature",
      "ROOT_CERT_INVALID",
    );
    if (opts.pins && opts.pins.length > 0)
      checkPins(gun, latest.env, opts.pins, checkCerts ? now : undefined);
    current = latest;
  } else {
    const trustedVersion = trusted.root.env.signed.version;
    const latestVersion = latest.env.signed.version;
    checkNoRollback(gun, "root", latestVersion, trustedVersion);
    current = trusted.root;
    // §5.3.2-5.3.9: each version N+1 is signed by a threshold of version N's root keys (old
    // certificates may have expired since: they were trusted when stored) and of its own keys.
    for (let v = trustedVersion + 1; v <= latestVersion; v++) {
      const bytes =
        v === latestVersion ? latestBytes : await source(`${v}.root.json`, "root", ROOT_MAX_BYTES);
      const next = v === latestVersion ? latest : parse<RootSigned>(gun, "root", bytes, now, false);
      if (next.env.signed.version !== v) {
        fail("METADATA_INVALID", gun, "root", `${v}.root.json carries version ${next.env.signed.version}`);
      }
      requireThreshold(
        gun,
        "root",
        next.env,
        current.env.signed.roles.root,
        keysResolver(current.env.signed.keys),
        `version ${v} signed by the keys of trusted version ${v - 1}`,
      );
      requireThreshold(
        gun,
        "root",
        next.env,
        next.env.signed.roles.root,
        ownRootKeys(gun, next.env.signed, now, checkCerts),
        `version ${v} self-signature`,
        "ROOT_CERT_INVALID",
      );
      if (opts.pins && opts.pins.length > 0)
        checkPins(gun, next.env, opts.pins, checkCerts ? now : undefined);
      current = next;
    }
    if (latestVersion === trustedVersion && checkCerts) {
      // No new root: the trusted one must still stand on its own certificates today.
      requireThreshold(
        gun,
        "root",
        current.env,
        current.env.signed.roles.root,
        ownRootKeys(gun, current.env.signed, now, true),
        "self-signature",
        "ROOT_CERT_INVALID",
      );
    }
  }
  // §5.3.10: the final root must not be expired.
  if (!opts.reloading && now.getTime() >= current.expires) {
    fail(
      "EXPIRED",
      gun,
      "root",
      `metadata expired at ${current.env.signed.expires} (version ${current.env.signed.version})`,
    );
  }
  return current;
}

/**
 * Trust pinning (Notary trustpinning: `certs` pins per GUN), at bootstrap and at every root
 * version walked (Notary's ValidateRoot checks each new root against the pins "regardless of
 * having a previous root or not"): the one rule of pinning.ts, a threshold of the root's
 * signatures verifying with pinned keys. `now` (absent when reloading) also demands the pinned
 * certificates be valid then.
 */
function checkPins(gun: string, env: Envelope<RootSigned>, pins: readonly string[], now?: Date): void {
  requirePinnedRoot(gun, env, pins, now);
}

/**
 * Does the delegation chain from `targets` down to this role grant `name`? Notary's rule
 * (tuf/data/roles.go): a delegation grants the names that start with one of its `paths`, and a
 * child's paths are first restricted to those that start with one of its parent's paths
 * (DelegationRole.Restrict, RestrictDelegationPathPrefixes), so a child cannot widen what its
 * parent was given. Notary's delegations have no `path_hash_prefixes` (the Role type has only
 * `paths`; Go's JSON decoder ignores the field), so a delegation with only hash prefixes grants
 * nothing (REVIEW T4).
 */
function pathAllowed(name: string, chain: readonly DelegatedRole[]): boolean {
  if (chain.length === 0) return true; // the top-level targets role speaks for every path
  // tuf/tuf.go WalkTargets: "Make the targets role have the empty path, when we treat it as a delegation role"
  let granted: readonly string[] = [""];
  for (const d of chain) {
    const paths = d.paths ?? [];
    granted = paths.filter((p) => granted.some((parent) => p.startsWith(parent)));
    if (granted.length === 0) return false;
  }
  return granted.some((p) => name.startsWith(p));
}

/** `targets/a/b` -> `targets/a`; a top-level name has no parent (""). */
function parentOf(role: string): string {
  const slash = role.lastIndexOf("/");
  return slash < 0 ? "" : role.slice(0, slash);
}

/** Runs the whole update and returns the newly trusted repository. */
export async function updateRepository(
  trusted: TrustedRepo | null,
  opts: UpdateOptions,
): Promise<TrustedRepo> {
  const { gun, source, now } = opts;
  const checkExpiry = !opts.reloading;
  const root = await updateRoot(trusted, opts);
  const rootSigned = root.env.signed;
  const rootKeys = keysResolver(rootSigned.keys);

  // §5.3.11: when the root replaced the timestamp or snapshot keys, forget the trusted versions of
  // those roles so a compromise of the old keys cannot leave the client stuck (fast-forward recovery).
  const prevRoles = trusted?.root.env.signed.roles;
  const keepTimestamp = prevRoles && sameKeySet(prevRoles.timestamp, rootSigned.roles.timestamp);
  const keepSnapshot = prevRoles && sameKeySet(prevRoles.snapshot, rootSigned.roles.snapshot);

  // §5.4 timestamp
  const tsBytes = await source("timestamp.json", "timestamp", TIMESTAMP_MAX_BYTES);
  const timestamp = parse<TimestampSigned>(gun, "timestamp", tsBytes, now, checkExpiry);
  requireThreshold(gun, "timestamp", timestamp.env, rootSigned.roles.timestamp, rootKeys, "signature");
  if (keepTimestamp) {
    checkNoRollback(gun, "timestamp", timestamp.env.signed.version, trusted?.timestamp.env.signed.version);
  }

  // §5.5 snapshot: by checksum, hash + length from the timestamp.
  const snapMeta = timestamp.env.signed.meta.snapshot;
  const snapBytes = sameBytes(snapMeta, trusted?.snapshot.bytes)
    ? (trusted?.snapshot.bytes as Uint8Array)
    : await source(
        consistentName("snapshot", snapMeta),
        "snapshot",
        Math.min(snapMeta.length, TARGETS_MAX_BYTES),
      );
  checkFileMeta(gun, "snapshot", snapBytes, snapMeta);
  const snapshot = parse<SnapshotSigned>(gun, "snapshot", snapBytes, now, checkExpiry);
  requireThreshold(gun, "snapshot", snapshot.env, rootSigned.roles.snapshot, rootKeys, "signature");
  if (keepSnapshot) {
    checkNoRollback(gun, "snapshot", snapshot.env.signed.version, trusted?.snapshot.env.signed.version);
  }
  // Notary's client checks the root against the snapshot: the snapshot must name the root we trust.
  const rootMeta = snapshot.env.signed.meta.root;
  if (rootMeta) checkFileMeta(gun, "root", root.bytes, rootMeta);

  // §5.6 targets, then delegations breadth-first; each fetched by checksum from the snapshot.
  const roles = new Map<string, VerifiedRole>();
  const queue: {
    name: string;
    keys: RoleKeys;
    resolve: ReturnType<typeof keysResolver>;
    chain: DelegatedRole[];
  }[] = [{ name: "targets", keys: rootSigned.roles.targets, resolve: rootKeys, chain: [] }];
  while (queue.length > 0) {
    const item = queue.shift() as (typeof queue)[number];
    if (roles.size >= MAX_ROLES)
      fail("METADATA_INVALID", gun, item.name, `more than ${MAX_ROLES} targets roles`);
    const meta = snapshot.env.signed.meta[item.name];
    if (!meta) {
      // A delegation may exist before anything is published for it; the top-level targets may not.
      if (item.name === "targets")
        fail("METADATA_INVALID", gun, "snapshot", "snapshot does not list targets");
      continue;
    }
    const previous = trusted?.roles.get(item.name);
    const bytes = sameBytes(meta, previous?.bytes)
      ? (previous?.bytes as Uint8Array)
      : await source(consistentName(item.name, meta), item.name, Math.min(meta.length, TARGETS_MAX_BYTES));
    checkFileMeta(gun, item.name, bytes, meta);
    const file = parse<TargetsSigned>(gun, item.name, bytes, now, checkExpiry);
    requireThreshold(gun, item.name, file.env, item.keys, item.resolve, "signature");
    checkNoRollback(gun, item.name, file.env.signed.version, previous?.env.signed.version);

    const targets = new Map<string, VerifiedTarget>();
    const signedTargets = file.env.signed.targets;
    for (const name of Object.keys(signedTargets)) {
      const t = signedTargets[name] as FileMeta;
      // A delegated role speaks only for paths its parents allow; other entries are ignored, as
      // Notary's WalkTargets ignores them. Docker needs a sha256 (the manifest digest).
      const sha = Buffer.from(t.hashes.sha256 ?? "", "base64");
      if (sha.length !== 32 || !pathAllowed(name, item.chain)) continue;
      targets.set(name, { digest: `sha256:${sha.toString("hex")}`, size: t.length });
    }
    roles.set(item.name, { ...file, name: item.name, targets });

    const delegations = file.env.signed.delegations;
    if (!delegations) continue;
    const delegationKeys: Record<string, PublicKeyJson> = delegations.keys;
    const resolve = keysResolver(delegationKeys);
    for (const d of delegations.roles) {
      // Notary: a delegation must be a direct child of the role that delegates it.
      if (parentOf(d.name) !== item.name || d.name.length <= item.name.length + 1) {
        fail("DELEGATION_INVALID", gun, item.name, `delegates '${d.name}', which is not a direct child role`);
      }
      if (d.paths?.length && d.path_hash_prefixes?.length) {
        fail("DELEGATION_INVALID", gun, d.name, "delegation has both paths and path_hash_prefixes");
      }
      if (roles.has(d.name) || queue.some((q) => q.name === d.name)) {
        fail("DELEGATION_INVALID", gun, d.name, "role is delegated more than once");
      }
      queue.push({ name: d.name, keys: d, resolve, chain: [...item.chain, d] });
    }
  }
  return { gun, root, timestamp, snapshot, roles };
}

/** Earliest expiry (ms) among the metadata a repository's answers depend on. */
export function earliestExpiry(repo: TrustedRepo, roleNames: Iterable<string>): number {
  let min = Math.min(repo.root.expires, repo.timestamp.expires, repo.snapshot.expires);
  for (const name of roleNames) {
    for (let r = name; r.length > 0; r = parentOf(r)) {
      const role = repo.roles.get(r);
      if (role) min = Math.min(min, role.expires);
    }
  }
  return min;
}

/** For callers deciding whether cached metadata may still be used. */
export function expiredRole(repo: TrustedRepo, now: Date): string | undefined {
  const t = now.getTime();
  if (t >= repo.root.expires) return "root";
  if (t >= repo.timestamp.expires) return "timestamp";
  if (t >= repo.snapshot.expires) return "snapshot";
  for (const [name, r] of repo.roles) if (t >= r.expires) return name;
  return undefined;
}
