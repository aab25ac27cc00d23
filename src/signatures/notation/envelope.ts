/**
 * What both Notary Project envelope formats (JWS, COSE) must satisfy once parsed: the integrity
 * validation of notation-core-go (signature/internal/base/envelope.go Verify and
 * validateSignerInfo; jws.go / cose envelope.go validateCriticalHeaders). Each format parses its
 * own bytes into SignedAttributes and calls `verifyEnvelopeParts`; a failure is an IntegrityError,
 * never overridable at any verification level.
 */
import { constants, verify, type X509Certificate } from "node:crypto";
import {
  algorithmForKey,
  CertificateFormatError,
  codeSigningChainProblem,
  type NotationAlgorithm,
} from "./x509.js";

export const MEDIA_TYPE_PAYLOAD_V1 = "application/vnd.cncf.notary.payload.v1+json";
/** no Notation envelope comes near this; a bigger blob is refused before it is parsed */
export const MAX_ENVELOPE_BYTES = 4 * 1024 * 1024;
export const MAX_CHAIN_LENGTH = 10;

export const HEADER_SCHEME = "io.cncf.notary.signingScheme";
export const HEADER_SIGNING_TIME = "io.cncf.notary.signingTime";
export const HEADER_AUTHENTIC_TIME = "io.cncf.notary.authenticSigningTime";
export const HEADER_EXPIRY = "io.cncf.notary.expiry";
export const HEADER_TIMESTAMP_SIGNATURE = "io.cncf.notary.timestampSignature";

export type SigningScheme = "notary.x509" | "notary.x509.signingAuthority";

export class IntegrityError extends Error {}

/** What a verified envelope says; only produced once the signature over it has verified. */
export interface EnvelopeContent {
  signingScheme: SigningScheme;
  /** `io.cncf.notary.signingTime` (notary.x509) or `io.cncf.notary.authenticSigningTime` */
  signingTime: Date;
  expiry?: Date;
  /** leaf first, as in x5c / x5chain */
  chain: X509Certificate[];
  /** the payload bytes (JSON: {"targetArtifact": descriptor}) */
  payload: Buffer;
  /** the signature value itself: what an RFC 3161 countersignature timestamps */
  signature: Buffer;
  /** the `io.cncf.notary.timestampSignature` unsigned attribute, when present (see timestamp.ts) */
  timestampSignature?: TimestampSignature;
}

/**
 * The countersignature as the envelope carries it: the TimeStampToken bytes, or why they cannot be
 * read (wrong type or encoding, too big). A bad one is an authentic timestamp failure (verify.ts),
 * not an integrity one: it is an unsigned attribute, and the level decides what its failure costs.
 */
export type TimestampSignature = { token: Buffer } | { problem: string };

/** The protected attributes, as each format read them (times already decoded). */
export interface SignedAttributes {
  /** the algorithm named by the envelope, mapped to its JWS name; undefined when not allowed */
  alg: NotationAlgorithm | undefined;
  /** how the envelope wrote it, for messages */
  algWritten: string;
  contentType: unknown;
  signingScheme: unknown;
  signingTime: Date | undefined;
  authenticSigningTime: Date | undefined;
  expiry: Date | undefined;
  /** the `crit` entries: header names (or, in COSE, integer labels) */
  critical: unknown;
}

const HASH: Record<NotationAlgorithm, { hash: string; bytes: number }> = {
  PS256: { hash: "sha256", bytes: 32 },
  PS384: { hash: "sha384", bytes: 48 },
  PS512: { hash: "sha512", bytes: 64 },
  ES256: { hash: "sha256", bytes: 32 },
  ES384: { hash: "sha384", bytes: 48 },
  ES512: { hash: "sha512", bytes: 66 },
};

/**
 * Checks, in order: the algorithm is the one the signing key implies (no algorithm substitution),
 * the signature over `signedBytes` verifies with the leaf's key (nothing else is trusted before
 * that), the signed attributes are complete and consistent, and the chain is a valid code-signing
 * chain (its validity in time is judged later, in the authentic timestamp step).
 */
