/**
 * Notary's TUF metadata, parsed from served bytes into checked shapes (tuf/data in Notary:
 * SignedRoot, SignedTargets, SignedSnapshot, SignedTimestamp). Only the shape is checked here;
 * signatures, hashes, versions and expiry are checked by the update workflow (update.ts).
 */
import { TrustError } from "../errors.js";
import { canonicalJson, NonCanonicalError, parseStrictJson } from "./canonical.js";

export const TOP_LEVEL_ROLES = ["root", "targets", "snapshot", "timestamp"] as const;
export type TopLevelRole = (typeof TOP_LEVEL_ROLES)[number];

export interface PublicKeyJson {
  keytype: string;
  keyval: { public: string; private: null };
}
export interface RoleKeys {
  keyids: string[];
  threshold: number;
}
/** Hashes (base64, by algorithm name) and exact length of a metadata file or target. */
export interface FileMeta {
  length: number;
  hashes: Record<string, string>;
}
export interface Signature {
  keyid: string;
  method: string;
  sig: string;
}
interface Common {
  version: number;
  /** RFC 3339 string exactly as served (nanoseconds, maybe an offset) */
  expires: string;
}
export interface RootSigned extends Common {
  _type: "Root";
  keys: Record<string, PublicKeyJson>;
  roles: Record<TopLevelRole, RoleKeys>;
}
export interface TimestampSigned extends Common {
  _type: "Timestamp";
  meta: { snapshot: FileMeta };
}
export interface SnapshotSigned extends Common {
  _type: "Snapshot";
  meta: Record<string, FileMeta>;
}
export interface DelegatedRole extends RoleKeys {
  name: string;
  paths?: string[];
  path_hash_prefixes?: string[];
}
export interface TargetsSigned extends Common {
  _type: "Targets";
  targets: Record<string, FileMeta>;
  delegations?: { keys: Record<string, PublicKeyJson>; roles: DelegatedRole[] };
}
export type AnySigned = RootSigned | TimestampSigned | SnapshotSigned | TargetsSigned;

/** A parsed envelope: the typed `signed`, its canonical bytes (what signatures cover), the signatures. */
export interface Envelope<T extends AnySigned> {
  signed: T;
  canonicalSigned: Buffer;
  signatures: Signature[];
}

type Check = (cond: unknown, what: string) => asserts cond;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === "string");

function checkKey(check: Check, key: unknown, where: string): void {
  check(isObject(key) && typeof key.keytype === "string", `${where}.keytype`);
  check(isObject(key.keyval) && typeof key.keyval.public === "string", `${where}.keyval.public`);
}

function checkKeys(check: Check, keys: unknown, where: string): void {
  check(isObject(keys), where);
  for (const [id, key] of Object.entries(keys)) checkKey(check, key, `${where}.${id}`);
}

function checkRoleKeys(check: Check, role: unknown, where: string): void {
  check(isObject(role) && isStringArray(role.keyids), `${where}.keyids`);
  check(typeof role.threshold === "number" && role.threshold >= 1, `${where}.threshold (>= 1)`);
}

/** The first bad field of a file's meta ("length" or "hashes"), if any. */
function fileMetaProblem(meta: unknown): "length" | "hashes" | undefined {
  if (!(isObject(meta) && typeof meta.length === "number" && meta.length >= 0)) return "length";
  if (!isObject(meta.hashes)) return "hashes";
  for (const h of Object.values(meta.hashes)) if (typeof h !== "string") return "hashes";
  return undefined;
}

function checkFileMeta(check: Check, meta: unknown, where: string): void {
  const problem = fileMetaProblem(meta);
  if (problem !== undefined) check(false, `${where}.${problem}`);
}

const TYPE_OF_ROLE: Record<string, AnySigned["_type"]> = {
  root: "Root",
  timestamp: "Timestamp",
  snapshot: "Snapshot",
};

/**
 * Parses one metadata file served for `role` (a delegation parses as Targets). Throws
 * METADATA_INVALID naming the GUN, the role and the first field that is wrong.
 */
