/**
 * A TUF 1.0 repository built by the tests: ed25519 keys from node:crypto, metadata signed through
 * @tufjs/models (which supplies the canonical JSON bytes to sign), served over node:http on
 * 127.0.0.1 with a free port. Tests change it between refreshes: add/remove targets, delegate by
 * path, rotate root, publish expired or unsigned metadata, serve old files (rollback), go down.
 *
 * Layout follows TUF 1.0 with consistent snapshots: /metadata/N.root.json, /metadata/timestamp.json,
 * /metadata/N.snapshot.json, /metadata/N.<role>.json; targets under /targets/<sha256>.<name>.
 * (@tufjs/repo-mock was not used: it has one key, no delegations, and intercepts with nock, which
 * does not see undici.)
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Metadata, MetadataKind, Signature } from "@tufjs/models";

const DAY_MS = 24 * 3600 * 1000;

export class TestKey {
  private constructor(
    readonly keyId: string,
    readonly publicHex: string,
    private readonly privateKey: KeyObject,
  ) {}

  static generate(): TestKey {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    // the raw 32-byte key is the last 32 bytes of its SPKI DER encoding
    const publicHex = publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("hex");
    const keyId = createHash("sha256").update(publicHex).digest("hex");
    return new TestKey(keyId, publicHex, privateKey);
  }

  toJSON(): Record<string, unknown> {
    return { keytype: "ed25519", scheme: "ed25519", keyval: { public: this.publicHex } };
  }

  signature(data: Buffer): Signature {
    return new Signature({ keyID: this.keyId, sig: sign(null, data, this.privateKey).toString("hex") });
  }
}

interface TargetEntry {
  length: number;
  hashes: { sha256: string };
}

interface DelegatedRoleEntry {
  name: string;
  keyids: string[];
  threshold: number;
  terminating: boolean;
  paths: string[];
}

interface TargetsRole {
  version: number;
  expires: Date;
  signers: TestKey[];
  targets: Record<string, TargetEntry>;
  delegations?: { keys: Record<string, Record<string, unknown>>; roles: DelegatedRoleEntry[] };
  dirty: boolean;
}

export interface PublishOptions {
  /** expiry of the new timestamp (default now + 1 day) */
  timestampExpires?: Date;
  snapshotExpires?: Date;
  /** publish these roles with no signatures at all */
  unsigned?: string[];
}

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function signed(kind: MetadataKind, body: Record<string, unknown>, keys: TestKey[]): Buffer {
  const metadata = Metadata.fromJSON(kind as MetadataKind.Root, { signed: body, signatures: [] } as never);
  for (const key of keys) metadata.sign((data) => key.signature(data), true);
  return Buffer.from(JSON.stringify(metadata.toJSON()));
}

export class TestTufRepository {
  /** files served under /metadata/ (tests may replace entries to serve stale or forged bytes) */
  readonly files = new Map<string, Buffer>();
  /** files served under /targets/ */
  readonly targetFiles = new Map<string, Buffer>();
  /** every request path, in order */
  readonly requests: string[] = [];
  /** when true, every connection is dropped: the repository is down */
  down = false;

  rootKeys: TestKey[] = [TestKey.generate()];
  readonly timestampKey = TestKey.generate();
  readonly snapshotKey = TestKey.generate();
  readonly targetsKey = TestKey.generate();
  readonly roles = new Map<string, TargetsRole>();
  rootVersion = 0;
  snapshotVersion = 0;
  timestampVersion = 0;
  private server!: Server;
  baseUrl = "";

