/**
 * The Notary Project JWS envelope (specs/signature-envelope-jws.md), parsed and its signature
 * checked as notation-core-go does (signature/jws/envelope.go Verify, jws.go
 * validateProtectedHeaders/validateCriticalHeaders, signature/internal/base/envelope.go
 * validateSignerInfo). Everything here is the *integrity* validation: a failure is never
 * overridable, at any verification level.
 */
import { constants, createHash, verify, X509Certificate } from "node:crypto";
import {
  algorithmForKey,
  CertificateFormatError,
  codeSigningChainProblem,
  type NotationAlgorithm,
} from "./x509.js";

export const MEDIA_TYPE_JWS = "application/jose+json";
export const MEDIA_TYPE_PAYLOAD_V1 = "application/vnd.cncf.notary.payload.v1+json";
/** no Notation envelope comes near this; a bigger blob is refused before it is parsed */
export const MAX_ENVELOPE_BYTES = 4 * 1024 * 1024;
export const MAX_CHAIN_LENGTH = 10;

export type SigningScheme = "notary.x509" | "notary.x509.signingAuthority";

/** What a verified envelope says; only produced once the signature over it has verified. */
export interface EnvelopeContent {
  signingScheme: SigningScheme;
  /** `io.cncf.notary.signingTime` (notary.x509) or `io.cncf.notary.authenticSigningTime` */
  signingTime: Date;
  expiry?: Date;
  /** leaf first, as in x5c */
  chain: X509Certificate[];
  /** the payload bytes (JSON: {"targetArtifact": descriptor}) */
  payload: Buffer;
  /** an RFC 3161 countersignature is present (not evaluated; see verify.ts) */
  hasTimestampSignature: boolean;
}

export class IntegrityError extends Error {}

const HEADER_ALG = "alg";
const HEADER_CTY = "cty";
const HEADER_CRIT = "crit";
const HEADER_SCHEME = "io.cncf.notary.signingScheme";
const HEADER_SIGNING_TIME = "io.cncf.notary.signingTime";
const HEADER_AUTHENTIC_TIME = "io.cncf.notary.authenticSigningTime";
const HEADER_EXPIRY = "io.cncf.notary.expiry";

const HASH: Record<NotationAlgorithm, { hash: string; bytes: number }> = {
  PS256: { hash: "sha256", bytes: 32 },
  PS384: { hash: "sha384", bytes: 48 },
  PS512: { hash: "sha512", bytes: 64 },
  ES256: { hash: "sha256", bytes: 32 },
  ES384: { hash: "sha384", bytes: 48 },
  ES512: { hash: "sha512", bytes: 66 },
};

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

