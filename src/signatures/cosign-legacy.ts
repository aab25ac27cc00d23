/**
 * cosign "legacy" signatures (the `sha256-<hex>.sig` image; sigstore/cosign specs/SIGNATURE_SPEC.md):
 * each layer is a simple-signing payload (containers/image docs/containers-signature.5.md) with the
 * base64 signature over the payload's exact bytes in `dev.cosignproject.cosign/signature`.
 *
 * A layer counts for digest D of image I when, in this order:
 *  1. its signature verifies over the payload bytes with one of the rule's keys (node:crypto:
 *     ECDSA P-256 / RSA PKCS#1 v1.5 with SHA-256, ed25519 over the message: cosign's defaults),
 *     or by a certificate of one of its identities (below);
 *  2. the payload's `critical.type` is "cosign container image signature";
 *  3. `critical.image.docker-manifest-digest` is exactly D (else a valid signature of another
 *     manifest would vouch for this one: containers/image policy_eval_sigstore_test.go
 *     "modified manifest");
 *  4. `critical.identity.docker-reference`, normalised as docker does (docker.io default,
 *     library/ for one-segment names, index.docker.io = docker.io, tag or digest dropped), is I
 *     or one of the rule's `dockerReferences` (mirrors, registry aliases: the name the publisher
 *     signed under when trustgate serves it under another; containers/image matchRepository).
 * Step 1 for a layer with a Fulcio certificate annotation (keyless) or, under `requireTlog`, for a
 * key-signed layer: the layer restated as a Sigstore bundle and verified against the rule's
 * trusted root with its Rekor bundle annotation (cosign-legacy-sigstore.ts); a keyless signer must
 * then be one of the rule's identities (identity.ts).
 */
import { verify } from "node:crypto";
import { isValidRegistryHost } from "../oci/reference.js";
import { COSIGN_CERTIFICATE_ANNOTATION, verifyLegacySigstore } from "./cosign-legacy-sigstore.js";
import {
  COSIGN_SIGNATURE_ANNOTATION,
  type DiscoveredSignatures,
  SIMPLE_SIGNING_MEDIA_TYPE,
} from "./discover.js";
import { matchingIdentity } from "./identity.js";
import type { CosignKey, LoadedCosignRule } from "./types.js";

export const SIMPLE_SIGNING_TYPE = "cosign container image signature";

export interface LegacyResult {
  readonly satisfied: boolean;
  /** satisfied: which key; else why no layer counted */
  readonly detail: string;
}

export async function verifyCosignLegacy(
  rule: LoadedCosignRule,
  image: string,
  found: DiscoveredSignatures,
): Promise<LegacyResult> {
  const sig = found.legacy;
  if (!sig) return { satisfied: false, detail: `no cosign .sig image for ${found.digest}` };
  const why: string[] = [];
  for (const [i, layer] of sig.layers.entries()) {
    const at = `.sig layer ${i}`;
    if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) {
      why.push(`${at}: media type ${layer.mediaType} is not a simple-signing payload`);
      continue;
    }
    const b64 = layer.annotations[COSIGN_SIGNATURE_ANNOTATION];
    if (!b64) {
      why.push(`${at}: no ${COSIGN_SIGNATURE_ANNOTATION} annotation`);
      continue;
    }
    const signature = Buffer.from(b64, "base64");
    const payload = await found.blob(layer);
    const signer = signerOf(rule, layer.annotations, payload, signature);
    if (typeof signer === "string") {
      why.push(`${at}: ${signer}`);
      continue;
    }
    const claim = payloadClaims(payload);
    if (typeof claim === "string") {
      why.push(`${at} (${signer.short}): ${claim}`);
      continue;
    }
    if (claim.digest !== found.digest) {
      why.push(`${at} (${signer.short}): the payload names ${claim.digest}, not ${found.digest}`);
      continue;
    }
    const signedAs = normaliseRepository(claim.reference);
    const allowed = [image, ...rule.dockerReferences.map((r) => normaliseRepository(r))];
    if (signedAs === undefined || !allowed.includes(signedAs)) {
      why.push(
        `${at} (${signer.short}): signed for repository ${claim.reference}, not ${image}` +
          (rule.dockerReferences.length > 0
            ? ` or ${rule.dockerReferences.join(", ")}`
            : " (dockerReferences lists aliases)"),
      );
      continue;
    }
    return {
      satisfied: true,
      detail: `cosign signature by ${signer.who} for ${claim.reference}`,
    };
  }
  return { satisfied: false, detail: why.join("; ") || `the .sig image of ${found.digest} has no layers` };
}

/**
 * Who signed the layer, as the rule accepts signers; else why the layer does not count. The
 * rule's keys are tried first (a key-signed layer may also carry a certificate, cosign's
 * `sign --key --certificate`), then the certificate annotation against the rule's identities.
 */
