/**
 * The trusted state of one GUN's Notary metadata: the only place that decides what is trusted
 * (python-tuf `tuf/ngclient/_internal/trusted_metadata_set.py`, tuf-js `store.ts`
 * TrustedMetadataStore). It takes bytes, verifies them against what it already trusts, and only
 * then replaces its state. It does no I/O: the update workflow (update.ts) asks it which file
 * comes next, fetches it, and hands the bytes back. It enforces the load order root → timestamp
 * → snapshot → targets → delegations, and `result()` gives the new TrustedRepo only once every
 * step has passed; an update that throws leaves the previous TrustedRepo as it was.
 *
 * Steps cite TUF 1.0.x §5 ("Detailed client workflow"; §5.1: one `now`, the update start time,
 * for every check of one update) and Notary's client (client/tufclient.go, tuf/builder.go,
 * trustpinning/certs.go) where Notary differs from TUF.
 *
 * What must outlive one update is in TrustedRepo: besides the verified files, the version floor
 * of every targets role ever trusted (T2) and the delegated roles that failed verification, with
 * why (T5), both persisted by store.ts.
 */
import { createHash } from "node:crypto";
import { TrustError, type TrustErrorCode } from "../errors.js";
// The pin rule and the delegation path rule live in update.ts (changed there for T1/T4).
import { pathAllowed } from "./delegation-paths.js";
import { rootCertProblem } from "./keys.js";
import { MAX_ROLES, MAX_ROOT_ROTATIONS, TARGETS_MAX_BYTES } from "./limits.js";
import {
  type AnySigned,
  type DelegatedRole,
  type Envelope,
  type FileMeta,
  parseEnvelope,
  parseExpires,
  type RoleKeys,
  type RootSigned,
  type SnapshotSigned,
  type TargetsSigned,
  type TimestampSigned,
} from "./models.js";
import { requirePinnedRoot } from "./pinning.js";
import { type KeyResolver, keysResolver, requireThreshold } from "./signatures.js";

export interface VerifiedFile<T extends AnySigned> {
  bytes: Uint8Array;
  env: Envelope<T>;
  /** ms since epoch */
  expires: number;
}

