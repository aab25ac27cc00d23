/**
 * Notary public keys and signatures (tuf/data/keys.go, tuf/signed/verifiers.go in Notary), with
 * node:crypto: measured 11-31x faster than the pure-JS @noble code here, and it reads DER/x509.
 *
 * - `ecdsa`: keyval.public = base64 DER SubjectPublicKeyInfo (P-256); `ecdsa-x509`: base64 of a PEM cert.
 * - `ed25519`: base64 of the raw 32-byte key. `rsa`: base64 DER SPKI; `rsa-x509`: base64 PEM cert.
 * - Signature methods: `ecdsa` = raw r||s over SHA-256 (IEEE P1363, not DER), `eddsa`,
 *   `rsapss` (SHA-256, salt length 32), `rsapkcs1v15` (SHA-256).
 * - Key ID = hex SHA-256 of the canonical JSON of {"keytype","keyval":{"private":null,"public"}}.
 * - What counts, checked when a key is loaded, before any signature is verified: ECDSA P-256 only;
 *   RSA of 2048 to 4096 bits with exponent 65537; certificates signed with SHA-2 (not SHA-1/MD5).
 * - A key's identity is its public key (DER SPKI), not its ID: thresholds count identities.
 */
import { constants, createHash, createPublicKey, type KeyObject, verify, X509Certificate } from "node:crypto";
import { canonicalJson } from "./canonical.js";
import type { PublicKeyJson } from "./models.js";

export class KeyFormatError extends Error {}

/** TUF key ID: SHA-256 of the key object's canonical JSON. */
export function keyId(key: PublicKeyJson): string {
  const canonical = canonicalJson({
    keytype: key.keytype,
    keyval: { private: null, public: key.keyval.public },
  });
  return createHash("sha256").update(canonical).digest("hex");
}

// RFC 8410: SubjectPublicKeyInfo for Ed25519 = this prefix + the raw 32-byte key.
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export interface LoadedKey {
  keytype: string;
  key: KeyObject;
  /**
   * The public key itself (base64 DER SubjectPublicKeyInfo), whatever the envelope: the same key
   * as `ecdsa` and as `ecdsa-x509`, or its base64 with and without padding, has one identity,
   * so a threshold counts keys, not key IDs (REVIEW T7).
   */
  identity: string;
  /** the certificate, for ecdsa-x509 / rsa-x509 */
  cert?: X509Certificate;
}

function decodeBase64(s: string): Buffer {
  // Buffer.from ignores junk; a strict round trip makes malformed keys fail loudly.
  const b = Buffer.from(s, "base64");
  if (b.toString("base64").replace(/=+$/, "") !== s.replace(/=+$/, ""))
    throw new KeyFormatError("bad base64");
  return b;
}

function certFromKeyval(pub: string): X509Certificate {
  const cert = new X509Certificate(decodeBase64(pub));
  const problem = certSignatureProblem(cert);
  if (problem) throw new KeyFormatError(problem);
  return cert;
}

function loadedKey(keytype: string, key: KeyObject, cert?: X509Certificate): LoadedKey {
  const identity = key.export({ format: "der", type: "spki" }).toString("base64");
  return cert ? { keytype, key, identity, cert } : { keytype, key, identity };
}

/** Parses a Notary public key. Throws KeyFormatError for unknown types or malformed material. */
export function loadPublicKey(key: PublicKeyJson): LoadedKey {
  try {
    switch (key.keytype) {
      case "ecdsa":
      case "rsa": {
        const k = createPublicKey({ key: decodeBase64(key.keyval.public), format: "der", type: "spki" });
        return loadedKey(key.keytype, checkKind(key.keytype, k));
      }
      case "ecdsa-x509":
      case "rsa-x509": {
        const cert = certFromKeyval(key.keyval.public);
        return loadedKey(key.keytype, checkKind(key.keytype, cert.publicKey), cert);
      }
      case "ed25519": {
        const raw = decodeBase64(key.keyval.public);
        if (raw.length !== 32) throw new KeyFormatError("ed25519 public key is not 32 bytes");
        const k = createPublicKey({
          key: Buffer.concat([ED25519_SPKI_PREFIX, raw]),
          format: "der",
          type: "spki",
        });
        return loadedKey(key.keytype, k);
      }
      default:
        throw new KeyFormatError(`unsupported key type '${key.keytype}'`);
    }
  } catch (err) {
    if (err instanceof KeyFormatError) throw err;
    throw new KeyFormatError(`malformed ${key.keytype} key: ${(err as Error).message}`);
  }
}

/**
 * RSA key sizes that count. The floor is Notary's: tuf/signed/verifiers.go refuses RSA keys under
 * `minRSAKeySizeBit` = 2048 for every signature, and tuf/utils/x509.go ValidateCertificate refuses
 * root certificates under `notary.MinRSABitSize` = 2048 (REVIEW T12). The ceiling is ours: no Notary
 * or Docker tool makes keys above 4096 bits, and a larger modulus only makes each verification
 * dearer for whoever serves the metadata (REVIEW T8).
 */
