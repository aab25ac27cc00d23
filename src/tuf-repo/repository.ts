/**
 * A TUF 1.0 repository of image tags on disk, as docs/tuf-for-oci.md lays it out:
 *
 *   DIR/metadata/   what is served: N.root.json, root.json, timestamp.json, N.snapshot.json,
 *                   N.targets.json, N.<org>.json (consistent snapshots, section 4)
 *   DIR/staged/     signed role versions not yet published (targets, <org>, root): `publish`
 *                   moves them into metadata/ under a new snapshot and timestamp
 *
 * Every file is built and signed with @tufjs/models (Metadata.sign canonicalises); nothing here
 * writes TUF JSON by hand. Writes are temp + fsync + rename (state.ts writeFileAtomic).
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  type Key,
  Metadata,
  MetadataKind,
  MetaFile,
  Root,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from "@tufjs/models";
// not re-exported by the package index; the same classes Targets.fromJSON builds
import { Delegations } from "@tufjs/models/dist/delegations.js";
import { DelegatedRole, Role } from "@tufjs/models/dist/role.js";
import { TrustgateError } from "../errors.js";
import { fsyncDir, readFileIfExists, writeFileAtomic } from "../trust/state.js";
import type { SigningKey } from "./keys.js";

export const SPEC_VERSION = "1.0.31";
const DAY_MS = 24 * 3600 * 1000;
export const DEFAULT_EXPIRY_DAYS = { root: 365, targets: 90, delegation: 90, snapshot: 7, timestamp: 1 };
const TOP_LEVEL = new Set(["root", "targets", "snapshot", "timestamp"]);
const ROLE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** The repository refuses an operation (bad role, wrong key, path outside a delegation): exit 1. */
export class RepositoryError extends TrustgateError {
  constructor(message: string) {
    super("TUF_REPOSITORY", message);
  }
}

