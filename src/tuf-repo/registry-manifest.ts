/**
 * What `trustgate tuf sign` signs when no --digest/--size is given: the manifest the registry
 * serves for the tag now (a by-tag GET through the proxy's own RegistryClient: token auth, the
 * configured credentials and CA, the same size cap), its digest computed over the bytes received
 * (a Docker-Content-Digest header that disagrees is refused), and for an index its children's
 * digests and platforms as `custom` (docs/tuf-for-oci.md section 2).
 */
import { createHash } from "node:crypto";
import type { RegistryConfig } from "../config/types.js";
import { createLogger } from "../log.js";
import { ALL_MANIFEST_TYPES, essence, MediaTypes } from "../oci/media-types.js";
import { TokenCache } from "../upstream/auth.js";
import { RegistryClient } from "../upstream/client.js";
import { RepositoryError } from "./repository.js";

export interface ManifestFacts {
  digest: string;
  size: number;
  custom: Record<string, unknown>;
}

const TIMEOUTS = { connectMs: 10_000, headersMs: 30_000, bodyMs: 30_000, totalMs: 60_000 };

export async function manifestForTag(
  registry: RegistryConfig,
  repository: string,
  tag: string,
): Promise<ManifestFacts> {
  const client = new RegistryClient({
    registry,
    timeouts: TIMEOUTS,
    tokens: new TokenCache(),
    logger: createLogger("silent"),
  });
  try {
    const fetched = await client.fetchManifest(repository, tag, ALL_MANIFEST_TYPES.join(", "));
    const digest = `sha256:${createHash("sha256").update(fetched.bytes).digest("hex")}`;
    if (fetched.digestHeader !== undefined && fetched.digestHeader !== digest) {
      throw new RepositoryError(
        `${registry.name}/${repository}:${tag}: the registry says ${fetched.digestHeader} but sent bytes of ${digest}`,
      );
    }
    const custom: Record<string, unknown> = {};
    const mediaType = fetched.contentType ? essence(fetched.contentType) : undefined;
    if (mediaType) custom.mediaType = mediaType;
    if (mediaType === MediaTypes.ociIndex || mediaType === MediaTypes.dockerManifestList) {
      const index = JSON.parse(fetched.bytes.toString("utf8")) as {
        manifests?: Array<{
          digest?: string;
          platform?: { os?: string; architecture?: string; variant?: string };
        }>;
      };
      custom.platforms = (index.manifests ?? []).map((m) => ({
        digest: m.digest,
        platform: [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join("/"),
      }));
    }
    return { digest, size: fetched.bytes.length, custom };
  } finally {
    await client.close();
  }
}