/** RFC 3339 date-time (what Go's time.Time JSON holds). */
function rfc3339(v: unknown, what: string): Date {
  if (
    typeof v !== "string" ||
    !/^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(v) ||
    Number.isNaN(Date.parse(v))
  )
    throw new IntegrityError(`${what} is not an RFC 3339 time`);
  return new Date(Date.parse(v));
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses `bytes` as a flattened JWS JSON envelope, checks its headers and its signature with the
 * leaf certificate of `x5c`, and validates the certificate chain at the signing time.
 * Throws IntegrityError saying what is wrong.
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
    try {
      return new X509Certificate(base64std(entry, `x5c[${i}]`));
    } catch (err) {
      if (err instanceof IntegrityError) throw err;
      throw new IntegrityError(`x5c[${i}] is not a certificate`);
    }
  });
  const leaf = chain[0] as X509Certificate;

  let header: unknown;
  try {
    header = JSON.parse(protectedBytes.toString("utf8"));
  } catch {
    throw new IntegrityError("the protected header is not JSON");
  }
  if (!isObj(header)) throw new IntegrityError("the protected header is not a JSON object");
  const alg = header[HEADER_ALG];
  if (typeof alg !== "string" || !(alg in HASH))
    throw new IntegrityError(`the signature algorithm ${JSON.stringify(alg)} is not one Notation allows`);
  // Spec: the signing key decides the algorithm; `alg` must match it (no algorithm substitution).
  const keyAlg = algorithmForKey(leaf);
  if (keyAlg !== alg)
    throw new IntegrityError(
      `alg ${alg} does not match the signing certificate's key (${keyAlg ?? "not an allowed key type or size"})`,
    );

  // Integrity first: nothing else in the envelope is trusted before the signature verifies.
  const signingInput = Buffer.from(`${protectedB64 as string}.${payloadB64 as string}`, "ascii");
  const { hash, bytes: hashBytes } = HASH[alg as NotationAlgorithm];
  let ok: boolean;
  try {
    ok = alg.startsWith("PS")
      ? verify(
          hash,
          signingInput,
          // RFC 7518 §3.5: RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash.
          { key: leaf.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hashBytes },
          signature,
        )
      : // RFC 7518 §3.4: ECDSA signatures are R||S, each as long as the curve's order.
        signature.length === 2 * hashBytes &&
        verify(hash, signingInput, { key: leaf.publicKey, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new IntegrityError("the signature does not verify with the signing certificate's key");

  // Protected headers (jws.go validateProtectedHeaders, validateCriticalHeaders).
  if (header[HEADER_CTY] !== MEDIA_TYPE_PAYLOAD_V1)
    throw new IntegrityError(
      `the payload content type ${JSON.stringify(header[HEADER_CTY])} is not supported`,
    );
  const scheme = header[HEADER_SCHEME];
  if (scheme !== "notary.x509" && scheme !== "notary.x509.signingAuthority")
    throw new IntegrityError(`the signing scheme ${JSON.stringify(scheme)} is not supported`);
  let signingTime: Date;
  if (scheme === "notary.x509") {
    if (HEADER_AUTHENTIC_TIME in header)
      throw new IntegrityError(`${HEADER_AUTHENTIC_TIME} must not be present for notary.x509`);
    if (!(HEADER_SIGNING_TIME in header)) throw new IntegrityError("the signing time is missing");
    signingTime = rfc3339(header[HEADER_SIGNING_TIME], HEADER_SIGNING_TIME);
  } else {
    if (HEADER_SIGNING_TIME in header)
      throw new IntegrityError(`${HEADER_SIGNING_TIME} must not be present for notary.x509.signingAuthority`);
    if (!(HEADER_AUTHENTIC_TIME in header)) throw new IntegrityError(`${HEADER_AUTHENTIC_TIME} is missing`);
    signingTime = rfc3339(header[HEADER_AUTHENTIC_TIME], HEADER_AUTHENTIC_TIME);
  }
  const expiry = HEADER_EXPIRY in header ? rfc3339(header[HEADER_EXPIRY], HEADER_EXPIRY) : undefined;
  if (expiry && expiry.getTime() <= signingTime.getTime())
    throw new IntegrityError("the expiry is not after the signing time");

  const crit = header[HEADER_CRIT];
  if (!Array.isArray(crit) || crit.length === 0 || !crit.every((c) => typeof c === "string"))
    throw new IntegrityError('the "crit" header is missing or not a list of names');
  const mustBeCritical = new Set<string>([HEADER_SCHEME]);
  if (expiry) mustBeCritical.add(HEADER_EXPIRY);
  if (scheme === "notary.x509.signingAuthority") mustBeCritical.add(HEADER_AUTHENTIC_TIME);
  const seen = new Set<string>();
  for (const name of crit as string[]) {
    if (seen.has(name)) throw new IntegrityError(`"${name}" is listed twice in crit`);
    seen.add(name);
    // Spec: unknown critical attributes MUST fail verification. That includes the verification
    // plugin headers (io.cncf.notary.verificationPlugin...): trustgate runs no plugins, and the
    // spec says an implementation that cannot do the plugin's checks MUST fail.
    if (!mustBeCritical.has(name))
      throw new IntegrityError(`the critical header "${name}" is not one trustgate understands`);
  }
  for (const name of mustBeCritical)
    if (!seen.has(name)) throw new IntegrityError(`the header "${name}" must be marked critical`);

  // The chain must be a valid code-signing chain at the signing time (base/envelope.go
  // validateCertificateChain, part of integrity in notation-core-go).
  let chainProblem: string | undefined;
  try {
    chainProblem = codeSigningChainProblem(chain, signingTime);
  } catch (err) {
    if (err instanceof CertificateFormatError) chainProblem = err.message;
    else throw err;
  }
  if (chainProblem) throw new IntegrityError(`the certificate chain is invalid: ${chainProblem}`);

  const content: EnvelopeContent = {
    signingScheme: scheme,
    signingTime,
    chain,
    payload,
    hasTimestampSignature: env.header["io.cncf.notary.timestampSignature"] !== undefined,
  };
  if (expiry) content.expiry = expiry;
  return content;
}

/** `sha256:<hex>` of an envelope, to name it in reasons. */
export function envelopeDigest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
