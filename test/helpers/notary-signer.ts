/**
 * Test-only Notary/TUF metadata signer, for attack tests: makes keys with node:crypto (root
 * certificates with openssl, as Notary's root keys are x509), builds root/targets/snapshot/
 * timestamp and delegations the way Notary 0.7.0 lays them out, and signs canonical JSON.
 * Every knob an attack needs (who signs, versions, expiry, raw bytes) is exposed.
 */
import { execFileSync } from "node:child_process";
import {
  constants,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  X509Certificate,
} from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalJson } from "../../src/trust/notary/canonical.js";
import { keyId } from "../../src/trust/notary/keys.js";
import type { PublicKeyJson } from "../../src/trust/notary/models.js";

export interface TestKey {
  id: string;
  json: PublicKeyJson;
  priv: KeyObject;
  method: "ecdsa" | "eddsa" | "rsapss";
}

function makeKey(keytype: string, pub: string, priv: KeyObject, method: TestKey["method"]): TestKey {
  const json: PublicKeyJson = { keytype, keyval: { private: null, public: pub } };
  return { id: keyId(json), json, priv, method };
}

export function ecdsaKey(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return makeKey(
    "ecdsa",
    publicKey.export({ format: "der", type: "spki" }).toString("base64"),
    privateKey,
    "ecdsa",
  );
}

export function ed25519Key(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  return makeKey("ed25519", raw.toString("base64"), privateKey, "eddsa");
}

/** An `rsa` key (base64 DER SPKI) signing with `rsapss`, of any size and exponent node:crypto makes. */
export function rsaKey(bits = 2048, publicExponent = 65537): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: bits, publicExponent });
  return makeKey(
    "rsa",
    publicKey.export({ format: "der", type: "spki" }).toString("base64"),
    privateKey,
    "rsapss",
  );
}

const derLength = (n: number) => {
  if (n < 128) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 255);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
};
const der = (tag: number, body: Buffer) => Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
const derInt = (b: Buffer) =>
  der(2, b[0] !== undefined && b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);

/**
 * An RSA public key (PEM SPKI) no generator makes: a random `bits`-bit modulus and a public
 * exponent of `exponentBits` random bits (OpenSSL verifies with one up to 3072-bit moduli, slowly)
 * or 65537. Made in microseconds, where generating a 4160-bit key pair takes seconds.
 */
export function craftedRsaPublicKey(bits: number, exponentBits?: number): string {
  const random = (n: number) => {
    const b = Buffer.from(Array.from({ length: n / 8 }, () => Math.floor(Math.random() * 256)));
    b[0] = (b[0] ?? 0) | 0x80;
    b[b.length - 1] = (b[b.length - 1] ?? 0) | 1;
    return b;
  };
  const exponent = exponentBits ? random(exponentBits) : Buffer.from([1, 0, 1]);
  const rsaPublicKey = der(0x30, Buffer.concat([derInt(random(bits)), derInt(exponent)]));
  const algorithm = der(0x30, Buffer.from("06092a864886f70d0101010500", "hex"));
  const spki = der(0x30, Buffer.concat([algorithm, der(3, Buffer.concat([Buffer.from([0]), rsaPublicKey]))]));
  return createPublicKey({ key: spki, format: "der", type: "spki" }).export({
    format: "pem",
    type: "spki",
  }) as string;
}

/** An `rsa` key for a crafted public key: nobody holds its private key, so it signs only junk. */
export function rsaKeyWithoutPrivate(pem: string): TestKey {
  const spki = createPublicKey(pem).export({ format: "der", type: "spki" });
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return makeKey("rsa", spki.toString("base64"), privateKey, "rsapss");
}

/** The same key listed under another key ID: its base64 without the `=` padding (REVIEW T7). */
export function unpaddedAlias(key: TestKey): TestKey {
  const pub = key.json.keyval.public;
  if (!pub.endsWith("=")) throw new Error("key has no base64 padding to strip");
  return makeKey(key.json.keytype, pub.replace(/=+$/, ""), key.priv, key.method);
}

/** An x509 key listed again as the bare `ecdsa`/`rsa` key inside its certificate (REVIEW T7). */
export function bareAlias(key: TestKey): TestKey {
  const pem = Buffer.from(key.json.keyval.public, "base64");
  const spki = new X509Certificate(pem).publicKey.export({ format: "der", type: "spki" });
  return makeKey(key.json.keytype.replace("-x509", ""), spki.toString("base64"), key.priv, key.method);
}

