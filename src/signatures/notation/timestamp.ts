/**
 * The RFC 3161 countersignature of a `notary.x509` signature (`io.cncf.notary.timestampSignature`):
 * a TimeStampToken (RFC 3161 §2.4.2), i.e. a CMS ContentInfo holding SignedData (RFC 5652 §5) whose
 * encapsulated content is a TSTInfo. What is checked, in the order of the trust store and trust
 * policy specification ("Signature Verification", "Validate Trusted Timestamp") and of how
 * notation-go (verifier.go verifyTimestamp) and tspclient-go (token.go, internal/cms/signed.go)
 * carry it out:
 * 1. TSTInfo version 1 and `messageImprint` = hash of the envelope's signature bytes (what
 *    notation-go passes to TSTInfo.Validate: the raw signature value, hashed with the token's own
 *    messageImprint algorithm, SHA-256/384/512 here).
 * 2. The SignedData has one SignerInfo (version 1, issuerAndSerialNumber), with signed attributes:
 *    content-type = id-ct-TSTInfo, message-digest = hash of the TSTInfo, and the ESS
 *    signing-certificate-v2 (RFC 5035) or signing-certificate (RFC 2634) attribute naming the
 *    signer certificate by hash (spec step "Validate the signing-certificate ... attribute").
 * 3. The signature over the signed attributes verifies with that certificate's key (RSA PKCS#1
 *    v1.5 or PSS, ECDSA; SHA-256/384/512, tspclient-go's ToSignatureAlgorithm set).
 * 4. The signer certificate chains, through certificates of the token, to a certificate of the
 *    trust policy's `tsa` stores, and that chain meets the timestamping certificate requirements
 *    of the signature specification at genTime (notation-core-go ValidateTimestampingCertChain;
 *    the leaf's extended key usage is exactly timeStamping and critical, RFC 3161 §2.3).
 * 5. The accuracy: TSTInfo.accuracy when present and not zero, else 1 s under the baseline
 *    time-stamp policy (RFC 3628 / RFC 3161 §2.4.2 as the spec says), else 0.
 * Not checked (offline): the TSA chain's revocation status (see verify.ts).
 *
 * ASN.1 is read with @peculiar/asn1-cms / asn1-tsp / asn1-x509 schemas, never by hand. Every
 * problem, a malformed token included, is a TimestampError with a reason; nothing else escapes.
 */
import { constants, createHash, verify, X509Certificate } from "node:crypto";
import { Attribute, ContentInfo, id_signedData, SignedData } from "@peculiar/asn1-cms";
import {
  AsnArray,
  AsnConvert,
  AsnIntegerArrayBufferConverter,
  AsnProp,
  AsnPropTypes,
  AsnType,
  AsnTypeTypes,
  OctetString,
} from "@peculiar/asn1-schema";
import { id_ct_tstInfo, TSTInfo } from "@peculiar/asn1-tsp";
import { AlgorithmIdentifier, type Certificate, GeneralNames, type Name } from "@peculiar/asn1-x509";
import { MAX_CHAIN_LENGTH } from "./envelope.js";
import {
  CertificateFormatError,
  isIssuedBy,
  isSelfSigned,
  subjectString,
  timestampingChainProblem,
} from "./x509.js";

/** A TimeStampToken with a few certificates is a few KiB; a bigger one is refused unparsed. */
export const MAX_TIMESTAMP_TOKEN_BYTES = 64 * 1024;
/** certificates a token may carry (the TSA's chain, possibly with its root) */
const MAX_TOKEN_CERTIFICATES = MAX_CHAIN_LENGTH;

export class TimestampError extends Error {}

export interface VerifiedTimestamp {
  /** TSTInfo.genTime */
  genTime: Date;
  /** the accuracy the range is computed with, in milliseconds */
  accuracyMs: number;
  /** genTime - accuracy and genTime + accuracy (RFC 3161 §2.4.2) */
  lower: Date;
  upper: Date;
  /** TSA signing certificate first, the trusted certificate last */
  tsaChain: X509Certificate[];
}

