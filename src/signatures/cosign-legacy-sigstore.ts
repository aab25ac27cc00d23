/**
 * The Sigstore half of a cosign legacy signature (sigstore/cosign specs/SIGNATURE_SPEC.md): a
 * `.sig` layer may carry the signer's Fulcio certificate (`dev.sigstore.cosign/certificate`, its
 * chain in `dev.sigstore.cosign/chain`) and Rekor's answer when it was logged
 * (`dev.sigstore.cosign/bundle`: `{SignedEntryTimestamp, Payload: {body, integratedTime,
 * logIndex, logID}}`, cosign pkg/cosign/bundle/rekor.go).
 *
 * That is the content of a Sigstore bundle v0.1 with a message signature over the payload bytes,
 * so the layer is restated as one and verified by @sigstore/verify against the local
 * trusted_root.json: the certificate chains to a Fulcio CA of the trusted root at the time Rekor
 * integrated the entry (a Fulcio certificate lives ten minutes), carries an SCT of a trusted CT
 * log, the SET is signed by a trusted Rekor key, the entry's hashedrekord names this signature
 * and the sha256 of this payload, and the signature verifies over the payload. Nothing is
 * fetched from Fulcio or Rekor.
 *
 * Two choices beyond the library, both as cosign makes them:
 *  - the entry must also name the signer (the certificate, or the key), as cosign's
 *    VerifyTLogEntryOffline compares the entry's public key with the verifier's: @sigstore/verify
 *    compares only signature and digest, and a log entry for the same signature under another
 *    key (ECDSA admits such keys) must not date this certificate;
 *  - trust comes from the trusted root only: the chain annotation is the signer's claim and is
 *    not needed (the trusted root carries Fulcio's intermediates), so it is not read.
 */
import { createHash, createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import { bundleFromJSON } from "@sigstore/bundle";
import { type Signer, type TrustMaterial, toSignedEntity, Verifier } from "@sigstore/verify";
import { errorText, trustWithKey } from "./sigstore-bundle.js";

export const COSIGN_CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate";
export const COSIGN_REKOR_BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle";

/** Who signed, and the Rekor entry that dated it (when there is one). */
export interface LegacySigner {
  readonly signer: Signer;
  readonly logIndex: string | undefined;
}

interface RekorEntry {
  readonly json: Record<string, unknown>;
  readonly logIndex: string;
  readonly body: Buffer;
}

/**
 * Verify a legacy layer with its Sigstore material. `key` given: key-signed, and the Rekor entry
 * is what is checked (requireTlog); otherwise keyless: the certificate annotation is the signer.
 * Either way a verified Rekor entry is required. A string is why it does not verify.
 */
export function verifyLegacySigstore(input: {
  readonly payload: Buffer;
  readonly signature: Buffer;
  readonly annotations: Readonly<Record<string, string>>;
  readonly trustedRoot: TrustMaterial;
  readonly key?: KeyObject;
}): LegacySigner | string {
  const rekorText = input.annotations[COSIGN_REKOR_BUNDLE_ANNOTATION];
  let entry: RekorEntry | undefined;
  if (rekorText !== undefined) {
    const parsed = rekorEntry(rekorText);
    if (typeof parsed === "string") return `its Rekor bundle annotation ${parsed}`;
    entry = parsed;
  }
  let signerDer: Buffer;
  let material: Record<string, unknown>;
  if (input.key) {
    if (!entry) return `requireTlog: the layer has no Rekor bundle (${COSIGN_REKOR_BUNDLE_ANNOTATION})`;
    signerDer = input.key.export({ type: "spki", format: "der" });
    material = { publicKey: { hint: "" } };
  } else {
    const pem = input.annotations[COSIGN_CERTIFICATE_ANNOTATION] as string;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      return `its ${COSIGN_CERTIFICATE_ANNOTATION} annotation is not a PEM certificate`;
    }
    // A keyless signature is only as old as a verified time says: without Rekor's integrated
    // time the ten-minute certificate could not be judged (cosign: no tlog entry, no verify).
    if (!entry)
      return `signed keyless, and the layer has no Rekor bundle (${COSIGN_REKOR_BUNDLE_ANNOTATION}) to date the certificate`;
    signerDer = cert.raw;
    material = { x509CertificateChain: { certificates: [{ rawBytes: cert.raw.toString("base64") }] } };
  }
  const entryProblem = entrySignerProblem(entry.body, signerDer);
  if (entryProblem) return `its Rekor entry ${entry.logIndex} ${entryProblem}`;

  let signer: Signer;
  try {
    const bundle = bundleFromJSON({
      mediaType: "application/vnd.dev.sigstore.bundle+json;version=0.1",
      verificationMaterial: { ...material, tlogEntries: [entry.json] },
      messageSignature: {
        messageDigest: {
          algorithm: "SHA2_256",
          digest: createHash("sha256").update(input.payload).digest("base64"),
        },
        signature: input.signature.toString("base64"),
      },
    });
    const keyless = input.key === undefined;
    const verifier = new Verifier(
      input.key ? trustWithKey(input.trustedRoot, input.key) : input.trustedRoot,
      {
        tlogThreshold: 1,
        ctlogThreshold: keyless ? 1 : 0,
        timestampThreshold: keyless ? 1 : 0,
      },
    );
    signer = verifier.verify(toSignedEntity(bundle, input.payload));
  } catch (e) {
    return errorText(e);
  }
  return { signer, logIndex: entry.logIndex };
}