export function parseEnvelope<T extends AnySigned>(
  gun: string,
  role: string,
  bytes: Uint8Array,
): Envelope<T> {
  const check: Check = (cond, what) => {
    if (!cond)
      throw new TrustError("METADATA_INVALID", gun, role, `${gun}: ${role} metadata: bad or missing ${what}`);
  };
  let doc: unknown;
  try {
    doc = parseStrictJson(bytes);
  } catch (err) {
    const why = err instanceof NonCanonicalError ? err.message : "not valid UTF-8 JSON";
    throw new TrustError("METADATA_INVALID", gun, role, `${gun}: ${role} metadata: ${why}`, { cause: err });
  }
  check(isObject(doc) && isObject(doc.signed), "signed");
  check(Array.isArray(doc.signatures), "signatures");
  const signatures: Signature[] = [];
  for (const s of doc.signatures as unknown[]) {
    check(
      isObject(s) && typeof s.keyid === "string" && typeof s.method === "string" && typeof s.sig === "string",
      "signatures[] entry",
    );
    signatures.push({ keyid: s.keyid, method: s.method, sig: s.sig });
  }
  const signed = doc.signed;
  const expectedType = TYPE_OF_ROLE[role] ?? "Targets";
  check(signed._type === expectedType, `_type (expected ${expectedType})`);
  check(Number.isSafeInteger(signed.version) && (signed.version as number) >= 1, "version");
  check(typeof signed.expires === "string", "expires");
  switch (expectedType) {
    case "Root":
      checkKeys(check, signed.keys, "keys");
      check(isObject(signed.roles), "roles");
      for (const r of TOP_LEVEL_ROLES) checkRoleKeys(check, signed.roles[r], `roles.${r}`);
      break;
    case "Timestamp":
      check(isObject(signed.meta), "meta");
      checkFileMeta(check, signed.meta.snapshot, "meta.snapshot");
      break;
    case "Snapshot":
      check(isObject(signed.meta), "meta");
      for (const [name, meta] of Object.entries(signed.meta)) checkFileMeta(check, meta, `meta.${name}`);
      break;
    case "Targets": {
      check(isObject(signed.targets), "targets");
      // 10,000 targets and more: the field name is only built for the error message.
      for (const name of Object.keys(signed.targets)) {
        const problem = fileMetaProblem(signed.targets[name]);
        if (problem !== undefined) check(false, `targets.${name}.${problem}`);
      }
      if (signed.delegations !== undefined) {
        const d = signed.delegations;
        check(isObject(d) && Array.isArray(d.roles), "delegations.roles");
        checkKeys(check, d.keys, "delegations.keys");
        for (const r of d.roles as unknown[]) {
          check(isObject(r) && typeof r.name === "string", "delegations.roles[].name");
          checkRoleKeys(check, r, `delegations.roles.${r.name}`);
          check(r.paths === undefined || isStringArray(r.paths), `delegations.roles.${r.name}.paths`);
          check(
            r.path_hash_prefixes === undefined || isStringArray(r.path_hash_prefixes),
            `delegations.roles.${r.name}.path_hash_prefixes`,
          );
        }
      }
      break;
    }
  }
  let canonicalSigned: Buffer;
  try {
    canonicalSigned = canonicalJson(signed);
  } catch (err) {
    throw new TrustError("METADATA_INVALID", gun, role, `${gun}: ${role} metadata has no canonical form`, {
      cause: err,
    });
  }
  return { signed: signed as unknown as T, canonicalSigned, signatures };
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * `expires` as milliseconds since the epoch. Go's time.Time marshals RFC 3339 with up to nine
 * fractional digits and, from clients not in UTC, an offset; Date.parse does not promise to read
 * nanoseconds, so this is parsed by hand. Sub-millisecond digits are dropped (rounding down makes
 * a role expire up to 1 ms early, never late).
 */
export function parseExpires(gun: string, role: string, value: string): number {
  const m = RFC3339.exec(value);
  if (!m)
    throw new TrustError("METADATA_INVALID", gun, role, `${gun}: ${role} expires '${value}' is not RFC 3339`);
  const [, y, mo, d, h, mi, s, frac, , sign, oh, om] = m;
  const ms = Number((frac ?? "").padEnd(3, "0").slice(0, 3));
  let t = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms);
  if (sign) t -= (sign === "+" ? 1 : -1) * (Number(oh) * 60 + Number(om)) * 60_000;
  if (!Number.isFinite(t))
    throw new TrustError("METADATA_INVALID", gun, role, `${gun}: ${role} expires '${value}' is invalid`);
  return t;
}