const HASHES: Record<string, { name: string; bytes: number }> = {
  "2.16.840.1.101.3.4.2.1": { name: "sha256", bytes: 32 },
  "2.16.840.1.101.3.4.2.2": { name: "sha384", bytes: 48 },
  "2.16.840.1.101.3.4.2.3": { name: "sha512", bytes: 64 },
};
const OID_SHA1 = "1.3.14.3.2.26";
const OID_RSA = "1.2.840.113549.1.1.1";
const OID_RSA_PSS = "1.2.840.113549.1.1.10";
/** signature algorithms that carry their own hash */
const SIGNATURE_WITH_HASH: Record<string, { key: "rsa" | "ec"; hash: string }> = {
  "1.2.840.113549.1.1.11": { key: "rsa", hash: "sha256" },
  "1.2.840.113549.1.1.12": { key: "rsa", hash: "sha384" },
  "1.2.840.113549.1.1.13": { key: "rsa", hash: "sha512" },
  "1.2.840.10045.4.3.2": { key: "ec", hash: "sha256" },
  "1.2.840.10045.4.3.3": { key: "ec", hash: "sha384" },
  "1.2.840.10045.4.3.4": { key: "ec", hash: "sha512" },
};
const OID_ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3";
const OID_ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4";
const OID_ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5";
const OID_ATTR_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12";
const OID_ATTR_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47";
/** ETSI baseline time-stamp policy (RFC 3628 §5.2): accuracy of 1 second when none is given */
const OID_BASELINE_TIMESTAMP_POLICY = "0.4.0.2023.1.1";

// ESS schemas (RFC 2634 §5.4, RFC 5035 §3), not in the @peculiar packages. The decorators are
// applied as functions: the project compiles without legacy decorator syntax.
class IssuerSerial {
  issuer = new GeneralNames();
  serialNumber = new ArrayBuffer(0);
}
AsnProp({ type: GeneralNames })(IssuerSerial.prototype, "issuer");
AsnProp({ type: AsnPropTypes.Integer, converter: AsnIntegerArrayBufferConverter })(
  IssuerSerial.prototype,
  "serialNumber",
);

/** ESSCertID (v1: SHA-1 certHash) and ESSCertIDv2 (hashAlgorithm DEFAULT id-sha256) */
class EssCertIdV2 {
  hashAlgorithm?: AlgorithmIdentifier;
  certHash = new OctetString();
  issuerSerial?: IssuerSerial;
}
AsnProp({ type: AlgorithmIdentifier, optional: true })(EssCertIdV2.prototype, "hashAlgorithm");
AsnProp({ type: OctetString })(EssCertIdV2.prototype, "certHash");
AsnProp({ type: IssuerSerial, optional: true })(EssCertIdV2.prototype, "issuerSerial");

class EssCertId {
  certHash = new OctetString();
  issuerSerial?: IssuerSerial;
}
AsnProp({ type: OctetString })(EssCertId.prototype, "certHash");
AsnProp({ type: IssuerSerial, optional: true })(EssCertId.prototype, "issuerSerial");

class SigningCertificateV2 {
  certs: EssCertIdV2[] = [];
}
AsnProp({ type: EssCertIdV2, repeated: "sequence" })(SigningCertificateV2.prototype, "certs");

class SigningCertificateV1 {
  certs: EssCertId[] = [];
}
AsnProp({ type: EssCertId, repeated: "sequence" })(SigningCertificateV1.prototype, "certs");

/** SignedAttributes re-encoded as the SET OF the signature covers (RFC 5652 §5.4) */
class SignedAttributesSet extends AsnArray<Attribute> {
  constructor(items?: Attribute[]) {
    super(items);
    Object.setPrototypeOf(this, SignedAttributesSet.prototype);
  }
}
AsnType({ type: AsnTypeTypes.Set, itemType: Attribute })(SignedAttributesSet);

class UtcOrGeneralizedTime {
  utcTime?: Date;
  generalTime?: Date;
}
AsnType({ type: AsnTypeTypes.Choice })(UtcOrGeneralizedTime);
AsnProp({ type: AsnPropTypes.UTCTime })(UtcOrGeneralizedTime.prototype, "utcTime");
AsnProp({ type: AsnPropTypes.GeneralizedTime })(UtcOrGeneralizedTime.prototype, "generalTime");

