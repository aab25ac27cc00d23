/**
 * Manifests. Every manifest request goes through one seam, `ManifestResolver.resolve`:
 * given (registry, repository, reference, method, Accept) it returns the exact bytes to answer
 * with, their media type and digest, or throws (an OciError such as 403 DENIED, or a typed
 * error that error-mapping.ts translates). Issue 4 replaces the pass-through resolver with one
 * that resolves a tag through verified trust data and calls `ManifestStore.byDigest` with the
 * signed digest and size.
 *
 * `ManifestStore` talks to the upstream: by digest it verifies that the bytes hash to the digest
 * (and, when given, have the expected length) and caches them (content-addressed, immutable:
 * safe to keep; bounded by bytes); by tag it forwards the client's Accept, because
 * docker-registry 2.8 converts to schema1 by tag when Accept does not name the stored type.
 */

import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { ALL_MANIFEST_TYPES, essence, MediaTypes } from "../oci/media-types.js";
import type { Digest, Reference } from "../oci/reference.js";
import type { RegistryClient } from "../upstream/client.js";
import { UpstreamError } from "../upstream/errors.js";
import type { DecisionSink } from "./audit.js";
import type { DecisionReuse } from "./decide.js";

export interface ManifestRequest {
  /** canonical registry name from config */
  registry: string;
  repository: string;
  reference: Reference;
  method: "GET" | "HEAD";
  /** the client's Accept header as sent (several headers joined with ", "), if any */
  accept: string | undefined;
  /** the access log's request id, so audit lines can be joined to it */
  requestId?: string;
  /**
   * When set, the resolver puts its decision here instead of writing its own "trust decision"
   * line: the HTTP server writes it on the request's access line (one JSON line a request
   * instead of two; server.ts writeAccessLine).
   */
  decisionSink?: DecisionSink;
}

export interface ManifestAnswer {
  /** the exact bytes to send (also for HEAD: their length and digest are the headers) */
  bytes: Buffer;
  /** Content-Type to answer with */
  mediaType: string;
  /** "sha256:<hex>" of `bytes` */
  digest: string;
  /** set when the same request may get this same answer again without resolving it (AnswerReuse) */
  reuse?: AnswerReuse;
}

/**
 * An answer that trust vouches for beyond this request: the same request (same URL) may be
 * answered with the same bytes, without deciding again, before `until` (ms since the epoch, by the
 * trust source's clock) and while `stillValid()` (the policy set it was decided under is still in
 * force). `onReuse` runs on every reuse, for what serving it must keep doing (index children).
 */
export interface AnswerReuse extends DecisionReuse {
  readonly onReuse?: () => void;
}

/** The enforcement seam: what to answer for one manifest request. */
export interface ManifestResolver {
  resolve(request: ManifestRequest): Promise<ManifestAnswer>;
}

export function digestOf(bytes: Uint8Array, algorithm: "sha256" | "sha512" = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}

/** The media type of manifest bytes: the upstream's Content-Type, else the JSON `mediaType`. */
function mediaTypeOf(contentType: string | undefined, bytes: Buffer): string {
  if (
    contentType &&
    !["application/json", "text/plain", "application/octet-stream"].includes(essence(contentType))
  )
    return contentType;
  try {
    const mt = (JSON.parse(bytes.toString("utf8")) as { mediaType?: unknown }).mediaType;
    if (typeof mt === "string" && mt !== "") return mt;
  } catch {
    // not JSON: keep what the upstream said
  }
  return contentType ?? "application/octet-stream";
}

export interface ManifestStoreOptions {
  clients: ReadonlyMap<string, RegistryClient>;
  /** cache bound in bytes; 0 disables the cache */
  cacheBytes: number;
}

export class ManifestStore {
  readonly #clients: ReadonlyMap<string, RegistryClient>;
  /** key: registry NUL repository NUL digest. Keyed by repository too: the upstream must have
   * confirmed that this repository holds the digest (no cross-repository leaks). */
  readonly #cache: LRUCache<string, ManifestAnswer> | undefined;
  readonly #inflight = new Map<string, Promise<ManifestAnswer>>();

  constructor(opts: ManifestStoreOptions) {
    this.#clients = opts.clients;
    this.#cache =
      opts.cacheBytes > 0
        ? new LRUCache<string, ManifestAnswer>({
            maxSize: opts.cacheBytes,
            sizeCalculation: (m) => Math.max(1, m.bytes.length),
          })
        : undefined;
  }

