/**
 * The HTTP app: OCI distribution read routes, request-id and access-log middleware, and the one
 * error handler that renders every failure as an OCI error. Dependencies come in through
 * `createApp(deps)` so tests (and issue 4's enforcement) build the app with their own parts.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { type Context, Hono } from "hono";
import type { RegistryConfig } from "./config/types.js";
import { fixedFieldsLogger, type Logger } from "./log.js";
import type { Metrics, RouteKind } from "./metrics.js";
import { OciCode, OciError, renderOciError } from "./oci/errors.js";
import { type Digest, parseDigest, parseReference } from "./oci/reference.js";
import type { BlobCache, BlobFill, CachedBlob } from "./proxy/blob-cache.js";
import { BlobDigestMismatchError, blobHeaders, blobRedirectUrl, DigestVerifier } from "./proxy/blobs.js";
import type { AuditLine } from "./proxy/enforce.js";
import { toOciError } from "./proxy/error-mapping.js";
import type { ManifestResolver } from "./proxy/manifests.js";
import { API_VERSION_HEADER, rawResponse, requestHeader, sendBytes, sendStream } from "./proxy/respond.js";
import { parseApiPath, selectTarget, type Target } from "./proxy/route.js";
import type { TagLister } from "./proxy/tags.js";
import type { WarmAnswers } from "./proxy/warm.js";
import { BLOB_HIGH_WATER_MARK } from "./streaming.js";
import type { RegistryClient } from "./upstream/client.js";

/** Per-request facts the access log line reports; handlers fill them in. */
export interface RequestLog {
  registry?: string;
  repository?: string;
  /** body bytes sent, for answers whose size is known up front */
  bytes: number;
  /**
   * For streams: counts the bytes handed to the client so far. Read when the access-log line is
   * written, which is when the response closes — before the stream's own completion callbacks run.
   */
  streamedBytes?: () => number;
  /** how a transfer ended when it did not end cleanly */
  outcome?: string;
  /** the manifest resolver's trust decision, logged on the access line (DecisionSink) */
  decision?: AuditLine;
  /** a blob answered from the verified blob cache ("hit") or relayed ("miss"), when there is one */
  cache?: "hit" | "miss";
  /** what kind of request this was, for metrics (unset: "other") */
  route?: RouteKind;
}

export type AppEnv = {
  Bindings: HttpBindings | undefined;
  Variables: { requestId: string; requestLog: RequestLog };
};

export interface AppDeps {
  config: {
    registries: ReadonlyMap<string, RegistryConfig>;
    defaultRegistry: string | undefined;
    blobRedirect: boolean;
  };
  /** one upstream client per configured registry, keyed by registry name */
  clients: ReadonlyMap<string, RegistryClient>;
  /** the enforcement seam for manifests (pass-through today; trust-enforcing in issue 4) */
  manifests: ManifestResolver;
  tags: TagLister;
  logger: Logger;
  /** answers to remember for the warm path (proxy/warm.ts); absent: every request is routed */
  warm?: WarmAnswers;
  /** verified blobs on disk (proxy/blob-cache.ts); absent: every blob is relayed */
  blobCache?: BlobCache;
  /** counted from each access line (metrics.ts); absent: nothing is counted */
  metrics?: Metrics;
}