export interface VerifiedRoot extends VerifiedFile<RootSigned> {
  /**
   * ms since epoch: the first instant at which fewer than the root threshold of the
   * certificates that signed this root are valid (notAfter is inclusive, RFC 5280 §4.1.2.5).
   * From then on the root no longer stands (Notary re-validates a cached root's certificates,
   * trustpinning/certs.go), so it bounds freshness and reuse like a metadata expiry (T10).
   */
  certsExpire: number;
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

/** Why a delegated role was skipped: what a query that needs it is refused with. */
export interface BrokenRole {
  code: TrustErrorCode;
  message: string;
}

/** Everything trusted about one GUN after a successful update. */
export interface TrustedRepo {
  gun: string;
  root: VerifiedRoot;
  timestamp: VerifiedFile<TimestampSigned>;
  snapshot: VerifiedFile<SnapshotSigned>;
  /** "targets" and every delegated role reachable from it that the snapshot lists and that verified */
  roles: Map<string, VerifiedRole>;
  /**
   * Delegated roles that are listed and delegated but failed verification (expired, under
   * threshold, malformed, rolled back...), and so their whole subtree: skipped, as Notary's
   * client skips a bad delegation (client/tufclient.go downloadTargets), and refused to any
   * query whose roles include one of them or lie below one (checkResolutionPath).
   */
  broken: Map<string, BrokenRole>;
  /**
   * The highest version ever trusted of every targets role, kept while the role is absent from
   * a snapshot and across restarts (T2), dropped only once the role's verified parent no longer
   * delegates it (a removal only the parent's key can sign).
   */
  floors: Map<string, number>;
}

export interface TrustedStateOptions {
  gun: string;
  /** TUF §5.1: the update start time, used for every expiry and certificate check */
  now: Date;
  /** root key IDs to bootstrap from (cert key ID or canonical key ID); empty = trust on first use */
  pins?: readonly string[];
  /**
   * For re-reading the state dir only: accept expired metadata and root certificates (they
   * were verified when stored; freshness is checked before anything is answered from them).
   */
  reloading?: boolean;
  /** Reloading: floors and broken roles read from the state file along with the bytes. */
  stored?: { floors: ReadonlyMap<string, number>; broken: ReadonlyMap<string, BrokenRole> };
}

/** One file the workflow should fetch next; `trusted` is set when the trusted bytes already match. */
export interface FileRequest {
  role: string;
  /** name under `/_trust/tuf/` (checksum-addressed when the referring role gives a sha256) */
  file: string;
  maxBytes: number;
  trusted?: Uint8Array;
}

interface PendingRole {
  name: string;
  keys: RoleKeys;
  resolve: KeyResolver;
  /** the delegations from `targets` down to this role (empty for `targets`) */
  chain: DelegatedRole[];
}

function fail(code: TrustErrorCode, gun: string, role: string, message: string): never {
  throw new TrustError(code, gun, role, `${gun}: ${role}: ${message}`);
}

/** `targets/a/b` -> `targets/a`; a top-level name has no parent (""). */
export function parentOf(role: string): string {
  const slash = role.lastIndexOf("/");
  return slash < 0 ? "" : role.slice(0, slash);
}

function parse<T extends AnySigned>(gun: string, role: string, bytes: Uint8Array): VerifiedFile<T> {
  const env = parseEnvelope<T>(gun, role, bytes);
  return { bytes, env, expires: parseExpires(gun, role, env.signed.expires) };
}

/** §5.4.4 / §5.5.6 / §5.6.5 / §5.3.10: freeze attack, against the update start time. */
function checkNotExpired(gun: string, role: string, file: VerifiedFile<AnySigned>, now: Date): void {
  if (now.getTime() >= file.expires) {
    fail(
      "EXPIRED",
      gun,
      role,
      `metadata expired at ${file.env.signed.expires} (version ${file.env.signed.version})`,
    );
  }
}

/** §5.3.5 / §5.4.3 / §5.5.5 / §5.6.4: a role's version may never go below the one already trusted. */
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
function ownRootKeys(gun: string, root: RootSigned, now: Date, checkCerts: boolean): KeyResolver {
  return keysResolver(root.keys, (_id, key) => {
    if (!key.cert) return "is not an x509 certificate (Notary root keys are ecdsa-x509/rsa-x509)";
    return checkCerts ? rootCertProblem(key.cert, gun, now) : undefined;
  });
}

/**
 * Verifies `root`'s self-signature (a threshold of its own valid certificates) and returns it
 * with `certsExpire`: the threshold-th latest notAfter among the certificates that signed, + 1 ms.
 */
function selfSigned(
  gun: string,
  root: VerifiedFile<RootSigned>,
  now: Date,
  checkCerts: boolean,
  context: string,
): VerifiedRoot {
  const roleKeys = root.env.signed.roles.root;
  const resolve = ownRootKeys(gun, root.env.signed, now, checkCerts);
  const signers = requireThreshold(gun, "root", root.env, roleKeys, resolve, context, "ROOT_CERT_INVALID");
  const notAfter: number[] = [];
  for (const id of signers) {
    const r = resolve(id);
    if ("key" in r && r.key.cert) notAfter.push(Date.parse(r.key.cert.validTo));
  }
  notAfter.sort((a, b) => b - a);
  const last = notAfter[roleKeys.threshold - 1];
  return {
    ...root,
    certsExpire: last === undefined || Number.isNaN(last) ? Number.NEGATIVE_INFINITY : last + 1,
  };
}

export class TrustedState {
  private readonly gun: string;
  private readonly now: Date;
  private readonly previous: TrustedRepo | null;
  private root: VerifiedRoot | undefined;
  /** the parsed `root.json` the walk leads to, between latestRoot() and finishRoot() */
  private latest: VerifiedFile<RootSigned> | undefined;
  private rootDone = false;
  private timestamp: VerifiedFile<TimestampSigned> | undefined;
  private snapshot: VerifiedFile<SnapshotSigned> | undefined;
  private readonly roles = new Map<string, VerifiedRole>();
  private readonly broken = new Map<string, BrokenRole>();
  /** floors carried in: the previous state's (or the state file's), never lowered */
  private readonly priorFloors: Map<string, number>;
  private readonly queue: PendingRole[] = [];
  private pending: PendingRole | undefined;
  /** §5.3.11: whether the trusted timestamp/snapshot versions still bind (same keys) */
  private keepTimestampVersion = false;
  private keepSnapshotVersion = false;