/** DER of the OBJECT IDENTIFIER id-ct-TSTInfo, what the content-type attribute must hold */
const TSTINFO_OID_DER = Buffer.from("060b2a864886f70d0109100104", "hex");

function parse<T>(bytes: ArrayBuffer | Uint8Array, type: new () => T, what: string): T {
  try {
    return AsnConvert.parse(bytes, type);
  } catch (err) {
    throw new TimestampError(`${what} cannot be decoded (${(err as Error).message})`);
  }
}

function equalBytes(a: ArrayBuffer | Uint8Array, b: ArrayBuffer | Uint8Array): boolean {
  return Buffer.from(a instanceof Uint8Array ? a : new Uint8Array(a)).equals(
    Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)),
  );
}

function digest(hash: string, data: ArrayBuffer | Uint8Array): Buffer {
  return createHash(hash)
    .update(data instanceof Uint8Array ? data : new Uint8Array(data))
    .digest();
}

/** the one value of the attribute `type`, undefined when absent; twice or multi-valued is an error */
function singleAttribute(attributes: Attribute[], type: string, name: string): ArrayBuffer | undefined {
  const found = attributes.filter((a) => a.attrType === type);
  if (found.length === 0) return undefined;
  if (found.length > 1 || found[0]?.attrValues.length !== 1)
    throw new TimestampError(`the ${name} signed attribute must appear once with one value`);
  return found[0].attrValues[0] as ArrayBuffer;
}

interface ParsedToken {
  tstInfo: TSTInfo;
  tstInfoBytes: ArrayBuffer;
  certificates: X509Certificate[];
  /** peculiar's view of each certificate, same order, for issuer/serial matching */
  parsedCertificates: Certificate[];
  signedData: SignedData;
}

function parseToken(token: Buffer): ParsedToken {
  if (token.length === 0) throw new TimestampError("the timestamp token is empty");
  if (token.length > MAX_TIMESTAMP_TOKEN_BYTES)
    throw new TimestampError(
      `the timestamp token is ${token.length} bytes, more than ${MAX_TIMESTAMP_TOKEN_BYTES}`,
    );
  const contentInfo = parse(token, ContentInfo, "the timestamp token (CMS ContentInfo)");
  // Re-encoding gives the same bytes only for one DER value with nothing after it.
  if (!equalBytes(AsnConvert.serialize(contentInfo), token))
    throw new TimestampError("the timestamp token is not a single DER-encoded ContentInfo");
  if (contentInfo.contentType !== id_signedData)
    throw new TimestampError(
      `the timestamp token's content type is ${contentInfo.contentType}, not SignedData`,
    );
  const signedData = parse(contentInfo.content, SignedData, "the timestamp token's SignedData");
  // DER all the way down: then the certificates and signed attributes re-encoded below are
  // byte-for-byte the token's (a BER variant, e.g. a BOOLEAN 0x01 in a certificate, is refused).
  if (!equalBytes(AsnConvert.serialize(signedData), contentInfo.content))
    throw new TimestampError("the timestamp token's SignedData is not DER-encoded");
  const eci = signedData.encapContentInfo;
  if (eci.eContentType !== id_ct_tstInfo)
    throw new TimestampError(`the timestamp token encapsulates ${eci.eContentType}, not a TSTInfo`);
  const tstInfoOctets = eci.eContent?.single;
  if (!tstInfoOctets) throw new TimestampError("the timestamp token has no TSTInfo content");
  const tstInfoBytes = tstInfoOctets.buffer;
  const tstInfo = parse(tstInfoBytes, TSTInfo, "the TSTInfo");
  const choices = signedData.certificates ?? [];
  if (choices.length > MAX_TOKEN_CERTIFICATES)
    throw new TimestampError(
      `the timestamp token carries ${choices.length} certificates, more than ${MAX_TOKEN_CERTIFICATES}`,
    );
  const certificates: X509Certificate[] = [];
  const parsedCertificates: Certificate[] = [];
  for (const choice of choices) {
    if (!choice.certificate) continue; // attribute and other certificate formats play no part
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(Buffer.from(AsnConvert.serialize(choice.certificate)));
    } catch {
      throw new TimestampError("a certificate in the timestamp token cannot be read");
    }
    certificates.push(cert);
    parsedCertificates.push(choice.certificate);
  }
  return { tstInfo, tstInfoBytes, certificates, parsedCertificates, signedData };
}