function clientFor(deps: AppDeps, target: Target): RegistryClient {
  const client = deps.clients.get(target.registry.name);
  if (!client) throw new Error(`no upstream client for ${target.registry.name}`);
  return client;
}

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const log = deps.logger;
  const access = fixedFieldsLogger(log);
  const metrics = deps.metrics;

  // Request id + one access-log line per request. The two common headers are added where each
  // answer is written (respond.ts), so Node gets all headers in one writeHead call.
  app.use("*", async (c, next) => {
    const requestId = randomUUID();
    const requestLog: RequestLog = { bytes: 0 };
    c.set("requestId", requestId);
    c.set("requestLog", requestLog);
    const started = performance.now();
    await next();
    const out = rawResponse(c);
    if (!out) {
      c.res.headers.set(API_VERSION_HEADER, "registry/2.0");
      c.res.headers.set("x-request-id", requestId);
      writeAccessLine(access, metrics, c, requestId, requestLog, started, c.res.status, false);
    } else if (out.writableEnded || out.destroyed) {
      // A buffered answer is complete once end() has handed it to the socket: log it now, with
      // no per-request 'close' listener. A client gone before the answer, or a response cut
      // after its headers (sendOciError), shows as destroyed: its 'close' may already be queued.
      writeAccessLine(access, metrics, c, requestId, requestLog, started, out.statusCode, out.destroyed);
    } else {
      // A stream (blob): the line is written when the response closes, so it reports the real
      // outcome and bytes. Every byte handed to the socket (end() called, nothing left buffered) is a complete
      // answer even when the client closes before Node reports 'finish' (curl does, after the
      // last byte of a large blob).
      out.once("close", () =>
        writeAccessLine(
          access,
          metrics,
          c,
          requestId,
          requestLog,
          started,
          out.statusCode,
          !out.writableFinished && !(out.writableEnded && out.writableLength === 0),
        ),
      );
    }
  });

  app.onError((err, c) => {
    const oci = toOciError(err);
    // Full detail (with stack) only for our own bugs; upstream trouble is one readable line.
    if (oci.code === OciCode.UNKNOWN && oci.status === 500)
      log.error({ reqId: c.get("requestId"), err }, "internal error");
    else if (oci.status >= 500)
      log.warn(
        {
          reqId: c.get("requestId"),
          code: oci.code,
          cause: String((oci.cause as Error | undefined)?.message ?? err.message),
        },
        oci.message,
      );
    return sendOciError(c, oci);
  });

  app.notFound((c) =>
    sendOciError(c, new OciError(OciCode.UNSUPPORTED, { message: "no such endpoint", status: 404 })),
  );

  // distribution-spec "Determining support": 200 with the API version header.
  const ping = (c: Context<AppEnv>) => {
    c.get("requestLog").route = "ping";
    return sendBytes(c, 200, { "content-type": "application/json" }, "{}");
  };
  app.get("/v2", ping);
  app.get("/v2/", ping);

  // Read-only proxy: every write is refused (distribution-spec: UNSUPPORTED).
  app.on(["POST", "PUT", "PATCH", "DELETE"], "/v2/*", () => {
    throw new OciError(OciCode.UNSUPPORTED, { message: "trustgate is a read-only proxy" });
  });

  // GET, and HEAD (hono dispatches HEAD to GET routes; c.req.method still says HEAD).
  app.get("/v2/*", async (c) => {
    const route = parseApiPath(decodePath(c.req.path));
    if (!route) throw new OciError(OciCode.UNSUPPORTED, { message: "no such endpoint", status: 404 });
    const requestLog = c.get("requestLog");
    requestLog.route = route.kind;
    const target = selectTarget(deps.config, route.name, c.req.query("ns"));
    requestLog.registry = target.registry.name;
    requestLog.repository = target.repository;
    const method = c.req.method === "HEAD" ? "HEAD" : "GET";
    switch (route.kind) {
      case "manifest":
        return manifest(c, deps, target, route.reference, method);
      case "blob":
        return blob(c, deps, target, route.digest, method);
      case "tags":
        return tags(c, deps, target);
    }
  });

  return app;
}

/**
 * The HTTP server: a request with a warm answer (proxy/warm.ts) is answered at once; every other
 * request goes through the app.
 */
export function createHttpServer(app: Hono<AppEnv>, warm: WarmAnswers | undefined): Server {
  const routed = getRequestListener(app.fetch);
  return createServer({ highWaterMark: BLOB_HIGH_WATER_MARK }, (req, res) => {
    if (warm?.serve(req, res)) return;
    void routed(req, res);
  });
}

/**
 * The access line goes to the non-redacting logger (redaction was ~9 µs a line): pino redacts by
 * key (authorization, cookie, password, token, access_token, top level or one below), and this
 * line has fixed keys, none of those, whose values are all strings, numbers or booleans, so
 * redaction could never change it. Keep it that way: no header, no object, no user-named key here.
 *
 * A manifest request's trust decision is on this line too (`audit: true` and the AuditLine
 * fields: decision, image, tag|reference, digest, role, policy, mode, source, reason...): one line
 * a request instead of an access line plus a "trust decision" line (which cost ~8% of a warm
 * manifest answer). A refusal, or an audit-mode would-deny, makes it a warn line, as the separate
 * audit line was.
 */
