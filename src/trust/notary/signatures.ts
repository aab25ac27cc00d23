/**
 * Threshold signature checks (TUF spec §5.3-5.6 "verify ... signed by a threshold of keys";
 * Notary tuf/signed/verify.go VerifySignatures): a signature counts only when its key ID is one
 * of the role's key IDs, the key object hashes to that ID, the method fits the key type, and the
 * signature verifies over the canonical JSON of `signed`. Each key counts once, however many
 * signatures it made, so a threshold of 2 cannot be met by one key signing twice.
 */
import { TrustError } from "../errors.js";
import { KeyFormatError, keyId, type LoadedKey, loadPublicKey, verifySignature } from "./keys.js";
import type { AnySigned, Envelope, PublicKeyJson, RoleKeys } from "./models.js";

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
    const json = keys[id];
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
  const allowed = new Set(roleKeys.keyids);
  const valid = new Set<string>();
  const problems: string[] = [];
  for (const s of env.signatures) {
    if (!allowed.has(s.keyid) || valid.has(s.keyid)) continue;
    const r = resolve(s.keyid);
    if ("problem" in r) {
      problems.push(r.problem);
      continue;
    }
    if (verifySignature(r.key, s.method, env.canonicalSigned, s.sig)) valid.add(s.keyid);
  }
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
  return valid;
}