export function verifyEnvelopeParts(parts: {
  attributes: SignedAttributes;
  chain: X509Certificate[];
  signedBytes: Buffer;
  signature: Buffer;
  payload: Buffer;
  timestampSignature?: TimestampSignature;
}): EnvelopeContent {
  const { attributes: a, chain, signature } = parts;
  const leaf = chain[0];
  if (!leaf) throw new IntegrityError("the certificate chain is empty");
  if (chain.length > MAX_CHAIN_LENGTH)
    throw new IntegrityError(
      `the certificate chain has ${chain.length} certificates, more than ${MAX_CHAIN_LENGTH}`,
    );
  if (!a.alg) throw new IntegrityError(`the signature algorithm ${a.algWritten} is not one Notation allows`);
  // Spec: the signing key decides the algorithm; the envelope's must match it.
  const keyAlg = algorithmForKey(leaf);
  if (keyAlg !== a.alg)
    throw new IntegrityError(
      `alg ${a.alg} does not match the signing certificate's key (${keyAlg ?? "not an allowed key type or size"})`,
    );
  const { hash, bytes: hashBytes } = HASH[a.alg];
  let ok: boolean;
  try {
    ok = a.alg.startsWith("PS")
      ? verify(
          hash,
          parts.signedBytes,
          // RFC 7518 §3.5 / RFC 8230 §2: RSASSA-PSS with MGF1 of the same hash, salt as long as the hash.
          { key: leaf.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hashBytes },
          signature,
        )
      : // RFC 7518 §3.4 / RFC 9053 §2.1: ECDSA signatures are R||S, each as long as the curve's order.
        signature.length === 2 * hashBytes &&
        verify(hash, parts.signedBytes, { key: leaf.publicKey, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new IntegrityError("the signature does not verify with the signing certificate's key");

  if (a.contentType !== MEDIA_TYPE_PAYLOAD_V1)
    throw new IntegrityError(`the payload content type ${JSON.stringify(a.contentType)} is not supported`);
  const scheme = a.signingScheme;
  if (scheme !== "notary.x509" && scheme !== "notary.x509.signingAuthority")
    throw new IntegrityError(`the signing scheme ${JSON.stringify(scheme)} is not supported`);
  let signingTime: Date;
  if (scheme === "notary.x509") {
    if (a.authenticSigningTime)
      throw new IntegrityError(`${HEADER_AUTHENTIC_TIME} must not be present for notary.x509`);
    if (!a.signingTime) throw new IntegrityError("the signing time is missing");
    signingTime = a.signingTime;
  } else {
    if (a.signingTime)
      throw new IntegrityError(`${HEADER_SIGNING_TIME} must not be present for notary.x509.signingAuthority`);
    if (!a.authenticSigningTime) throw new IntegrityError(`${HEADER_AUTHENTIC_TIME} is missing`);
    signingTime = a.authenticSigningTime;
  }
  if (a.expiry && a.expiry.getTime() <= signingTime.getTime())
    throw new IntegrityError("the expiry is not after the signing time");

  const crit = a.critical;
  if (!Array.isArray(crit) || crit.length === 0)
    throw new IntegrityError('the "crit" header is missing or empty');
  const mustBeCritical = new Set<string>([HEADER_SCHEME]);
  if (a.expiry) mustBeCritical.add(HEADER_EXPIRY);
  if (scheme === "notary.x509.signingAuthority") mustBeCritical.add(HEADER_AUTHENTIC_TIME);
  const seen = new Set<unknown>();
  for (const name of crit) {
    if (seen.has(name)) throw new IntegrityError(`${JSON.stringify(name)} is listed twice in crit`);
    seen.add(name);
    // Spec: unknown critical attributes MUST fail verification. That includes the verification
    // plugin headers (io.cncf.notary.verificationPlugin...): trustgate runs no plugins, and the
    // spec says an implementation that cannot do the plugin's checks MUST fail.
    if (typeof name !== "string" || !mustBeCritical.has(name))
      throw new IntegrityError(
        `the critical header ${JSON.stringify(name)} is not one trustgate understands`,
      );
  }
  for (const name of mustBeCritical)
    if (!seen.has(name)) throw new IntegrityError(`the header "${name}" must be marked critical`);

  // The chain must be a valid code-signing chain (base/envelope.go validateCertificateChain, part
  // of integrity in notation-core-go; at verification without a time: the authentic timestamp
  // step judges validity in time).
  let chainProblem: string | undefined;
  try {
    chainProblem = codeSigningChainProblem(chain);
  } catch (err) {
    if (err instanceof CertificateFormatError) chainProblem = err.message;
    else throw err;
  }
  if (chainProblem) throw new IntegrityError(`the certificate chain is invalid: ${chainProblem}`);

  const content: EnvelopeContent = {
    signingScheme: scheme,
    signingTime,
    chain,
    payload: parts.payload,
    signature: parts.signature,
  };
  if (a.expiry) content.expiry = a.expiry;
  if (parts.timestampSignature) content.timestampSignature = parts.timestampSignature;
  return content;
}
