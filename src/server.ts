/**
 * The HTTP app: OCI distribution read routes, request-id and access-log middleware, and the one
 * error handler that renders every failure as an OCI error. Dependencies come in through
 * `createApp(deps)` so tests (and issue 4's enforcement) build the app with their own parts.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { getRequestListener } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { type Context, Hono } from "hono";
import type { ClientAccess } from "./access/gate.js";
import type { RegistryConfig } from "./config/types.js";
import { fixedFieldsLogger, type Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import { OciCode, OciError, renderOciError } from "./oci/errors.js";
import type { BlobCache } from "./proxy/blob-cache.js";
import { BlobRelay } from "./proxy/blob-relay.js";
import { clientAccessMiddleware } from "./proxy/client-access.js";
import { type AppEnv, accessLineContext, type RequestLog } from "./proxy/context.js";
import { toOciError } from "./proxy/error-mapping.js";
import { serveManifest } from "./proxy/manifest-handler.js";
import type { ManifestResolver } from "./proxy/manifests.js";
import { API_VERSION_HEADER, rawResponse, sendBytes } from "./proxy/respond.js";
import { parseApiPath, selectTarget } from "./proxy/route.js";
import { serveTagList, type TagLister } from "./proxy/tags.js";
import type { WarmAnswers } from "./proxy/warm.js";
import { BLOB_HIGH_WATER_MARK } from "./streaming.js";
import type { TlsServerOptions } from "./tls-listener.js";
import type { RegistryClient } from "./upstream/client.js";

// The request context lives below the handlers (proxy/context.ts), so nothing imports server.ts.
export type { AppEnv, RequestLog } from "./proxy/context.js";

export interface AppDeps {
  config: {
    registries: ReadonlyMap<string, RegistryConfig>;
    defaultRegistry: string | undefined;
    blobRedirect: boolean;
    /** bodyMs also bounds how long a blob relay may stall on its client (proxy/blob-relay.ts) */
    upstreamTimeouts?: { bodyMs: number };
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
  /** who may use the API (`clients:`; src/access/gate.ts); absent: anyone who can connect */
  access?: ClientAccess;
}

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const log = deps.logger;
  const access = fixedFieldsLogger(log);
  const blobs = new BlobRelay(deps);
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
      // A complete answer is one whose every byte was handed to the socket (end() called, nothing
      // left buffered): Node may destroy the response right after that (a 404 or 405 whose request
      // body was never read, `Connection: close`), which is not an abort (issue 12 item 8).
      const complete = out.writableFinished || (out.writableEnded && out.writableLength === 0);
      writeAccessLine(access, metrics, c, requestId, requestLog, started, out.statusCode, !complete);
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

  // After the access line's middleware, so a 401 is logged like any answer; before every route,
  // `/v2/` included (clients discover the challenge there).
  if (deps.access) app.use("*", clientAccessMiddleware(deps.access));

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
        return serveManifest(c, deps, target, route.reference, method);
      case "blob":
        return blobs.serve(c, target, route.digest, method);
      case "tags":
        return serveTagList(c, deps.tags, target);
    }
  });

  return app;
}

/**
 * The HTTP server: a request with a warm answer (proxy/warm.ts) is answered at once; every other
 * request goes through the app. With `tls` it is an HTTPS server (node:https; the certificate is
 * kept current by src/tls-listener.ts through setSecureContext).
 *
 * With `access` (`clients:`), a warm answer goes only to a client already known to be admitted
 * (a listed certificate, or credentials verified moments ago: gate.ts admitSync); any other
 * request is routed, and the app's client-access middleware verifies it or answers 401.
 */
export function createHttpServer(
  app: Hono<AppEnv>,
  warm: WarmAnswers | undefined,
  tls?: TlsServerOptions,
  access?: ClientAccess,
): Server | HttpsServer {
  const routed = getRequestListener(app.fetch);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (warm) {
      if (!access) {
        if (warm.serve(req, res)) return;
      } else {
        const client = access.admitSync(req.headers.authorization, req.socket);
        if (client && warm.serve(req, res, client)) return;
      }
    }
    void routed(req, res);
  };
  if (tls) return createHttpsServer({ highWaterMark: BLOB_HIGH_WATER_MARK, ...tls }, handler);
  return createServer({ highWaterMark: BLOB_HIGH_WATER_MARK }, handler);
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
    // Who asked: per request, never part of accessLineContext (a warm answer reuses that).
    client: requestLog.client,
    clientAuth: requestLog.clientAuth,
    clientRefused: requestLog.clientRefused,
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
