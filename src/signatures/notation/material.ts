/**
 * Notation's own trust material, read as Notation reads it, so an organisation reuses its files:
 * a trust policy document (`trustpolicy.json`, specs/trust-store-trust-policy.md "Trust Policy")
 * and a trust store directory (`x509/{ca,signingAuthority,tsa}/<named store>/*.{pem,crt,cer}`).
 * Validation follows notation-go verifier/trustpolicy (oci.go Validate, trustpolicy.go
 * validateCore, GetVerificationLevel) and verifier/truststore (GetCertificates): every problem is a
 * ConfigError naming the file and the statement, found when the policy is loaded, not at pull time.
 *
 * Differences from notation, all on the closed side: identities with a prefix other than
 * `x509.subject` (plugin identities) are refused, since trustgate runs no plugins; files other than
 * .pem/.crt/.cer and sub-directories in a named store are ignored with a warning (the spec says
 * "ignored"; notation-go refuses sub-directories); a store named by the policy must exist and hold
 * at least one certificate.
 */
import { createHash, X509Certificate } from "node:crypto";
import type { Stats } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { extname, join } from "node:path";
import { ConfigError } from "../../errors.js";
import { DistinguishedNameError, type DnMap, isSubsetDn, parseTrustedIdentityDn } from "./dn.js";
import { CertificateFormatError, trustStoreCertProblem } from "./x509.js";

export type ValidationType = "integrity" | "authenticity" | "authenticTimestamp" | "expiry" | "revocation";
export type ValidationAction = "enforce" | "log" | "skip";
export type VerificationLevel = "strict" | "permissive" | "audit" | "skip";
export type TrustStoreType = "ca" | "signingAuthority" | "tsa";

/**
 * The specification's table (trust-store-trust-policy.md "Signature Verification details"):
 * which validation each level enforces and which it only logs.
 */
export const LEVELS: Record<VerificationLevel, Readonly<Record<ValidationType, ValidationAction>>> = {
  strict: {
    integrity: "enforce",
    authenticity: "enforce",
    authenticTimestamp: "enforce",
    expiry: "enforce",
    revocation: "enforce",
  },
  permissive: {
    integrity: "enforce",
    authenticity: "enforce",
    authenticTimestamp: "log",
    expiry: "log",
    revocation: "log",
  },
  audit: {
    integrity: "enforce",
    authenticity: "log",
    authenticTimestamp: "log",
    expiry: "log",
    revocation: "log",
  },
  skip: {
    integrity: "skip",
    authenticity: "skip",
    authenticTimestamp: "skip",
    expiry: "skip",
    revocation: "skip",
  },
};

export interface NotationTrustPolicy {
  name: string;
  /** fully qualified repositories (`registry/namespace/repo`), or exactly ["*"] (global scope) */
  registryScopes: string[];
  level: VerificationLevel;
  /** the level's actions with `override` applied */
  actions: Readonly<Record<ValidationType, ValidationAction>>;
  /** named stores, `{type, name}`, in policy order, without repeats */
  trustStores: { type: TrustStoreType; name: string }[];
  /** "*" (any identity the trust stores vouch for) or x509 subject DNs */
  trustedIdentities: "*" | { text: string; dn: DnMap }[];
}

export interface NotationMaterial {
  trustPolicyFile: string;
  trustStoreDir: string;
  version: "1.0";
  policies: NotationTrustPolicy[];
  /** certificates by `type:name`, only for the stores the policies name */
  stores: ReadonlyMap<string, readonly X509Certificate[]>;
  /** hex SHA-256 over the policy bytes and every loaded certificate: changes whenever the material does */
  fingerprint: string;
  /** what was ignored while loading (files of other types, sub-directories) */
  warnings: string[];
}

/** The trust policy file and each certificate file are small; a bigger one is a mistake. */
export const MAX_TRUST_POLICY_BYTES = 1024 * 1024;
export const MAX_CERT_FILE_BYTES = 1024 * 1024;

const LEVEL_NAMES: readonly VerificationLevel[] = ["strict", "permissive", "audit", "skip"];
const OVERRIDABLE: readonly ValidationType[] = ["authenticity", "authenticTimestamp", "expiry", "revocation"];
const STORE_TYPES: readonly TrustStoreType[] = ["ca", "signingAuthority", "tsa"];
const CERT_EXTENSIONS = new Set([".pem", ".crt", ".cer"]);
// notation-go internal/file IsValidFileName
const STORE_NAME = /^[a-zA-Z0-9_.-]+$/;
// notation-go oci.go validateRegistryScopeFormat (adapted from distribution's reference grammar)
const SCOPE_DOMAIN =
  /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?$/;