  constructor(
    previous: TrustedRepo | null,
    private readonly opts: TrustedStateOptions,
  ) {
    this.gun = opts.gun;
    this.now = opts.now;
    this.previous = previous;
    this.priorFloors = new Map(previous?.floors ?? opts.stored?.floors ?? []);
  }

  // ---- §5.3 root -------------------------------------------------------------------------

  /**
   * §5.3.2: takes the latest root (`root.json`, which Notary serves unversioned) and returns the
   * versions `N.root.json` to fetch and pass to updateRoot() before finishRoot(), oldest first.
   * T9: at most MAX_ROOT_ROTATIONS. Unlike python-tuf, which walks up to its cap and carries on
   * with the root it reached, a root further ahead is refused here at once: Notary's snapshot
   * names the latest root, so a partial walk could never complete an update, and refusing costs
   * the hostile `root.json` claiming version 1e9 no request at all.
   */
  latestRoot(bytes: Uint8Array): number[] {
    if (this.latest || this.rootDone) throw new Error("latestRoot called twice");
    const latest = parse<RootSigned>(this.gun, "root", bytes);
    this.latest = latest;
    const trusted = this.previous?.root;
    if (!trusted) return [];
    const from = trusted.env.signed.version;
    const to = latest.env.signed.version;
    checkNoRollback(this.gun, "root", to, from); // §5.3.5
    if (to - from > MAX_ROOT_ROTATIONS) {
      fail(
        "METADATA_INVALID",
        this.gun,
        "root",
        `root.json claims version ${to}, ${to - from} versions after the trusted version ${from}; at most ${MAX_ROOT_ROTATIONS} root rotations are followed in one update`,
      );
    }
    this.root = trusted;
    const versions: number[] = [];
    for (let v = from + 1; v < to; v++) versions.push(v);
    return versions;
  }

  /**
   * §5.3.3-5.3.7: version N+1 must be signed by a threshold of version N's root keys (old
   * certificates may have expired since: they were trusted when stored) and by a threshold of
   * its own valid certificates (Notary trustpinning/certs.go ValidateRoot), then it is trusted.
   */
  updateRoot(bytes: Uint8Array): void {
    const current = this.root;
    if (!current || this.rootDone) throw new Error("updateRoot outside the root walk");
    const v = current.env.signed.version + 1;
    const next = parse<RootSigned>(this.gun, "root", bytes);
    if (next.env.signed.version !== v) {
      fail("METADATA_INVALID", this.gun, "root", `${v}.root.json carries version ${next.env.signed.version}`);
    }
    requireThreshold(
      this.gun,
      "root",
      next.env,
      current.env.signed.roles.root,
      keysResolver(current.env.signed.keys),
      `version ${v} signed by the keys of trusted version ${v - 1}`,
    );
    this.root = selfSigned(this.gun, next, this.now, !this.opts.reloading, `version ${v} self-signature`);
    // Notary's ValidateRoot checks every new root against the pins "regardless of having a
    // previous root or not" (T1): a rotation away from the pinned keys is refused.
    this.checkPins(next.env);
  }

