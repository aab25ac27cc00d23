/**
 * The X.509 rules of the Notary Project signature specification (specs/signature-specification.md,
 * "Certificate Requirements"), as notation-core-go applies them (x509/codesigning_cert_validations.go,
 * x509/helper.go). node:crypto's X509Certificate verifies signatures and issuance; what it does not
 * expose (key usage bits, which extensions are critical, basic constraints presence and path length,
 * CRL distribution points, the subject as RDNs) is read with @peculiar/asn1-x509's schemas, never
 * with hand-written DER.
 */
import type { X509Certificate } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  AuthorityInfoAccessSyntax,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  id_ce_basicConstraints,
  id_ce_cRLDistributionPoints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_pe_authorityInfoAccess,
  KeyUsage,
  KeyUsageFlags,
} from "@peculiar/asn1-x509";

/** What the specification reads from a certificate besides what X509Certificate gives. */
export interface CertificateFacts {
  /** the keyUsage extension, when present */
  keyUsage?: { critical: boolean; flags: number };
  /** the basicConstraints extension, when present */
  basicConstraints?: { critical: boolean; ca: boolean; pathLen?: number };
  /** extended key usage OIDs, when the extension is present */
  extKeyUsage?: string[];
  /** the extended key usage extension is marked critical */
  extKeyUsageCritical?: boolean;
  /** the certificate's own signature algorithm OID */
  signatureAlgorithm: string;
  /** the certificate names an OCSP responder or a CRL distribution point */
  revocationInfo: boolean;
  /** subject RDNs: attribute short name (C, ST, O, ...) or dotted OID, and the value */
  subject: { type: string; value: string }[][];
}

export class CertificateFormatError extends Error {}

const OID_OCSP = "1.3.6.1.5.5.7.48.1";

// RFC 5280 / Go's crypto/x509/pkix attribute names, the ones Go's Name.String() prints by name:
// notation matches trusted identities against that string (verifier.go verifyX509TrustedIdentities).
const ATTRIBUTE_NAMES: Record<string, string> = {
  "2.5.4.6": "C",
  "2.5.4.8": "ST",
  "2.5.4.7": "L",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.3": "CN",
  "2.5.4.5": "SERIALNUMBER",
  "2.5.4.9": "STREET",
  "2.5.4.17": "POSTALCODE",
};

/** SHA-1 and MD5 certificate signatures (spec: "MUST NOT use SHA1WithRSA and ECDSAWithSHA1"). */
const WEAK_SIGNATURE_ALGORITHMS = new Set([
  "1.2.840.113549.1.1.4", // md5WithRSAEncryption
  "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
  "1.2.840.10045.4.1", // ecdsa-with-SHA1
  "1.2.840.10040.4.3", // dsa-with-sha1
]);

export const EKU = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  emailProtection: "1.3.6.1.5.5.7.3.4",
  timeStamping: "1.3.6.1.5.5.7.3.8",
  ocspSigning: "1.3.6.1.5.5.7.3.9",
  any: "2.5.29.37.0",
} as const;

const factsCache = new WeakMap<X509Certificate, CertificateFacts>();

/** Parses the extensions and subject of `cert`; throws CertificateFormatError on undecodable DER. */
export function certificateFacts(cert: X509Certificate): CertificateFacts {
  const cached = factsCache.get(cert);
  if (cached) return cached;
  let parsed: Certificate;
  try {
    parsed = AsnConvert.parse(cert.raw, Certificate);
  } catch (err) {
    throw new CertificateFormatError(`certificate DER cannot be decoded: ${String(err)}`);
  }
  const facts: CertificateFacts = {
    signatureAlgorithm: parsed.signatureAlgorithm.algorithm,
    revocationInfo: false,
    subject: parsed.tbsCertificate.subject.map((rdn) =>
      rdn.map((atv) => ({
        type: ATTRIBUTE_NAMES[atv.type] ?? atv.type,
        // A value that is not a string type has no text form: Go prints it as "#<hex>", which no
        // trusted identity can name (notation refuses "=#" in identities), so it never matches.
        value: atv.value.anyValue
          ? `#${Buffer.from(atv.value.anyValue).toString("hex")}`
          : atv.value.toString(),
      })),
    ),
  };
  const seen = new Set<string>();
  try {
    for (const ext of parsed.tbsCertificate.extensions ?? []) {
      // RFC 5280 §4.2: a certificate MUST NOT include more than one instance of an extension.
      if (seen.has(ext.extnID)) throw new CertificateFormatError(`extension ${ext.extnID} appears twice`);
      seen.add(ext.extnID);
      const value = ext.extnValue.buffer;
      switch (ext.extnID) {
        case id_ce_keyUsage:
          facts.keyUsage = { critical: ext.critical, flags: AsnConvert.parse(value, KeyUsage).toNumber() };
          break;
        case id_ce_basicConstraints: {
          const bc = AsnConvert.parse(value, BasicConstraints);
          facts.basicConstraints = { critical: ext.critical, ca: bc.cA === true };
          if (bc.pathLenConstraint !== undefined) facts.basicConstraints.pathLen = bc.pathLenConstraint;
          break;
        }
        case id_ce_extKeyUsage:
          facts.extKeyUsage = [...AsnConvert.parse(value, ExtendedKeyUsage)];
          facts.extKeyUsageCritical = ext.critical;
          break;
        case id_ce_cRLDistributionPoints:
          facts.revocationInfo = true;
          break;
        case id_pe_authorityInfoAccess:
          if (AsnConvert.parse(value, AuthorityInfoAccessSyntax).some((d) => d.accessMethod === OID_OCSP))
            facts.revocationInfo = true;
          break;
      }
    }
  } catch (err) {
    if (err instanceof CertificateFormatError) throw err;
    throw new CertificateFormatError(`certificate extension cannot be decoded: ${String(err)}`);
  }
  factsCache.set(cert, facts);
  return facts;
}