const SCOPE_REPOSITORY =
  /^[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:\/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?$/;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringArray(v: unknown, fail: (p: string) => never, key: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) fail(`${key} must be an array of strings`);
  return v as string[];
}

function rejectUnknownKeys(o: Obj, allowed: readonly string[], fail: (p: string) => never, where: string) {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${where}has an unknown key "${k}"`);
}

/** Parses and validates a trust policy document; `file` names it in errors. */
export function parseTrustPolicyDocument(bytes: Buffer, file: string): NotationTrustPolicy[] {
  const fail = (problem: string): never => {
    throw new ConfigError(`${file}: ${problem}`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    fail(`is not valid JSON (${(err as Error).message})`);
  }
  if (!isObj(doc)) fail("must be a JSON object with version and trustPolicies");
  const d = doc as Obj;
  rejectUnknownKeys(d, ["version", "trustPolicies"], fail, "");
  if (d.version !== "1.0") fail(`version must be "1.0" (got ${JSON.stringify(d.version)})`);
  if (!Array.isArray(d.trustPolicies) || d.trustPolicies.length === 0)
    fail("trustPolicies must be a non-empty array");
  const policies: NotationTrustPolicy[] = [];
  const names = new Set<string>();
  const scopes = new Map<string, string>();
  (d.trustPolicies as unknown[]).forEach((raw, index) => {
    if (!isObj(raw)) fail(`trustPolicies[${index}] must be an object`);
    const p = raw as Obj;
    const name = p.name;
    if (typeof name !== "string" || name === "") fail(`trustPolicies[${index}] has no name`);
    const at = (problem: string): never => fail(`trust policy "${name as string}": ${problem}`);
    rejectUnknownKeys(
      p,
      ["name", "registryScopes", "signatureVerification", "trustStores", "trustedIdentities"],
      at,
      "",
    );
    if (names.has(name as string))
      fail(`two trust policies are named "${name as string}"; names must be unique`);
    names.add(name as string);

    const registryScopes = stringArray(p.registryScopes, at, "registryScopes");
    if (registryScopes.length === 0) at('registryScopes must name at least one repository or be ["*"]');
    if (registryScopes.length > 1 && registryScopes.includes("*"))
      at('the global scope "*" cannot be combined with other scopes');
    for (const scope of registryScopes) {
      if (scope !== "*") {
        const slash = scope.indexOf("/");
        const domain = scope.slice(0, slash);
        const repo = scope.slice(slash + 1);
        if (slash < 1 || !SCOPE_DOMAIN.test(domain) || !SCOPE_REPOSITORY.test(repo))
          at(`registry scope "${scope}" is not a fully qualified repository (e.g. docker.io/library/alpine)`);
      }
      const other = scopes.get(scope);
      if (other !== undefined)
        fail(
          `registry scope "${scope}" is in trust policies "${other}" and "${name as string}"; one scope, one policy`,
        );
      scopes.set(scope, name as string);
    }

    const sv = p.signatureVerification;
    if (!isObj(sv)) at("signatureVerification must be an object with a level");
    const svo = sv as Obj;
    rejectUnknownKeys(svo, ["level", "override"], at, "signatureVerification ");
    const level = svo.level as VerificationLevel;
    if (!LEVEL_NAMES.includes(level))
      at(
        `signatureVerification.level must be one of ${LEVEL_NAMES.join(", ")} (got ${JSON.stringify(svo.level)})`,
      );
    const actions: Record<ValidationType, ValidationAction> = { ...LEVELS[level] };
    if (svo.override !== undefined) {
      if (!isObj(svo.override)) at("signatureVerification.override must be an object");
      const override = svo.override as Obj;
      if (level === "skip" && Object.keys(override).length > 0)
        at('the "skip" level cannot be customised with override');
      for (const [key, value] of Object.entries(override)) {
        if (key === "integrity") at("integrity validation cannot be overridden");
        if (!OVERRIDABLE.includes(key as ValidationType))
          at(`override key "${key}" is not one of ${OVERRIDABLE.join(", ")}`);
        const allowed = key === "revocation" ? ["enforce", "log", "skip"] : ["enforce", "log"];
        if (typeof value !== "string" || !allowed.includes(value))
          at(`override.${key} must be one of ${allowed.join(", ")} (got ${JSON.stringify(value)})`);
        actions[key as ValidationType] = value as ValidationAction;
      }
    }

    const rawStores = p.trustStores === undefined ? [] : stringArray(p.trustStores, at, "trustStores");
    const rawIdentities =
      p.trustedIdentities === undefined ? [] : stringArray(p.trustedIdentities, at, "trustedIdentities");
    const trustStores: NotationTrustPolicy["trustStores"] = [];
    let trustedIdentities: NotationTrustPolicy["trustedIdentities"] = [];
    if (level === "skip") {
      if (rawStores.length > 0 || rawIdentities.length > 0)
        at('is set to "skip" but names trust stores or trusted identities; remove them');
    } else {
      if (rawStores.length === 0 || rawIdentities.length === 0)
        at("needs both trustStores and trustedIdentities (every level but skip verifies signatures)");
      for (const entry of rawStores) {
        const colon = entry.indexOf(":");
        const type = entry.slice(0, colon) as TrustStoreType;
        const storeName = entry.slice(colon + 1);
        if (colon < 0) at(`trust store "${entry}" must be <type>:<name>, e.g. ca:acme-rockets`);
        if (!STORE_TYPES.includes(type))
          at(`trust store "${entry}" has type "${type}"; the types are ${STORE_TYPES.join(", ")}`);
        if (!STORE_NAME.test(storeName)) at(`trust store "${entry}": the name must match [a-zA-Z0-9_.-]+`);
        if (!trustStores.some((s) => s.type === type && s.name === storeName))
          trustStores.push({ type, name: storeName });
      }
      if (!trustStores.some((s) => s.type !== "tsa"))
        at("names no ca or signingAuthority trust store, so no signature could be authenticated");
      if (rawIdentities.includes("*")) {
        if (rawIdentities.length > 1)
          at('the wildcard identity "*" cannot be combined with other identities');
        trustedIdentities = "*";
      } else {
        const parsed: { text: string; dn: DnMap }[] = [];
        for (const identity of rawIdentities) {
          const colon = identity.indexOf(":");
          const prefix = identity.slice(0, colon);
          if (colon < 0 || prefix !== "x509.subject")
            at(
              `trusted identity "${identity}" must be "*" or start with "x509.subject:" (trustgate runs no plugins)`,
            );
          const value = identity.slice(colon + 1);
          if (value.trim() === "") at(`trusted identity "${identity}" has no distinguished name`);
          try {
            parsed.push({ text: identity, dn: parseTrustedIdentityDn(value) });
          } catch (err) {
            if (err instanceof DistinguishedNameError) at(`trusted identity "${identity}": ${err.message}`);
            throw err;
          }
        }
        // Spec: identities MUST NOT overlap (one certificate matching two of them).
        for (const a of parsed)
          for (const b of parsed)
            if (a !== b && isSubsetDn(a.dn, b.dn))
              at(`trusted identities "${a.text}" and "${b.text}" overlap`);
        trustedIdentities = parsed;
      }
    }
    policies.push({ name: name as string, registryScopes, level, actions, trustStores, trustedIdentities });
  });
  return policies;
}

/** Every certificate in one file: PEM (one or more CERTIFICATE blocks) or a single DER certificate. */
function parseCertificateFile(bytes: Buffer, file: string): X509Certificate[] {
  const text = bytes.toString("latin1");
  if (text.includes("-----BEGIN")) {
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    const otherBlocks = (text.match(/-----BEGIN [^-]+-----/g) ?? []).filter(
      (b) => !b.includes(" CERTIFICATE-"),
    );
    if (otherBlocks.length > 0)
      throw new ConfigError(`${file}: holds ${otherBlocks[0]}, not only certificates`);
    if (blocks.length === 0) throw new ConfigError(`${file}: holds no PEM certificate`);
    return blocks.map((block, i) => {
      try {
        return new X509Certificate(block);
      } catch (err) {
        throw new ConfigError(`${file}: certificate ${i + 1} does not parse (${(err as Error).message})`);
      }
    });
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(bytes);
  } catch (err) {
    throw new ConfigError(`${file}: is neither a PEM nor a DER certificate (${(err as Error).message})`);
  }
  if (cert.raw.length !== bytes.length)
    throw new ConfigError(
      `${file}: has bytes after its DER certificate; put several certificates in PEM form`,
    );
  return [cert];
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`${path}: cannot be read (${(err as Error).message})`);
  }
}

/** One named store: the certificates in its regular files (no symlinks, as the spec requires). */
async function loadNamedStore(
  trustStoreDir: string,
  type: TrustStoreType,
  name: string,
  warnings: string[],
): Promise<X509Certificate[]> {
  const dir = join(trustStoreDir, "x509", type, name);
  const st = await lstatOrUndefined(dir);
  if (!st)
    throw new ConfigError(`${dir}: the trust store ${type}:${name} named by the trust policy does not exist`);
  if (st.isSymbolicLink() || !st.isDirectory())
    throw new ConfigError(
      `${dir}: the trust store ${type}:${name} is not a directory (symlinks are not supported)`,
    );
  const certs: X509Certificate[] = [];
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink())
      throw new ConfigError(
        `${path}: symlinks are not supported in a trust store (the spec requires regular files)`,
      );
    if (entry.isDirectory()) {
      warnings.push(`${path}: sub-directory of trust store ${type}:${name} ignored`);
      continue;
    }
    if (!entry.isFile() || !CERT_EXTENSIONS.has(extname(entry.name).toLowerCase())) {
      warnings.push(`${path}: not a .pem, .crt or .cer file, ignored`);
      continue;
    }
    const fst = await lstat(path);
    if (fst.size > MAX_CERT_FILE_BYTES)
      throw new ConfigError(
        `${path}: is ${fst.size} bytes; a certificate file is at most ${MAX_CERT_FILE_BYTES}`,
      );
    for (const cert of parseCertificateFile(await readFile(path), path)) {
      let problem: string | undefined;
      try {
        problem = trustStoreCertProblem(cert, type);
      } catch (err) {
        if (err instanceof CertificateFormatError) problem = err.message;
        else throw err;
      }
      if (problem)
        throw new ConfigError(`${path}: certificate "${cert.subject.replace(/\n/g, ", ")}" ${problem}`);
      certs.push(cert);
    }
  }
  if (certs.length === 0)
    throw new ConfigError(`${dir}: the trust store ${type}:${name} holds no certificate`);
  return certs;
}

/**
 * Reads and validates `trustPolicyFile` and the named stores its policies use under
 * `trustStoreDir`. Throws ConfigError naming the file and the problem.
 */
export async function loadNotationMaterial(
  trustPolicyFile: string,
  trustStoreDir: string,
): Promise<NotationMaterial> {
  const st = await lstatOrUndefined(trustPolicyFile);
  if (!st) throw new ConfigError(`${trustPolicyFile}: the Notation trust policy file does not exist`);
  if (st.isSymbolicLink() || !st.isFile())
    throw new ConfigError(
      `${trustPolicyFile}: the Notation trust policy is not a regular file (symlinks are not supported)`,
    );
  if (st.size > MAX_TRUST_POLICY_BYTES)
    throw new ConfigError(
      `${trustPolicyFile}: is ${st.size} bytes; a trust policy is at most ${MAX_TRUST_POLICY_BYTES}`,
    );
  const policyBytes = await readFile(trustPolicyFile);
  const policies = parseTrustPolicyDocument(policyBytes, trustPolicyFile);

  const dirStat = await lstatOrUndefined(trustStoreDir);
  if (!dirStat?.isDirectory())
    throw new ConfigError(
      `${trustStoreDir}: the Notation trust store directory does not exist or is not a directory`,
    );
  const warnings: string[] = [];
  const stores = new Map<string, X509Certificate[]>();
  const hash = createHash("sha256");
  hash.update(`policy ${policyBytes.length}\n`).update(policyBytes);
  for (const policy of policies) {
    for (const { type, name } of policy.trustStores) {
      const key = `${type}:${name}`;
      if (stores.has(key)) continue;
      const certs = await loadNamedStore(trustStoreDir, type, name, warnings);
      stores.set(key, certs);
      hash.update(`\nstore ${key} ${certs.length}\n`);
      for (const cert of certs) hash.update(`${cert.raw.length}\n`).update(cert.raw);
    }
  }
  return {
    trustPolicyFile,
    trustStoreDir,
    version: "1.0",
    policies,
    stores,
    fingerprint: hash.digest("hex"),
    warnings,
  };
}

/**
 * The policy for `repository` (`registry/namespace/repo`): the one whose scopes name it exactly,
 * else the global one, else none (spec "Selecting a trust policy based on artifact URI").
 */
export function selectTrustPolicy(
  material: NotationMaterial,
  repository: string,
): NotationTrustPolicy | undefined {
  return (
    material.policies.find((p) => p.registryScopes.includes(repository)) ??
    material.policies.find((p) => p.registryScopes.includes("*"))
  );
}