  static async start(): Promise<TestTufRepository> {
    const repo = new TestTufRepository();
    repo.roles.set("targets", {
      version: 0,
      expires: new Date(Date.now() + 30 * DAY_MS),
      signers: [repo.targetsKey],
      targets: {},
      dirty: true,
    });
    repo.publishRoot(repo.rootKeys, repo.rootKeys, new Date(Date.now() + 365 * DAY_MS));
    repo.publish();
    repo.server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      repo.requests.push(path);
      if (repo.down) {
        req.socket.destroy();
        return;
      }
      const [, area, ...rest] = path.split("/");
      // metadata names are stored as requested (N.<encodeURIComponent(role)>.json), target paths decoded
      const body =
        area === "metadata"
          ? repo.files.get(rest.join("/"))
          : area === "targets"
            ? repo.targetFiles.get(decodeURIComponent(rest.join("/")))
            : undefined;
      if (body === undefined) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length }).end(body);
    });
    repo.server.listen(0, "127.0.0.1");
    await once(repo.server, "listening");
    repo.baseUrl = `http://127.0.0.1:${(repo.server.address() as AddressInfo).port}`;
    return repo;
  }

  get metadataUrl(): string {
    return `${this.baseUrl}/metadata/`;
  }

  get targetsUrl(): string {
    return `${this.baseUrl}/targets/`;
  }

  /** bytes of 1.root.json: what an operator pins */
  get initialRoot(): Buffer {
    return this.files.get("1.root.json") as Buffer;
  }

  /** how many times `name` was requested under /metadata/ */
  count(name: string): number {
    return this.requests.filter((p) => p === `/metadata/${name}`).length;
  }

  /** Sign `content` (or a bare hash and length) as `path` in `role`; the bytes are served as a target. */
  addTarget(role: string, path: string, content: Buffer): TargetEntry {
    const entry = { length: content.length, hashes: { sha256: sha256Hex(content) } };
    const state = this.role(role);
    state.targets[path] = entry;
    state.dirty = true;
    const slash = path.lastIndexOf("/");
    this.targetFiles.set(
      `${path.slice(0, slash + 1)}${entry.hashes.sha256}.${path.slice(slash + 1)}`,
      content,
    );
    return entry;
  }

  removeTarget(role: string, path: string): void {
    const state = this.role(role);
    delete state.targets[path];
    state.dirty = true;
  }

  /** `parent` delegates `paths` to a new role `name` signed by `keys`. */
  delegate(parent: string, name: string, paths: string[], keys: TestKey[], terminating = false): void {
    const state = this.role(parent);
    state.delegations ??= { keys: {}, roles: [] };
    for (const key of keys) state.delegations.keys[key.keyId] = key.toJSON();
    state.delegations.roles.push({
      name,
      keyids: keys.map((k) => k.keyId),
      threshold: 1,
      terminating,
      paths,
    });
    state.dirty = true;
    this.roles.set(name, {
      version: 0,
      expires: new Date(Date.now() + 30 * DAY_MS),
      signers: keys,
      targets: {},
      dirty: true,
    });
  }

  /** Root version N+1 with new root keys, signed by the old and the new keys (TUF spec 5.3.4/5.3.5). */
  rotateRoot(newKeys: TestKey[], options: { expires?: Date; signers?: TestKey[] } = {}): void {
    const signers = options.signers ?? [...this.rootKeys, ...newKeys];
    this.rootKeys = newKeys;
    this.publishRoot(newKeys, signers, options.expires ?? new Date(Date.now() + 365 * DAY_MS));
  }

  /** Publish changed targets roles, then a new snapshot and a new timestamp. */
  publish(options: PublishOptions = {}): void {
    const unsigned = new Set(options.unsigned ?? []);
    for (const [name, state] of this.roles) {
      if (!state.dirty) continue;
      state.version += 1;
      state.dirty = false;
      const body: Record<string, unknown> = {
        _type: "targets",
        spec_version: "1.0.31",
        version: state.version,
        expires: isoSeconds(state.expires),
        targets: state.targets,
      };
      if (state.delegations) body.delegations = state.delegations;
      const bytes = signed(MetadataKind.Targets, body, unsigned.has(name) ? [] : state.signers);
      this.files.set(`${state.version}.${encodeURIComponent(name)}.json`, bytes);
    }
    this.snapshotVersion += 1;
    const meta: Record<string, { version: number }> = {};
    for (const [name, state] of this.roles) meta[`${name}.json`] = { version: state.version };
    const snapshot = signed(
      MetadataKind.Snapshot,
      {
        _type: "snapshot",
        spec_version: "1.0.31",
        version: this.snapshotVersion,
        expires: isoSeconds(options.snapshotExpires ?? new Date(Date.now() + 7 * DAY_MS)),
        meta,
      },
      unsigned.has("snapshot") ? [] : [this.snapshotKey],
    );
    this.files.set(`${this.snapshotVersion}.snapshot.json`, snapshot);
    this.publishTimestamp(this.snapshotVersion, options.timestampExpires, unsigned.has("timestamp"));
  }

  /** A new timestamp (version + 1) naming `snapshotVersion`. */
  publishTimestamp(snapshotVersion: number, expires?: Date, unsigned = false): Buffer {
    this.timestampVersion += 1;
    const bytes = signed(
      MetadataKind.Timestamp,
      {
        _type: "timestamp",
        spec_version: "1.0.31",
        version: this.timestampVersion,
        expires: isoSeconds(expires ?? new Date(Date.now() + DAY_MS)),
        meta: { "snapshot.json": { version: snapshotVersion } },
      },
      unsigned ? [] : [this.timestampKey],
    );
    this.files.set("timestamp.json", bytes);
    return bytes;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, "close");
  }

  private role(name: string): TargetsRole {
    const state = this.roles.get(name);
    if (state === undefined) throw new Error(`test repository has no role ${name}`);
    return state;
  }

  private publishRoot(rootKeys: TestKey[], signers: TestKey[], expires: Date): void {
    this.rootVersion += 1;
    const keys: Record<string, Record<string, unknown>> = {};
    for (const key of [...rootKeys, this.timestampKey, this.snapshotKey, this.targetsKey])
      keys[key.keyId] = key.toJSON();
    const role = (k: TestKey[]) => ({ keyids: k.map((key) => key.keyId), threshold: 1 });
    const bytes = signed(
      MetadataKind.Root,
      {
        _type: "root",
        spec_version: "1.0.31",
        version: this.rootVersion,
        expires: isoSeconds(expires),
        consistent_snapshot: true,
        keys,
        roles: {
          root: role(rootKeys),
          timestamp: role([this.timestampKey]),
          snapshot: role([this.snapshotKey]),
          targets: role([this.targetsKey]),
        },
      },
      signers,
    );
    this.files.set(`${this.rootVersion}.root.json`, bytes);
  }
}
