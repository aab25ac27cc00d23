/**
 * The one translation from typed failures to OCI errors (rendered by src/server.ts's error
 * handler). Upstream statuses map to the matching OCI code; an unreachable upstream is 503 and
 * names the registry; a trust failure is always a refusal (fail closed); trust state the disk
 * will not keep is 503 (the proxy, not the image, is at fault). Anything unexpected
 * is 500 UNKNOWN with no internals in the body.
 */
import { OciCode, type OciCodeName, OciError } from "../oci/errors.js";
import { StateStorageError, TrustError } from "../trust/errors.js";
import { UpstreamError } from "../upstream/errors.js";

/** Codes an upstream may send that mean the same thing coming from us. */
const PASSABLE_CODES = new Set<string>([
  OciCode.BLOB_UNKNOWN,
  OciCode.MANIFEST_UNKNOWN,
  OciCode.NAME_UNKNOWN,
  OciCode.NAME_INVALID,
  OciCode.DIGEST_INVALID,
  OciCode.MANIFEST_INVALID,
]);

function fromUpstream(err: UpstreamError): OciError {
  const where = `upstream registry ${err.registry}`;
  switch (err.code) {
    case "UPSTREAM_UNREACHABLE":
      return new OciError(OciCode.UNAVAILABLE, { message: `${where} is unreachable`, cause: err });
    case "UPSTREAM_TIMEOUT":
      return new OciError(OciCode.UNAVAILABLE, { message: `${where} timed out`, status: 504, cause: err });
    case "UPSTREAM_AUTH_FAILED":
      return new OciError(OciCode.UPSTREAM_ERROR, {
        message: `${where}: authentication failed: ${err.message}`,
        cause: err,
      });
    case "UPSTREAM_INVALID":
      return new OciError(OciCode.UPSTREAM_ERROR, { message: err.message, cause: err });
    case "UPSTREAM_STATUS": {
      const status = err.details.status ?? 0;
      const ociCode = err.details.ociCode;
      if (status === 404) {
        const code: OciCodeName =
          ociCode !== undefined && PASSABLE_CODES.has(ociCode)
            ? (ociCode as OciCodeName)
            : err.resource === "manifest"
              ? OciCode.MANIFEST_UNKNOWN
              : err.resource === "blob"
                ? OciCode.BLOB_UNKNOWN
                : OciCode.NAME_UNKNOWN;
        return new OciError(code, { message: `${where} does not have this ${err.resource}`, cause: err });
      }
      if (status === 401 || status === 403)
        return new OciError(OciCode.DENIED, {
          message: `${where} denied access to this ${err.resource}`,
          cause: err,
        });
      if (status === 429)
        return new OciError(OciCode.TOOMANYREQUESTS, { message: `${where} is rate-limiting`, cause: err });
      if (status === 416)
        return new OciError(OciCode.UNKNOWN, {
          message: "requested range not satisfiable",
          status: 416,
          cause: err,
        });
      if (status === 400 && ociCode !== undefined && PASSABLE_CODES.has(ociCode))
        return new OciError(ociCode as OciCodeName, { message: `${where} rejected the request`, cause: err });
      return new OciError(OciCode.UPSTREAM_ERROR, {
        message: `${where} answered HTTP ${status}`,
        cause: err,
      });
    }
  }
}

export function toOciError(err: unknown): OciError {
  if (err instanceof OciError) return err;
  if (err instanceof UpstreamError) return fromUpstream(err);
  // Trust that cannot be established is a refusal, never a pass (issue 4 refines the message).
  if (err instanceof TrustError)
    return new OciError(OciCode.DENIED, {
      message: err.message,
      reasonPhrase: "Forbidden: trust",
      cause: err,
    });
  // The disk under stateDir refused (full, read-only): nothing is wrong with the image or its
  // trust, the proxy just cannot record what it verified. Unavailable, and the client retries;
  // the errno and path go to the log line only (REVIEW U8).
  if (err instanceof StateStorageError)
    return new OciError(OciCode.UNAVAILABLE, {
      message: `trust state could not be ${err.operation === "write" ? "saved" : "read"}; try again later`,
      reasonPhrase: "Service Unavailable (trustgate: trust state)",
      cause: err,
    });
  return new OciError(OciCode.UNKNOWN, { message: "internal error", cause: err });
}
