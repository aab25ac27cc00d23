/**
 * Trust pinning for Notary roots (Notary's trustpinning/: `trust_pinning.certs` pins per GUN), in
 * one rule used everywhere a pin is applied: at bootstrap and at every root rotation (update.ts
 * checkPins) and on every query (source.ts checkRootPin), so a pin added after a root was trusted
 * on first use is judged exactly as a pin present from the start (REVIEW T1).
 *
 * The rule, as Notary's trustpinning/certs.go ValidateRoot applies it: of the root's root-role
 * keys, keep the valid root leaf certificates (leaf, Common Name = GUN; validRootLeafCerts) that
 * are pinned (certsCheck: by certificate key ID; we also accept the canonical key ID of the
 * public key inside, which `notary key list` and `docker trust` show), then demand that a
 * threshold of the root's signatures verifies with those keys (signed.VerifySignatures with the
 * root role's threshold). A pinned key that is merely listed never counts.
 *
 * The signature work is done once per (root envelope, pin set) and kept in a WeakMap on the
 * envelope (replaced when the root changes, so never stale): a warm query does no crypto. What is
 * cached does not depend on the clock; certificate validity at `now` is applied after, from the
 * cached certificates, when the caller asks for it (the update does; a query leaves root
 * certificate expiry to the update, which re-checks the trusted root's certificates).
 */
import type { X509Certificate } from "node:crypto";
import { TrustError } from "../errors.js";
import { canonicalKeyId, rootCertProblem } from "./keys.js";
import type { Envelope, RootSigned } from "./models.js";
import { countSignatures, keysResolver } from "./signatures.js";

/** What one root proves about one pin set, computed once. */
interface PinEvidence {
  /** the distinct pinned root keys whose signatures verified (their certificates, for the time check) */
  signedBy: { id: string; cert: X509Certificate }[];
  threshold: number;
  /** the root's root keys as shown in messages: "<cert key ID> (canonical <key ID>)" */
  offered: string[];
  /** why listed pinned keys could not count */
  problems: string[];
}

const evidenceOf = new WeakMap<Envelope<RootSigned>, Map<string, PinEvidence>>();

function evidence(gun: string, root: Envelope<RootSigned>, pins: readonly string[]): PinEvidence {
  let perPins = evidenceOf.get(root);
  if (!perPins) {
    perPins = new Map();
    evidenceOf.set(root, perPins);
  }
  const pinKey = [...new Set(pins)].sort().join(",");
  let found = perPins.get(pinKey);
  if (!found) {
    found = collect(gun, root, new Set(pins));
    perPins.set(pinKey, found);
  }
  return found;
}

function collect(gun: string, root: Envelope<RootSigned>, pinned: ReadonlySet<string>): PinEvidence {
  const signed = root.signed;
  // validRootLeafCerts without the clock: x509, leaf, CN = GUN (SHA-1 and weak RSA fail to load).
  const resolve = keysResolver(signed.keys, (_id, key) =>
    key.cert ? rootCertProblem(key.cert, gun) : "is not an x509 certificate",
  );
  const offered: string[] = [];
  const pinnedIds: string[] = [];
  for (const id of signed.roles.root.keyids) {
    const r = resolve(id);
    const canonical = "key" in r ? canonicalKeyId(r.key, id) : id;
    offered.push(canonical === id ? id : `${id} (canonical ${canonical})`);
    if (pinned.has(id) || pinned.has(canonical)) pinnedIds.push(id);
  }
  const threshold = signed.roles.root.threshold;
  // Every pinned key that signed, not only `threshold` of them: the time check below may drop some.
  const { valid, problems } = countSignatures(
    gun,
    "root",
    root,
    { keyids: pinnedIds, threshold },
    resolve,
    Number.POSITIVE_INFINITY,
  );
  const signedBy = [...valid].flatMap(([id, key]) => (key.cert ? [{ id, cert: key.cert }] : []));
  return { signedBy, threshold, offered, problems };
}

/**
 * Throws ROOT_PIN_MISMATCH unless a threshold of `root`'s root-role signatures verifies with
 * pinned keys. With `now`, a pinned certificate counts only while valid at `now` (NotBefore with
 * Notary's one day of leeway), as validRootLeafCerts(checkExpiry=true) demands at each root update.
 */
export function requirePinnedRoot(
  gun: string,
  root: Envelope<RootSigned>,
  pins: readonly string[],
  now?: Date,
): void {
  const found = evidence(gun, root, pins);
  const counted = now
    ? found.signedBy.filter((k) => rootCertProblem(k.cert, gun, now) === undefined)
    : found.signedBy;
  if (counted.length >= found.threshold) return;
  const signedBy = counted.length > 0 ? `; signed by ${counted.map((k) => k.id).join(", ")} only` : "";
  const why = found.problems.length > 0 ? ` (${found.problems.join("; ")})` : "";
  throw new TrustError(
    "ROOT_PIN_MISMATCH",
    gun,
    "root",
    `${gun}: root: the root keys are ${found.offered.join(", ")}, but the root must be signed by ${found.threshold} pinned root key(s) of ${pins.join(", ")}${signedBy}${why}`,
  );
}