  client(registry: string): RegistryClient {
    const c = this.#clients.get(registry);
    if (!c) throw new Error(`no client for registry ${registry}`);
    return c;
  }

  /**
   * The manifest with this digest in this repository, verified: its bytes hash to `digest`
   * and, when `expectedSize` is given, have exactly that length. Concurrent misses share one
   * upstream fetch.
   */
  async byDigest(
    registry: string,
    repository: string,
    digest: Digest,
    expectedSize?: number,
  ): Promise<ManifestAnswer> {
    const key = `${registry}\u0000${repository}\u0000${digest.value}`;
    let answer = this.#cache?.get(key);
    if (!answer) {
      let pending = this.#inflight.get(key);
      if (!pending) {
        pending = this.#fetchVerified(registry, repository, digest).finally(() => this.#inflight.delete(key));
        this.#inflight.set(key, pending);
      }
      answer = await pending;
    }
    if (expectedSize !== undefined && answer.bytes.length !== expectedSize)
      throw new UpstreamError(
        "UPSTREAM_INVALID",
        registry,
        "manifest",
        `manifest ${repository}@${digest.value} from registry ${registry} has ${answer.bytes.length} bytes, expected ${expectedSize}`,
      );
    return answer;
  }

  async #fetchVerified(registry: string, repository: string, digest: Digest): Promise<ManifestAnswer> {
    // By digest the bytes are fixed by the digest, so we name every type: docker-registry 2.8
    // refuses an OCI index whose type the Accept does not list, even by digest. The client's
    // Accept plays no part (and so the cache does not depend on it).
    const fetched = await this.client(registry).fetchManifest(repository, digest.value, EVERY_MANIFEST_TYPE);
    const actual = digestOf(fetched.bytes, digest.algorithm);
    if (actual !== digest.value)
      throw new UpstreamError(
        "UPSTREAM_INVALID",
        registry,
        "manifest",
        `registry ${registry} sent bytes for ${repository}@${digest.value} that hash to ${actual}`,
      );
    const answer = {
      bytes: fetched.bytes,
      mediaType: mediaTypeOf(fetched.contentType, fetched.bytes),
      digest: digest.value,
    };
    this.#cache?.set(`${registry}\u0000${repository}\u0000${digest.value}`, answer);
    return answer;
  }

  /**
   * Pass-through by tag: the client's Accept forwarded; the digest answered is the one of the
   * bytes (computed, never copied from the upstream's header), so a following pull by that
   * digest is served from cache and verified.
   */
  async byTag(
    registry: string,
    repository: string,
    tag: string,
    accept: string | undefined,
  ): Promise<ManifestAnswer> {
    const fetched = await this.client(registry).fetchManifest(repository, tag, acceptForUpstream(accept));
    const digest = digestOf(fetched.bytes);
    if (fetched.digestHeader?.startsWith("sha256:") && fetched.digestHeader !== digest)
      throw new UpstreamError(
        "UPSTREAM_INVALID",
        registry,
        "manifest",
        `registry ${registry} sent ${repository}:${tag} with Docker-Content-Digest ${fetched.digestHeader} but the bytes hash to ${digest}`,
      );
    const answer = {
      bytes: fetched.bytes,
      mediaType: mediaTypeOf(fetched.contentType, fetched.bytes),
      digest,
    };
    this.#cache?.set(`${registry}\u0000${repository}\u0000${digest}`, answer);
    return answer;
  }
}

const EVERY_MANIFEST_TYPE = [
  ...ALL_MANIFEST_TYPES,
  MediaTypes.dockerSchema1Signed,
  MediaTypes.dockerSchema1,
  "*/*",
].join(", ");

/** The client's Accept as sent; when it sent none, every current manifest type (never schema1). */
export function acceptForUpstream(accept: string | undefined): string {
  return accept && accept.trim() !== "" ? accept : ALL_MANIFEST_TYPES.join(", ");
}

/**
 * Today's resolver: no trust yet. By tag: the upstream's answer for the client's Accept. By
 * digest: the verified bytes. HEAD answers are computed from a GET upstream so that the
 * headers are the verified ones (and the GET by digest that follows is a cache hit).
 */
export class PassThroughManifestResolver implements ManifestResolver {
  constructor(private readonly store: ManifestStore) {}

  resolve(req: ManifestRequest): Promise<ManifestAnswer> {
    return req.reference.kind === "tag"
      ? this.store.byTag(req.registry, req.repository, req.reference.tag, req.accept)
      : this.store.byDigest(req.registry, req.repository, req.reference.digest);
  }
}