export const RSA_MIN_BITS = 2048;
export const RSA_MAX_BITS = 4096;
/**
 * The one RSA public exponent that counts (F4): what Go's rsa.GenerateKey always uses and openssl
 * uses by default; Go's x509 parser (under Notary) refuses exponents that do not fit an int.
 * OpenSSL, under node:crypto, verifies with any exponent up to 3072-bit moduli: a 3072-bit exponent
 * costs ~9 ms per signature, which froze the proxy for 7.3 s per pull with 832 junk signatures on
 * a first-contact root (REVIEW T8). So the exponent is checked before any crypto.
 */
const RSA_EXPONENT = 65537n;

function checkKind(keytype: string, k: KeyObject): KeyObject {
  if (keytype.startsWith("ecdsa")) {
    // Notary's ECDSA keys are P-256 only (tuf/data/keys.go: ECDSAPublicKey, 64-byte signatures).
    if (k.asymmetricKeyType !== "ec" || k.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
      throw new KeyFormatError(`${keytype} key is not ECDSA P-256`);
    }
  } else if (k.asymmetricKeyType !== "rsa") {
    throw new KeyFormatError(`${keytype} key is not RSA`);
  } else {
    const bits = k.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < RSA_MIN_BITS)
      throw new KeyFormatError(`${keytype} key has ${bits} bits, under ${RSA_MIN_BITS}`);
    if (bits > RSA_MAX_BITS)
      throw new KeyFormatError(`${keytype} key has ${bits} bits, over ${RSA_MAX_BITS}`);
    if (k.asymmetricKeyDetails?.publicExponent !== RSA_EXPONENT) {
      throw new KeyFormatError(`${keytype} key has a public exponent other than 65537`);
    }
  }
  return k;
}

/**
 * Signature algorithms a certificate may be signed with (DER of the AlgorithmIdentifier OID).
 * Notary refuses SHA-1-signed root certificates (tuf/utils/x509.go ValidateCertificate: SHA1WithRSA,
 * DSAWithSHA1, ECDSAWithSHA1); MD5 and MD2 are weaker still and Go cannot even verify them. Notary
 * makes its certificates with Go's x509.CreateCertificate, which signs P-256 and RSA keys with
 * SHA-256, so an allow-list of the SHA-2 PKCS#1 v1.5 and ECDSA algorithms (and Ed25519) keeps every
 * certificate Notary or Docker makes and refuses SHA-1, MD5 and anything unknown (REVIEW T12).
 */
const CERT_SIGNATURE_ALGORITHMS: ReadonlyMap<string, string> = new Map([
  ["2a864886f70d01010b", "sha256WithRSAEncryption"],
  ["2a864886f70d01010c", "sha384WithRSAEncryption"],
  ["2a864886f70d01010d", "sha512WithRSAEncryption"],
  ["2a8648ce3d040302", "ecdsa-with-SHA256"],
  ["2a8648ce3d040303", "ecdsa-with-SHA384"],
  ["2a8648ce3d040304", "ecdsa-with-SHA512"],
  ["2b6570", "Ed25519"],
]);
const WEAK_CERT_SIGNATURE_ALGORITHMS: ReadonlyMap<string, string> = new Map([
  ["2a864886f70d010105", "sha1WithRSAEncryption"],
  ["2a864886f70d010104", "md5WithRSAEncryption"],
  ["2a864886f70d010102", "md2WithRSAEncryption"],
  ["2a8648ce3d0401", "ecdsa-with-SHA1"],
  ["2a8648ce380403", "dsaWithSHA1"],
]);

/** One DER element at `at`: where its contents start and end. Throws on anything malformed. */
function derElement(der: Buffer, at: number, tag: number): { start: number; end: number } {
  if (der[at] !== tag) throw new KeyFormatError("certificate is not DER");
  let len = der[at + 1] ?? 0;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new KeyFormatError("certificate is not DER");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] ?? 0);
    start += n;
  }
  if (start + len > der.length) throw new KeyFormatError("certificate is not DER");
  return { start, end: start + len };
}

/**
 * Why a certificate's own signature algorithm disqualifies it, or undefined. Node 20's
 * X509Certificate does not expose the algorithm, so it is read from the DER: Certificate ::=
 * SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, ... }, signature } (RFC 5280 §4.1).
 */
function certSignatureProblem(cert: X509Certificate): string | undefined {
  const der = cert.raw;
  const outer = derElement(der, 0, 0x30);
  const tbs = derElement(der, outer.start, 0x30);
  const algorithm = derElement(der, tbs.end, 0x30);
  const oid = derElement(der, algorithm.start, 0x06);
  const hex = der.subarray(oid.start, oid.end).toString("hex");
  if (CERT_SIGNATURE_ALGORITHMS.has(hex)) return undefined;
  const weak = WEAK_CERT_SIGNATURE_ALGORITHMS.get(hex);
  return weak
    ? `certificate is signed with ${weak} (SHA-1 and MD5 certificates do not count)`
    : "certificate is signed with an unsupported algorithm";
}

