/**
 * pino JSON logs. Secrets are redacted by path as a second line of defence: the code never
 * logs request headers, credentials or tokens on purpose (config passwords are Secret objects).
 */
import { type DestinationStream, type Logger, pino } from "pino";

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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "trustgate" },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
