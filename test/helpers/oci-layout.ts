/**
 * An OCI image layout (image-spec image-layout.md) read as a registry would serve it: manifests by
 * digest and by their `org.opencontainers.image.ref.name` tag, blobs by digest. For the signature
 * fixtures (test/fixtures/signatures/): unit tests discover and verify from it with no network,
 * and the static OCI server (signature-registry.ts) serves the subjects distribution 2.8 refuses.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { SignatureFetcher } from "../../src/signatures/discover.js";

export interface LayoutEntry {
  readonly digest: string;
  readonly mediaType: string;
  readonly tag: string | undefined;
}

export class OciLayout {
  readonly entries: readonly LayoutEntry[];
  constructor(readonly dir: string) {
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as {
      manifests: { digest: string; mediaType: string; annotations?: Record<string, string> }[];
    };
    this.entries = index.manifests.map((m) => ({
      digest: m.digest,
      mediaType: m.mediaType,
      tag: m.annotations?.["org.opencontainers.image.ref.name"],
    }));
  }

  /** the blob (or manifest) bytes with this digest, if the layout has them */
  bytes(digest: string): Buffer | undefined {
    try {
      return readFileSync(join(this.dir, "blobs", digest.replace(":", "/")));
    } catch {
      return undefined;
    }
  }

  /** a manifest by digest or tag, with its media type */
  manifest(reference: string): { bytes: Buffer; mediaType: string; digest: string } | undefined {
    const entry = reference.includes(":")
      ? (this.entries.find((e) => e.digest === reference) ?? {
          digest: reference,
          mediaType: "",
          tag: undefined,
        })
      : this.entries.find((e) => e.tag === reference);
    if (!entry) return undefined;
    const bytes = this.bytes(entry.digest);
    if (!bytes) return undefined;
    const mediaType =
      entry.mediaType || (JSON.parse(bytes.toString("utf8")) as { mediaType?: string }).mediaType || "";
    return { bytes, mediaType, digest: entry.digest };
  }
}

/** Discovery from a layout, as from a registry without the referrers API (distribution 2.8). */
export function layoutFetcher(
  layout: OciLayout,
  tamper: (digest: string, bytes: Buffer) => Buffer = (_d, b) => b,
): SignatureFetcher & { requests: string[] } {
  const requests: string[] = [];
  return {
    requests,
    async manifest(_repository, reference) {
      requests.push(`manifest ${reference}`);
      const m = layout.manifest(reference);
      return m ? tamper(m.digest, m.bytes) : undefined;
    },
    async referrers(_repository, digest) {
      requests.push(`referrers ${digest}`);
      return "unsupported";
    },
    async blob(_repository, digest, maxBytes) {
      requests.push(`blob ${digest}`);
      const b = layout.bytes(digest);
      if (!b) throw new Error(`blob ${digest} not in layout`);
      if (b.length > maxBytes) throw new Error("too large");
      return tamper(digest, b);
    },
  };
}
