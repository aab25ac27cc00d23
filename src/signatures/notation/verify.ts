/**
 * Notation signature verification of one artifact, following the trust store and trust policy
 * specification ("Signature Verification", Steps) in notation-go's order (verifier/verifier.go
 * processSignature): select the trust policy by registry scope; `skip` returns at once; then for
 * each signature envelope: integrity (always enforced), authenticity (the chain contains a
 * certificate of the policy's trust stores; the leaf matches `trustedIdentities`), expiry,
 * authentic timestamp, revocation, each enforced or logged as the level and `override` say; finally
 * the signed `targetArtifact` must be exactly the artifact served (digest, media type, size),
 * whatever the level. The artifact is verified when at least one signature is (notation verify:
 * "succeeds if verification succeeds for at least one of the signatures").
 *
 * Authentic timestamp (spec step "Validate Trusted Timestamp"; authenticTimestampProblem below):
 * under `notary.x509`, an RFC 3161 countersignature (`io.cncf.notary.timestampSignature`) is
 * verified against the policy's `tsa` stores (timestamp.ts: messageImprint over the signature
 * bytes, the TSA's CMS signature and ESS signing-certificate attribute, a timestamping chain to a
 * `tsa` store certificate, valid at genTime, the leaf's EKU exactly timeStamping), and the whole
 * [genTime - accuracy, genTime + accuracy] must lie within every signing certificate's validity,
 * so a signature whose certificate expired after it was timestamped still verifies. Without a
 * countersignature, or when the policy names no `tsa` store (notation-go: "Timestamp verification
 * disabled"), every certificate must be valid at verification time, as the spec requires "in the
 * absence of an Authentic timestamp". Under `notary.x509.signingAuthority`, the chain must be valid
 * at `authenticSigningTime`.
 *
 * Offline by design (no network at pull time), revocation is narrower than Notation's:
 * - A certificate without OCSP or CRL pointers is "considered valid (not revoked)" by the spec
 *   ("Certificate Revocation Evaluation"). For one with pointers trustgate cannot learn the status,
 *   which the spec calls "revocation unavailable": a failure, enforced under `strict`, logged under
 *   `permissive`/`audit`; `override: {revocation: skip}` (or `log`) is the way to accept such
 *   signatures knowingly.
 * - The TSA chain of a timestamp that is used is judged the same way (spec: "Validate timestamp
 *   certificate and certificate chain revocation status using certificate revocation
 *   evaluation"): a TSA certificate naming OCSP/CRL is "revocation unavailable" under the
 *   `revocation` action. Public TSAs all name OCSP/CRL, so under `strict` a timestamped signature
 *   from a public TSA needs `override: {revocation: skip}` (or `log`), as a public signing
 *   certificate already does: a revoked TSA key must not back-date a signature unnoticed.
 * Both envelope formats are verified: JWS (`application/jose+json`, jws.ts) and COSE
 * (`application/cose`, cose.ts); any other layer media type fails integrity.
 */
import type { X509Certificate } from "node:crypto";
import { MEDIA_TYPE_COSE, verifyCoseEnvelope } from "./cose.js";
import { certificateSubjectDn, isSubsetDn } from "./dn.js";
import {
  type EnvelopeContent,
  envelopeDigest,
  IntegrityError,
  MEDIA_TYPE_JWS,
  verifyJwsEnvelope,
} from "./jws.js";
import {
  type NotationMaterial,
  type NotationTrustPolicy,
  selectTrustPolicy,
  type ValidationAction,
  type ValidationType,
} from "./material.js";
import { TimestampError, type VerifiedTimestamp, verifyTimestampToken } from "./timestamp.js";
import {
  CertificateFormatError,
  certificateFacts,
  chainRangeProblem,
  chainValidityProblem,
  subjectString,
} from "./x509.js";

export { MEDIA_TYPE_COSE } from "./cose.js";

/**
 * What the Notation rule says about one artifact.
 * - `verified`: a signature passed every validation.
 * - `logged`: a signature was accepted, but a validation the level (or `override: log`) only logs
 *   failed; `reason` says which, for the audit line.
 * - `refused`: no signature satisfies the trust policy; `reason` says why for each one.
 * - `skipped`: the applicable trust policy has level `skip` (Notation: "skip signature verification").
 */
