/**
 * tags/list, passed through with its pagination parameters (n, last). The upstream's Link
 * header is not passed on: it names the upstream's path, not ours. Issue 4 filters the list to
 * the signed tags of enforced repositories, behind the same TagLister seam.
 */
import type { RegistryClient } from "../upstream/client.js";

export interface TagListRequest {
  registry: string;
  repository: string;
  query: URLSearchParams;
}

export interface TagLister {
  /** `{"name": ..., "tags": [...]}` as bytes with its content type */
  list(req: TagListRequest): Promise<{ bytes: Buffer; contentType: string }>;
}

export class PassThroughTagLister implements TagLister {
  constructor(private readonly clients: ReadonlyMap<string, RegistryClient>) {}

  async list(req: TagListRequest): Promise<{ bytes: Buffer; contentType: string }> {
    const client = this.clients.get(req.registry);
    if (!client) throw new Error(`no client for registry ${req.registry}`);
    const res = await client.listTags(req.repository, req.query);
    return { bytes: res.bytes, contentType: res.contentType ?? "application/json" };
  }
}
