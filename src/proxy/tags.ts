/**
 * tags/list. Pass-through with its pagination parameters (n, last) where trust is not enforced:
 * the upstream's Link header is not passed on (it names the upstream's path, not ours). An
 * enforced repository lists only the tags its policy accepts, from verified trust data, behind
 * the same TagLister seam.
 */
import type { Context } from "hono";
import type { Logger } from "../log.js";
import { OciCode, OciError } from "../oci/errors.js";
import type { RegistryClient } from "../upstream/client.js";
import { UpstreamError } from "../upstream/errors.js";
import type { AppEnv } from "./context.js";
import { TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS, type TrustDecider } from "./decide.js";
import { sendBytes } from "./respond.js";
import type { Target } from "./route.js";

export interface TagListRequest {
  registry: string;
  repository: string;
  query: URLSearchParams;
}

export interface TagLister {
  /** `{"name": ..., "tags": [...]}` as bytes with its content type */
  list(req: TagListRequest): Promise<{ bytes: Buffer; contentType: string }>;
}

/**
 * The tag names of a distribution-spec tags/list answer (`{"name": ..., "tags": [...]}`; `tags`
 * may be null for a repository without tags). Anything else is the registry's fault.
 */
export function tagNames(registry: string, bytes: Buffer): string[] {
  let doc: { tags?: unknown };
  try {
    doc = JSON.parse(bytes.toString("utf8")) as typeof doc;
  } catch {
    throw new UpstreamError(
      "UPSTREAM_INVALID",
      registry,
      "tags",
      `registry ${registry} sent a tag list that is not JSON`,
    );
  }
  if (doc.tags === null || doc.tags === undefined) return [];
  if (!Array.isArray(doc.tags) || !doc.tags.every((t) => typeof t === "string"))
    throw new UpstreamError(
      "UPSTREAM_INVALID",
      registry,
      "tags",
      `registry ${registry} sent a tag list without a list of names`,
    );
  return doc.tags as string[];
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

/**
 * tags/list of an enforced repository answers only the tags its policy accepts, each judged by
 * the rule a pull of that tag meets (TrustDecider.acceptedTags: requireAll and `signatures:`
 * included), from verified trust data or, under `tagTrust: registry`, the registry's own tags
 * and digests (and, for signature rules, cached or at most
 * TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS new verifications); audit and off pass the upstream's list through;
 * a refusal is 403. `n` and `last` paginate as the distribution spec says (lexical order, tags
 * after `last`).
 */
export class SignedTagLister implements TagLister {
  constructor(
    private readonly decider: TrustDecider,
    private readonly passThrough: TagLister,
    private readonly logger: Logger,
  ) {}

  async list(req: TagListRequest): Promise<{ bytes: Buffer; contentType: string }> {
    const image = `${req.registry}/${req.repository}`;
    const applied = this.decider.applied(image);
    if (applied.kind === "refuse") {
      throw new OciError(OciCode.DENIED, {
        message: `${image}: ${applied.why}`,
        reasonPhrase: `Forbidden (trustgate: no policy for ${image})`.slice(0, 120),
      });
    }
    if (applied.policy.mode !== "enforce") return this.passThrough.list(req);
    const accepted = await this.decider.acceptedTags(
      req.registry,
      req.repository,
      applied.policy,
      (omitted) =>
        this.logger.warn(
          { image, policy: applied.policy.name, omitted, max: TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS },
          "tags/list: tags left out, their signatures not verified yet (verification budget spent)",
        ),
    );
    if (accepted instanceof Error) {
      this.logger.warn({ image, policy: applied.policy.name, reason: accepted.message }, "tags/list refused");
      throw new OciError(OciCode.DENIED, {
        message: `${image}: signed tags cannot be listed: ${accepted.message}`,
        reasonPhrase: "Forbidden (trustgate: trust not established)",
        cause: accepted,
      });
    }
    let tags = accepted;
    const last = req.query.get("last");
    if (last) tags = tags.filter((t) => t > last);
    const n = Number(req.query.get("n"));
    if (req.query.has("n") && Number.isInteger(n) && n >= 0) tags = tags.slice(0, n);
    return {
      bytes: Buffer.from(JSON.stringify({ name: req.repository, tags })),
      contentType: "application/json",
    };
  }
}

/** GET /v2/<name>/tags/list: the lister's answer as is. */
export async function serveTagList(c: Context<AppEnv>, tags: TagLister, target: Target): Promise<Response> {
  const list = await tags.list({
    registry: target.registry.name,
    repository: target.repository,
    query: new URL(c.req.url).searchParams,
  });
  c.get("requestLog").bytes = list.bytes.length;
  return sendBytes(
    c,
    200,
    { "content-type": list.contentType, "content-length": String(list.bytes.length) },
    list.bytes,
  );
}
