/**
 * Finding the signatures of one manifest digest, where the signing tools store them:
 *
 *  - cosign "legacy": an OCI manifest at tag `sha256-<hex>.sig` whose layers are simple-signing
 *    payloads, each carrying `dev.cosignproject.cosign/signature` (sigstore/cosign
 *    pkg/oci/remote/remote.go SignatureTag; specs/SIGNATURE_SPEC.md);
 *  - OCI 1.1 referrers (cosign v3 bundles, Notation envelopes): `GET /v2/<name>/referrers/<digest>`
 *    (distribution-spec v1.1 "Listing Referrers"), and on a registry without that API (404, e.g.
 *    distribution 2.8) the referrers tag schema: an image index at tag `sha256-<hex>`
 *    ("Referrers Tag Schema", the fallback cosign, ORAS and notation write).
 *
 * Only the index or manifest at a tag is read by tag (that is how these tags work); every
 * manifest and blob it names is fetched BY DIGEST and its bytes checked against that digest, the
 * same as any manifest the proxy serves. Everything is bounded: manifest bytes by the client
 * (MANIFEST_MAX_BYTES), blobs and the number of artifacts here. No verification happens here.
 */
import { createHash } from "node:crypto";
import { MediaTypes } from "../oci/media-types.js";
import { parseDigest } from "../oci/reference.js";

export const SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
export const COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
export const SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json";
export const NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature";

/** Bounds against a hostile registry (a real .sig image has one layer per signature). */
export const DISCOVERY_LIMITS = Object.freeze({
  /** layers of a `.sig` image looked at */
  maxLegacySignatures: 32,
  /** referrer descriptors looked at, and of those fetched */
  maxReferrers: 256,
  maxReferrersFetched: 16,
  /** one simple-signing payload, bundle or envelope (cosign payloads are < 1 KiB, bundles ~6 KiB) */
  maxBlobBytes: 1024 * 1024,
});

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations: Readonly<Record<string, string>>;
}

/** A manifest whose bytes were fetched and checked against `digest`. */
export interface FetchedArtifact {
  readonly digest: string;
  readonly mediaType: string;
  /** the manifest's artifactType, else its config's media type (image-spec manifest.md) */
  readonly artifactType: string | undefined;
  readonly layers: readonly Descriptor[];
  readonly annotations: Readonly<Record<string, string>>;
  /** `subject.digest`, for referrers */
  readonly subject: string | undefined;
}

export interface DiscoveredSignatures {
  /** the digest whose signatures these are */
  readonly digest: string;
  /** the `sha256-<hex>.sig` image, when the registry has one */
  readonly legacy: FetchedArtifact | undefined;
  /** referrer manifests whose `subject` is `digest`, of the artifact types asked for */
  readonly referrers: readonly FetchedArtifact[];
  /** how referrers were listed */
  readonly referrersVia: "api" | "tag" | "none";
  /** the registry's referrers API was asked and answered 404/405 (it has none): remember it (ReferrersApiMemory) */
  readonly referrersApiAbsent: boolean;
  /** a blob named by one of these artifacts, by digest, checked, at most maxBlobBytes */
  blob(descriptor: Descriptor): Promise<Buffer>;
}

/** Transport: the registry client (upstream/client.ts) in the proxy, an OCI layout in tests. */
export interface SignatureFetcher {
  /** a manifest by tag or digest; undefined when the registry answers 404 */
  manifest(repository: string, reference: string): Promise<Buffer | undefined>;
  /** the referrers API's answer; "unsupported" when the registry answers 404 or 405 (no API) */
  referrers(repository: string, digest: string): Promise<Buffer | "unsupported">;
  /** a blob by digest, failing past `maxBytes` */
  blob(repository: string, digest: string, maxBytes: number): Promise<Buffer>;
}

/** The discovery's own failures (a hostile or broken registry): verification treats them as "not verified". */
export class DiscoveryError extends Error {
  readonly code = "SIGNATURE_DISCOVERY_FAILED";
}

export interface DiscoverOptions {
  /** look for the cosign `.sig` tag */
  legacy: boolean;
  /** referrer artifact types wanted (empty: referrers are not listed) */
  artifactTypes: readonly string[];
  /**
   * The registry is known to have no referrers API (ReferrersApiMemory): read the referrers tag
   * schema directly, one lookup instead of two.
   */
  referrersApiAbsent?: boolean;
}

