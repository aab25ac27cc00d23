/**
 * Prometheus metrics (issue 12 item 4), served by the admin listener (src/admin) in the text
 * exposition format.
 *
 * Everything is counted where a request already ends in exactly one access line (server.ts
 * writeAccessLine, proxy/warm.ts for warm answers), so each request is counted once, with the same
 * route, status and decision the log shows, and the warm path pays only a few increments on
 * series whose label values were resolved once, when its answer was remembered.
 *
 * Labels stay bounded: route and reason come from fixed sets, status from the HTTP status, policy
 * from the policy files, registry from the config. No image, repository, tag or digest is ever a
 * label: those belong in the log line, where one line per request costs nothing in series.
 *
 * Own Registry, not prom-client's global one: two runtimes in one process (tests) never share
 * counters, and nothing else registered globally leaks into the scrape.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { AuditLine } from "./proxy/audit.js";
import type { RouteKind } from "./proxy/context.js";
import type { TrustObserver, TrustSourceRef } from "./trust/observer.js";

export type { TrustObserver, TrustSourceRef } from "./trust/observer.js";
/** The access line's kind of request: the `route` label. */
export type { RouteKind };

/** Seconds; from a cached answer (~30 µs) to a slow upstream (minutes for a blob). */
const REQUEST_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Why a decision came out as it did, from a fixed set: the `reason` label of decisions.
 * Trust failures keep their TrustError code (src/trust/errors.ts), a closed set too.
 */
export const DECISION_REASONS = [
  "signed",
  "unsigned",
  "digest-pulls-any",
  "exception",
  "trust-off",
  "no-policy",
  "content-mismatch",
  "TRUST_UNAVAILABLE",
  "TRUST_NOT_FOUND",
  "METADATA_INVALID",
  "SIGNATURE_INVALID",
  "EXPIRED",
  "ROLLBACK",
  "HASH_MISMATCH",
  "ROOT_PIN_MISMATCH",
  "ROOT_CERT_INVALID",
  "DELEGATION_INVALID",
  "TRUST_NOT_CONFIGURED",
  "other",
] as const;
export type DecisionReason = (typeof DECISION_REASONS)[number];
const KNOWN_REASONS: ReadonlySet<string> = new Set(DECISION_REASONS);

/**
 * The bounded reason of one decision, from the audit fields on its access line. The order is the
 * order of precedence: the policy's kind first (no policy, off), then an exception (it allowed the
 * pull whatever trust said), a trust failure, bytes that did not match a signature (a refusal that
 * names a signing role), and signed or not.
 */
export function decisionReason(d: AuditLine): DecisionReason {
  if (d.mode === "refuse") return "no-policy";
  if (d.mode === "off") return "trust-off";
  if (d.exception !== undefined) return "exception";
  if (d.trustFailure !== undefined)
    return KNOWN_REASONS.has(d.trustFailure) ? (d.trustFailure as DecisionReason) : "other";
  if (d.decision === "deny") return d.role !== undefined ? "content-mismatch" : "unsigned";
  if (d.wouldDeny) return "unsigned";
  return d.role !== undefined ? "signed" : "digest-pulls-any";
}

/** An upstream exchange's `status` label: the HTTP status, or how it failed before one. */
export type UpstreamOutcome = number | "timeout" | "error";

/** The hook a RegistryClient calls once per HTTP exchange (upstream/client.ts). */
export type UpstreamObserver = (
  registry: string,
  resource: string,
  outcome: UpstreamOutcome,
  seconds: number,
) => void;

/** What one finished request adds: its counter, its histogram, its decision and blob bytes. */
export interface RequestRecord {
  route: RouteKind;
  status: number;
  seconds: number;
  decision: AuditLine | undefined;
  /** blob body bytes sent, with the blob cache's verdict when there is a cache */
  blobBytes?: { bytes: number; cache: "hit" | "miss" | undefined };
}

/** The pre-bound series of one warm answer: counting it is increments only. */
export type WarmRecorder = (seconds: number) => void;

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