/** The subject as an RFC 4514-style string, most significant RDN last (as Go's Name.String()). */
export function subjectString(cert: X509Certificate): string {
  return [...certificateFacts(cert).subject]
    .reverse()
    .map((rdn) => rdn.map((a) => `${a.type}=${escapeDnValue(a.value)}`).join("+"))
    .join(",");
}

function escapeDnValue(value: string): string {
  return value
    .replace(/[\\,+"<>;=]/g, (c) => `\\${c}`)
    .replace(/^[ #]/, (c) => `\\${c}`)
    .replace(/ $/, "\\ ");
}

/**
 * `issuer` issued `cert`: the names match and the signature verifies (Go isIssuedBy). Not
 * X509Certificate.checkIssued: OpenSSL's X509_check_issued also demands keyCertSign of the issuer,
 * which a self-signed signing certificate (the spec's one-certificate chain) must not have.
 */
export function isIssuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.issuer === issuer.subject && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

export function isSelfSigned(cert: X509Certificate): boolean {
  return isIssuedBy(cert, cert);
}

function validityProblem(cert: X509Certificate, at: Date, what: string): string | undefined {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(at.getTime() >= from && at.getTime() <= to))
    return `certificate "${subjectString(cert)}" was not valid at ${what} ${at.toISOString()} (valid from ${new Date(from).toISOString()} to ${new Date(to).toISOString()})`;
  return undefined;
}

/** The JWS/COSE signature algorithm a signing key implies (spec "Algorithm Selection"). */
export type NotationAlgorithm = "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "ES512";

export function algorithmForKey(cert: X509Certificate): NotationAlgorithm | undefined {
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "rsa") {
    switch (details?.modulusLength) {
      case 2048:
        return "PS256";
      case 3072:
        return "PS384";
      case 4096:
        return "PS512";
    }
    return undefined;
  }
  if (key.asymmetricKeyType === "ec") {
    switch (details?.namedCurve) {
      case "prime256v1":
        return "ES256";
      case "secp384r1":
        return "ES384";
      case "secp521r1":
        return "ES512";
    }
  }
  return undefined;
}

/**
 * A signing or timestamping leaf's key usage (signature specification "Certificate Requirements",
 * Leaf Certificates): present, critical, `digitalSignature` set and nothing else.
 */
function digitalSignatureOnlyProblem(
  facts: ReturnType<typeof certificateFacts>,
  name: string,
): string | undefined {
  if (!facts.keyUsage) return `${name}: the key usage extension must be present`;
  if (!facts.keyUsage.critical) return `${name}: the key usage extension must be marked critical`;
  if (!(facts.keyUsage.flags & KeyUsageFlags.digitalSignature))
    return `${name}: the key usage must have "digitalSignature" set`;
  const forbidden =
    KeyUsageFlags.keyEncipherment |
    KeyUsageFlags.dataEncipherment |
    KeyUsageFlags.keyAgreement |
    KeyUsageFlags.keyCertSign |
    KeyUsageFlags.cRLSign |
    KeyUsageFlags.encipherOnly |
    KeyUsageFlags.decipherOnly;
  if (facts.keyUsage.flags & forbidden) return `${name}: the key usage must be "digitalSignature" only`;
  return undefined;
}

function leafProblem(cert: X509Certificate): string | undefined {
  const facts = certificateFacts(cert);
  const name = `certificate "${subjectString(cert)}"`;
  if (facts.basicConstraints?.ca)
    return `${name}: a signing certificate must not be a CA (basicConstraints cA=true)`;
  const keyUsage = digitalSignatureOnlyProblem(facts, name);
  if (keyUsage) return keyUsage;
  // Spec: EKU, if present, MAY contain codeSigning and MUST NOT contain anyExtendedKeyUsage,
  // serverAuth, clientAuth, emailProtection, timeStamping (notation-core-go also refuses OCSPSigning).
  const excluded: string[] = [
    EKU.any,
    EKU.serverAuth,
    EKU.clientAuth,
    EKU.emailProtection,
    EKU.timeStamping,
    EKU.ocspSigning,
  ];
  const bad = facts.extKeyUsage?.find((oid) => excluded.includes(oid));
  if (bad) return `${name}: the extended key usage must not contain ${bad}`;
  if (!algorithmForKey(cert))
    return `${name}: the key is not one the specification allows (RSA 2048/3072/4096, ECDSA P-256/P-384/P-521)`;
  return undefined;
}

export function caProblem(cert: X509Certificate, depthBelow: number): string | undefined {
  const facts = certificateFacts(cert);
  const name = `certificate "${subjectString(cert)}"`;
  // notation-core-go checks BasicConstraintsValid && IsCA (Go reads the extension whether or not
  // it is critical); the spec's "MUST be marked critical" is enforced here as well.
  if (!facts.basicConstraints?.ca || !facts.basicConstraints.critical)
    return `${name}: a CA certificate needs a critical basicConstraints extension with cA=true`;
  if (facts.basicConstraints.pathLen !== undefined && facts.basicConstraints.pathLen < depthBelow)
    return `${name}: path length constraint ${facts.basicConstraints.pathLen} is less than the ${depthBelow} CA certificate(s) below it`;
  if (!facts.keyUsage) return `${name}: the key usage extension must be present`;
  if (!facts.keyUsage.critical) return `${name}: the key usage extension must be marked critical`;
  if (!(facts.keyUsage.flags & KeyUsageFlags.keyCertSign))
    return `${name}: the key usage must have "keyCertSign" set`;
  return undefined;
}

/**
 * Why `chain` (leaf first, root last, as in `x5c`) is not a valid code-signing chain, or undefined
 * (notation-core-go ValidateCodeSigningCertChain). A one-certificate chain is a self-signed signing
 * certificate and meets the leaf requirements; a longer chain must end in a self-signed root, each
 * certificate issued by the next, no other certificate self-signed. No time is judged here: at
 * verification notation-core-go passes no signing time (base/envelope.go validateSignerInfo), the
 * envelope's signing time being only the signer's claim; validity in time is the authentic
 * timestamp step's (verify.ts).
 */
export function codeSigningChainProblem(chain: X509Certificate[]): string | undefined {
  const leaf = chain[0];
  if (!leaf) return "the certificate chain is empty";
  for (const cert of chain) {
    if (WEAK_SIGNATURE_ALGORITHMS.has(certificateFacts(cert).signatureAlgorithm))
      return `certificate "${subjectString(cert)}" is signed with SHA-1 or MD5`;
  }
  if (chain.length === 1) {
    if (!isSelfSigned(leaf))
      return `certificate "${subjectString(leaf)}" is alone in the chain but is not self-signed`;
    const problem = leafProblem(leaf);
    return problem ? `invalid self-signed certificate: ${problem}` : undefined;
  }
  return chainShapeProblem(chain, "the leaf", leafProblem);
}

/** Why `cert` cannot sit in a `ca` or `signingAuthority` trust store (notation-go ValidateCertificates). */
export function trustStoreCertProblem(
  cert: X509Certificate,
  type: "ca" | "signingAuthority" | "tsa",
): string | undefined {
  if (type === "tsa") {
    // truststore.go isRootCACertificate: TSA trust anchors must be self-issued roots.
    return isSelfSigned(cert)
      ? undefined
      : "is not a self-signed root certificate (a tsa store holds roots only)";
  }
  if (cert.ca || isSelfSigned(cert)) return undefined;
  return "is neither a CA certificate nor a self-signed signing certificate";
}

/**
 * The timestamping leaf (signature specification "Certificate Requirements", Leaf Certificates,
 * "For timestamping certificate"; RFC 3161 §2.3 as notation-core-go
 * validateTimestampingExtendedKeyUsage reads it): not a CA; key usage present, critical,
 * `digitalSignature` only; the extended key usage extension critical and exactly timeStamping;
 * RSA keys of 2048 bits or more, ECDSA keys of 256 bits or more ("Key Length").
 */
function timestampingLeafProblem(cert: X509Certificate): string | undefined {
  const facts = certificateFacts(cert);
  const name = `timestamping certificate "${subjectString(cert)}"`;
  if (facts.basicConstraints?.ca) return `${name}: must not be a CA (basicConstraints cA=true)`;
  const keyUsage = digitalSignatureOnlyProblem(facts, name);
  if (keyUsage) return keyUsage;
  const eku = facts.extKeyUsage;
  if (eku?.length !== 1 || eku[0] !== EKU.timeStamping)
    return `${name}: the extended key usage must be exactly timeStamping (${EKU.timeStamping}), got ${eku ? eku.join(", ") || "none" : "no extended key usage extension"}`;
  if (!facts.extKeyUsageCritical) return `${name}: the extended key usage extension must be marked critical`;
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "rsa") {
    if ((details?.modulusLength ?? 0) < 2048) return `${name}: an RSA key must have at least 2048 bits`;
  } else if (key.asymmetricKeyType === "ec") {
    if (!["prime256v1", "secp384r1", "secp521r1"].includes(details?.namedCurve ?? ""))
      return `${name}: an ECDSA key must be on P-256, P-384 or P-521`;
  } else return `${name}: the key must be RSA or ECDSA`;
  return undefined;
}

/**
 * Why `chain` (TSA signing certificate first, trusted root last) is not a valid timestamping chain
 * at `at`, the timestamp's genTime (notation-core-go ValidateTimestampingCertChain; the chain is
 * valid at genTime as tspclient-go verifies it with CurrentTime = the timestamp). A one-certificate
 * chain is a self-signed TSA certificate and meets the leaf requirements.
 */
export function timestampingChainProblem(chain: X509Certificate[], at: Date): string | undefined {
  const leaf = chain[0];
  if (!leaf) return "the timestamping certificate chain is empty";
  for (const cert of chain) {
    if (WEAK_SIGNATURE_ALGORITHMS.has(certificateFacts(cert).signatureAlgorithm))
      return `certificate "${subjectString(cert)}" is signed with SHA-1 or MD5`;
    const problem = validityProblem(cert, at, "the timestamp's time");
    if (problem) return problem;
  }
  return chainShapeProblem(chain, "the TSA", timestampingLeafProblem);
}

/**
 * A chain of two or more (leaf first): ends in a self-signed root, no other certificate
 * self-signed, each issued by the next; the leaf meets `leafCheck`, every CA the CA requirements
 * with the path length below it (notation-core-go x509 validateCertChain).
 */
function chainShapeProblem(
  chain: X509Certificate[],
  leafName: string,
  leafCheck: (cert: X509Certificate) => string | undefined,
): string | undefined {
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i] as X509Certificate;
    if (i === chain.length - 1) {
      if (!isSelfSigned(cert))
        return `the root certificate "${subjectString(cert)}" is not self-signed; the chain must end with a self-signed root`;
    } else {
      if (isSelfSigned(cert))
        return `${i === 0 ? leafName : "an intermediate"} certificate "${subjectString(cert)}" is self-signed`;
      const parent = chain[i + 1] as X509Certificate;
      if (!isIssuedBy(cert, parent))
        return `certificate "${subjectString(cert)}" is not issued by "${subjectString(parent)}"`;
    }
    const problem = i === 0 ? leafCheck(cert) : caProblem(cert, i - 1);
    if (problem) return problem;
  }
  return undefined;
}

/** Why the chain cannot be used at `at` (authentic timestamp: every certificate valid then). */
export function chainValidityProblem(chain: X509Certificate[], at: Date, what: string): string | undefined {
  for (const cert of chain) {
    const problem = validityProblem(cert, at, what);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * Why the chain was not valid during the whole of [`lower`, `upper`] (trust store and trust policy
 * spec, "Validate Trusted Timestamp": the range from timeStampLowerLimit to timeStampUpperLimit must
 * be "entirely within the signing certificate and certificate chain's validity period").
 */
export function chainRangeProblem(chain: X509Certificate[], lower: Date, upper: Date): string | undefined {
  for (const cert of chain) {
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    if (lower.getTime() < from || upper.getTime() > to)
      return `certificate "${subjectString(cert)}" was not valid during the whole timestamp range ${lower.toISOString()} to ${upper.toISOString()} (valid from ${new Date(from).toISOString()} to ${new Date(to).toISOString()})`;
  }
  return undefined;
}
