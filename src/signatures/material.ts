/**
 * Reading what `signatures:` rules name, once per policy load: PEM public keys, Sigstore
 * trusted_root.json, Notation's trust policy and trust store. Every problem is a policy problem
 * with the line that named the file, so a policy whose key cannot be read never loads (the old set
 * stays in force). Each rule gets a fingerprint over its settings and the bytes of every file it
 * read: the verdict cache keys on it (verifier.ts), so a rotated key or a replaced trusted root
 * takes effect at the reload that reads it and never answers from a verdict made with the old one
 * (kyverno/kyverno#17173: a cache key that missed part of the policy).
 */
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { TrustedRoot } from "@sigstore/protobuf-specs";
import { toTrustMaterial } from "@sigstore/verify";
import type { PolicyProblem } from "../policy/types.js";
import { notationPlug } from "./notation-plug.js";
import type {
  CosignKey,
  CosignRuleSpec,
  LoadedSignatureRule,
  NotationRuleSpec,
  PolicyFileRef,
  SignatureRequirement,
  SignatureRequirementSpec,
} from "./types.js";

/** Key files are a few hundred bytes, trusted roots tens of KiB (public-good: ~20 KiB). */
const MAX_KEY_FILE_BYTES = 64 * 1024;
const MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024;
/** NIST SP 800-131A: RSA keys below 2048 bits are not acceptable for signatures. */
const MIN_RSA_BITS = 2048;

/**
 * The rule kinds this build verifies at pull time. A kind parsed but not listed here is refused
 * at load ("not supported in this build"): a rule that is loaded and then ignored would let
 * unsigned images through (fail closed).
 */
const VERIFIED_KINDS: ReadonlySet<string> = new Set<string>([
  "cosign",
  ...(notationPlug ? ["notation"] : []),
]);

export interface LoadedRequirement {
  readonly requirement: SignatureRequirement | undefined;
  readonly problems: readonly PolicyProblem[];
}

export async function loadSignatureMaterial(
  policyFile: string,
  spec: SignatureRequirementSpec,
): Promise<LoadedRequirement> {
  const problems: PolicyProblem[] = [];
  const problem = (line: number, message: string) => problems.push({ file: policyFile, line, message });
  const rules: LoadedSignatureRule[] = [];
  for (const rule of spec.rules) {
    const loaded =
      rule.kind === "cosign"
        ? await loadCosignRule(rule, problem)
        : await loadNotation(policyFile, rule, problem);
    if (loaded && !VERIFIED_KINDS.has(rule.kind)) {
      problem(
        rule.line,
        `signatures.rules[${rule.index}]: ${rule.kind} signature rules are not supported in this build (the policy is refused rather than loaded without the check)`,
      );
      continue;
    }
    if (loaded) rules.push(loaded);
  }
  if (problems.length > 0) return { requirement: undefined, problems };
  const fingerprint = sha256Hex(
    JSON.stringify({ require: spec.require, rules: rules.map((r) => r.fingerprint) }),
  );
  return {
    requirement: Object.freeze({
      loaded: true as const,
      require: spec.require,
      rules: Object.freeze(rules),
      line: spec.line,
      fingerprint,
    }),
    problems,
  };
}

type Problem = (line: number, message: string) => void;

export async function loadCosignRule(
  rule: CosignRuleSpec,
  problem: Problem,
): Promise<LoadedSignatureRule | undefined> {
  const where = `signatures.rules[${rule.index}].cosign`;
  const keys: CosignKey[] = [];
  const contentHashes: string[] = [];
  let ok = true;
  for (const ref of rule.keys) {
    const bytes = await readBounded(ref, MAX_KEY_FILE_BYTES, `${where}.keys`, problem);
    if (!bytes) {
      ok = false;
      continue;
    }
    const key = publicKeyFrom(bytes, ref, `${where}.keys`, problem);
    if (!key) {
      ok = false;
      continue;
    }
    if (keys.some((k) => k.fingerprint === key.fingerprint)) {
      problem(ref.line, `${where}.keys: ${ref.written} is the same key as another file in the list`);
      ok = false;
      continue;
    }
    keys.push(key);
    contentHashes.push(sha256Hex(bytes));
  }
  let trustedRoot: ReturnType<typeof toTrustMaterial> | undefined;
  if (rule.trustedRoot) {
    const bytes = await readBounded(
      rule.trustedRoot,
      MAX_TRUSTED_ROOT_BYTES,
      `${where}.trustedRoot`,
      problem,
    );
    if (!bytes) ok = false;
    else {
      try {
        const root = TrustedRoot.fromJSON(JSON.parse(bytes.toString("utf8")));
        if (root.certificateAuthorities.length === 0 && rule.identities.length > 0)
          throw new Error("it lists no certificateAuthorities, so no keyless certificate can chain to it");
        if (root.tlogs.length === 0 && rule.requireTlog)
          throw new Error("it lists no tlogs, so requireTlog can never be met");
        trustedRoot = toTrustMaterial(root);
        contentHashes.push(sha256Hex(bytes));
      } catch (e) {
        problem(
          rule.trustedRoot.line,
          `${where}.trustedRoot: ${rule.trustedRoot.written} is not a usable Sigstore trusted_root.json (${(e as Error).message})`,
        );
        ok = false;
      }
    }
  }
  if (!ok) return undefined;
  const fingerprint = sha256Hex(
    JSON.stringify({
      kind: "cosign",
      keys: keys.map((k) => [k.name, k.fingerprint]),
      identities: rule.identities.map((i) => [
        i.issuer ?? null,
        i.issuerPattern ?? null,
        i.subject ?? null,
        i.subjectPattern ?? null,
      ]),
      requireTlog: rule.requireTlog,
      dockerReferences: rule.dockerReferences,
      contentHashes,
    }),
  );
  return Object.freeze({
    ...rule,
    material: Object.freeze({ keys: Object.freeze(keys), trustedRoot }),
    fingerprint,
  });
}

