/**
 * Notary public keys and signatures (tuf/data/keys.go, tuf/signed/verifiers.go in Notary), with
 * node:crypto: measured 11-31x faster than the pure-JS @noble code here, and it reads DER/x509.
 *
 * - `ecdsa`: keyval.public = base64 DER SubjectPublicKeyInfo (P-256); `ecdsa-x509`: base64 of a PEM cert.
 * - `ed25519`: base64 of the raw 32-byte key. `rsa`: base64 DER SPKI; `rsa-x509`: base64 PEM cert.
 * - Signature methods: `ecdsa` = raw r||s over SHA-256 (IEEE P1363, not DER), `eddsa`,
 *   `rsapss` (SHA-256, salt length 32), `rsapkcs1v15` (SHA-256).
 * - Key ID = hex SHA-256 of the canonical JSON of {"keytype","keyval":{"private":null,"public"}}.
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
  return new X509Certificate(decodeBase64(pub));
}

/** Parses a Notary public key. Throws KeyFormatError for unknown types or malformed material. */
export function loadPublicKey(key: PublicKeyJson): LoadedKey {
  try {
    switch (key.keytype) {
      case "ecdsa":
      case "rsa": {
        const k = createPublicKey({ key: decodeBase64(key.keyval.public), format: "der", type: "spki" });
        return { keytype: key.keytype, key: checkKind(key.keytype, k) };
      }
      case "ecdsa-x509":
      case "rsa-x509": {
        const cert = certFromKeyval(key.keyval.public);
        return { keytype: key.keytype, key: checkKind(key.keytype, cert.publicKey), cert };
      }
      case "ed25519": {
        const raw = decodeBase64(key.keyval.public);
        if (raw.length !== 32) throw new KeyFormatError("ed25519 public key is not 32 bytes");
        const k = createPublicKey({
          key: Buffer.concat([ED25519_SPKI_PREFIX, raw]),
          format: "der",
          type: "spki",
        });
        return { keytype: key.keytype, key: k };
      }
      default:
        throw new KeyFormatError(`unsupported key type '${key.keytype}'`);
    }
  } catch (err) {
    if (err instanceof KeyFormatError) throw err;
    throw new KeyFormatError(`malformed ${key.keytype} key: ${(err as Error).message}`);
  }
}

function checkKind(keytype: string, k: KeyObject): KeyObject {
  if (keytype.startsWith("ecdsa")) {
    // Notary's ECDSA keys are P-256 only (tuf/data/keys.go: ECDSAPublicKey, 64-byte signatures).
    if (k.asymmetricKeyType !== "ec" || k.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
      throw new KeyFormatError(`${keytype} key is not ECDSA P-256`);
    }
  } else if (k.asymmetricKeyType !== "rsa") {
    throw new KeyFormatError(`${keytype} key is not RSA`);
  }
  return k;
}

/**
 * The "canonical" key ID of an x509 key: the ID of the bare public key inside the certificate,
 * as an `ecdsa`/`rsa` key (what `notary key list` and `docker trust` show; utils.CanonicalKeyID).
 */
export function canonicalKeyId(loaded: LoadedKey, declaredId: string): string {
  if (!loaded.cert) return declaredId;
  const der = loaded.key.export({ format: "der", type: "spki" });
  const keytype = loaded.keytype === "ecdsa-x509" ? "ecdsa" : "rsa";
  return keyId({ keytype, keyval: { private: null, public: der.toString("base64") } });
}

/** Which signature methods a key type may be used with (Notary: verifiers are keyed by method). */
const METHODS_FOR_KEYTYPE: Record<string, readonly string[]> = {
  ecdsa: ["ecdsa"],
  "ecdsa-x509": ["ecdsa"],
  ed25519: ["eddsa"],
  rsa: ["rsapss", "rsapkcs1v15"],
  "rsa-x509": ["rsapss", "rsapkcs1v15"],
};

/** True when `sig` (base64) is a valid `method` signature by `key` over `data`. Never throws. */
export function verifySignature(loaded: LoadedKey, method: string, data: Buffer, sigB64: string): boolean {
  if (!METHODS_FOR_KEYTYPE[loaded.keytype]?.includes(method)) return false;
  let sig: Buffer;
  try {
    sig = decodeBase64(sigB64);
  } catch {
    return false;
  }
  try {
    switch (method) {
      case "ecdsa":
        // Notary signs ECDSA as raw r||s (32+32 bytes for P-256), i.e. IEEE P1363, not ASN.1 DER.
        if (sig.length !== 64) return false;
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
 * Why a root certificate cannot count, or undefined when it can. Follows Notary's
 * trustpinning/certs.go validRootLeafCerts + utils.ValidateCertificate: the cert must be a leaf
 * (not a CA), its Common Name must be the GUN (so one repository's trust data cannot be replayed
 * for another), and `now` must be inside its validity period.
 */
export function rootCertProblem(cert: X509Certificate, gun: string, now: Date): string | undefined {
  if (cert.ca) return "is a CA certificate, not a leaf";
  const cns = cert.subject
    .split("\n")
    .filter((line) => line.startsWith("CN="))
    .map((line) => line.slice(3));
  if (cns.length !== 1 || cns[0] !== gun) return `has Common Name '${cns.join(",")}', not the GUN '${gun}'`;
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (!(now.getTime() >= notBefore)) return `is not valid before ${cert.validFrom}`;
  if (!(now.getTime() <= notAfter)) return `expired on ${cert.validTo}`;
  return undefined;
}