/** RFC 3161 §2.4.2 TSTInfo: version 1, messageImprint over `signature` */
function checkTstInfo(tst: TSTInfo, signature: Buffer) {
  if (tst.version !== 1) throw new TimestampError(`the TSTInfo version is ${tst.version}, not 1`);
  const alg = tst.messageImprint.hashAlgorithm.algorithm;
  const hash = HASHES[alg];
  if (!hash)
    throw new TimestampError(`the messageImprint hash algorithm ${alg} is not SHA-256, SHA-384 or SHA-512`);
  const imprint = Buffer.from(tst.messageImprint.hashedMessage.buffer);
  if (!imprint.equals(digest(hash.name, signature)))
    throw new TimestampError(
      "the timestamp's messageImprint is not the hash of this signature (the token timestamps other bytes)",
    );
  if (Number.isNaN(tst.genTime.getTime())) throw new TimestampError("the TSTInfo genTime is not a time");
}

/** Spec step "Retrieve the timestamp's accuracy", in milliseconds (tspclient-go TSTInfo.Validate). */
function accuracyMs(tst: TSTInfo): number {
  const a = tst.accuracy;
  const seconds = a?.seconds ?? 0;
  const millis = a?.millis ?? 0;
  const micros = a?.micros ?? 0;
  if (!Number.isSafeInteger(seconds) || seconds < 0)
    throw new TimestampError("the TSTInfo accuracy seconds are out of range");
  // RFC 3161 §2.4.2: millis and micros are INTEGER (1..999) when present.
  for (const [v, present] of [
    [millis, a?.millis !== undefined],
    [micros, a?.micros !== undefined],
  ] as const)
    if (present && (!Number.isInteger(v) || v < 1 || v > 999))
      throw new TimestampError("the TSTInfo accuracy millis/micros must be between 1 and 999");
  // Rounded up: a wider range is the cautious reading.
  const ms = Math.ceil(seconds * 1000 + millis + micros / 1000);
  if (ms === 0 && tst.policy === OID_BASELINE_TIMESTAMP_POLICY) return 1000;
  return ms;
}

/** The certificate the SignerInfo names (issuerAndSerialNumber), checked against the ESS attribute. */
function signerCertificate(
  parsed: ParsedToken,
  attributes: Attribute[],
  sidIssuer: Name,
  sidSerial: ArrayBuffer,
) {
  const issuerDer = AsnConvert.serialize(sidIssuer);
  const index = parsed.parsedCertificates.findIndex(
    (c) =>
      equalBytes(AsnConvert.serialize(c.tbsCertificate.issuer), issuerDer) &&
      equalBytes(c.tbsCertificate.serialNumber, sidSerial),
  );
  const cert = parsed.certificates[index];
  const parsedCert = parsed.parsedCertificates[index];
  if (index < 0 || !cert || !parsedCert)
    throw new TimestampError(
      "the timestamp token does not carry its signer's certificate (request timestamps with certReq)",
    );

  // Spec: validate the signing-certificate (RFC 2634) or signing-certificate-v2 (RFC 5035) attribute.
  const v2 = singleAttribute(attributes, OID_ATTR_SIGNING_CERTIFICATE_V2, "signing-certificate-v2");
  const v1 = singleAttribute(attributes, OID_ATTR_SIGNING_CERTIFICATE, "signing-certificate");
  let essHash: string;
  let first: EssCertId | EssCertIdV2 | undefined;
  if (v2) {
    first = parse(v2, SigningCertificateV2, "the signing-certificate-v2 attribute").certs[0];
    const alg = (first as EssCertIdV2 | undefined)?.hashAlgorithm?.algorithm ?? "2.16.840.1.101.3.4.2.1";
    const h = HASHES[alg];
    if (!h) throw new TimestampError(`the signing-certificate-v2 hash algorithm ${alg} is not supported`);
    essHash = h.name;
  } else if (v1) {
    first = parse(v1, SigningCertificateV1, "the signing-certificate attribute").certs[0];
    essHash = "sha1"; // RFC 2634 §5.4.1: ESSCertID certHash is the SHA-1 hash of the certificate
  } else
    throw new TimestampError(
      "the timestamp's signer info has no signing-certificate or signing-certificate-v2 attribute",
    );
  if (!first) throw new TimestampError("the signing-certificate attribute names no certificate");
  // The first ESSCertID is the signer's (RFC 5035 §3).
  if (!Buffer.from(first.certHash.buffer).equals(digest(essHash, cert.raw)))
    throw new TimestampError(
      "the signing-certificate attribute does not name the certificate that signed the timestamp",
    );
  if (first.issuerSerial) {
    const certIssuer = AsnConvert.serialize(parsedCert.tbsCertificate.issuer);
    const issuerMatches = first.issuerSerial.issuer.some(
      (n) => n.directoryName !== undefined && equalBytes(AsnConvert.serialize(n.directoryName), certIssuer),
    );
    if (
      !issuerMatches ||
      !equalBytes(first.issuerSerial.serialNumber, parsedCert.tbsCertificate.serialNumber)
    )
      throw new TimestampError("the signing-certificate attribute's issuer and serial are not the signer's");
  }
  return cert;
}