  /**
   * The one pin rule (pinning.ts): a threshold of the root's signatures verifies with pinned keys.
   * When reloading the state dir, the pinned certificates' validity dates are not checked (they
   * were when stored; freshness is checked before answering).
   */
  private checkPins(env: Envelope<RootSigned>): void {
    const pins = this.opts.pins;
    if (pins && pins.length > 0)
      requirePinnedRoot(this.gun, env, pins, this.opts.reloading ? undefined : this.now);
  }

  /** Ends the root walk with the latest root; §5.3.10 expiry; §5.3.11 key rotation. */
  finishRoot(): void {
    const latest = this.latest;
    if (!latest || this.rootDone) throw new Error("finishRoot before latestRoot");
    const checkCerts = !this.opts.reloading;
    if (!this.root) {
      // Bootstrap (trustpinning/certs.go ValidateRoot without a previous root): the root must be
      // signed by a threshold of its own valid certificates and, when pinned, by pinned keys.
      this.root = selfSigned(this.gun, latest, this.now, checkCerts, "self-signature");
      this.checkPins(latest.env);
    } else if (latest.env.signed.version > this.root.env.signed.version) {
      this.updateRoot(latest.bytes);
    } else if (checkCerts) {
      // No new root: the trusted one must still stand on its own certificates today (T10).
      this.root = selfSigned(this.gun, this.root, this.now, true, "self-signature");
    }
    const root = this.root;
    // §5.3.10: the final root must not be expired.
    if (!this.opts.reloading) checkNotExpired(this.gun, "root", root, this.now);
    // §5.3.11: when the root replaced the timestamp or snapshot keys, the trusted versions of
    // those roles no longer bind, so a compromise of the old keys cannot leave the client stuck.
    const prevRoles = this.previous?.root.env.signed.roles;
    const roles = root.env.signed.roles;
    this.keepTimestampVersion = !!prevRoles && sameKeySet(prevRoles.timestamp, roles.timestamp);
    this.keepSnapshotVersion = !!prevRoles && sameKeySet(prevRoles.snapshot, roles.snapshot);
    this.rootDone = true;
  }

  // ---- §5.4 timestamp --------------------------------------------------------------------

  updateTimestamp(bytes: Uint8Array): void {
    const root = this.root;
    if (!this.rootDone || !root) throw new Error("timestamp before root");
    if (this.snapshot) throw new Error("timestamp after snapshot");
    const ts = parse<TimestampSigned>(this.gun, "timestamp", bytes);
    const rootSigned = root.env.signed;
    // §5.4.2 signatures, §5.4.3 rollback, §5.4.4 freeze.
    requireThreshold(
      this.gun,
      "timestamp",
      ts.env,
      rootSigned.roles.timestamp,
      keysResolver(rootSigned.keys),
      "signature",
    );
    if (this.keepTimestampVersion) {
      checkNoRollback(
        this.gun,
        "timestamp",
        ts.env.signed.version,
        this.previous?.timestamp.env.signed.version,
      );
    }
    if (!this.opts.reloading) checkNotExpired(this.gun, "timestamp", ts, this.now);
    this.timestamp = ts;
  }

  // ---- §5.5 snapshot ---------------------------------------------------------------------

  /** §5.5.1: the snapshot named by the timestamp, fetched by checksum, capped at its signed length. */
  snapshotRequest(): FileRequest {
    const meta = this.timestamp?.env.signed.meta.snapshot;
    if (!meta) throw new Error("snapshot before timestamp");
    const trusted = this.previous?.snapshot.bytes;
    return {
      role: "snapshot",
      file: consistentName("snapshot", meta),
      maxBytes: Math.min(meta.length, TARGETS_MAX_BYTES),
      ...(sameBytes(meta, trusted) ? { trusted } : {}),
    };
  }