export function expiresIn(days: number, now = new Date()): string {
  return new Date(now.getTime() + days * DAY_MS).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function checkRoleName(name: string): void {
  if (TOP_LEVEL.has(name) || !ROLE_NAME.test(name)) {
    throw new RepositoryError(
      `'${name}' cannot name an organisation's role: [a-z0-9][a-z0-9._-]*, not a top-level role name`,
    );
  }
}

function bytesOf(metadata: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(`${JSON.stringify(metadata.toJSON(), null, 1)}\n`);
}

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export class TufRepository {
  readonly metadataDir: string;
  readonly stagedDir: string;

  constructor(readonly dir: string) {
    this.metadataDir = join(dir, "metadata");
    this.stagedDir = join(dir, "staged");
  }

  private async readJson(path: string): Promise<Record<string, unknown> | undefined> {
    const bytes = await readFileIfExists(path);
    if (bytes === undefined) return undefined;
    try {
      return JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
    } catch {
      throw new RepositoryError(`${path} is not JSON`);
    }
  }

  /** The newest published root (the highest N.root.json), or the staged one with `staged`. */
  async root(staged = true): Promise<Metadata<Root>> {
    const stagedRoot = staged ? await this.readJson(join(this.stagedDir, "root.json")) : undefined;
    if (stagedRoot) return Metadata.fromJSON(MetadataKind.Root, stagedRoot as never);
    const names = await readdir(this.metadataDir).catch(() => [] as string[]);
    const versions = names
      .map((n) => /^(\d+)\.root\.json$/.exec(n)?.[1])
      .filter((v): v is string => v !== undefined)
      .map(Number);
    if (versions.length === 0)
      throw new RepositoryError(`${this.dir} is not a trustgate tuf repository (no metadata/1.root.json)`);
    const json = await this.readJson(join(this.metadataDir, `${Math.max(...versions)}.root.json`));
    return Metadata.fromJSON(MetadataKind.Root, json as never);
  }

  async publishedSnapshot(): Promise<Metadata<Snapshot> | undefined> {
    const timestamp = await this.readJson(join(this.metadataDir, "timestamp.json"));
    if (!timestamp) return undefined;
    const ts = Metadata.fromJSON(MetadataKind.Timestamp, timestamp as never);
    const json = await this.readJson(
      join(this.metadataDir, `${ts.signed.snapshotMeta.version}.snapshot.json`),
    );
    if (!json)
      throw new RepositoryError(`metadata/${ts.signed.snapshotMeta.version}.snapshot.json is missing`);
    return Metadata.fromJSON(MetadataKind.Snapshot, json as never);
  }

  /** A targets role as it stands: the staged version if any, else the published one. */
  async targetsRole(role: string): Promise<Metadata<Targets> | undefined> {
    const staged = await this.readJson(join(this.stagedDir, `${role}.json`));
    if (staged) return Metadata.fromJSON(MetadataKind.Targets, staged as never);
    const snapshot = await this.publishedSnapshot();
    const version = snapshot?.signed.meta[`${role}.json`]?.version;
    if (version === undefined) return undefined;
    const json = await this.readJson(join(this.metadataDir, `${version}.${role}.json`));
    if (!json) throw new RepositoryError(`metadata/${version}.${role}.json is missing`);
    return Metadata.fromJSON(MetadataKind.Targets, json as never);
  }

  /** The delegation of `role` in top-level targets. */
  async delegation(role: string): Promise<{ delegation: DelegatedRole; keys: Record<string, Key> }> {
    const targets = await this.targetsRole("targets");
    const delegation = targets?.signed.delegations?.roles?.[role];
    if (!targets?.signed.delegations || !delegation) {
      throw new RepositoryError(
        `no organisation '${role}' is delegated in ${this.dir} (trustgate tuf delegate)`,
      );
    }
    return { delegation, keys: targets.signed.delegations.keys };
  }

  /**
   * Stage a new version of a targets role signed by `keys`, which must be a threshold of the
   * role's keys (top-level: root's targets role; delegated: the delegation in targets).
   */
  async stageTargets(
    role: string,
    build: (current: Targets | undefined, version: number) => Targets,
    keys: SigningKey[],
  ): Promise<Metadata<Targets>> {
    const current = await this.targetsRole(role);
    // one version past the published one, however often it is re-staged before a publish
    const published = (await this.publishedSnapshot())?.signed.meta[`${role}.json`]?.version ?? 0;
    const signed = build(current?.signed, published + 1);
    const metadata = new Metadata(signed);
    for (const key of keys) metadata.sign(key.signer, true);
    await this.checkSignedTargets(role, metadata);
    await mkdir(this.stagedDir, { recursive: true });
    await writeFileAtomic(join(this.stagedDir, `${role}.json`), bytesOf(metadata));
    return metadata;
  }

  /** Fail closed before anything is written: the role's signatures must meet its threshold. */
  private async checkSignedTargets(role: string, metadata: Metadata<Targets>): Promise<void> {
    try {
      if (role === "targets") (await this.root()).verifyDelegate("targets", metadata);
      else {
        const targets = await this.targetsRole("targets");
        (targets as Metadata<Targets>).verifyDelegate(role, metadata);
      }
    } catch (err) {
      throw new RepositoryError(
        `the keys given do not sign role '${role}': ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  async stageRoot(root: Metadata<Root>): Promise<void> {
    await mkdir(this.stagedDir, { recursive: true });
    await writeFileAtomic(join(this.stagedDir, "root.json"), bytesOf(root));
  }

  /** Take a staged root back (a rotation whose second step failed). */
  async unstageRoot(): Promise<void> {
    await rm(join(this.stagedDir, "root.json"), { force: true });
  }

  /** Whether a root version (a rotation, `trustgate tuf rotate`) waits in staged/ for publish. */
  async stagedRoot(): Promise<Metadata<Root> | undefined> {
    const json = await this.readJson(join(this.stagedDir, "root.json"));
    return json ? Metadata.fromJSON(MetadataKind.Root, json as never) : undefined;
  }

  /**
   * Publish (section 4): staged root first, then staged targets roles as N.<role>.json, a new
   * snapshot, the timestamp last. New versioned files are invisible to clients until the
   * timestamp names the snapshot that names them, so a crash part-way leaves the old state served.
   * Everything is built and checked against the root being published before the first write: a
   * rotated root whose keys the given snapshot/timestamp keys (or the targets role) do not match
   * is never published, so clients are never left with a root nothing current verifies under.
   */
  async publish(
    snapshotKeys: SigningKey[],
    timestampKeys: SigningKey[],
    expiry: { snapshotDays: number; timestampDays: number },
  ): Promise<{ snapshotVersion: number; roles: string[] }> {
    await mkdir(this.metadataDir, { recursive: true });
    const stagedRoot = await this.stagedRoot();
    const root = stagedRoot ?? (await this.root(false));
    const previous = await this.publishedSnapshot();
    const meta: Record<string, MetaFile> = {};
    const carried = previous?.signed.meta ?? {};
    const staged = (await readdir(this.stagedDir).catch(() => [] as string[]))
      .filter((n) => n.endsWith(".json") && n !== "root.json")
      .map((n) => n.slice(0, -".json".length));
    // a revoked organisation no longer appears in targets' delegations: its file is dropped
    const targets = await this.targetsRole("targets");
    if (targets) verifyTopLevel(root, "targets", targets);
    const live = new Set(["targets", ...Object.keys(targets?.signed.delegations?.roles ?? {})]);
    for (const [name, file] of Object.entries(carried)) {
      if (live.has(name.replace(/\.json$/, ""))) meta[name] = file;
    }
    // docs/tuf-for-oci.md section 4: every delegated role must exist, or clients walking into it fail
    for (const role of live) {
      if (!meta[`${role}.json`] && !staged.includes(role)) {
        throw new RepositoryError(
          `organisation '${role}' is delegated but has signed nothing yet: it must sign a tag (trustgate tuf sign) before the delegation is published`,
        );
      }
    }
    const roleFiles: Array<{ name: string; bytes: Buffer }> = [];
    for (const role of staged) {
      const metadata = await this.targetsRole(role);
      if (!metadata || !live.has(role)) continue;
      const bytes = bytesOf(metadata);
      const version = metadata.signed.version;
      roleFiles.push({ name: `${version}.${role}.json`, bytes });
      meta[`${role}.json`] = new MetaFile({
        version,
        length: bytes.length,
        hashes: { sha256: sha256(bytes) },
      });
    }
    const snapshotVersion = (previous?.signed.version ?? 0) + 1;
    const snapshot = new Metadata(
      new Snapshot({
        version: snapshotVersion,
        specVersion: SPEC_VERSION,
        expires: expiresIn(expiry.snapshotDays),
        meta,
      }),
    );
    for (const key of snapshotKeys) snapshot.sign(key.signer, true);
    verifyTopLevel(root, "snapshot", snapshot);
    const snapshotBytes = bytesOf(snapshot);
    const timestamp = await this.nextTimestamp(
      root,
      new MetaFile({
        version: snapshotVersion,
        length: snapshotBytes.length,
        hashes: { sha256: sha256(snapshotBytes) },
      }),
      timestampKeys,
      expiry.timestampDays,
    );
    // all checked: now write, root first, timestamp last
    if (stagedRoot) await this.writeRoot(stagedRoot);
    for (const file of roleFiles) await writeFileAtomic(join(this.metadataDir, file.name), file.bytes);
    await writeFileAtomic(join(this.metadataDir, `${snapshotVersion}.snapshot.json`), snapshotBytes);
    await this.writeTimestamp(timestamp);
    await rm(this.stagedDir, { recursive: true, force: true });
    return { snapshotVersion, roles: roleFiles.map((f) => f.name.replace(/^\d+\.|\.json$/g, "")) };
  }

  /** Refresh: the same snapshot under a new timestamp version with a later expiry. */
  async refresh(timestampKeys: SigningKey[], days: number): Promise<number> {
    const json = await this.readJson(join(this.metadataDir, "timestamp.json"));
    if (!json) throw new RepositoryError(`${this.dir} has no metadata/timestamp.json: publish first`);
    const current = Metadata.fromJSON(MetadataKind.Timestamp, json as never);
    const timestamp = await this.nextTimestamp(
      await this.root(false),
      current.signed.snapshotMeta,
      timestampKeys,
      days,
    );
    await this.writeTimestamp(timestamp);
    return timestamp.signed.version;
  }

  /** The next timestamp version, signed and checked against `root`; nothing written. */
  private async nextTimestamp(
    root: Metadata<Root>,
    snapshotMeta: MetaFile,
    keys: SigningKey[],
    days: number,
  ): Promise<Metadata<Timestamp>> {
    const json = await this.readJson(join(this.metadataDir, "timestamp.json"));
    const version = json ? Metadata.fromJSON(MetadataKind.Timestamp, json as never).signed.version + 1 : 1;
    const timestamp = new Metadata(
      new Timestamp({ version, specVersion: SPEC_VERSION, expires: expiresIn(days), snapshotMeta }),
    );
    for (const key of keys) timestamp.sign(key.signer, true);
    verifyTopLevel(root, "timestamp", timestamp);
    return timestamp;
  }

  private async writeTimestamp(timestamp: Metadata<Timestamp>): Promise<void> {
    await writeFileAtomic(join(this.metadataDir, "timestamp.json"), bytesOf(timestamp));
    await fsyncDir(this.metadataDir);
  }

  /** N.root.json, and root.json as a copy of the newest for bootstrap (section 4). */
  async writeRoot(root: Metadata<Root>): Promise<void> {
    await mkdir(this.metadataDir, { recursive: true });
    const bytes = bytesOf(root);
    await writeFileAtomic(join(this.metadataDir, `${root.signed.version}.root.json`), bytes);
    await writeFileAtomic(join(this.metadataDir, "root.json"), bytes);
  }
}

function verifyTopLevel(
  root: Metadata<Root>,
  role: string,
  metadata: Metadata<Targets | Snapshot | Timestamp>,
): void {
  try {
    root.verifyDelegate(role, metadata);
  } catch (err) {
    throw new RepositoryError(
      `the keys given do not sign role '${role}': ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** A fresh root (version 1): one role per top-level name, consistent snapshots. */
export function newRoot(
  keys: Record<"root" | "targets" | "snapshot" | "timestamp", Key[]>,
  rootThreshold: number,
  days: number,
): Root {
  const all: Record<string, Key> = {};
  const roles: Record<string, Role> = {};
  for (const [name, list] of Object.entries(keys)) {
    for (const key of list) all[key.keyID] = key;
    roles[name] = new Role({
      keyIDs: list.map((k) => k.keyID),
      threshold: name === "root" ? rootThreshold : 1,
    });
  }
  return new Root({
    version: 1,
    specVersion: SPEC_VERSION,
    expires: expiresIn(days),
    keys: all,
    roles,
    consistentSnapshot: true,
  });
}

/** Targets `current` with one change, as a new version. */
export function nextTargets(
  current: Targets | undefined,
  version: number,
  days: number,
  change: { targets?: Record<string, TargetFile>; delegations?: Delegations | undefined },
): Targets {
  const delegations = "delegations" in change ? change.delegations : current?.delegations;
  return new Targets({
    version,
    specVersion: SPEC_VERSION,
    expires: expiresIn(days),
    targets: change.targets ?? current?.targets ?? {},
    ...(delegations ? { delegations } : {}),
  });
}

/** Delegations with `role` added or replaced (terminating, section 3), or removed. */
export function withDelegation(
  current: Delegations | undefined,
  role: string,
  entry: { keys: Key[]; threshold: number; paths: string[] } | undefined,
): Delegations | undefined {
  const roles: Record<string, DelegatedRole> = { ...(current?.roles ?? {}) };
  delete roles[role];
  if (entry) {
    roles[role] = new DelegatedRole({
      name: role,
      keyIDs: entry.keys.map((k) => k.keyID),
      threshold: entry.threshold,
      terminating: true,
      paths: entry.paths,
    });
  }
  const keys: Record<string, Key> = {};
  const all = { ...(current?.keys ?? {}) };
  for (const key of entry?.keys ?? []) all[key.keyID] = key;
  // keep only keys some role still uses
  for (const r of Object.values(roles)) for (const id of r.keyIDs) if (all[id]) keys[id] = all[id];
  if (Object.keys(roles).length === 0) return undefined;
  return new Delegations({ keys, roles });
}

export { TargetFile };