/** RFC 5652 §5.4 and §5.6: signed attributes, then the signature over them. */
function checkSignerInfo(parsed: ParsedToken): X509Certificate {
  const infos = parsed.signedData.signerInfos;
  // RFC 3161 §2.4.2: the TSA signs the token; one signer, as every TSA writes it.
  if (infos.length !== 1)
    throw new TimestampError(`the timestamp token has ${infos.length} signer infos; exactly one is expected`);
  const si = infos[0] as (typeof infos)[number];
  const sid = si.sid.issuerAndSerialNumber;
  if (si.version !== 1 || !sid)
    throw new TimestampError(
      "the timestamp's signer info must be version 1 and name its certificate by issuer and serial",
    );
  const attributes = si.signedAttrs;
  if (!attributes || attributes.length === 0)
    throw new TimestampError("the timestamp's signer info has no signed attributes");
  const digestAlg = HASHES[si.digestAlgorithm.algorithm];
  if (!digestAlg)
    throw new TimestampError(
      `the timestamp's digest algorithm ${si.digestAlgorithm.algorithm === OID_SHA1 ? "SHA-1" : si.digestAlgorithm.algorithm} is not SHA-256, SHA-384 or SHA-512`,
    );

  const contentType = singleAttribute(attributes, OID_ATTR_CONTENT_TYPE, "content-type");
  if (!contentType || !equalBytes(contentType, TSTINFO_OID_DER))
    throw new TimestampError("the content-type signed attribute is missing or is not id-ct-TSTInfo");
  const messageDigest = singleAttribute(attributes, OID_ATTR_MESSAGE_DIGEST, "message-digest");
  if (!messageDigest) throw new TimestampError("the message-digest signed attribute is missing");
  const expected = parse(messageDigest, OctetString, "the message-digest attribute");
  if (!Buffer.from(expected.buffer).equals(digest(digestAlg.name, parsed.tstInfoBytes)))
    throw new TimestampError("the message-digest signed attribute does not match the TSTInfo");

  const cert = signerCertificate(parsed, attributes, sid.issuer, sid.serialNumber);

  const signedBytes = Buffer.from(AsnConvert.serialize(new SignedAttributesSet(attributes)));
  const sigAlg = si.signatureAlgorithm.algorithm;
  const keyType = cert.publicKey.asymmetricKeyType;
  const signature = Buffer.from(si.signature.buffer);
  let ok = false;
  try {
    const withHash = SIGNATURE_WITH_HASH[sigAlg];
    if (withHash) {
      if (withHash.key !== keyType)
        throw new TimestampError(`signature algorithm ${sigAlg} does not fit the ${keyType} key`);
      ok = verify(withHash.hash, signedBytes, cert.publicKey, signature);
    } else if (sigAlg === OID_RSA && keyType === "rsa") {
      ok = verify(
        digestAlg.name,
        signedBytes,
        { key: cert.publicKey, padding: constants.RSA_PKCS1_PADDING },
        signature,
      );
    } else if (sigAlg === OID_RSA_PSS && keyType === "rsa") {
      // As Go's SHA*WithRSAPSS: MGF1 with the digest's hash, salt as long as the hash.
      ok = verify(
        digestAlg.name,
        signedBytes,
        { key: cert.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: digestAlg.bytes },
        signature,
      );
    } else throw new TimestampError(`the timestamp's signature algorithm ${sigAlg} is not supported`);
  } catch (err) {
    if (err instanceof TimestampError) throw err;
    ok = false;
  }
  if (!ok)
    throw new TimestampError("the timestamp token's signature does not verify with its signer's certificate");

  // tspclient-go verifySignedAttributes: a signing-time attribute, when present, must fall inside
  // the signer certificate's validity (checked against the chain below as well).
  const signingTime = singleAttribute(attributes, OID_ATTR_SIGNING_TIME, "signing-time");
  if (signingTime) {
    const t = parse(signingTime, UtcOrGeneralizedTime, "the signing-time attribute");
    const at = t.utcTime ?? t.generalTime;
    if (!at || at.getTime() < Date.parse(cert.validFrom) || at.getTime() > Date.parse(cert.validTo))
      throw new TimestampError(
        "the timestamp's signing-time attribute is outside its signer certificate's validity",
      );
  }
  return cert;
}