export class Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<"route" | "status">;
  readonly #duration: Histogram<"route">;
  readonly #decisions: Counter<"decision" | "mode" | "policy" | "reason">;
  readonly #blobBytes: Counter<"cache">;
  readonly #warm: Counter;
  readonly #upstream: Counter<"registry" | "resource" | "status">;
  readonly #upstreamDuration: Histogram<"registry" | "resource">;
  readonly #trustRefreshes: Counter<"registry" | "source" | "result">;
  readonly #trustRefreshDuration: Histogram<"registry" | "source">;
  readonly #expiryWatchers = new Map<string, { source: TrustSourceRef; read: () => number | undefined }[]>();
  /** children by label values, so a request does not rebuild its label object */
  readonly #requestChildren = new Map<string, Inc>();
  readonly #durationChildren = new Map<RouteKind, Observe>();
  readonly #decisionChildren = new Map<string, Inc>();

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.processMetrics !== false)
      collectDefaultMetrics({ register: this.registry, prefix: "trustgate_" });
    this.#requests = new Counter({
      name: "trustgate_http_requests_total",
      help: "Requests on the OCI listener, by route and HTTP status (one per access line)",
      labelNames: ["route", "status"],
      registers,
    });
    this.#duration = new Histogram({
      name: "trustgate_http_request_duration_seconds",
      help: "Time from request to the access line (a blob: until its last byte or its end), by route",
      labelNames: ["route"],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.#decisions = new Counter({
      name: "trustgate_decisions_total",
      help: "Manifest requests answered under a trust decision (warm answers included), by decision, mode, policy and bounded reason",
      labelNames: ["decision", "mode", "policy", "reason"],
      registers,
    });
    this.#blobBytes = new Counter({
      name: "trustgate_blob_bytes_total",
      help: 'Blob body bytes sent to clients, by blob cache verdict ("hit", "miss", "none": no cache or not cacheable)',
      labelNames: ["cache"],
      registers,
    });
    this.#warm = new Counter({
      name: "trustgate_warm_answers_total",
      help: "Manifest pulls by tag answered from a warm answer (no routing, no new decision)",
      registers,
    });
    this.#upstream = new Counter({
      name: "trustgate_upstream_requests_total",
      help: 'HTTP exchanges with upstream registries (each retry, redirect and token request counts), by registry, resource and status ("timeout", "error": no answer)',
      labelNames: ["registry", "resource", "status"],
      registers,
    });
    this.#upstreamDuration = new Histogram({
      name: "trustgate_upstream_request_duration_seconds",
      help: "Time until an upstream's response headers (or the failure), by registry and resource",
      labelNames: ["registry", "resource"],
      buckets: UPSTREAM_BUCKETS,
      registers,
    });
    this.#trustRefreshes = new Counter({
      name: "trustgate_trust_refreshes_total",
      help: 'Network refreshes of trust metadata, by registry, source kind and result ("ok" or the TrustError code)',
      labelNames: ["registry", "source", "result"],
      registers,
    });
    this.#trustRefreshDuration = new Histogram({
      name: "trustgate_trust_refresh_duration_seconds",
      help: "Time a trust refresh took, by registry and source kind",
      labelNames: ["registry", "source"],
      buckets: UPSTREAM_BUCKETS,
      registers,
    });
    const watchers = this.#expiryWatchers;
    new Gauge({
      name: "trustgate_trust_expiry_seconds",
      help: "Seconds until the earliest expiry of the verified trust metadata held, per registry (negative: expired; absent: none held)",
      labelNames: ["registry", "source"],
      registers,
      collect() {
        this.reset();
        for (const list of watchers.values()) {
          let earliest: number | undefined;
          for (const w of list) {
            const s = w.read();
            if (s !== undefined && (earliest === undefined || s < earliest)) earliest = s;
          }
          const first = list[0];
          if (earliest !== undefined && first)
            this.set({ registry: first.source.registry, source: first.source.kind }, earliest);
        }
      },
    });
  }

  /** One finished request: called from the access line (server.ts writeAccessLine). */
  request(r: RequestRecord): void {
    this.#requestChild(r.route, r.status).inc();
    this.#durationChild(r.route).observe(r.seconds);
    if (r.decision) this.#decisionChild(r.decision).inc();
    if (r.blobBytes && r.blobBytes.bytes > 0)
      this.#blobBytes.inc({ cache: r.blobBytes.cache ?? "none" }, r.blobBytes.bytes);
  }

  /**
   * The series one warm answer will count into, bound once when it is remembered (proxy/warm.ts):
   * a warm answer is a 200 manifest under the decision it was first answered with.
   */
  warmRecorder(decision: AuditLine | undefined): WarmRecorder {
    const requests = this.#requestChild("manifest", 200);
    const duration = this.#durationChild("manifest");
    const decided = decision ? this.#decisionChild(decision) : undefined;
    const warm = this.#warm;
    return (seconds) => {
      requests.inc();
      duration.observe(seconds);
      decided?.inc();
      warm.inc();
    };
  }

  readonly upstream: UpstreamObserver = (registry, resource, outcome, seconds) => {
    this.#upstream.inc({ registry, resource, status: String(outcome) });
    this.#upstreamDuration.observe({ registry, resource }, seconds);
  };

  readonly trust: TrustObserver = {
    onRefresh: (source, result, seconds) => {
      this.#trustRefreshes.inc({ registry: source.registry, source: source.kind, result });
      this.#trustRefreshDuration.observe({ registry: source.registry, source: source.kind }, seconds);
    },
    watchExpiry: (source, read) => {
      const key = `${source.registry}\u0000${source.kind}`;
      const list = this.#expiryWatchers.get(key) ?? [];
      list.push({ source, read });
      this.#expiryWatchers.set(key, list);
    },
  };

  /** The exposition text and its content type, for GET /metrics. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  #requestChild(route: RouteKind, status: number): Inc {
    const key = `${route} ${status}`;
    let child = this.#requestChildren.get(key);
    if (!child) {
      child = this.#requests.labels(route, String(status));
      this.#requestChildren.set(key, child);
    }
    return child;
  }

  #durationChild(route: RouteKind): Observe {
    let child = this.#durationChildren.get(route);
    if (!child) {
      child = this.#duration.labels(route);
      this.#durationChildren.set(route, child);
    }
    return child;
  }

  #decisionChild(d: AuditLine): Inc {
    const reason = decisionReason(d);
    const key = `${d.decision}\u0000${d.mode}\u0000${d.policy}\u0000${reason}`;
    let child = this.#decisionChildren.get(key);
    if (!child) {
      child = this.#decisions.labels(d.decision, d.mode, d.policy, reason);
      this.#decisionChildren.set(key, child);
    }
    return child;
  }
}
