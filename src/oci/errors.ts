/**
 * OCI distribution error codes, each registered once with its HTTP status and default message
 * (distribution-spec "Error Codes"; distribution's registry/api/errcode registers them the same
 * way), and the one renderer of the `{"errors":[{"code","message","detail"}]}` envelope.
 * Handlers throw an OciError (or a typed error that src/proxy/error-mapping.ts translates);
 * only the server's error handler renders.
 */

interface ErrorCodeDescriptor {
  status: number;
  message: string;
}

const REGISTRY = new Map<string, ErrorCodeDescriptor>();

function register(code: string, status: number, message: string): string {
  if (REGISTRY.has(code)) throw new Error(`OCI error code ${code} registered twice`);
  REGISTRY.set(code, { status, message });
  return code;
}

/** distribution-spec error codes (plus UNAVAILABLE/UNKNOWN as distribution's errcode defines them). */
export const OciCode = {
  BLOB_UNKNOWN: register("BLOB_UNKNOWN", 404, "blob unknown to registry"),
  DIGEST_INVALID: register("DIGEST_INVALID", 400, "provided digest did not match uploaded content"),
  MANIFEST_UNKNOWN: register("MANIFEST_UNKNOWN", 404, "manifest unknown"),
  MANIFEST_INVALID: register("MANIFEST_INVALID", 400, "manifest invalid"),
  NAME_INVALID: register("NAME_INVALID", 400, "invalid repository name"),
  NAME_UNKNOWN: register("NAME_UNKNOWN", 404, "repository name not known to registry"),
  SIZE_INVALID: register("SIZE_INVALID", 400, "provided length did not match content length"),
  UNAUTHORIZED: register("UNAUTHORIZED", 401, "authentication required"),
  DENIED: register("DENIED", 403, "requested access to the resource is denied"),
  UNSUPPORTED: register("UNSUPPORTED", 405, "the operation is unsupported"),
  TOOMANYREQUESTS: register("TOOMANYREQUESTS", 429, "too many requests"),
  /** the upstream answered something we cannot pass on (bad bytes, digest mismatch, 5xx) */
  UPSTREAM_ERROR: register("UPSTREAM_ERROR", 502, "upstream registry error"),
  UNAVAILABLE: register("UNAVAILABLE", 503, "service unavailable"),
  UNKNOWN: register("UNKNOWN", 500, "unknown error"),
} as const;

export type OciCodeName = (typeof OciCode)[keyof typeof OciCode];

export function descriptorOf(code: OciCodeName): ErrorCodeDescriptor {
  const d = REGISTRY.get(code);
  if (!d) throw new Error(`unregistered OCI error code ${code}`);
  return d;
}

/** Every registered code with its status, for documentation and the table test. */
export function registeredCodes(): ReadonlyMap<string, Readonly<ErrorCodeDescriptor>> {
  return REGISTRY;
}

export interface OciErrorOptions {
  /** overrides the code's default message: a person-readable sentence */
  message?: string;
  /** structured detail for the client (never secrets, never stack traces) */
  detail?: unknown;
  /** overrides the code's HTTP status (e.g. 502 vs 503 for upstream trouble, 404 for an unknown route) */
  status?: number;
  /**
   * A custom HTTP reason phrase. containerd prints only the status line of a refusal, never the
   * body (shared/LAB.md), so a short reason there is what its user sees.
   */
  reasonPhrase?: string;
  /** headers the answer must carry besides the body's (a 401's `WWW-Authenticate` challenge) */
  headers?: Readonly<Record<string, string>>;
  cause?: unknown;
}

export class OciError extends Error {
  readonly code: OciCodeName;
  readonly status: number;
  readonly detail: unknown;
  readonly reasonPhrase: string | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  constructor(code: OciCodeName, options: OciErrorOptions = {}) {
    const d = descriptorOf(code);
    super(options.message ?? d.message, { cause: options.cause });
    this.name = "OciError";
    this.code = code;
    this.status = options.status ?? d.status;
    this.detail = options.detail;
    this.reasonPhrase = options.reasonPhrase;
    this.headers = options.headers;
  }
}

export interface RenderedError {
  status: number;
  reasonPhrase: string | undefined;
  headers: Record<string, string>;
  body: string;
}

/**
 * URLs (a Notary or TUF server's, `GET https://notary.internal:4443/v2/...`, a `tuf <metadataUrl>`
 * source name) and bare IP addresses with a port (`connect ECONNREFUSED 10.0.0.5:4443`), but
 * not a registry's `host:port/` at the head of an image name: the client named that image itself.
 */
const INTERNAL_LOCATION =
  /\b(?:https?|file):\/\/[^\s"'()<>]*[^\s"'()<>:.,;]|\b(?:\d{1,3}\.){3}\d{1,3}:\d{1,5}\b(?!\/)|\[[0-9a-fA-F:]+\]:\d{1,5}\b(?!\/)/g;

/**
 * What a client may read of a message (issue 12 item 8): where trustgate's trust servers live is
 * internal, so every URL and address:port in it reads "(trust server)". The log keeps the full
 * message: the access line's `reason` and the warn lines are written from the error, not from
 * this rendering.
 */
export function clientMessage(message: string): string {
  return message.replace(INTERNAL_LOCATION, "(trust server)");
}

/** The `{"errors":[...]}` envelope (distribution-spec "Error Codes"). */
export function renderOciError(err: OciError): RenderedError {
  const entry: { code: string; message: string; detail?: unknown } = {
    code: err.code,
    message: clientMessage(err.message),
  };
  if (err.detail !== undefined) entry.detail = err.detail;
  const body = JSON.stringify({ errors: [entry] });
  return {
    status: err.status,
    // A reason phrase must not carry CR/LF or non-visible characters (RFC 9112 §4).
    reasonPhrase:
      err.reasonPhrase === undefined
        ? undefined
        : clientMessage(err.reasonPhrase)
            .replace(/[^\x20-\x7e]/g, " ")
            .slice(0, 200),
    headers: {
      ...err.headers,
      "content-type": "application/json; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
    },
    body,
  };
}
