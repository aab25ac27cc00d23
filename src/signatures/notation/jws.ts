/**
 * The Notary Project JWS envelope (specs/signature-envelope-jws.md): flattened JWS JSON, the
 * protected header holding the signed attributes, `x5c` the chain (standard base64 DER), the
 * signature over ASCII(BASE64URL(protected) '.' BASE64URL(payload)). Parsed here as
 * notation-core-go does (signature/jws/envelope.go Verify, jws.go parseProtectedHeaders); the
 * checks common to both envelope formats are in envelope.ts.
 */
import { createHash, X509Certificate } from "node:crypto";
import {
  type EnvelopeContent,
  HEADER_AUTHENTIC_TIME,
  HEADER_EXPIRY,
  HEADER_SCHEME,
  HEADER_SIGNING_TIME,
  HEADER_TIMESTAMP_SIGNATURE,
  IntegrityError,
  MAX_CHAIN_LENGTH,
  MAX_ENVELOPE_BYTES,
  type TimestampSignature,
  verifyEnvelopeParts,
} from "./envelope.js";
import { MAX_TIMESTAMP_TOKEN_BYTES } from "./timestamp.js";
import type { NotationAlgorithm } from "./x509.js";

export { type EnvelopeContent, IntegrityError } from "./envelope.js";

export const MEDIA_TYPE_JWS = "application/jose+json";

const JWS_ALGORITHMS: readonly NotationAlgorithm[] = ["PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];

/** RFC 7515 §2 base64url without padding, strictly (junk and padding are refused). */
function base64url(s: unknown, what: string): Buffer {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]*$/.test(s))
    throw new IntegrityError(`${what} is not base64url`);
  const b = Buffer.from(s, "base64url");
  if (b.toString("base64url") !== s) throw new IntegrityError(`${what} is not canonical base64url`);
  return b;
}

/** x5c entries are standard base64 (RFC 7515 §4.1.6), as Go's []byte JSON encoding writes them. */
function base64std(s: unknown, what: string): Buffer {
  if (typeof s !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s))
    throw new IntegrityError(`${what} is not base64`);
  const b = Buffer.from(s, "base64");
  if (b.toString("base64").replace(/=+$/, "") !== s.replace(/=+$/, ""))
    throw new IntegrityError(`${what} is not canonical base64`);
  return b;
}

/** RFC 3339 date-time (what Go's time.Time JSON holds); undefined when the header is absent. */
function rfc3339(header: Record<string, unknown>, name: string): Date | undefined {
  if (!(name in header)) return undefined;
  const v = header[name];
  if (
    typeof v !== "string" ||
    !/^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(v) ||
    Number.isNaN(Date.parse(v))
  )
    throw new IntegrityError(`${name} is not an RFC 3339 time`);
  return new Date(Date.parse(v));
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses `bytes` as a flattened JWS JSON envelope and verifies it (envelope.ts
 * verifyEnvelopeParts). Throws IntegrityError saying what is wrong.
 */
export function verifyJwsEnvelope(bytes: Uint8Array): EnvelopeContent {
  if (bytes.length > MAX_ENVELOPE_BYTES)
    throw new IntegrityError(`the envelope is ${bytes.length} bytes, more than ${MAX_ENVELOPE_BYTES}`);
  let env: unknown;
  try {
    env = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new IntegrityError("the JWS envelope is not JSON");
  }
  if (!isObj(env)) throw new IntegrityError("the JWS envelope is not a JSON object");
  // Spec "Signature Envelope": payload, protected, header, signature; "no additional top level
  // fields are supported" (flattened JWS JSON only, one signature).
  for (const key of Object.keys(env))
    if (!["payload", "protected", "header", "signature"].includes(key))
      throw new IntegrityError(`the JWS envelope has an unsupported top-level field "${key}"`);
  const protectedB64 = env.protected;
  const payloadB64 = env.payload;
  const protectedBytes = base64url(protectedB64, "the protected header");
  const payload = base64url(payloadB64, "the payload");
  const signature = base64url(env.signature, "the signature");
  if (signature.length === 0) throw new IntegrityError("the signature is empty");
  if (!isObj(env.header)) throw new IntegrityError("the unprotected header is missing");
  const x5c = env.header.x5c;
  if (!Array.isArray(x5c) || x5c.length === 0)
    throw new IntegrityError("the unprotected header has no x5c certificate chain");
  if (x5c.length > MAX_CHAIN_LENGTH)
    throw new IntegrityError(`the x5c chain has ${x5c.length} certificates, more than ${MAX_CHAIN_LENGTH}`);
  const chain = x5c.map((entry, i) => {
    const der = base64std(entry, `x5c[${i}]`);
    try {
      return new X509Certificate(der);
    } catch {
      throw new IntegrityError(`x5c[${i}] is not a certificate`);
    }
  });

  let header: unknown;
  try {
    header = JSON.parse(protectedBytes.toString("utf8"));
  } catch {
    throw new IntegrityError("the protected header is not JSON");
  }
  if (!isObj(header)) throw new IntegrityError("the protected header is not a JSON object");
  const alg = header.alg;
  return verifyEnvelopeParts({
    attributes: {
      alg: JWS_ALGORITHMS.find((a) => a === alg),
      algWritten: JSON.stringify(alg),
      contentType: header.cty,
      signingScheme: header[HEADER_SCHEME],
      signingTime: rfc3339(header, HEADER_SIGNING_TIME),
      authenticSigningTime: rfc3339(header, HEADER_AUTHENTIC_TIME),
      expiry: rfc3339(header, HEADER_EXPIRY),
      critical: header.crit,
    },
    chain,
    signedBytes: Buffer.from(`${protectedB64 as string}.${payloadB64 as string}`, "ascii"),
    signature,
    payload,
    timestampSignature: timestampSignature(env.header),
  });
}

/**
 * `io.cncf.notary.timestampSignature`: standard base64 of the TimeStampToken (the spec's
 * "<Base64(TimeStampToken)>", Go's []byte JSON encoding, as notation-core-go writes it).
 */
function timestampSignature(header: Record<string, unknown>): TimestampSignature | undefined {
  if (!(HEADER_TIMESTAMP_SIGNATURE in header)) return undefined;
  const v = header[HEADER_TIMESTAMP_SIGNATURE];
  if (typeof v !== "string") return { problem: `${HEADER_TIMESTAMP_SIGNATURE} is not a base64 string` };
  // base64 of the cap, plus padding: refused before decoding
  if (v.length > Math.ceil(MAX_TIMESTAMP_TOKEN_BYTES / 3) * 4)
    return {
      problem: `${HEADER_TIMESTAMP_SIGNATURE} is longer than a ${MAX_TIMESTAMP_TOKEN_BYTES}-byte token`,
    };
  try {
    return { token: base64std(v, HEADER_TIMESTAMP_SIGNATURE) };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

/** `sha256:<hex>` of an envelope, to name it in reasons. */
export function envelopeDigest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