/**
 * signer → certificates of the token → a certificate of the `tsa` stores. The path ends at the
 * first certificate that is byte-for-byte a trusted one (trust anchors are roots: material.ts).
 */
function tsaChain(
  signer: X509Certificate,
  tokenCerts: X509Certificate[],
  trusted: readonly X509Certificate[],
) {
  const chain = [signer];
  for (;;) {
    const current = chain[chain.length - 1] as X509Certificate;
    if (trusted.some((t) => t.raw.equals(current.raw))) return chain;
    if (chain.length >= MAX_CHAIN_LENGTH) break;
    const issuer =
      trusted.find((t) => isIssuedBy(current, t)) ??
      tokenCerts.find((c) => !chain.includes(c) && !c.raw.equals(current.raw) && isIssuedBy(current, c));
    if (!issuer || isSelfSigned(current)) break;
    chain.push(issuer);
  }
  throw new TimestampError(
    `the timestamp's signing certificate "${subjectString(signer)}" does not chain to a certificate of the trust policy's tsa trust stores`,
  );
}

/**
 * Verifies `token` as the RFC 3161 countersignature of `signature` (the envelope's signature
 * bytes) against the `tsa` store certificates `trusted`. Throws TimestampError saying why not.
 */
export function verifyTimestampToken(
  token: Buffer,
  signature: Buffer,
  trusted: readonly X509Certificate[],
): VerifiedTimestamp {
  try {
    const parsed = parseToken(token);
    checkTstInfo(parsed.tstInfo, signature);
    const signer = checkSignerInfo(parsed);
    const genTime = parsed.tstInfo.genTime;
    const chain = tsaChain(signer, parsed.certificates, trusted);
    const problem = timestampingChainProblem(chain, genTime);
    if (problem) throw new TimestampError(`the timestamping certificate chain is invalid: ${problem}`);
    const accuracy = accuracyMs(parsed.tstInfo);
    return {
      genTime,
      accuracyMs: accuracy,
      lower: new Date(genTime.getTime() - accuracy),
      upper: new Date(genTime.getTime() + accuracy),
      tsaChain: chain,
    };
  } catch (err) {
    if (err instanceof TimestampError) throw err;
    if (err instanceof CertificateFormatError) throw new TimestampError(err.message);
    // A schema or crypto failure on hostile input is a bad token, never a crash.
    throw new TimestampError(`the timestamp token cannot be processed (${(err as Error).message})`);
  }
}
