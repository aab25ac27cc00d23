import { TrustgateError } from "../errors.js";

/**
 * Why an upstream call failed. src/proxy/error-mapping.ts turns these into OCI responses;
 * nothing branches on the message.
 */
export type UpstreamErrorCode =
  /** could not connect or the connection broke before an answer (after bounded retries) */
  | "UPSTREAM_UNREACHABLE"
  /** connect, headers or body timeout */
  | "UPSTREAM_TIMEOUT"
  /** the upstream answered with an error status */
  | "UPSTREAM_STATUS"
  /** the upstream answered, but not something we may pass on (digest mismatch, too large, malformed) */
  | "UPSTREAM_INVALID"
  /** the token endpoint refused or failed */
  | "UPSTREAM_AUTH_FAILED";

/** What was being fetched: decides e.g. MANIFEST_UNKNOWN vs BLOB_UNKNOWN for a 404. */
export type UpstreamResource = "manifest" | "blob" | "tags" | "token" | "ping";

export class UpstreamError extends TrustgateError {
  override readonly code: UpstreamErrorCode;
  constructor(
    code: UpstreamErrorCode,
    readonly registry: string,
    readonly resource: UpstreamResource,
    message: string,
    readonly details: { status?: number; ociCode?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.code = code;
  }
}