function writeAccessLine(
  access: Logger,
  metrics: Metrics | undefined,
  c: Context<AppEnv>,
  reqId: string,
  requestLog: RequestLog,
  started: number,
  status: number,
  aborted: boolean,
): void {
  const ms = performance.now() - started;
  const bytes = requestLog.streamedBytes?.() ?? requestLog.bytes;
  const line = {
    reqId,
    method: c.req.method,
    path: c.req.path,
    status,
    bytes,
    durationMs: Math.round(ms * 10) / 10,
    outcome: requestLog.outcome ?? (aborted ? "aborted" : undefined),
    cache: requestLog.cache,
    ...accessLineContext(c, requestLog),
  };
  const d = requestLog.decision;
  if (d && (d.decision === "deny" || d.wouldDeny)) access.warn(line, "request");
  else access.info(line, "request");
  // The same facts the line carries, counted (metrics.ts): one place, once per request.
  const route = requestLog.route ?? "other";
  metrics?.request({
    route,
    status,
    seconds: ms / 1000,
    decision: d,
    ...(route === "blob" ? { blobBytes: { bytes, cache: requestLog.cache } } : {}),
  });
}

/**
 * The access line's fields that describe what was asked and decided, not how this one answer went:
 * a warm answer (proxy/warm.ts) binds them once and logs the same line. Every AuditLine field,
 * whatever it gains later (it is flat by contract: enforce.ts); its reqId is the line's own.
 */
function accessLineContext(c: Context<AppEnv>, requestLog: RequestLog): Record<string, unknown> {
  if (!requestLog.decision) return { ns: c.req.query("ns"), registry: requestLog.registry };
  const { reqId: _sameAsTheLine, ...decision } = requestLog.decision;
  return { ns: c.req.query("ns"), registry: requestLog.registry, audit: true, ...decision };
}

function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    throw new OciError(OciCode.NAME_INVALID, { message: "malformed percent-encoding in the path" });
  }
}

function sendOciError(c: Context<AppEnv>, err: OciError): Response {
  const r = renderOciError(err);
  const out = rawResponse(c);
  if (out?.headersSent) {
    // Too late for an error body: break the connection rather than end it cleanly.
    out.destroy();
    return RESPONSE_ALREADY_SENT;
  }
  c.get("requestLog").bytes = c.req.method === "HEAD" ? 0 : r.body.length;
  return sendBytes(c, r.status, r.headers, r.body, r.reasonPhrase);
}