async function loadNotation(
  policyFile: string,
  rule: NotationRuleSpec,
  problem: Problem,
): Promise<LoadedSignatureRule | undefined> {
  const where = `signatures.rules[${rule.index}].notation`;
  // The files must exist whatever this build can verify: a typo is reported as such.
  const policyStat = await statOf(rule.trustPolicy, `${where}.trustPolicy`, problem);
  const storeStat = await statOf(rule.trustStore, `${where}.trustStore`, problem);
  if (policyStat && !policyStat.isFile())
    problem(rule.trustPolicy.line, `${where}.trustPolicy: ${rule.trustPolicy.written} is not a file`);
  if (storeStat && !storeStat.isDirectory())
    problem(rule.trustStore.line, `${where}.trustStore: ${rule.trustStore.written} is not a directory`);
  if (!policyStat?.isFile() || !storeStat?.isDirectory()) return undefined;
  if (!notationPlug) {
    // Checked by the caller (VERIFIED_KINDS): refused with "not supported in this build".
    return Object.freeze({ ...rule, material: undefined, fingerprint: "" });
  }
  try {
    const { material, fingerprint } = await notationPlug.loadMaterial(
      rule.trustPolicy.path,
      rule.trustStore.path,
    );
    return Object.freeze({ ...rule, material, fingerprint });
  } catch (e) {
    problem(rule.line, `${where}: ${(e as Error).message} (${policyFile})`);
    return undefined;
  }
}

async function readBounded(
  ref: PolicyFileRef,
  max: number,
  what: string,
  problem: Problem,
): Promise<Buffer | undefined> {
  try {
    const bytes = await readFile(ref.path);
    if (bytes.length > max) {
      problem(ref.line, `${what}: ${ref.written} is larger than ${max} bytes`);
      return undefined;
    }
    return bytes;
  } catch (e) {
    problem(ref.line, `${what}: cannot read ${ref.written} (${fsText(e)})`);
    return undefined;
  }
}

async function statOf(ref: PolicyFileRef, what: string, problem: Problem) {
  try {
    return await stat(ref.path);
  } catch (e) {
    problem(ref.line, `${what}: cannot read ${ref.written} (${fsText(e)})`);
    return undefined;
  }
}

/**
 * A PEM public key of a kind cosign signs with: ECDSA P-256 (cosign's default), ed25519, RSA
 * (sigstore/cosign pkg/signature LoadPublicKey). Other curves and small RSA keys are refused.
 */
function publicKeyFrom(
  bytes: Buffer,
  ref: PolicyFileRef,
  what: string,
  problem: Problem,
): CosignKey | undefined {
  let key: KeyObject;
  try {
    const text = bytes.toString("utf8");
    if (!text.includes("-----BEGIN PUBLIC KEY-----") && !text.includes("-----BEGIN RSA PUBLIC KEY-----"))
      throw new Error("no PEM PUBLIC KEY block");
    key = createPublicKey({ key: text, format: "pem" });
  } catch (e) {
    problem(ref.line, `${what}: ${ref.written} is not a PEM public key (${(e as Error).message})`);
    return undefined;
  }
  const details = key.asymmetricKeyDetails ?? {};
  let algorithm: CosignKey["algorithm"];
  if (key.asymmetricKeyType === "ec" && details.namedCurve === "prime256v1") algorithm = "ecdsa-p256";
  else if (key.asymmetricKeyType === "ed25519") algorithm = "ed25519";
  else if (key.asymmetricKeyType === "rsa" && (details.modulusLength ?? 0) >= MIN_RSA_BITS) algorithm = "rsa";
  else {
    const kind =
      key.asymmetricKeyType === "ec"
        ? `ECDSA on ${details.namedCurve}`
        : key.asymmetricKeyType === "rsa"
          ? `RSA ${details.modulusLength} bits`
          : key.asymmetricKeyType;
    problem(
      ref.line,
      `${what}: ${ref.written} is a ${kind} key; cosign rules take ECDSA P-256, ed25519 or RSA (at least ${MIN_RSA_BITS} bits)`,
    );
    return undefined;
  }
  const der = key.export({ type: "spki", format: "der" });
  return Object.freeze({ name: ref.written, key, algorithm, fingerprint: sha256Hex(der) });
}

function sha256Hex(bytes: string | Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function fsText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return "no such file or directory";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "is a directory";
  return code ?? (e instanceof Error ? e.message : String(e));
}
