/**
 * cosign "legacy" signatures (the `sha256-<hex>.sig` image; sigstore/cosign specs/SIGNATURE_SPEC.md):
 * each layer is a simple-signing payload (containers/image docs/containers-signature.5.md) with the
 * base64 signature over the payload's exact bytes in `dev.cosignproject.cosign/signature`.
 *
 * A layer counts for digest D of image I when, in this order:
 *  1. its signature verifies over the payload bytes with one of the rule's keys (node:crypto:
 *     ECDSA P-256 / RSA PKCS#1 v1.5 with SHA-256, ed25519 over the message: cosign's defaults);
 *  2. the payload's `critical.type` is "cosign container image signature";
 *  3. `critical.image.docker-manifest-digest` is exactly D (else a valid signature of another
 *     manifest would vouch for this one: containers/image policy_eval_sigstore_test.go
 *     "modified manifest");
 *  4. `critical.identity.docker-reference`, normalised as docker does (docker.io default,
 *     library/ for one-segment names, index.docker.io = docker.io, tag or digest dropped), is I
 *     or one of the rule's `dockerReferences` (mirrors, registry aliases: the name the publisher
 *     signed under when trustgate serves it under another; containers/image matchRepository).
 * Keyless legacy signatures (certificate annotations) and Rekor bundle annotations are not
 * verified here: with `requireTlog` or without a matching key such a layer does not count.
 */
import { verify } from "node:crypto";
import { isValidRegistryHost } from "../oci/reference.js";
import {
  COSIGN_SIGNATURE_ANNOTATION,
  type DiscoveredSignatures,
  SIMPLE_SIGNING_MEDIA_TYPE,
} from "./discover.js";
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
    if (rule.requireTlog) {
      why.push(`${at}: requireTlog: a legacy signature's Rekor proof is not verified by this build`);
      continue;
    }
    const signature = Buffer.from(b64, "base64");
    const payload = await found.blob(layer);
    const key = rule.material.keys.find((k) => verifies(k, payload, signature));
    if (!key) {
      why.push(
        rule.material.keys.length === 0
          ? `${at}: keyless legacy signatures are not verified by this build`
          : `${at}: signature does not verify with ${rule.material.keys.map((k) => k.name).join(", ")}`,
      );
      continue;
    }
    const claim = payloadClaims(payload);
    if (typeof claim === "string") {
      why.push(`${at} (key ${key.name}): ${claim}`);
      continue;
    }
    if (claim.digest !== found.digest) {
      why.push(`${at} (key ${key.name}): the payload names ${claim.digest}, not ${found.digest}`);
      continue;
    }
    const signedAs = normaliseRepository(claim.reference);
    const allowed = [image, ...rule.dockerReferences.map((r) => normaliseRepository(r))];
    if (signedAs === undefined || !allowed.includes(signedAs)) {
      why.push(
        `${at} (key ${key.name}): signed for repository ${claim.reference}, not ${image}` +
          (rule.dockerReferences.length > 0
            ? ` or ${rule.dockerReferences.join(", ")}`
            : " (dockerReferences lists aliases)"),
      );
      continue;
    }
    return {
      satisfied: true,
      detail: `cosign signature by key ${key.name} (${key.algorithm}) for ${claim.reference}`,
    };
  }
  return { satisfied: false, detail: why.join("; ") || `the .sig image of ${found.digest} has no layers` };
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
