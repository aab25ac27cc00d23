/**
 * Threshold signature checks (TUF spec §5.3-5.6 "verify ... signed by a threshold of keys";
 * Notary tuf/signed/verify.go VerifySignatures): a signature counts only when its key ID is one
 * of the role's key IDs, the key object hashes to that ID, the method fits the key type, and the
 * signature verifies over the canonical JSON of `signed`.
 *
 * A threshold counts distinct keys, not key IDs nor signatures (REVIEW T7): a key is its public
 * key material (LoadedKey.identity), so one key listed under two IDs (`ecdsa` and `ecdsa-x509`,
 * or its base64 with and without padding) counts once, and one key signing twice counts once.
 *
 * The work is bounded before any crypto (REVIEW T8): an envelope with more than MAX_SIGNATURES
 * signatures is refused unread, and at most one signature is verified per distinct listed key,
 * so a file costs at most min(listed keys, MAX_SIGNATURES) verifications however it is padded.
 */
import { TrustError } from "../errors.js";
import {
  KeyFormatError,
  keyId,
  type LoadedKey,
  loadPublicKey,
  signatureCandidate,
  verifySignature,
} from "./keys.js";
import type { AnySigned, Envelope, PublicKeyJson, RoleKeys } from "./models.js";

/**
 * Most signatures one metadata file may carry. Notary writes one signature per signing key and
 * keeps only those of keys still valid for the role (tuf/signed/sign.go SignWithPrivateKeys), so
 * a real file carries at most its role's keys plus, on a root rotation, the previous root keys:
 * 1 to 4 for Notary's roles, a few dozen for a Docker signer delegation. 256 is far above that,
 * and 256 verifications at the dearest key allowed (RSA 4096) cost ~25 ms on one core, against
 * 290 ms for the 2,681 junk signatures the review served on a new root version.
 */
export const MAX_SIGNATURES = 256;

/** Resolves one key ID of a role to a usable key, or says why it cannot count. */
export type KeyResolver = (id: string) => { key: LoadedKey } | { problem: string };

/**
 * A resolver over a `keys` map (root.keys or delegations.keys). The declared ID must equal the
 * key's computed ID (TUF §4.2: KEYID is the hash of the key), otherwise a key could be listed
 * under another key's name. `accept` adds checks, such as the root certificate rules.
 */
export function keysResolver(
  keys: Record<string, PublicKeyJson>,
  accept?: (id: string, key: LoadedKey) => string | undefined,
): KeyResolver {
  const cache = new Map<string, ReturnType<KeyResolver>>();
  return (id) => {
    let hit = cache.get(id);
    if (hit) return hit;
    const json = Object.hasOwn(keys, id) ? keys[id] : undefined;
    if (!json) hit = { problem: `key ${id} is not listed` };
    else if (keyId(json) !== id) hit = { problem: `key listed as ${id} hashes to ${keyId(json)}` };
    else {
      try {
        const key = loadPublicKey(json);
        const problem = accept?.(id, key);
        hit = problem ? { problem: `key ${id} ${problem}` } : { key };
      } catch (err) {
        hit = { problem: `key ${id}: ${err instanceof KeyFormatError ? err.message : "unreadable"}` };
      }
    }
    cache.set(id, hit);
    return hit;
  };
}

/** The distinct keys whose signature over `env` verified, by key ID, and why other keys could not count. */
export interface SignatureCount {
  /** key ID (the first one a key was met under) -> the key, one entry per distinct key */
  valid: Map<string, LoadedKey>;
  problems: string[];
}

/**
 * Counts the distinct keys of `roleKeys` that validly signed `env`, stopping once `enough` are
 * found. At most one verification per distinct key: for each key, the first signature that
 * could be its at all (method, length; see signatureCandidate) is the one verified, as python-tuf
 * and tuf-js take one signature per key ID. A key met again under another ID, or in a later
 * signature, is not verified again.
 */
export function countSignatures(
  gun: string,
  role: string,
  env: Envelope<AnySigned>,
  roleKeys: RoleKeys,
  resolve: KeyResolver,
  enough: number = roleKeys.threshold,
): SignatureCount {
  if (env.signatures.length > MAX_SIGNATURES) {
    throw new TrustError(
      "SIGNATURE_INVALID",
      gun,
      role,
      `${gun}: ${role}: ${env.signatures.length} signatures, more than the ${MAX_SIGNATURES} any Notary file carries`,
    );
  }
  const allowed = new Set(roleKeys.keyids);
  const valid = new Map<string, LoadedKey>();
  const tried = new Set<string>(); // key IDs and key identities already verified once
  const problems: string[] = [];
  for (const s of env.signatures) {
    if (valid.size >= enough) break;
    if (!allowed.has(s.keyid) || tried.has(s.keyid)) continue;
    const r = resolve(s.keyid);
    if ("problem" in r) {
      tried.add(s.keyid);
      problems.push(r.problem);
      continue;
    }
    if (tried.has(r.key.identity)) continue;
    if (!signatureCandidate(r.key, s.method, s.sig)) continue; // junk: no crypto, the key may still sign later
    tried.add(s.keyid).add(r.key.identity);
    if (verifySignature(r.key, s.method, env.canonicalSigned, s.sig)) valid.set(s.keyid, r.key);
  }
  return { valid, problems };
}

/**
 * Throws unless `threshold` distinct keys of `role` validly signed `env`. When keys were
 * disqualified (for example a root certificate that is a CA or names another GUN) and that is
 * why the threshold is missed, the error says so, with `problemCode`.
 */
export function requireThreshold(
  gun: string,
  role: string,
  env: Envelope<AnySigned>,
  roleKeys: RoleKeys,
  resolve: KeyResolver,
  context: string,
  problemCode: "SIGNATURE_INVALID" | "ROOT_CERT_INVALID" = "SIGNATURE_INVALID",
): Set<string> {
  const { valid, problems } = countSignatures(gun, role, env, roleKeys, resolve);
  if (valid.size < roleKeys.threshold) {
    const code = problems.length > 0 ? problemCode : "SIGNATURE_INVALID";
    const why = problems.length > 0 ? ` (${problems.join("; ")})` : "";
    throw new TrustError(
      code,
      gun,
      role,
      `${gun}: ${role} ${context}: ${valid.size} valid signature(s) from distinct keys, threshold ${roleKeys.threshold}${why}`,
    );
  }
  return new Set(valid.keys());
}