/** The Rekor bundle annotation as a TransparencyLogEntry (protobuf JSON), or what is wrong. */
function rekorEntry(text: string): RekorEntry | string {
  let doc: { SignedEntryTimestamp?: unknown; Payload?: Record<string, unknown> };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    return "is not JSON";
  }
  const p = doc.Payload;
  const set = doc.SignedEntryTimestamp;
  if (
    typeof set !== "string" ||
    typeof p !== "object" ||
    p === null ||
    typeof p.body !== "string" ||
    !Number.isSafeInteger(p.integratedTime) ||
    !Number.isSafeInteger(p.logIndex) ||
    typeof p.logID !== "string" ||
    !/^[0-9a-f]{64}$/.test(p.logID)
  )
    return "lacks SignedEntryTimestamp or Payload {body, integratedTime, logIndex, logID}";
  const body = Buffer.from(p.body, "base64");
  let kind: { kind?: unknown; apiVersion?: unknown };
  try {
    kind = JSON.parse(body.toString("utf8")) as typeof kind;
  } catch {
    return "has a body that is not JSON";
  }
  if (typeof kind.kind !== "string" || typeof kind.apiVersion !== "string")
    return "has a body without kind and apiVersion";
  const logIndex = String(p.logIndex);
  return {
    logIndex,
    body,
    json: {
      logIndex,
      logId: { keyId: Buffer.from(p.logID, "hex").toString("base64") },
      kindVersion: { kind: kind.kind, version: kind.apiVersion },
      integratedTime: String(p.integratedTime),
      inclusionPromise: { signedEntryTimestamp: set },
      canonicalizedBody: p.body,
    },
  };
}

/**
 * undefined when the hashedrekord entry's public key is the signer (certificate DER or the key's
 * SubjectPublicKeyInfo DER), else why not.
 */
function entrySignerProblem(body: Buffer, signerDer: Buffer): string | undefined {
  let doc: { kind?: unknown; spec?: { signature?: { publicKey?: { content?: unknown } } } };
  try {
    doc = JSON.parse(body.toString("utf8")) as typeof doc;
  } catch {
    return "is not JSON";
  }
  if (doc.kind !== "hashedrekord") return `is a ${String(doc.kind)} entry, not hashedrekord`;
  const content = doc.spec?.signature?.publicKey?.content;
  if (typeof content !== "string") return "names no public key";
  const pem = Buffer.from(content, "base64").toString("utf8");
  let named: Buffer;
  try {
    named = pem.includes("CERTIFICATE")
      ? new X509Certificate(pem).raw
      : createPublicKey(pem).export({ type: "spki", format: "der" });
  } catch {
    return "names a public key that cannot be read";
  }
  return named.equals(signerDer) ? undefined : "was logged for another signer than this layer's";
}
