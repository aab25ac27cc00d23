/**
 * Manifest media types and the HTTP Accept header. Clients send different lists in varying
 * orders (dockerd: six types, order changing per request; containerd: "<type>, *\/*"), so
 * Accept is parsed into ranges and matched, never compared as a string (RFC 9110 §12.5.1).
 */

export const MediaTypes = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/**
 * What we ask for when a client sends no Accept: every current type, so that a registry
 * never down-converts to schema1 (docker-registry 2.8 does for a tag when Accept does not
 * name the stored type; that changes the bytes and the digest).
 */
export const ALL_MANIFEST_TYPES: readonly string[] = [
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifestList,
  MediaTypes.dockerManifest,
];

export interface MediaRange {
  /** lowercased "type/subtype", possibly with "*" */
  type: string;
  /** quality 0..1 */
  q: number;
}

/** Parse an Accept header (possibly several joined with ","), dropping malformed entries. */
export function parseAccept(header: string | null | undefined): MediaRange[] {
  if (!header) return [];
  const ranges: MediaRange[] = [];
  for (const part of header.split(",")) {
    const [rawType, ...params] = part.split(";");
    const type = rawType?.trim().toLowerCase() ?? "";
    if (!/^[a-z0-9!#$&^_.+-]+\/(?:\*|[a-z0-9!#$&^_.+-]+)$|^\*\/\*$/.test(type)) continue;
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split("=").map((s) => s.trim().toLowerCase());
      if (k === "q" && v !== undefined) {
        const n = Number(v);
        if (Number.isFinite(n) && n >= 0 && n <= 1) q = n;
      }
    }
    ranges.push({ type, q });
  }
  return ranges;
}

/** Whether `mediaType` is acceptable under `ranges` (no Accept at all accepts everything). */
export function accepts(ranges: readonly MediaRange[], mediaType: string): boolean {
  if (ranges.length === 0) return true;
  const mt = mediaType.toLowerCase();
  const slash = mt.indexOf("/");
  const major = mt.slice(0, slash);
  for (const r of ranges) {
    if (r.q === 0) continue;
    if (r.type === mt || r.type === "*/*" || r.type === `${major}/*`) return true;
  }
  return false;
}

/** The media type without parameters ("application/json; charset=utf-8" -> "application/json"). */
export function essence(contentType: string): string {
  return (contentType.split(";")[0] ?? "").trim().toLowerCase();
}