  updateSnapshot(bytes: Uint8Array): void {
    const timestamp = this.timestamp;
    const root = this.root;
    if (!timestamp || !root) throw new Error("snapshot before timestamp");
    if (this.snapshot) throw new Error("snapshot twice");
    // §5.5.2 hashes and length from the timestamp.
    checkFileMeta(this.gun, "snapshot", bytes, timestamp.env.signed.meta.snapshot);
    const snap = parse<SnapshotSigned>(this.gun, "snapshot", bytes);
    const rootSigned = root.env.signed;
    // §5.5.3 signatures.
    requireThreshold(
      this.gun,
      "snapshot",
      snap.env,
      rootSigned.roles.snapshot,
      keysResolver(rootSigned.keys),
      "signature",
    );
    // §5.5.4/§5.5.5: Notary's snapshot meta carries no versions, so the snapshot's own version
    // may not go below the trusted one (Notary tufclient.go tryLoadRemote: minVersion from the
    // cached copy). The "every targets role stays listed" half of §5.5.5 needs the verified
    // parents, so it is checked as the targets are walked (nextTargets).
    if (this.keepSnapshotVersion) {
      checkNoRollback(
        this.gun,
        "snapshot",
        snap.env.signed.version,
        this.previous?.snapshot.env.signed.version,
      );
    }
    // §5.5.6 freeze.
    if (!this.opts.reloading) checkNotExpired(this.gun, "snapshot", snap, this.now);
    // Notary's client checks the root against the snapshot: the snapshot must name the root we trust.
    const rootMeta = snap.env.signed.meta.root;
    if (rootMeta) checkFileMeta(this.gun, "root", root.bytes, rootMeta);
    this.snapshot = snap;
    this.queue.push({
      name: "targets",
      keys: rootSigned.roles.targets,
      resolve: keysResolver(rootSigned.keys),
      chain: [],
    });
  }

  // ---- §5.6 targets and delegations ------------------------------------------------------

  /**
   * The next targets role to fetch, breadth-first from `targets` (Notary downloads every
   * delegation, parents first: their keys verify the children), or undefined when done.
   */
  nextTargets(): FileRequest | undefined {
    const snapshot = this.snapshot;
    if (!snapshot) throw new Error("targets before snapshot");
    if (this.pending) throw new Error(`${this.pending.name} requested but not given`);
    for (;;) {
      const item = this.queue.shift();
      if (!item) return undefined;
      if (this.roles.size + this.broken.size >= MAX_ROLES) {
        fail("METADATA_INVALID", this.gun, item.name, `more than ${MAX_ROLES} targets roles`);
      }
      const meta = snapshot.env.signed.meta[item.name];
      if (!meta) {
        if (item.name === "targets")
          fail("METADATA_INVALID", this.gun, "snapshot", "snapshot does not list targets");
        // §5.5.5 (T2): a role the trusted snapshot listed, or that was ever trusted, stays
        // listed while its verified parent still delegates it (this item exists because it does).
        // Otherwise whoever holds the snapshot key could hide a delegation and, once it is
        // forgotten, bring back an old version of it (tuf-js store.ts updateSnapshot).
        const listed = this.previous?.snapshot.env.signed.meta[item.name] !== undefined;
        const floor = this.priorFloors.get(item.name);
        if (listed || floor !== undefined) {
          fail(
            "ROLLBACK",
            this.gun,
            item.name,
            `snapshot version ${snapshot.env.signed.version} no longer lists this role, which ${parentOf(item.name)} still delegates${floor !== undefined ? ` (trusted version ${floor})` : ""}`,
          );
        }
        // A delegation may exist before anything is published for it.
        continue;
      }
      const stored = this.opts.reloading ? this.opts.stored?.broken.get(item.name) : undefined;
      if (stored) {
        // Reloading: the role was skipped when this state was stored; it stays skipped.
        this.broken.set(item.name, stored);
        continue;
      }
      const previous = this.previous?.roles.get(item.name)?.bytes;
      this.pending = item;
      return {
        role: item.name,
        file: consistentName(item.name, meta),
        maxBytes: Math.min(meta.length, TARGETS_MAX_BYTES),
        ...(sameBytes(meta, previous) ? { trusted: previous } : {}),
      };
    }
  }

