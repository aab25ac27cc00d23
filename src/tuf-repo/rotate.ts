/**
 * Key rotation of a top-level role (`trustgate tuf rotate ROLE`): a new root version that names
 * the role's new keys, signed so that a client holding the current root accepts it, staged for
 * `publish` (which writes it as N.root.json, docs/tuf-for-oci.md section 4).
 *
 * A client moves from trusted root N to N+1 only if N+1 is signed by a threshold of the keys of
 * root N AND a threshold of its own root keys, and its version is exactly N+1 (TUF 1.0 client
 * workflow 5.3.4 "Check for an arbitrary software attack" and 5.3.5 "Check for a rollback attack").
 * Both are checked here with @tufjs/models' Metadata.verifyDelegate, the check tuf-js's
 * TrustedMetadataStore.updateRoot makes, before anything is written. When the timestamp or
 * snapshot keys change, clients drop their trusted timestamp and snapshot (5.3.11), so the next
 * publish, signed with the new keys, is what they load.
 */

import type { Key } from "@tufjs/models";
import { Metadata, Root } from "@tufjs/models";
import { Role } from "@tufjs/models/dist/role.js";
import type { SigningKey } from "./keys.js";
import { expiresIn, nextTargets, RepositoryError, SPEC_VERSION, type TufRepository } from "./repository.js";

export const TOP_LEVEL_ROLES = ["root", "targets", "snapshot", "timestamp"] as const;
export type TopLevelRole = (typeof TOP_LEVEL_ROLES)[number];

export interface RotationRequest {
  role: TopLevelRole;
  /** the role's new keys (private: rotate root signs with them, rotate targets re-signs targets) */
  newKeys: SigningKey[];
  /** the new role's threshold, at most newKeys.length; default: the role's current threshold (capped) */
  threshold: number | undefined;
  /**
   * Keys of the current root that sign the new root version. For `root` these are the old root
   * keys (a new key that is also an old one counts once); for the other roles, the root keys.
   */
  rootSigners: SigningKey[];
  rootExpiresDays: number;
  targetsExpiresDays: number;
}

export interface Rotation {
  fromVersion: number;
  toVersion: number;
  /** key IDs the role had and has */
  removed: string[];
  added: string[];
  threshold: number;
}

export async function stageRotation(repo: TufRepository, request: RotationRequest): Promise<Rotation> {
  const { role, newKeys } = request;
  // One root version per publish: a client at N can verify N+1 only, never N+2 (5.3.4).
  const waiting = await repo.stagedRoot();
  if (waiting)
    throw new RepositoryError(
      `root version ${waiting.signed.version} is already staged: publish it (trustgate tuf publish) before the next rotation`,
    );
  const current = await repo.root(false);
  const version = current.signed.version;
  const oldRole = current.signed.roles[role];
  if (!oldRole) throw new RepositoryError(`root version ${version} has no role '${role}'`);
  const threshold = request.threshold ?? Math.min(oldRole.threshold, uniqueIds(newKeys).length);
  if (threshold > uniqueIds(newKeys).length)
    throw new RepositoryError(
      `--threshold ${threshold} is more than the ${uniqueIds(newKeys).length} new keys given`,
    );

  const roles: Record<string, Role> = { ...current.signed.roles };
  roles[role] = new Role({ keyIDs: uniqueIds(newKeys), threshold });
  const known: Record<string, Key> = { ...current.signed.keys };
  for (const k of newKeys) known[k.keyID] = k.key;
  // keep only keys some role still names (a rotated-out key leaves root.keys)
  const keys: Record<string, Key> = {};
  for (const r of Object.values(roles)) for (const id of r.keyIDs) if (known[id]) keys[id] = known[id] as Key;
  const next = new Metadata(
    new Root({
      version: version + 1,
      specVersion: SPEC_VERSION,
      expires: expiresIn(request.rootExpiresDays),
      keys,
      roles,
      consistentSnapshot: current.signed.consistentSnapshot,
    }),
  );

  // 5.3.4 (1): a threshold of root N's root keys
  const oldSigners = role === "root" ? [...request.rootSigners, ...newKeys] : request.rootSigners;
  checkThreshold(
    current.signed.roles.root as Role,
    oldSigners,
    request.rootSigners,
    `root version ${version}`,
    role,
  );
  // 5.3.4 (2): a threshold of N+1's own root keys (for other roles these are the same keys)
  const newSigners = role === "root" ? newKeys : request.rootSigners;
  for (const key of dedupe([...oldSigners, ...newSigners])) next.sign(key.signer, true);
  try {
    current.verifyDelegate("root", next);
    next.verifyDelegate("root", next);
  } catch (err) {
    throw new RepositoryError(
      `root version ${version + 1} would not verify: ${err instanceof Error ? err.message : String(err)}`,
    );
  }

  await repo.stageRoot(next);
  if (role === "targets") {
    // the targets role as it stands, re-signed by the new key only: under root N+1 nothing else counts
    try {
      await repo.stageTargets(
        "targets",
        (t, v) => nextTargets(t, v, request.targetsExpiresDays, {}),
        newKeys,
      );
    } catch (err) {
      await repo.unstageRoot();
      throw err;
    }
  }
  const before = new Set(oldRole.keyIDs);
  const after = new Set(uniqueIds(newKeys));
  return {
    fromVersion: version,
    toVersion: version + 1,
    removed: [...before].filter((id) => !after.has(id)),
    added: [...after].filter((id) => !before.has(id)),
    threshold,
  };
}

/** Refuse, naming the keys, when `signers` hold fewer than `role.threshold` of `role`'s keys. */
function checkThreshold(
  role: Role,
  signers: SigningKey[],
  given: SigningKey[],
  where: string,
  rotating: string,
): void {
  const ids = new Set(role.keyIDs);
  const counted = uniqueIds(signers).filter((id) => ids.has(id));
  if (counted.length >= role.threshold) return;
  // only the keys given as current root keys are named: new keys are new by design
  const strangers = uniqueIds(given).filter((id) => !ids.has(id));
  const option = rotating === "root" ? "--old-key" : "--root-key";
  throw new RepositoryError(
    `${where} needs ${role.threshold} of its root keys to sign the new root, the keys given hold ${counted.length}` +
      (strangers.length > 0
        ? ` (${strangers.map((id) => id.slice(0, 12)).join(", ")} ${strangers.length === 1 ? "is not a root key" : "are not root keys"} of ${where})`
        : "") +
      `: give ${option} with the current root keys`,
  );
}

function uniqueIds(keys: SigningKey[]): string[] {
  return [...new Set(keys.map((k) => k.keyID))];
}

function dedupe(keys: SigningKey[]): SigningKey[] {
  const seen = new Map<string, SigningKey>();
  for (const k of keys) if (!seen.has(k.keyID)) seen.set(k.keyID, k);
  return [...seen.values()];
}