export interface NotationVerdict {
  outcome: "verified" | "refused" | "logged" | "skipped";
  rule: "notation";
  /** names the trust policy, the signature (envelope blob digest) and the failed validation */
  reason: string;
  /** the signing certificate's subject DN, when a signature was accepted */
  identity?: string;
}

export interface NotationEnvelope {
  /** the signature manifest's layer media type: application/jose+json or application/cose */
  mediaType: string;
  bytes: Uint8Array;
}

export interface NotationVerifyInput {
  material: NotationMaterial;
  /** `registry/repository` as the trust policy's registryScopes name it, e.g. docker.io/library/alpine */
  reference: string;
  /**
   * The artifact served: the signed targetArtifact must name this digest, and this media type and
   * size when given (notation-go compares all three; the digest alone already fixes the bytes and
   * so the size, the media type is the one label it does not fix).
   */
  subject: { digest: string; mediaType?: string; size?: number };
  envelopes: NotationEnvelope[];
  now: Date;
}

/** What one envelope came to. */
interface EnvelopeResult {
  status: "verified" | "logged" | "failed";
  /** the enforced failure, or the logged ones */
  reason: string;
  identity?: string;
  /** the verified countersignature the result relied on, for the audit line */
  timestamp?: string;
}

const LABEL: Record<ValidationType, string> = {
  integrity: "integrity",
  authenticity: "authenticity",
  authenticTimestamp: "authentic timestamp",
  expiry: "expiry",
  revocation: "revocation",
};

function trustedCertificates(
  material: NotationMaterial,
  policy: NotationTrustPolicy,
  content: EnvelopeContent,
) {
  // notation-go loadX509TrustStores: notary.x509 signatures chain to `ca` stores,
  // notary.x509.signingAuthority signatures to `signingAuthority` stores.
  const type = content.signingScheme === "notary.x509" ? "ca" : "signingAuthority";
  const certs: { store: string; cert: X509Certificate }[] = [];
  for (const s of policy.trustStores) {
    if (s.type !== type) continue;
    const key = `${s.type}:${s.name}`;
    for (const cert of material.stores.get(key) ?? []) certs.push({ store: key, cert });
  }
  return { type, certs };
}

function authenticityProblem(
  material: NotationMaterial,
  policy: NotationTrustPolicy,
  content: EnvelopeContent,
): { problem?: string; store?: string } {
  const { type, certs } = trustedCertificates(material, policy, content);
  if (certs.length === 0)
    return {
      problem: `trust policy "${policy.name}" names no ${type} trust store for a ${content.signingScheme} signature`,
    };
  // notation-core-go VerifyAuthenticity: some certificate of the (already validated) chain is
  // byte-for-byte a trusted certificate.
  for (const { store, cert } of certs)
    if (content.chain.some((c) => c.raw.equals(cert.raw))) return { store };
  return { problem: "the signature's certificate chain does not contain any trusted certificate" };
}

function identityProblem(policy: NotationTrustPolicy, leaf: X509Certificate): string | undefined {
  if (policy.trustedIdentities === "*") return undefined;
  const subject = certificateSubjectDn(certificateFacts(leaf).subject);
  if (typeof subject === "string") return subject;
  if (policy.trustedIdentities.some((identity) => isSubsetDn(identity.dn, subject))) return undefined;
  return `signing certificate "${subjectString(leaf)}" does not match the X.509 trusted identities of trust policy "${policy.name}"`;
}

/**
 * Spec "Validate Trusted Timestamp" (trust-store-trust-policy.md, Signature Verification step 6).
 * notary.x509.signingAuthority: the chain valid at the authentic signing time. notary.x509: with a
 * countersignature, the timestamp is verified (timestamp.ts) and [genTime - accuracy, genTime +
 * accuracy] must lie within every certificate's validity; without one, the spec's
 * timeStampLowerLimit = timeStampUpperLimit = now. A policy naming no `tsa` store leaves the
 * countersignature unevaluated, as notation-go verifyTimestamp does ("Timestamp verification
 * disabled: no tsa trust store is configured in trust policy"): no TSA can be trusted, and the
 * certificates must be valid now. A countersignature that fails is a failure even when the chain is
 * valid now: the spec has no fallback once "the timestamp exists", nor has notation-go.
 */