function signerOf(
  rule: LoadedCosignRule,
  annotations: Readonly<Record<string, string>>,
  payload: Buffer,
  signature: Buffer,
): Signed | string {
  const keyless = annotations[COSIGN_CERTIFICATE_ANNOTATION] !== undefined;
  const problems: string[] = [];
  if (rule.material.keys.length > 0) {
    const byKey = keySigner(rule, annotations, payload, signature);
    if (typeof byKey !== "string") return byKey;
    problems.push(byKey);
  } else if (!keyless) problems.push("signed with a key, and the rule lists no keys");
  if (keyless) {
    const root = rule.material.trustedRoot;
    if (!root || rule.identities.length === 0)
      problems.push("signed keyless (a certificate annotation), and the rule lists no identities");
    else {
      const v = verifyLegacySigstore({ payload, signature, annotations, trustedRoot: root });
      const san = typeof v === "string" ? undefined : v.signer.identity?.subjectAlternativeName;
      const issuer = typeof v === "string" ? undefined : v.signer.identity?.extensions?.issuer;
      if (typeof v === "string") problems.push(`keyless: ${v}`);
      else if (!matchingIdentity(rule.identities, san, issuer))
        problems.push(
          `signed by ${san ?? "(no SAN)"} (issuer ${issuer ?? "none"}), not an identity the rule lists`,
        );
      else
        return {
          who: `identity ${san} (issuer ${issuer}), Rekor entry ${v.logIndex}`,
          short: `identity ${san}`,
        };
    }
  }
  return problems.join("; ");
}

interface Signed {
  /** for the verdict: "key cosign.pub (ecdsa-p256)", "identity a@b (issuer ...), Rekor entry N" */
  readonly who: string;
  /** for reasons about the payload: "key cosign.pub", "identity a@b" */
  readonly short: string;
}

function keySigner(
  rule: LoadedCosignRule,
  annotations: Readonly<Record<string, string>>,
  payload: Buffer,
  signature: Buffer,
): Signed | string {
  const keys = rule.material.keys;
  const root = rule.material.trustedRoot;
  if (!rule.requireTlog) {
    const key = keys.find((k) => verifies(k, payload, signature));
    return key
      ? { who: `key ${key.name} (${key.algorithm})`, short: `key ${key.name}` }
      : `signature does not verify with ${keys.map((k) => k.name).join(", ")}`;
  }
  // requireTlog: the rule's trusted root holds the Rekor keys (parse-file.ts requires it)
  if (!root) return "requireTlog without a trusted root";
  const problems: string[] = [];
  for (const key of keys) {
    const v = verifyLegacySigstore({ payload, signature, annotations, trustedRoot: root, key: key.key });
    if (typeof v !== "string")
      return {
        who: `key ${key.name} (${key.algorithm}), Rekor entry ${v.logIndex}`,
        short: `key ${key.name}`,
      };
    // a missing or unreadable Rekor bundle is the same for every key
    if (v.startsWith("requireTlog") || v.startsWith("its Rekor bundle")) return v;
    problems.push(`with ${key.name}: ${v}`);
  }
  return problems.join("; ");
}

function verifies(key: CosignKey, payload: Buffer, signature: Buffer): boolean {
  try {
    // ed25519 signs the message itself (no pre-hash); ECDSA (DER signature) and RSA use SHA-256.
    return verify(key.algorithm === "ed25519" ? null : "sha256", payload, key.key, signature);
  } catch {
    return false;
  }
}

function payloadClaims(payload: Buffer): { digest: string; reference: string } | string {
  let doc: {
    critical?: {
      type?: unknown;
      image?: { "docker-manifest-digest"?: unknown };
      identity?: { "docker-reference"?: unknown };
    };
  };
  try {
    doc = JSON.parse(payload.toString("utf8")) as typeof doc;
  } catch {
    return "the payload is not JSON";
  }
  const c = doc.critical;
  if (c?.type !== SIMPLE_SIGNING_TYPE) return `the payload's critical.type is not "${SIMPLE_SIGNING_TYPE}"`;
  const digest = c.image?.["docker-manifest-digest"];
  const reference = c.identity?.["docker-reference"];
  if (typeof digest !== "string") return "the payload has no critical.image.docker-manifest-digest";
  if (typeof reference !== "string") return "the payload has no critical.identity.docker-reference";
  return { digest, reference };
}

/**
 * A docker reference as a canonical repository name (distribution/reference normalize.go):
 * `alpine` -> docker.io/library/alpine, `index.docker.io/x/y:1` -> docker.io/x/y. Undefined
 * when it is not a reference.
 */
export function normaliseRepository(reference: string): string | undefined {
  let name = reference.split("@")[0] as string;
  const lastSlash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  if (colon > lastSlash) name = name.slice(0, colon);
  const parts = name.split("/");
  const first = parts[0] as string;
  let registry = "docker.io";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    registry = first;
    parts.shift();
  }
  if (
    !isValidRegistryHost(registry) ||
    parts.length === 0 ||
    parts.some((p) => !/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(p))
  )
    return undefined;
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = "docker.io";
  if (registry === "docker.io" && parts.length === 1) parts.unshift("library");
  return `${registry.toLowerCase()}/${parts.join("/")}`;
}
