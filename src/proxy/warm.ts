/**
 * Warm answers: manifest pulls by tag that trust has already decided, answered before the request
 * reaches the router.
 *
 * A pull by tag whose answer is signed bytes, decided from verified trust data, is the same answer
 * for the same request until the trust source would look again (TagSignatures.reuseUntil, which is
 * never past an expiry) and while the policy set it was decided under is in force (AnswerReuse).
 * Nothing else in the request can change it: the signed digest, not the client's Accept, picks the
 * bytes; who the client is (`clients:`) is checked before a warm answer is looked up (server.ts)
 * and logged per answer. So the full answer (status, headers, bytes) and the
 * constant part of its access-log line are kept under the request's raw URL, which the router
 * turned into that registry, repository and tag the first time (a URL only gets here after the
 * router answered it), and served with no routing, no Request object and no decision. A miss, an
 * entry past `until`, or one decided under replaced policies goes the normal way, which decides
 * again and may store a new entry.
 *
 * Why it exists: on the warm path the router and the per-request decision cost more than
 * everything else together (bench: ~15k req/s through hono and the resolver, ~27k for a bare
 * hono app answering the same bytes with the same log line; README Performance).
 *
 * Bounded (LRU by bytes and by count); the bytes are the ones the manifest cache already holds.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { LRUCache } from "lru-cache";
import type { ClientIdentity } from "../access/gate.js";
import type { Logger } from "../log.js";
import type { Metrics, WarmRecorder } from "../metrics.js";
import type { AuditLine } from "./enforce.js";
import type { AnswerReuse } from "./manifests.js";
import { API_VERSION_HEADER } from "./respond.js";

/** What the normal path answered, to be answered again. */
export interface WarmAnswer {
  /** the request's raw URL (path and query as sent) */
  url: string;
  /** the access line's `path` (decoded path, no query), as the normal path logs it */
  path: string;
  body: Buffer;
  /** the answer's own headers (content type, length, digest, etag), without the per-request ones */
  headers: Record<string, string>;
  /** the access line's fields that do not change per request (registry, ns, the decision) */
  lineFields: Record<string, unknown>;
  /** the decision on that line, for the metrics of each warm answer */
  decision?: AuditLine | undefined;
  reuse: AnswerReuse;
}

interface Entry {
  path: string;
  body: Buffer;
  headers: Record<string, string>;
  /** the access logger with this entry's constant fields bound (pino serializes them once) */
  log: Logger;
  /** this entry's metric series, bound once (metrics.ts warmRecorder); absent without metrics */
  count: WarmRecorder | undefined;
  reuse: AnswerReuse;
}

export interface WarmAnswersOptions {
  /** bound in bytes of bodies held (they are shared with the manifest cache) */
  maxBytes: number;
  maxEntries?: number;
  /** the trust sources' clock, ms since the epoch */
  now: () => number;
  /** the access logger (fixed fields, no redaction: log.ts fixedFieldsLogger) */
  access: Logger;
  metrics?: Metrics;
}

/** Per-entry overhead counted against `maxBytes`: the headers, the bound logger, the key. */
const ENTRY_OVERHEAD_BYTES = 1024;

export class WarmAnswers {
  readonly #entries: LRUCache<string, Entry>;
  readonly #now: () => number;
  readonly #access: Logger;
  readonly #metrics: Metrics | undefined;

  constructor(opts: WarmAnswersOptions) {
    this.#entries = new LRUCache<string, Entry>({
      max: opts.maxEntries ?? 10_000,
      maxSize: Math.max(1, opts.maxBytes),
      sizeCalculation: (e) => e.body.length + ENTRY_OVERHEAD_BYTES,
    });
    this.#now = opts.now;
    this.#access = opts.access;
    this.#metrics = opts.metrics;
  }

  get size(): number {
    return this.#entries.size;
  }

  remember(answer: WarmAnswer): void {
    if (!(answer.reuse.until > this.#now())) return;
    this.#entries.set(answer.url, {
      path: answer.path,
      body: answer.body,
      headers: answer.headers,
      log: this.#access.child(answer.lineFields),
      count: this.#metrics?.warmRecorder(answer.decision),
      reuse: answer.reuse,
    });
  }

  /**
   * Answer `req` from a warm entry and log it; false when there is none still valid (the caller
   * then routes the request as usual).
   */
  serve(req: IncomingMessage, res: ServerResponse, client?: ClientIdentity): boolean {
    const method = req.method;
    if ((method !== "GET" && method !== "HEAD") || req.url === undefined) return false;
    const entry = this.#entries.get(req.url);
    if (!entry) return false;
    if (!(this.#now() < entry.reuse.until) || !entry.reuse.stillValid()) {
      this.#entries.delete(req.url);
      return false;
    }
    const started = performance.now();
    entry.reuse.onReuse?.();
    const reqId = randomUUID();
    res.writeHead(200, { ...entry.headers, [API_VERSION_HEADER]: "registry/2.0", "x-request-id": reqId });
    const head = method === "HEAD";
    res.end(head ? undefined : entry.body);
    const ms = performance.now() - started;
    entry.log.info(
      {
        reqId,
        method,
        path: entry.path,
        status: 200,
        bytes: head ? 0 : entry.body.length,
        durationMs: Math.round(ms * 10) / 10,
        ...(client ? { client: client.name, clientAuth: client.via } : {}),
      },
      "request",
    );
    entry.count?.(ms / 1000);
    return true;
  }
}
