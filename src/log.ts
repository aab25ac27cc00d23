/**
 * pino JSON logs. Secrets are redacted by path as a second line of defence: the code never
 * logs request headers, credentials or tokens on purpose (config passwords are Secret objects).
 *
 * `serve` writes through an asynchronous destination: a synchronous write per line cost the
 * manifest hot path about a third of its throughput (bench: 12k vs 20k req/s by digest). Lines
 * written while a write is in flight are batched into the next one. Buffered lines are flushed
 * when `serve` stops (flushLogger) and, by the destination's exit hook, on any process exit, an
 * uncaught exception included; only SIGKILL can lose the last lines. The destination is our own
 * (src/log-destination.ts): sonic-boom's exit flush splices lines (see there).
 */
import { type DestinationStream, type Logger, pino } from "pino";
import { WorkerLogDestination } from "./log-destination.js";

export type { Logger } from "pino";

export const REDACT_PATHS = [
  "authorization",
  "cookie",
  "password",
  "token",
  "access_token",
  "*.authorization",
  "*.Authorization",
  "*.cookie",
  "*.password",
  "*.token",
  "*.access_token",
  "headers.authorization",
  "headers.cookie",
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["proxy-authorization"]',
];

/**
 * The most one batch of log lines carries (characters; lines are ASCII JSON). 16 KiB (sonic-boom's
 * default) cannot keep up with a busy proxy: one write per event-loop turn, ~600 bytes a line, 30k lines/s; the backlog grew in
 * memory for as long as the load lasted (bench, warm by tag, 10 s: peak RSS 326 MiB).
 */
const MAX_WRITE_BYTES = 1024 * 1024;

/** Standard output, written asynchronously (see above). */
export function asyncStdout(): DestinationStream {
  return new WorkerLogDestination(1, MAX_WRITE_BYTES);
}

let isoMs = Number.NaN;
let isoField = "";

/**
 * pino's isoTime, formatted once per millisecond: a busy proxy writes many lines within one
 * millisecond and Date#toISOString was ~2.5% of a cached manifest answer. Same output.
 */
function isoTimeCached(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return isoField;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "trustgate" },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    timestamp: isoTimeCached,
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * A logger without path redaction, for the per-request lines only: the access line (server.ts)
 * and the trust-decision audit line (proxy/enforce.ts). Redaction cost ~9 µs a line, 5x the rest
 * of the line, and can never change these lines: pino redacts by key (authorization, cookie,
 * password, token, access_token; top level or one below), and they have fixed keys, none of
 * those, with string, number or boolean values. Anything else keeps the redacting logger.
 */
export function fixedFieldsLogger(logger: Logger): Logger {
  return logger.child({}, { redact: [] });
}

/** Resolves once every buffered line has been written (for shutdown). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => logger.flush(() => resolve()));
}