async function manifest(
  c: Context<AppEnv>,
  deps: AppDeps,
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
  const answer = await deps.manifests.resolve({
    registry: target.registry.name,
    repository: target.repository,
    reference,
    method,
    accept: requestHeader(c, "accept"),
    requestId: c.get("requestId"),
    decisionSink: c.get("requestLog"),
  });
  const requestLog = c.get("requestLog");
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

async function blob(
  c: Context<AppEnv>,
  deps: AppDeps,
  target: Target,
  rawDigest: string,
  method: "GET" | "HEAD",
): Promise<Response> {
  const digest = parseDigest(rawDigest);
  if (!digest)
    throw new OciError(OciCode.DIGEST_INVALID, { message: `invalid digest ${JSON.stringify(rawDigest)}` });
  const client = clientFor(deps, target);
  if (deps.config.blobRedirect) {
    // Only for anonymous upstreams (config refuses credentials with it): the client fetches
    // the blob itself and verifies its digest, as every client does.
    return sendBytes(
      c,
      307,
      { location: blobRedirectUrl(client, target.repository, digest), "content-length": "0" },
      null,
    );
  }
  const range = method === "GET" ? requestHeader(c, "range") : undefined;
  const requestLog = c.get("requestLog");
  const cache = deps.blobCache;
  if (cache && method === "GET" && range === undefined) {
    const cached = await cache.open(target.registry.name, target.repository, digest, async () => {
      // Not yet seen in this repository: the upstream must have it there (throws its 404 if not).
      (await client.openBlob(target.repository, digest.value, "HEAD", undefined)).body.resume();
    });
    if (cached) return sendCachedBlob(c, deps, target, digest, cached);
    requestLog.cache = "miss";
  }
  const upstream = await client.openBlob(target.repository, digest.value, method, range);
  const headers = blobHeaders(upstream.headers, digest, upstream.statusCode);
  if (method === "HEAD") {
    upstream.body.resume();
    return sendBytes(c, 200, headers, null);
  }
  if (upstream.statusCode === 206) {
    // A slice cannot be verified against the digest of the whole blob: it passes as is. The
    // client verifies the assembled blob, which is what the digest is for.
    requestLog.bytes = Number(headers["content-length"] ?? 0);
    const { response, done } = sendStream(c, 206, headers, upstream.body);
    done.catch(() => {
      requestLog.outcome = "broken";
    });
    return response;
  }
  // A copy for the cache: kept only if the relay below ends verified (BlobFill.commit).
  const length = headers["content-length"];
  const fill =
    length === undefined
      ? undefined
      : cache?.beginFill(target.registry.name, target.repository, digest, Number(length));
  const verifier = new DigestVerifier(digest, fill);
  requestLog.streamedBytes = () => verifier.bytesPassed;
  upstream.body.pipe(verifier);
  upstream.body.once("error", (err) => verifier.destroy(err));
  const { response, done } = sendStream(c, 200, headers, verifier);
  if (fill)
    done.then(
      () => keepInCache(deps.logger, digest, fill),
      () => fill.abort(),
    );
  done.catch((err: unknown) => {
    upstream.body.destroy();
    if (err instanceof BlobDigestMismatchError) {
      requestLog.outcome = "digest-mismatch";
      deps.logger.error(
        {
          reqId: c.get("requestId"),
          registry: target.registry.name,
          repository: target.repository,
          expected: err.expected,
          actual: err.actual,
        },
        "blob digest mismatch: connection aborted",
      );
    } else if ((err as { code?: unknown }).code === "ERR_STREAM_PREMATURE_CLOSE") {
      // The client went away; nothing is wrong upstream.
      requestLog.outcome = "client-aborted";
    } else {
      requestLog.outcome = "broken";
      deps.logger.warn(
        { reqId: c.get("requestId"), registry: target.registry.name, err: String(err) },
        "blob transfer broken",
      );
    }
  });
  return response;
}

/** After a verified relay: the copy goes into the blob cache, or the log says why not. */
async function keepInCache(logger: Logger, digest: Digest, fill: BlobFill): Promise<void> {
  try {
    if (!(await fill.commit()))
      logger.warn({ digest: digest.value, reason: fill.failure }, "blob not kept in the cache");
  } catch (err) {
    logger.warn({ digest: digest.value, err: String(err) }, "blob cache write failed");
  }
}

/** A blob from the verified cache: its digest was checked when it was stored. */
function sendCachedBlob(
  c: Context<AppEnv>,
  deps: AppDeps,
  target: Target,
  digest: Digest,
  cached: CachedBlob,
): Response {
  const requestLog = c.get("requestLog");
  requestLog.cache = "hit";
  requestLog.bytes = cached.size;
  const { response, done } = sendStream(
    c,
    200,
    {
      "content-type": "application/octet-stream",
      "content-length": String(cached.size),
      "docker-content-digest": digest.value,
    },
    cached.stream,
  );
  done.catch((err: unknown) => {
    if ((err as { code?: unknown }).code === "ERR_STREAM_PREMATURE_CLOSE") {
      requestLog.outcome = "client-aborted";
      return;
    }
    requestLog.outcome = "broken";
    deps.logger.warn(
      { reqId: c.get("requestId"), registry: target.registry.name, digest: digest.value, err: String(err) },
      "cached blob transfer broken",
    );
  });
  return response;
}

async function tags(c: Context<AppEnv>, deps: AppDeps, target: Target): Promise<Response> {
  const list = await deps.tags.list({
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