  /**
   * §5.6.2-5.6.5 for the role nextTargets() asked for. A failure of `targets` fails the update
   * (every resolution path goes through it); a failure of a delegated role is recorded in
   * `broken` and its subtree is not walked (T5, Notary client/tufclient.go downloadTargets).
   */
  updateTargets(role: string, bytes: Uint8Array): void {
    const item = this.pending;
    const snapshot = this.snapshot;
    if (!item || item.name !== role || !snapshot) throw new Error(`${role} was not requested`);
    this.pending = undefined;
    let verified: { role: VerifiedRole; children: PendingRole[] };
    try {
      verified = this.verifyTargets(item, bytes, snapshot.env.signed.meta[role] as FileMeta);
    } catch (err) {
      if (!(err instanceof TrustError) || role === "targets") throw err;
      this.broken.set(role, { code: err.code, message: err.message });
      return;
    }
    this.roles.set(role, verified.role);
    this.queue.push(...verified.children);
  }

  private verifyTargets(item: PendingRole, bytes: Uint8Array, meta: FileMeta) {
    const { gun } = this;
    checkFileMeta(gun, item.name, bytes, meta); // §5.6.2
    const file = parse<TargetsSigned>(gun, item.name, bytes);
    requireThreshold(gun, item.name, file.env, item.keys, item.resolve, "signature"); // §5.6.3
    // §5.6.4: against the floor, which outlives the role's absence (T2).
    // (priorFloors holds every role the previous state verified: result() puts them there.)
    checkNoRollback(gun, item.name, file.env.signed.version, this.priorFloors.get(item.name));
    if (!this.opts.reloading) checkNotExpired(gun, item.name, file, this.now); // §5.6.5

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

    // §5.6.7 delegations, checked as a whole before any child is queued: a bad entry makes the
    // delegating role itself bad.
    const children: PendingRole[] = [];
    const delegations = file.env.signed.delegations;
    if (delegations) {
      const resolve = keysResolver(delegations.keys);
      for (const d of delegations.roles) {
        // Notary: a delegation must be a direct child of the role that delegates it.
        if (parentOf(d.name) !== item.name || d.name.length <= item.name.length + 1) {
          fail(
            "DELEGATION_INVALID",
            gun,
            item.name,
            `delegates '${d.name}', which is not a direct child role`,
          );
        }
        if (d.paths?.length && d.path_hash_prefixes?.length) {
          fail("DELEGATION_INVALID", gun, d.name, "delegation has both paths and path_hash_prefixes");
        }
        if (children.some((c) => c.name === d.name)) {
          fail("DELEGATION_INVALID", gun, d.name, "role is delegated more than once");
        }
        children.push({ name: d.name, keys: d, resolve, chain: [...item.chain, d] });
      }
    }
    return { role: { ...file, name: item.name, targets }, children };
  }

  // ---- result ----------------------------------------------------------------------------

  /** The newly trusted repository; only once root, timestamp, snapshot and every role are done. */
  result(): TrustedRepo {
    const { root, timestamp, snapshot } = this;
    if (
      !root ||
      !timestamp ||
      !snapshot ||
      this.pending ||
      this.queue.length > 0 ||
      !this.roles.has("targets")
    ) {
      throw new Error("result before the update is complete");
    }
    const floors = new Map<string, number>();
    for (const [name, v] of this.priorFloors) if (this.stillDelegated(name)) floors.set(name, v);
    for (const [name, r] of this.roles)
      floors.set(name, Math.max(floors.get(name) ?? 0, r.env.signed.version));
    return { gun: this.gun, root, timestamp, snapshot, roles: this.roles, broken: this.broken, floors };
  }

