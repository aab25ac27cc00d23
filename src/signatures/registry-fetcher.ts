/**
 * Discovery's transport over the proxy's own registry client (upstream/client.ts): its pools,
 * token auth, deadlines and size caps. Only a 404 means "not there"; every other failure is the
 * registry's fault and propagates, so the signature check fails closed.
 */
import { ALL_MANIFEST_TYPES } from "../oci/media-types.js";
import type { RegistryClient } from "../upstream/client.js";
import { UpstreamError } from "../upstream/errors.js";
import type { SignatureFetcher } from "./discover.js";

const ACCEPT = ALL_MANIFEST_TYPES.join(", ");

export class RegistrySignatureFetcher implements SignatureFetcher {
  constructor(private readonly client: RegistryClient) {}

  async manifest(repository: string, reference: string): Promise<Buffer | undefined> {
    try {
      return (await this.client.fetchManifest(repository, reference, ACCEPT)).bytes;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async referrers(repository: string, digest: string): Promise<Buffer | "unsupported"> {
    return (await this.client.fetchReferrers(repository, digest)) ?? "unsupported";
  }

  blob(repository: string, digest: string, maxBytes: number): Promise<Buffer> {
    return this.client.fetchSmallBlob(repository, digest, maxBytes);
  }
}

function isNotFound(err: unknown): boolean {
  return err instanceof UpstreamError && err.code === "UPSTREAM_STATUS" && err.details.status === 404;
}