function authenticTimestampProblem(
  material: NotationMaterial,
  policy: NotationTrustPolicy,
  content: EnvelopeContent,
  now: Date,
): { problem?: string | undefined; timestamp?: VerifiedTimestamp } {
  if (content.signingScheme !== "notary.x509")
    return {
      problem: chainValidityProblem(content.chain, content.signingTime, "the authentic signing time"),
    };
  const tsaCerts: X509Certificate[] = [];
  for (const s of policy.trustStores)
    if (s.type === "tsa") tsaCerts.push(...(material.stores.get(`tsa:${s.name}`) ?? []));
  const countersignature = content.timestampSignature;
  if (!policy.trustStores.some((s) => s.type === "tsa") || !countersignature)
    return { problem: chainValidityProblem(content.chain, now, "verification time") };
  if ("problem" in countersignature)
    return { problem: `the timestamp countersignature cannot be read: ${countersignature.problem}` };
  let timestamp: VerifiedTimestamp;
  try {
    timestamp = verifyTimestampToken(countersignature.token, content.signature, tsaCerts);
  } catch (err) {
    if (err instanceof TimestampError)
      return { problem: `the timestamp countersignature is not valid: ${err.message}` };
    throw err;
  }
  return { problem: chainRangeProblem(content.chain, timestamp.lower, timestamp.upper), timestamp };
}

function revocationProblem(chain: X509Certificate[]): string | undefined {
  const withPointers = chain.filter((c) => certificateFacts(c).revocationInfo);
  if (withPointers.length === 0) return undefined;
  return `revocation status of "${subjectString(withPointers[0] as X509Certificate)}" cannot be determined (it names OCSP/CRL, and trustgate checks offline)`;
}

function targetArtifactProblem(payload: Buffer, subject: NotationVerifyInput["subject"]): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString("utf8"));
  } catch {
    return "the signed payload is not JSON";
  }
  const target = (parsed as { targetArtifact?: unknown } | null)?.targetArtifact as
    | { digest?: unknown; mediaType?: unknown; size?: unknown }
    | undefined;
  if (typeof target !== "object" || target === null) return "the signed payload has no targetArtifact";
  // oras content.Equal, as notation-go Verify compares: digest, size and media type.
  if (target.digest !== subject.digest)
    return `the signature is for ${String(target.digest)}, not ${subject.digest}`;
  if (subject.mediaType !== undefined && target.mediaType !== subject.mediaType)
    return `the signature is for media type ${String(target.mediaType)}, not ${subject.mediaType}`;
  if (typeof target.mediaType !== "string" || typeof target.size !== "number")
    return "the signed targetArtifact lacks a media type or size";
  if (subject.size !== undefined && target.size !== subject.size)
    return `the signature is for size ${String(target.size)}, not ${subject.size}`;
  return undefined;
}

