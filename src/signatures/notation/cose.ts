/**
 * The Notary Project COSE envelope (specs/signature-envelope-cose.md): COSE_Sign1_Tagged (tag 18,
 * RFC 9052 §4.2) whose protected header holds the signed attributes (label 1 alg, 2 crit, 3 content
 * type, and the io.cncf.notary.* names, times as epoch date/time, tag 1), label 33 `x5chain` the
 * chain (RFC 9360), the signature over Sig_structure ["Signature1", protected, h'', payload].
 * CBOR is decoded and encoded with cbor2 (strict: no duplicate keys, no indefinite lengths, no
 * tag decoding beyond what is read here); the checks common to both formats are in envelope.ts.
 */
import { X509Certificate } from "node:crypto";
import { type DecodeOptions, decode, encode, Tag } from "cbor2";
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

export const MEDIA_TYPE_COSE = "application/cose";

/** IANA COSE algorithms -> the spec's algorithms ("Supported alg header values"). */
const COSE_ALGORITHMS = new Map<number, NotationAlgorithm>([
  [-37, "PS256"],
  [-38, "PS384"],
  [-39, "PS512"],
  [-7, "ES256"],
  [-35, "ES384"],
  [-36, "ES512"],
]);
const LABEL_ALG = 1;
const LABEL_CRIT = 2;
const LABEL_CONTENT_TYPE = 3;
const LABEL_X5CHAIN = 33;
const COSE_SIGN1_TAG = 18;

const STRICT: DecodeOptions = {
  preferMap: true,
  rejectDuplicateKeys: true,
  rejectStreaming: true,
  ignoreGlobalTags: true,
  maxDepth: 16,
};

function decodeStrict(bytes: Uint8Array, what: string): unknown {
  try {
    return decode(bytes, STRICT);
  } catch (err) {
    throw new IntegrityError(`${what} is not valid CBOR (${(err as Error).message})`);
  }
}

/** RFC 8949 §3.4.2 epoch-based date/time (tag 1 over an integer); undefined when absent. */
function epochTime(header: Map<unknown, unknown>, name: string): Date | undefined {
  if (!header.has(name)) return undefined;
  const v = header.get(name);
  if (
    !(v instanceof Tag) ||
    Number(v.tag) !== 1 ||
    typeof v.contents !== "number" ||
    !Number.isInteger(v.contents)
  )
    throw new IntegrityError(`${name} is not an epoch date/time (tag 1)`);
  return new Date(v.contents * 1000);
}

function bstr(v: unknown, what: string): Buffer {
  if (!(v instanceof Uint8Array)) throw new IntegrityError(`${what} is not a byte string`);
  return Buffer.from(v);
}

/**
 * Parses `bytes` as COSE_Sign1_Tagged and verifies it (envelope.ts verifyEnvelopeParts).
 * Throws IntegrityError saying what is wrong.
 */
export function verifyCoseEnvelope(bytes: Uint8Array): EnvelopeContent {
  if (bytes.length > MAX_ENVELOPE_BYTES)
    throw new IntegrityError(`the envelope is ${bytes.length} bytes, more than ${MAX_ENVELOPE_BYTES}`);
  const top = decodeStrict(bytes, "the COSE envelope");
  if (!(top instanceof Tag) || Number(top.tag) !== COSE_SIGN1_TAG)
    throw new IntegrityError("the COSE envelope is not a COSE_Sign1_Tagged message (tag 18)");
  const parts = top.contents;
  if (!Array.isArray(parts) || parts.length !== 4)
    throw new IntegrityError("a COSE_Sign1 message is an array of four items");
  const protectedBytes = bstr(parts[0], "the protected header");
  const unprotected = parts[1];
  // A detached payload (nil) is not what Notation writes for OCI signatures.
  const payload = bstr(parts[2], "the payload");
  const signature = bstr(parts[3], "the signature");
  if (!(unprotected instanceof Map)) throw new IntegrityError("the unprotected header is not a map");
  const header = decodeStrict(protectedBytes, "the protected header");
  if (!(header instanceof Map)) throw new IntegrityError("the protected header is not a map");

  // RFC 9360: x5chain is one bstr or an array of them; the spec puts it in the unprotected
  // header "optionally ... in the protected header". A header in both buckets is ambiguous.
  if (header.has(LABEL_X5CHAIN) && unprotected.has(LABEL_X5CHAIN))
    throw new IntegrityError("x5chain is in both the protected and the unprotected header");
  const rawChain = header.get(LABEL_X5CHAIN) ?? unprotected.get(LABEL_X5CHAIN);
  const entries = rawChain instanceof Uint8Array ? [rawChain] : rawChain;
  if (!Array.isArray(entries) || entries.length === 0)
    throw new IntegrityError("there is no x5chain certificate chain");
  if (entries.length > MAX_CHAIN_LENGTH)
    throw new IntegrityError(`the x5chain has ${entries.length} certificates, more than ${MAX_CHAIN_LENGTH}`);
  const chain = entries.map((entry, i) => {
    const der = bstr(entry, `x5chain[${i}]`);
    try {
      return new X509Certificate(der);
    } catch {
      throw new IntegrityError(`x5chain[${i}] is not a certificate`);
    }
  });

  const alg = header.get(LABEL_ALG);
  // RFC 9052 §4.4: ToBeSigned = Sig_structure ["Signature1", body_protected, external_aad, payload].
  // Plain Uint8Arrays: cbor2 encodes a Node Buffer as an object ({type: "Buffer", data}), not a bstr.
  const signedBytes = Buffer.from(
    encode(["Signature1", new Uint8Array(protectedBytes), new Uint8Array(0), new Uint8Array(payload)]),
  );
  return verifyEnvelopeParts({
    attributes: {
      alg: typeof alg === "number" ? COSE_ALGORITHMS.get(alg) : undefined,
      algWritten: String(alg),
      contentType: header.get(LABEL_CONTENT_TYPE),
      signingScheme: header.get(HEADER_SCHEME),
      signingTime: epochTime(header, HEADER_SIGNING_TIME),
      authenticSigningTime: epochTime(header, HEADER_AUTHENTIC_TIME),
      expiry: epochTime(header, HEADER_EXPIRY),
      critical: header.get(LABEL_CRIT),
    },
    chain,
    signedBytes,
    signature,
    payload,
    timestampSignature: timestampSignature(unprotected),
  });
}

/** `io.cncf.notary.timestampSignature` in the unprotected header: the TimeStampToken as a bstr. */
function timestampSignature(unprotected: Map<unknown, unknown>): TimestampSignature | undefined {
  if (!unprotected.has(HEADER_TIMESTAMP_SIGNATURE)) return undefined;
  const v = unprotected.get(HEADER_TIMESTAMP_SIGNATURE);
  if (!(v instanceof Uint8Array)) return { problem: `${HEADER_TIMESTAMP_SIGNATURE} is not a byte string` };
  if (v.length > MAX_TIMESTAMP_TOKEN_BYTES)
    return {
      problem: `${HEADER_TIMESTAMP_SIGNATURE} is ${v.length} bytes, more than ${MAX_TIMESTAMP_TOKEN_BYTES}`,
    };
  return { token: Buffer.from(v) };
}
