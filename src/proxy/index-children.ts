/**
 * The manifests reachable from verified signed indexes. Notary and TUF sign the tag's top-level
 * manifest only; for a multi-platform image that is an index (OCI image index / Docker manifest
 * list), and every client then asks for the per-platform manifest BY DIGEST (shared/LAB.md). Those
 * digests are trusted because the signed index's bytes (checked against the signed digest and
 * length) name them, with their sizes.
 *
 * So when the proxy serves an index whose bytes it verified against a signature, it records each
 * child here: child digest -> {signed root digest -> child size}. The record is the root the child
 * was reached from, not a bare "trusted" flag, so a later pull of the child is allowed only while
 * that root is still signed (a removed or re-signed tag stops vouching for its children after the
 * next trust refresh) and the child's bytes are checked against the size the index gave. Nothing
 * is fetched to build it: it costs no round trip. Bounded LRU per (registry, repository, digest).
 */
import { LRUCache } from "lru-cache";
import { essence, MediaTypes } from "../oci/media-types.js";
import { parseDigest } from "../oci/reference.js";

/** Each index names at most this many children we keep (real indexes have a handful to dozens). */
const MAX_CHILDREN_PER_INDEX = 1024;

export interface Reachable {
  /** signed digest of the index the child was reached from -> the child's size per that index */
  readonly roots: ReadonlyMap<string, number>;
}

const INDEX_TYPES = new Set<string>([MediaTypes.ociIndex, MediaTypes.dockerManifestList]);

export class IndexChildren {
  readonly #children: LRUCache<string, Map<string, number>>;

  constructor(maxEntries = 10_000) {
    this.#children = new LRUCache({ max: maxEntries });
  }

  /**
   * Record the children of `bytes` when they are an index. `root` is the signed digest this
   * chain of indexes started from (the index itself when it is a signed target).
   */
  recordIfIndex(registry: string, repository: string, root: string, bytes: Buffer, mediaType: string): void {
    this.recorderFor(registry, repository, root, bytes, mediaType)?.();
  }

  /**
   * The same record as recordIfIndex, with the index parsed once: for an answer served again
   * without being fetched (proxy/warm.ts), so its children stay recorded however the LRU moves.
   * Undefined when `bytes` are not an index.
   */
  recorderFor(
    registry: string,
    repository: string,
    root: string,
    bytes: Buffer,
    mediaType: string,
  ): (() => void) | undefined {
    const children = indexChildren(bytes, mediaType);
    if (children.length === 0) return undefined;
    return () => {
      for (const { digest, size } of children) {
        const key = keyOf(registry, repository, digest);
        let roots = this.#children.get(key);
        if (!roots) {
          roots = new Map();
          this.#children.set(key, roots);
        }
        // a bounded set of roots per child: the newest signed indexes that name it
        if (roots.size >= 16 && !roots.has(root)) {
          const oldest = roots.keys().next().value;
          if (oldest !== undefined) roots.delete(oldest);
        }
        roots.set(root, size);
      }
    };
  }

  lookup(registry: string, repository: string, digest: string): Reachable | undefined {
    const roots = this.#children.get(keyOf(registry, repository, digest));
    return roots ? { roots } : undefined;
  }
}

function keyOf(registry: string, repository: string, digest: string): string {
  return `${registry}\u0000${repository}\u0000${digest}`;
}

/** The `manifests[]` descriptors of an index (image-spec image-index.md), well-formed ones only. */
function indexChildren(bytes: Buffer, mediaType: string): { digest: string; size: number }[] {
  // mediaType is what the store answers with: the upstream's Content-Type, else the JSON's own
  if (!INDEX_TYPES.has(essence(mediaType))) return [];
  let doc: { manifests?: unknown };
  try {
    doc = JSON.parse(bytes.toString("utf8")) as typeof doc;
  } catch {
    return [];
  }
  if (!Array.isArray(doc.manifests)) return [];
  const out: { digest: string; size: number }[] = [];
  for (const m of doc.manifests.slice(0, MAX_CHILDREN_PER_INDEX)) {
    const d = m as { digest?: unknown; size?: unknown };
    if (typeof d.digest !== "string" || !parseDigest(d.digest)) continue;
    if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) continue;
    out.push({ digest: d.digest, size: d.size });
  }
  return out;
}
