/**
 * Signing keys of a TUF 1.0 repository written by `trustgate tuf` (docs/tuf-for-oci.md section 1).
 * Private keys are PKCS#8 PEM encrypted with AES-256-CBC under a passphrase read from an
 * environment variable (never from the command line, where `ps` would show it). Public keys follow
 * securesystemslib's formats, which every TUF 1.0 client reads: ed25519 as hex, ECDSA P-256 as PEM.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
} from "node:crypto";
import { canonicalize } from "@tufjs/canonical-json";
import { Key, Signature } from "@tufjs/models";
import { TrustgateError } from "../errors.js";

export type KeyType = "ed25519" | "ecdsa";

/** A key file could not be read, decrypted or used: exit 1 with this message. */
export class KeyError extends TrustgateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("KEY_INVALID", message, options);
  }
}

/** The TUF public key object and its key ID (sha256 of its canonical JSON, as securesystemslib). */
export function tufPublicKey(publicKey: KeyObject): Key {
  const type = publicKey.asymmetricKeyType;
  let fields: { keytype: string; scheme: string; keyval: { public: string } };
  if (type === "ed25519") {
    // the raw 32-byte key is the tail of its SPKI DER encoding
    const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("hex");
    fields = { keytype: "ed25519", scheme: "ed25519", keyval: { public: raw } };
  } else if (type === "ec" && publicKey.asymmetricKeyDetails?.namedCurve === "prime256v1") {
    const pem = publicKey.export({ format: "pem", type: "spki" }).toString();
    fields = { keytype: "ecdsa", scheme: "ecdsa-sha2-nistp256", keyval: { public: pem } };
  } else {
    throw new KeyError(`unsupported key type ${type}: use ed25519 or ECDSA P-256`);
  }
  const keyID = createHash("sha256").update(canonicalize(fields)).digest("hex");
  return Key.fromJSON(keyID, fields);
}

export class SigningKey {
  readonly key: Key;
  constructor(private readonly privateKey: KeyObject) {
    this.key = tufPublicKey(createPublicKey(privateKey));
  }

  get keyID(): string {
    return this.key.keyID;
  }

  /** The signer @tufjs/models' Metadata.sign calls with the canonical bytes of `signed`. */
  readonly signer = (data: Buffer): Signature => {
    // ed25519 takes no digest; ECDSA P-256 signs SHA-256, DER-encoded (ecdsa-sha2-nistp256)
    const algorithm = this.key.keyType === "ed25519" ? null : "sha256";
    return new Signature({ keyID: this.keyID, sig: sign(algorithm, data, this.privateKey).toString("hex") });
  };
}

export function generateKeyPems(
  type: KeyType,
  passphrase: string,
): { privatePem: string; publicPem: string } {
  const pair =
    type === "ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    privatePem: pair.privateKey
      .export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase })
      .toString(),
    publicPem: pair.publicKey.export({ format: "pem", type: "spki" }).toString(),
  };
}

export function loadSigningKey(pem: string, passphrase: string | undefined, file: string): SigningKey {
  try {
    return new SigningKey(createPrivateKey({ key: pem, format: "pem", passphrase: passphrase ?? "" }));
  } catch (err) {
    if (err instanceof KeyError) throw err;
    throw new KeyError(`cannot load private key ${file}: wrong passphrase or not a PEM private key`, {
      cause: err,
    });
  }
}

/** A public key file (PEM SPKI) or the public half of a private one is not accepted: only public. */
export function loadPublicKey(pem: string, file: string): Key {
  if (pem.includes("PRIVATE KEY")) throw new KeyError(`${file} is a private key: give the public key file`);
  try {
    return tufPublicKey(createPublicKey({ key: pem, format: "pem" }));
  } catch (err) {
    if (err instanceof KeyError) throw err;
    throw new KeyError(`cannot load public key ${file}: not a PEM public key`, { cause: err });
  }
}
