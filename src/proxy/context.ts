/**
 * What every request handler shares with the HTTP app (server.ts): hono's environment for a
 * request (its id and the access-log facts the handlers fill in), and the access line's fields
 * that describe what was asked and decided. Here, below the handlers and the app, so both import
 * it and nothing imports back up (server -> proxy -> policy -> trust -> upstream).
 */
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";
import type { AuditLine } from "./audit.js";

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
  /** who the request came from (`clients:`; src/access/gate.ts): a user name or certificate identity */
  client?: string;
  clientAuth?: "password" | "token" | "certificate";
  /** why a client was not admitted (answered 401; never the credentials) */
  clientRefused?: string;
  /** what kind of request this was, for metrics (unset: "other") */
  route?: RouteKind;
}

/** The kinds of request metrics count apart (a bounded label: never a name from the request). */
export type RouteKind = "manifest" | "blob" | "tags" | "ping" | "other";

export type AppEnv = {
  Bindings: HttpBindings | undefined;
  Variables: { requestId: string; requestLog: RequestLog };
};

/**
 * The access line's fields that describe what was asked and decided, not how this one answer went:
 * a warm answer (proxy/warm.ts) binds them once and logs the same line. Every AuditLine field,
 * whatever it gains later (it is flat by contract: audit.ts); its reqId is the line's own.
 */
export function accessLineContext(c: Context<AppEnv>, requestLog: RequestLog): Record<string, unknown> {
  if (!requestLog.decision) return { ns: c.req.query("ns"), registry: requestLog.registry };
  const { reqId: _sameAsTheLine, ...decision } = requestLog.decision;
  return { ns: c.req.query("ns"), registry: requestLog.registry, audit: true, ...decision };
}
