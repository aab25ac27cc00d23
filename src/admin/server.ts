/**
 * The admin listener (issue 12 item 4): `/healthz`, `/readyz` and `/metrics` on their own
 * address (config `admin.listen`), off the OCI port, so probes and scrapes neither reach the pull
 * clients' listener nor show in its access log and request metrics, and can be firewalled apart.
 *
 *  - /healthz: the process answers (200). A liveness probe: it does not look at anything else,
 *    so a restart is never triggered by a dependency being down.
 *  - /readyz: 200 or 503 with a JSON body naming each check and the ones that failed (readiness.ts).
 *  - /metrics: the Prometheus text exposition format (metrics.ts).
 *  - /trust: the recorded trust state as JSON, the shape of `trustgate trust status --json`
 *    (commands/trust-status.ts), computed from the state directory with the policies in force.
 *    No secret is in it: no credentials, and URLs without user or password.
 * GET and HEAD only; anything else is 404 or 405. Plain node:http: four fixed paths need no router.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { Readiness } from "./readiness.js";

export interface AdminDeps {
  readiness: Readiness;
  metrics: Metrics;
  logger: Logger;
  /** what /trust answers (a JSON-serialisable report); absent: /trust is 404 */
  trustStatus?: () => Promise<unknown>;
}

const PATHS = ["/healthz", "/readyz", "/metrics", "/trust"];

export function createAdminServer(given: AdminDeps): Server {
  const deps: AdminDeps = { ...given };
  const trustStatus = given.trustStatus;
  if (trustStatus) {
    // One listing at a time, shared by callers meanwhile: it reads every state file.
    let listing: Promise<unknown> | undefined;
    deps.trustStatus = () => {
      listing ??= trustStatus().finally(() => {
        listing = undefined;
      });
      return listing;
    };
  }
  const server = createServer((req, res) => {
    answer(deps, req, res).catch((err: unknown) => {
      deps.logger.error({ path: req.url, err: String(err) }, "admin endpoint failed");
      if (!res.headersSent) send(res, req, 500, "text/plain; charset=utf-8", "internal error\n");
      else res.destroy();
    });
  });
  // A scrape or a probe is small and quick: a client that stalls is cut rather than held.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return server;
}

async function answer(deps: AdminDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? "").split("?")[0];
  if (!PATHS.includes(path ?? "") || (path === "/trust" && !deps.trustStatus)) {
    const known = PATHS.filter((p) => p !== "/trust" || deps.trustStatus).join(", ");
    send(res, req, 404, "text/plain; charset=utf-8", `not found: ${known}\n`);
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    send(res, req, 405, "text/plain; charset=utf-8", "method not allowed\n");
    return;
  }
  switch (path) {
    case "/healthz":
      send(res, req, 200, "text/plain; charset=utf-8", "ok\n");
      return;
    case "/readyz": {
      const report = deps.readiness.report();
      const body = `${JSON.stringify({ status: report.ready ? "ready" : "not ready", ...report })}\n`;
      send(res, req, report.ready ? 200 : 503, "application/json", body);
      return;
    }
    case "/trust": {
      const report = await (deps.trustStatus as () => Promise<unknown>)();
      send(res, req, 200, "application/json", `${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    default: {
      const { contentType, body } = await deps.metrics.scrape();
      send(res, req, 200, contentType, body);
    }
  }
}

function send(res: ServerResponse, req: IncomingMessage, status: number, type: string, body: string): void {
  const bytes = Buffer.from(body, "utf8");
  res.writeHead(status, {
    "content-type": type,
    "content-length": String(bytes.length),
    // Each answer is the state now: never from a cache between the prober and us.
    "cache-control": "no-store",
  });
  res.end(req.method === "HEAD" ? undefined : bytes);
}