/** How long "this registry has no referrers API" is believed before the API is asked again. */
export const REFERRERS_ABSENT_TTL_MS = 10 * 60_000;

/**
 * Per registry, that its referrers API answered 404 or 405. distribution-spec v1.1 "Listing
 * Referrers": a registry that supports the API "MUST NOT return a 404 Not Found to a referrers
 * API request", so a 404 means there is no API (distribution 2.8) and the client uses the
 * referrers tag schema. Remembered for REFERRERS_ABSENT_TTL_MS only (a registry can be upgraded);
 * a wrong belief costs at most a refused cold pull until then (fail closed), never an allow.
 */
export class ReferrersApiMemory {
  readonly #absentUntil = new Map<string, number>();
  constructor(
    private readonly now: () => number = Date.now,
    private readonly ttlMs = REFERRERS_ABSENT_TTL_MS,
  ) {}

  absent(registry: string): boolean {
    const until = this.#absentUntil.get(registry);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.#absentUntil.delete(registry);
    return false;
  }

  recordAbsent(registry: string): void {
    // one entry per configured registry: bounded by the configuration
    this.#absentUntil.set(registry, this.now() + this.ttlMs);
  }
}

export async function discoverSignatures(
  fetcher: SignatureFetcher,
  repository: string,
  digest: string,
  opts: DiscoverOptions,
): Promise<DiscoveredSignatures> {
  const parsed = parseDigest(digest);
  if (parsed?.algorithm !== "sha256") throw new DiscoveryError(`not a sha256 digest: ${digest}`);
  const hex = parsed.hex;
  const byDigest = async (d: string): Promise<FetchedArtifact | undefined> => {
    const bytes = await fetcher.manifest(repository, d);
    if (bytes === undefined) return undefined;
    checkDigest(bytes, d, "manifest");
    return parseArtifact(bytes, d);
  };

  const [legacy, listed] = await Promise.all([
    opts.legacy ? legacySignatureImage(fetcher, repository, hex) : Promise.resolve(undefined),
    opts.artifactTypes.length > 0
      ? listReferrers(fetcher, repository, digest, hex, opts.referrersApiAbsent === true)
      : Promise.resolve(undefined),
  ]);

  const referrers: FetchedArtifact[] = [];
  for (const d of (listed?.descriptors ?? [])
    // An index's artifactType is the referrer's (distribution-spec "Listing Referrers"); an entry
    // without one is fetched to learn it (cosign 3.0.x wrote application/vnd.oci.empty.v1+json).
    .filter(
      (d) =>
        d.artifactType === undefined ||
        opts.artifactTypes.includes(d.artifactType) ||
        d.artifactType === EMPTY,
    )
    .slice(0, DISCOVERY_LIMITS.maxReferrersFetched)) {
    const artifact = await byDigest(d.digest);
    if (!artifact) continue; // listed but gone: not a signature
    // A referrer counts only for the subject it names, whatever index listed it.
    if (artifact.subject !== digest) continue;
    if (artifact.artifactType === undefined || !opts.artifactTypes.includes(artifact.artifactType)) continue;
    referrers.push(artifact);
  }

  return {
    digest,
    legacy,
    referrers,
    referrersVia: listed?.via ?? "none",
    referrersApiAbsent: listed?.apiAbsent ?? false,
    async blob(descriptor: Descriptor): Promise<Buffer> {
      if (descriptor.size > DISCOVERY_LIMITS.maxBlobBytes)
        throw new DiscoveryError(
          `blob ${descriptor.digest} is ${descriptor.size} bytes, more than ${DISCOVERY_LIMITS.maxBlobBytes}`,
        );
      const bytes = await fetcher.blob(repository, descriptor.digest, DISCOVERY_LIMITS.maxBlobBytes);
      checkDigest(bytes, descriptor.digest, "blob");
      if (bytes.length !== descriptor.size)
        throw new DiscoveryError(
          `blob ${descriptor.digest} has ${bytes.length} bytes, its descriptor says ${descriptor.size}`,
        );
      return bytes;
    },
  };
}

const EMPTY = "application/vnd.oci.empty.v1+json";