export interface CertOptions {
  /** Common Name, default the GUN */
  cn?: string;
  ca?: boolean;
  days?: number;
  /** an `rsa-x509` key of this many bits instead of ECDSA P-256 */
  rsaBits?: number;
  /** what openssl signs the certificate with (default sha256) */
  digest?: "sha256" | "sha1" | "md5";
  /** PEM public key to put in the certificate instead of the signing key's own (openssl -force_pubkey) */
  forcePublicKey?: string;
}

/**
 * An `ecdsa-x509` key (or `rsa-x509` with `rsaBits`): a P-256 certificate made by openssl, as
 * `notary init` makes, self-signed unless `forcePublicKey` puts another key in it.
 */
export function x509Key(gun: string, opts: CertOptions = {}): TestKey {
  const { privateKey } = opts.rsaBits
    ? generateKeyPairSync("rsa", { modulusLength: opts.rsaBits })
    : generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const dir = mkdtempSync(join(tmpdir(), "tg-cert-"));
  try {
    writeFileSync(join(dir, "key.pem"), privateKey.export({ format: "pem", type: "pkcs8" }));
    writeFileSync(
      join(dir, "req.cnf"),
      // openssl caps a Common Name at 64 bytes (X.520 ub-common-name); Notary's Go client signs
      // longer GUNs (any legal repository name), so lift the cap for those (REVIEW U7).
      `${Buffer.byteLength(opts.cn ?? gun) > 64 ? "openssl_conf=init\n[init]\nstbl_section=stbl\n[stbl]\ncommonName=min:1,max:1024\n" : ""}` +
        `[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n[dn]\nCN=${opts.cn ?? gun}\n[ext]\nbasicConstraints=critical,CA:${opts.ca ? "TRUE" : "FALSE"}\nkeyUsage=critical,digitalSignature${opts.ca ? ",keyCertSign" : ""}\n`,
    );
    const days = String(opts.days ?? 3650);
    const digest = `-${opts.digest ?? "sha256"}`;
    const inDir = (name: string) => join(dir, name);
    if (opts.forcePublicKey) {
      writeFileSync(inDir("pub.pem"), opts.forcePublicKey);
      const req = [
        "req",
        "-new",
        "-config",
        inDir("req.cnf"),
        "-key",
        inDir("key.pem"),
        "-out",
        inDir("req.csr"),
      ];
      execFileSync("openssl", req, { stdio: "pipe" });
      const x509 = ["x509", "-req", "-in", inDir("req.csr"), "-signkey", inDir("key.pem")];
      const ext = ["-extfile", inDir("req.cnf"), "-extensions", "ext", "-days", days, digest];
      const out = ["-force_pubkey", inDir("pub.pem"), "-out", inDir("cert.pem")];
      execFileSync("openssl", [...x509, ...ext, ...out], { stdio: "pipe" });
    } else {
      const req = ["req", "-x509", "-new", "-config", inDir("req.cnf"), "-key", inDir("key.pem")];
      execFileSync("openssl", [...req, "-days", days, digest, "-out", inDir("cert.pem")], { stdio: "pipe" });
    }
    const pem = readFileSync(inDir("cert.pem"));
    return opts.rsaBits || opts.forcePublicKey
      ? makeKey("rsa-x509", pem.toString("base64"), privateKey, "rsapss")
      : makeKey("ecdsa-x509", pem.toString("base64"), privateKey, "ecdsa");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Signs `signed` with each key (a key may appear twice) and returns the served bytes. */
export function signEnvelope(signed: unknown, keys: TestKey[], over?: Buffer): Buffer {
  const data = over ?? canonicalJson(signed);
  const signatures = keys.map((k) => ({
    keyid: k.id,
    method: k.method,
    sig: (k.method === "ecdsa"
      ? sign("sha256", data, { key: k.priv, dsaEncoding: "ieee-p1363" })
      : k.method === "rsapss"
        ? sign("sha256", data, { key: k.priv, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
        : sign(null, data, k.priv)
    ).toString("base64"),
  }));
  return Buffer.from(JSON.stringify({ signed, signatures }));
}

const b64sha = (alg: string, b: Uint8Array) => createHash(alg).update(b).digest("base64");
export const fileMeta = (b: Uint8Array) => ({
  hashes: { sha256: b64sha("sha256", b), sha512: b64sha("sha512", b) },
  length: b.length,
});
export const targetMeta = (hexDigest: string, size: number) => ({
  hashes: { sha256: Buffer.from(hexDigest, "hex").toString("base64") },
  length: size,
});

export interface Delegation {
  name: string;
  keys: TestKey[];
  threshold?: number;
  paths?: string[];
  pathHashPrefixes?: string[];
  /** who signs the delegation's own metadata (default: its keys) */
  signers?: TestKey[];
  /** the role that delegates it (default `targets`), for nested delegations such as `targets/a/b` */
  parent?: string;
  targets: Record<string, { digest: string; size: number }>;
}

type Role = "root" | "timestamp" | "snapshot" | "targets" | string;

/** Per-publish overrides an attack needs. */
export interface PublishOptions {
  signers?: Partial<Record<Role, TestKey[]>>;
  expires?: Partial<Record<Role, string>>;
  versions?: Partial<Record<Role, number>>;
  /** edit a role's `signed` object before it is signed */
  edit?: Partial<Record<Role, (signed: Record<string, unknown>) => void>>;
}

/**
 * A repository for one GUN. `publish()` signs the current content into a fresh set of files
 * (bumping versions), laid out like notary-server serves them.
 */
export class TestRepo {
  rootKeys: TestKey[];
  rootThreshold = 1;
  targetsKeys: TestKey[] = [ecdsaKey()];
  targetsThreshold = 1;
  snapshotKey: TestKey = ecdsaKey();
  timestampKey: TestKey = ed25519Key();
  targets: Record<string, { digest: string; size: number }> = {};
  delegations: Delegation[] = [];
  /** signed root versions so far, bytes by version */
  readonly roots = new Map<number, Buffer>();
  private version: Record<string, number> = {};
  private rootVersion = 0;

  constructor(
    readonly gun: string,
    readonly now: Date,
    rootKey?: TestKey,
  ) {
    this.rootKeys = [rootKey ?? x509Key(gun)];
    this.signRoot();
  }

  expiresIn(days: number): string {
    return new Date(this.now.getTime() + days * 86_400_000).toISOString().replace("Z", "123456Z");
  }

  /** Signs a new root version with `signers` (default: the current root keys). */
  signRoot(signers?: TestKey[], opts: { expires?: string; version?: number } = {}): Buffer {
    const keys: Record<string, PublicKeyJson> = {};
    for (const k of [...this.rootKeys, ...this.targetsKeys, this.snapshotKey, this.timestampKey])
      keys[k.id] = k.json;
    this.rootVersion = opts.version ?? this.rootVersion + 1;
    const signed = {
      _type: "Root",
      consistent_snapshot: false,
      expires: opts.expires ?? this.expiresIn(3650),
      keys,
      roles: {
        root: { keyids: this.rootKeys.map((k) => k.id), threshold: this.rootThreshold },
        snapshot: { keyids: [this.snapshotKey.id], threshold: 1 },
        targets: { keyids: this.targetsKeys.map((k) => k.id), threshold: this.targetsThreshold },
        timestamp: { keyids: [this.timestampKey.id], threshold: 1 },
      },
      version: this.rootVersion,
    };
    const bytes = signEnvelope(signed, signers ?? this.rootKeys);
    this.roots.set(this.rootVersion, bytes);
    return bytes;
  }

  /** Replaces the root keys with `next`; the new version is signed by old and new (or `signers`). */
  rotateRoot(next: TestKey[], signers?: TestKey[]): Buffer {
    const old = this.rootKeys;
    this.rootKeys = next;
    return this.signRoot(signers ?? [...old, ...next]);
  }

  private nextVersion(role: string, opts: PublishOptions): number {
    const v = opts.versions?.[role] ?? (this.version[role] ?? 0) + 1;
    this.version[role] = v;
    return v;
  }

  publish(opts: PublishOptions = {}): Map<string, Buffer> {
    const files = new Map<string, Buffer>();
    const put = (role: string, bytes: Buffer) => {
      files.set(`${role}.json`, bytes);
      files.set(`${role}.${createHash("sha256").update(bytes).digest("hex")}.json`, bytes);
    };
    const build = (
      role: string,
      type: string,
      body: Record<string, unknown>,
      signers: TestKey[],
      days: number,
    ) => {
      const signed: Record<string, unknown> = {
        _type: type,
        ...body,
        expires: opts.expires?.[role] ?? this.expiresIn(days),
        version: this.nextVersion(role, opts),
      };
      opts.edit?.[role]?.(signed);
      return signEnvelope(signed, opts.signers?.[role] ?? signers);
    };
    const rootBytes = this.roots.get(this.rootVersion) as Buffer;
    for (const [v, b] of this.roots) files.set(`${v}.root.json`, b);
    put("root", rootBytes);

    const meta: Record<string, unknown> = { root: fileMeta(rootBytes) };
    // A delegation is listed by its parent role (`targets/a/b` by `targets/a`), as Notary nests
    // them; `parent` overrides that for tests of misplaced delegations.
    const delegationsOf = (parent: string) => {
      const children = this.delegations.filter(
        (d) => (d.parent ?? d.name.slice(0, d.name.lastIndexOf("/"))) === parent,
      );
      if (children.length === 0) return undefined;
      const keys: Record<string, PublicKeyJson> = {};
      for (const d of children) for (const k of d.keys) keys[k.id] = k.json;
      return {
        keys,
        roles: children.map((d) => ({
          name: d.name,
          keyids: d.keys.map((k) => k.id),
          threshold: d.threshold ?? 1,
          ...(d.pathHashPrefixes ? { path_hash_prefixes: d.pathHashPrefixes } : { paths: d.paths ?? [""] }),
        })),
      };
    };
    const targetsBody: Record<string, unknown> = {
      targets: Object.fromEntries(
        Object.entries(this.targets).map(([n, t]) => [n, targetMeta(t.digest, t.size)]),
      ),
    };
    const topDelegations = delegationsOf("targets");
    if (topDelegations) targetsBody.delegations = topDelegations;
    const targetsBytes = build("targets", "Targets", targetsBody, this.targetsKeys, 1095);
    put("targets", targetsBytes);
    meta.targets = fileMeta(targetsBytes);
    for (const d of this.delegations) {
      const body = {
        delegations: delegationsOf(d.name) ?? { keys: {}, roles: [] },
        targets: Object.fromEntries(
          Object.entries(d.targets).map(([n, t]) => [n, targetMeta(t.digest, t.size)]),
        ),
      };
      const bytes = build(d.name, "Targets", body, d.signers ?? d.keys, 1095);
      put(d.name, bytes);
      meta[d.name] = fileMeta(bytes);
    }
    const snapshotBytes = build("snapshot", "Snapshot", { meta }, [this.snapshotKey], 1095);
    put("snapshot", snapshotBytes);
    const timestampBytes = build(
      "timestamp",
      "Timestamp",
      { meta: { snapshot: fileMeta(snapshotBytes) } },
      [this.timestampKey],
      14,
    );
    put("timestamp", timestampBytes);
    return files;
  }
}

/** Re-signs snapshot and timestamp over a (tampered) file set, as a holder of those keys could. */
export function resealSnapshot(
  repo: TestRepo,
  files: Map<string, Buffer>,
  roles: string[],
): Map<string, Buffer> {
  const out = new Map(files);
  const snap = JSON.parse((files.get("snapshot.json") as Buffer).toString()).signed;
  for (const r of roles) snap.meta[r] = fileMeta(files.get(`${r}.json`) as Buffer);
  snap.version += 1;
  const snapBytes = signEnvelope(snap, [repo.snapshotKey]);
  const ts = JSON.parse((files.get("timestamp.json") as Buffer).toString()).signed;
  ts.meta.snapshot = fileMeta(snapBytes);
  ts.version += 1;
  const tsBytes = signEnvelope(ts, [repo.timestampKey]);
  for (const [role, bytes] of [
    ["snapshot", snapBytes],
    ["timestamp", tsBytes],
  ] as const) {
    out.set(`${role}.json`, bytes);
    out.set(`${role}.${createHash("sha256").update(bytes).digest("hex")}.json`, bytes);
  }
  for (const r of roles) {
    const b = files.get(`${r}.json`) as Buffer;
    out.set(`${r}.${createHash("sha256").update(b).digest("hex")}.json`, b);
  }
  return out;
}
