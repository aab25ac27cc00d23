/**
 * GET and HEAD /v2/<name>/manifests/<reference>: parse the reference, ask the resolver (the
 * enforcement seam, manifests.ts) for the exact bytes, answer them with their digest, and hand an
 * answer that trust vouches for beyond this request to the warm path (warm.ts).
 */
import type { Context } from "hono";
import { OciCode, OciError } from "../oci/errors.js";
import { parseReference } from "../oci/reference.js";
import { type AppEnv, accessLineContext } from "./context.js";
import type { ManifestResolver } from "./manifests.js";
import { requestHeader, sendBytes } from "./respond.js";
import type { Target } from "./route.js";
import type { WarmAnswers } from "./warm.js";

export interface ManifestHandlerDeps {
  manifests: ManifestResolver;
  /** answers to remember for the warm path; absent: every request is routed */
  warm?: WarmAnswers;
}

export async function serveManifest(
  c: Context<AppEnv>,
  deps: ManifestHandlerDeps,
  target: Target,
  rawReference: string,
  method: "GET" | "HEAD",
): Promise<Response> {
  const reference = parseReference(rawReference);
  if (!reference)
    throw rawReference.includes(":")
      ? new OciError(OciCode.DIGEST_INVALID, { message: `invalid digest ${JSON.stringify(rawReference)}` })
      : new OciError(OciCode.MANIFEST_INVALID, {
          message: `invalid tag ${JSON.stringify(rawReference)}`,
          detail: { tag: rawReference },
        });
  const requestLog = c.get("requestLog");
  const answer = await deps.manifests.resolve({
    registry: target.registry.name,
    repository: target.repository,
    reference,
    method,
    accept: requestHeader(c, "accept"),
    requestId: c.get("requestId"),
    decisionSink: requestLog,
  });
  requestLog.bytes = method === "HEAD" ? 0 : answer.bytes.length;
  const headers = {
    "content-type": answer.mediaType,
    "content-length": String(answer.bytes.length),
    "docker-content-digest": answer.digest,
    etag: `"${answer.digest}"`,
  };
  const url = c.env?.incoming.url;
  if (answer.reuse && deps.warm && url !== undefined) {
    deps.warm.remember({
      url,
      path: c.req.path,
      body: answer.bytes,
      headers: { ...headers },
      lineFields: { ...accessLineContext(c, requestLog), warm: true },
      decision: requestLog.decision,
      reuse: answer.reuse,
    });
  }
  return sendBytes(c, 200, headers, answer.bytes);
}