/** The cosign `.sig` tag (cosign pkg/oci/remote SignatureTag: "sha256-<hex>.sig"). */
async function legacySignatureImage(
  fetcher: SignatureFetcher,
  repository: string,
  hex: string,
): Promise<FetchedArtifact | undefined> {
  const bytes = await fetcher.manifest(repository, `sha256-${hex}.sig`);
  if (bytes === undefined) return undefined;
  // By tag: the digest is the bytes' own; the signatures inside are what is verified.
  return parseArtifact(bytes, sha256Of(bytes));
}

async function listReferrers(
  fetcher: SignatureFetcher,
  repository: string,
  digest: string,
  hex: string,
  apiKnownAbsent: boolean,
): Promise<{ descriptors: Descriptor[]; via: "api" | "tag" | "none"; apiAbsent: boolean }> {
  if (!apiKnownAbsent) {
    const api = await fetcher.referrers(repository, digest);
    if (api !== "unsupported") return { descriptors: indexDescriptors(api), via: "api", apiAbsent: false };
  }
  // distribution-spec v1.1 "Referrers Tag Schema": <alg>-<ref>, truncated to 128 characters.
  // apiAbsent only when the API itself said so now: a belief is not renewed by being used (its TTL holds)
  const apiAbsent = !apiKnownAbsent;
  const tagged = await fetcher.manifest(repository, `sha256-${hex}`);
  if (tagged === undefined) return { descriptors: [], via: "none", apiAbsent };
  return { descriptors: indexDescriptors(tagged), via: "tag", apiAbsent };
}

function indexDescriptors(bytes: Buffer): Descriptor[] {
  const doc = parseJson(bytes, "referrers index") as { manifests?: unknown };
  if (!Array.isArray(doc.manifests)) throw new DiscoveryError("referrers index has no manifests list");
  return doc.manifests.slice(0, DISCOVERY_LIMITS.maxReferrers).flatMap((m) => {
    const d = descriptorOf(m);
    return d ? [d] : [];
  });
}

function parseArtifact(bytes: Buffer, digest: string): FetchedArtifact {
  const doc = parseJson(bytes, `manifest ${digest}`) as {
    mediaType?: unknown;
    artifactType?: unknown;
    config?: unknown;
    layers?: unknown;
    annotations?: unknown;
    subject?: unknown;
  };
  const config = descriptorOf(doc.config);
  const layers = Array.isArray(doc.layers)
    ? doc.layers.slice(0, DISCOVERY_LIMITS.maxLegacySignatures).flatMap((l) => {
        const d = descriptorOf(l);
        return d ? [d] : [];
      })
    : [];
  const subject = descriptorOf(doc.subject);
  const artifactType =
    typeof doc.artifactType === "string"
      ? doc.artifactType
      : config?.mediaType !== EMPTY
        ? config?.mediaType
        : undefined;
  return {
    digest,
    mediaType: typeof doc.mediaType === "string" ? doc.mediaType : MediaTypes.ociManifest,
    artifactType,
    layers,
    annotations: stringRecord(doc.annotations),
    subject: subject?.digest,
  };
}

function descriptorOf(value: unknown): Descriptor | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.digest !== "string" || !parseDigest(v.digest)) return undefined;
  if (typeof v.size !== "number" || !Number.isSafeInteger(v.size) || v.size < 0) return undefined;
  if (typeof v.mediaType !== "string") return undefined;
  return {
    mediaType: v.mediaType,
    digest: v.digest,
    size: v.size,
    ...(typeof v.artifactType === "string" ? { artifactType: v.artifactType } : {}),
    annotations: stringRecord(v.annotations),
  };
}

function stringRecord(value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "string") out[k] = v;
  return out;
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new DiscoveryError(`${what} is not JSON`);
  }
}

function checkDigest(bytes: Buffer, digest: string, what: string): void {
  const parsed = parseDigest(digest);
  if (!parsed || (parsed.algorithm !== "sha256" && parsed.algorithm !== "sha512"))
    throw new DiscoveryError(`${what} digest ${digest} is not sha256 or sha512`);
  const actual = `${parsed.algorithm}:${createHash(parsed.algorithm).update(bytes).digest("hex")}`;
  if (actual !== digest)
    throw new DiscoveryError(`the registry sent a ${what} for ${digest} whose bytes hash to ${actual}`);
}

function sha256Of(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