/**
 * The "canonical" key ID of an x509 key: the ID of the bare public key inside the certificate,
 * as an `ecdsa`/`rsa` key (what `notary key list` and `docker trust` show; utils.CanonicalKeyID).
 */
export function canonicalKeyId(key: LoadedKey, declaredId: string): string {
  if (!key.cert) return declaredId;
  const keytype = key.keytype === "ecdsa-x509" ? "ecdsa" : "rsa";
  return keyId({ keytype, keyval: { private: null, public: key.identity } });
}

/** Which signature methods a key type may be used with (Notary: verifiers are keyed by method). */
const METHODS_FOR_KEYTYPE: Record<string, readonly string[]> = {
  ecdsa: ["ecdsa"],
  "ecdsa-x509": ["ecdsa"],
  ed25519: ["eddsa"],
  rsa: ["rsapss", "rsapkcs1v15"],
  "rsa-x509": ["rsapss", "rsapkcs1v15"],
};

/**
 * The signature bytes when `sigB64` could be a `method` signature by `key` at all (method fits
 * the key type, base64 is strict, length is the one the key makes), else undefined. No crypto:
 * junk is dropped here before anything is verified (REVIEW T8).
 */
export function signatureCandidate(key: LoadedKey, method: string, sigB64: string): Buffer | undefined {
  if (!METHODS_FOR_KEYTYPE[key.keytype]?.includes(method)) return undefined;
  let sig: Buffer;
  try {
    sig = decodeBase64(sigB64);
  } catch {
    return undefined;
  }
  // Notary signs ECDSA P-256 as raw r||s (32+32 bytes, IEEE P1363, not DER); Ed25519 signatures
  // are 64 bytes; an RSA signature is as long as the modulus (verifiers.go checks the same).
  const length =
    key.key.asymmetricKeyType === "rsa"
      ? Math.ceil((key.key.asymmetricKeyDetails?.modulusLength ?? 0) / 8)
      : 64;
  return sig.length === length ? sig : undefined;
}

/** True when `sig` (base64) is a valid `method` signature by `key` over `data`. Never throws. */
export function verifySignature(loaded: LoadedKey, method: string, data: Buffer, sigB64: string): boolean {
  const sig = signatureCandidate(loaded, method, sigB64);
  if (!sig) return false;
  try {
    switch (method) {
      case "ecdsa":
        return verify("sha256", data, { key: loaded.key, dsaEncoding: "ieee-p1363" }, sig);
      case "eddsa":
        return verify(null, data, loaded.key, sig);
      case "rsapss":
        return verify(
          "sha256",
          data,
          { key: loaded.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
          sig,
        );
      case "rsapkcs1v15":
        return verify("sha256", data, { key: loaded.key, padding: constants.RSA_PKCS1_PADDING }, sig);
      default:
        return false;
    }
  } catch {
    return false;
  }
}

/**
 * How far ahead of `now` a root certificate's NotBefore may be: one day, as Notary's
 * tuf/utils/x509.go ValidateCertificate allows ("Give one day leeway on creation 'before' time":
 * refused only when now + 1 day is before NotBefore), so a signer whose clock runs ahead is not
 * refused (REVIEW T11). NotAfter has no leeway there, nor here.
 */
export const CERT_NOT_BEFORE_LEEWAY_MS = 24 * 60 * 60 * 1000;

/**
 * Why a root certificate cannot count, or undefined when it can. Follows Notary's
 * trustpinning/certs.go validRootLeafCerts + utils.ValidateCertificate: the cert must be a leaf
 * (not a CA), its Common Name must be the GUN (so one repository's trust data cannot be replayed
 * for another), and, when `now` is given, `now` must be inside its validity period (NotBefore
 * with one day of leeway). SHA-1/MD5 signatures and RSA sizes are refused when the key is loaded.
 */
export function rootCertProblem(cert: X509Certificate, gun: string, now?: Date): string | undefined {
  if (cert.ca) return "is a CA certificate, not a leaf";
  const cns = cert.subject
    .split("\n")
    .filter((line) => line.startsWith("CN="))
    .map((line) => line.slice(3));
  if (cns.length !== 1 || cns[0] !== gun) return `has Common Name '${cns.join(",")}', not the GUN '${gun}'`;
  if (!now) return undefined;
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (!(notBefore <= notAfter)) return "has a validity window that ends before it starts";
  if (!(now.getTime() + CERT_NOT_BEFORE_LEEWAY_MS >= notBefore))
    return `is not valid before ${cert.validFrom}`;
  if (!(now.getTime() <= notAfter)) return `expired on ${cert.validTo}`;
  return undefined;
}