function verifyEnvelope(
  input: NotationVerifyInput,
  policy: NotationTrustPolicy,
  envelope: NotationEnvelope,
): EnvelopeResult {
  const logged: string[] = [];
  // Returns the enforced failure, or records a logged one and lets verification go on.
  const check = (type: ValidationType, problem: string | undefined): EnvelopeResult | undefined => {
    if (problem === undefined) return undefined;
    const action: ValidationAction = policy.actions[type];
    if (action === "enforce")
      return { status: "failed", reason: `${LABEL[type]} validation failed: ${problem}` };
    if (action === "log") logged.push(`${LABEL[type]} (logged): ${problem}`);
    return undefined;
  };

  let content: EnvelopeContent;
  try {
    if (envelope.mediaType === MEDIA_TYPE_JWS) content = verifyJwsEnvelope(envelope.bytes);
    else if (envelope.mediaType === MEDIA_TYPE_COSE) content = verifyCoseEnvelope(envelope.bytes);
    else throw new IntegrityError(`unsupported envelope media type ${envelope.mediaType}`);
  } catch (err) {
    if (err instanceof IntegrityError)
      return { status: "failed", reason: `integrity validation failed: ${err.message}` };
    throw err;
  }
  const leaf = content.chain[0] as X509Certificate;
  const identity = subjectString(leaf);
  let timestamp: string | undefined;

  try {
    const auth = authenticityProblem(input.material, policy, content);
    const authFailure = check("authenticity", auth.problem);
    if (authFailure) return authFailure;
    // notation-go checks trusted identities under the authenticity action too.
    const idFailure = check("authenticity", identityProblem(policy, leaf));
    if (idFailure) return idFailure;

    const expiryFailure = check(
      "expiry",
      content.expiry && input.now.getTime() >= content.expiry.getTime()
        ? `digital signature has expired on ${content.expiry.toISOString()}`
        : undefined,
    );
    if (expiryFailure) return expiryFailure;

    const authentic = authenticTimestampProblem(input.material, policy, content, input.now);
    const timestampFailure = check("authenticTimestamp", authentic.problem);
    if (timestampFailure) return timestampFailure;
    const relied = authentic.timestamp && !authentic.problem ? authentic.timestamp : undefined;
    if (relied)
      timestamp = `timestamped at ${relied.genTime.toISOString()} ±${relied.accuracyMs} ms by "${subjectString(relied.tsaChain[0] as X509Certificate)}"`;

    if (policy.actions.revocation !== "skip") {
      // The TSA's chain too when its timestamp is used (spec, Validate Trusted Timestamp:
      // "Validate timestamp certificate and certificate chain revocation status using
      // certificate revocation evaluation"): offline, a TSA certificate naming OCSP/CRL is
      // "revocation unavailable" exactly as a signing certificate is, under the same action.
      const chains = relied ? [...content.chain, ...relied.tsaChain] : content.chain;
      const revocationFailure = check("revocation", revocationProblem(chains));
      if (revocationFailure) return revocationFailure;
    }
  } catch (err) {
    if (err instanceof CertificateFormatError)
      return { status: "failed", reason: `integrity validation failed: ${err.message}` };
    throw err;
  }

  // Not a validation the level can relax: a signature for another artifact is no signature for this one.
  const targetProblem = targetArtifactProblem(content.payload, input.subject);
  if (targetProblem) return { status: "failed", reason: `target artifact mismatch: ${targetProblem}` };

  const result: EnvelopeResult =
    logged.length === 0
      ? { status: "verified", reason: "", identity }
      : { status: "logged", reason: logged.join("; "), identity };
  if (timestamp) result.timestamp = timestamp;
  return result;
}

/** Verifies the Notation signatures of one artifact against `material`; never throws for bad input. */
export async function verifyNotation(input: NotationVerifyInput): Promise<NotationVerdict> {
  const policy = selectTrustPolicy(input.material, input.reference);
  if (!policy)
    return {
      outcome: "refused",
      rule: "notation",
      reason: `no Notation trust policy applies to ${input.reference} (no registryScopes entry names it, and there is no "*" policy)`,
    };
  if (policy.level === "skip")
    return {
      outcome: "skipped",
      rule: "notation",
      reason: `Notation trust policy "${policy.name}" is configured to skip signature verification`,
    };
  if (input.envelopes.length === 0)
    return {
      outcome: "refused",
      rule: "notation",
      reason: `no Notation signature is associated with ${input.subject.digest} (trust policy "${policy.name}", level ${policy.level})`,
    };

  const failures: string[] = [];
  let loggedVerdict: NotationVerdict | undefined;
  for (const envelope of input.envelopes) {
    const name = `signature ${envelopeDigest(envelope.bytes)}`;
    const result = verifyEnvelope(input, policy, envelope);
    const level = `trust policy "${policy.name}", level ${policy.level}`;
    // An acceptance that rests on a countersignature says so (and which TSA) in the audit line.
    const context = result.timestamp ? `${level}; ${result.timestamp}` : level;
    if (result.status === "verified")
      return {
        outcome: "verified",
        rule: "notation",
        reason: `${name} verified (${context})`,
        identity: result.identity as string,
      };
    if (result.status === "logged") {
      loggedVerdict ??= {
        outcome: "logged",
        rule: "notation",
        reason: `${name} accepted (${context}) with logged failures: ${result.reason}`,
        identity: result.identity as string,
      };
    } else failures.push(`${name}: ${result.reason}`);
  }
  if (loggedVerdict) return loggedVerdict;
  return {
    outcome: "refused",
    rule: "notation",
    reason: `no Notation signature of ${input.subject.digest} verified under trust policy "${policy.name}" (level ${policy.level}): ${failures.join("; ")}`,
  };
}