  /**
   * False once a verified parent on the way from `targets` down to `role` no longer delegates the
   * next role: then the removal is signed by that parent's key and the floor may go. True while
   * every verified parent still delegates it, or when a parent did not verify in this update
   * (broken: we cannot tell, so the floor stays).
   */
  private stillDelegated(role: string): boolean {
    const names: string[] = [];
    for (let r = role; r.length > 0; r = parentOf(r)) names.unshift(r);
    if (names[0] !== "targets") return false; // not a targets role: nothing to keep
    for (let i = 1; i < names.length; i++) {
      const parent = this.roles.get(names[i - 1] as string);
      if (!parent) return true;
      if (!parent.env.signed.delegations?.roles.some((d) => d.name === names[i])) return false;
    }
    return true;
  }
}

/** The roles a query for `roles` depends on: each and all its ancestors up to `targets`. */
function* resolutionPath(roles: Iterable<string>): Generator<string> {
  for (const name of roles) for (let r = name; r.length > 0; r = parentOf(r)) yield r;
}

/**
 * Earliest expiry (ms) among the metadata answers for `roleNames` depend on: root (its metadata
 * and its certificates, T10), timestamp, snapshot, and each role with its ancestors (T5: not the
 * roles the query does not read).
 */
export function earliestExpiry(repo: TrustedRepo, roleNames: Iterable<string>): number {
  let min = Math.min(repo.root.expires, repo.root.certsExpire, repo.timestamp.expires, repo.snapshot.expires);
  for (const r of resolutionPath(roleNames)) {
    const role = repo.roles.get(r);
    if (role) min = Math.min(min, role.expires);
  }
  return min;
}

/**
 * For callers deciding whether trusted metadata may still be used: the first of root,
 * timestamp, snapshot and the given roles with their ancestors whose metadata has expired
 * (root certificates are checked apart: see rootCertsExpired).
 */
export function expiredRole(
  repo: TrustedRepo,
  now: Date,
  roleNames: Iterable<string> = ["targets"],
): string | undefined {
  const t = now.getTime();
  if (t >= repo.root.expires) return "root";
  if (t >= repo.timestamp.expires) return "timestamp";
  if (t >= repo.snapshot.expires) return "snapshot";
  for (const r of resolutionPath(roleNames)) {
    const role = repo.roles.get(r);
    if (role && t >= role.expires) return r;
  }
  return undefined;
}

/** T10: the trusted root no longer has a threshold of valid certificates at `now`. */
export function rootCertsExpired(repo: TrustedRepo, now: Date): boolean {
  return now.getTime() >= repo.root.certsExpire;
}

/** The first role of `roleNames`, or above one, that was skipped as broken. */
export function brokenOnPath(repo: TrustedRepo, roleNames: Iterable<string>): string | undefined {
  if (repo.broken.size === 0) return undefined;
  for (const r of resolutionPath(roleNames)) if (repo.broken.has(r)) return r;
  return undefined;
}

/**
 * Fails closed for the query's resolution path only (T5): a role of the query, or one above it,
 * that was skipped as broken throws what broke it; one whose metadata has expired since it was
 * verified (answers served while the server is unreachable) throws EXPIRED. Roles off the path
 * never matter.
 */
export function checkResolutionPath(repo: TrustedRepo, roleNames: readonly string[], now: Date): void {
  const role = brokenOnPath(repo, roleNames);
  const broken = role === undefined ? undefined : repo.broken.get(role);
  if (broken) throw new TrustError(broken.code, repo.gun, role, broken.message);
  const expired = expiredRole(repo, now, roleNames);
  if (expired) {
    throw new TrustError(
      "EXPIRED",
      repo.gun,
      expired,
      `${repo.gun}: ${expired}: trusted metadata has expired and no newer metadata verified`,
    );
  }
}
