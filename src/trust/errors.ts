import { TrustgateError } from "../errors.js";

/**
 * Why trust could not be established. Every code means "refuse" to the enforcement layer;
 * the distinction is for the message, the audit log and the tests.
 */
export type TrustErrorCode =
  /** the trust server could not be reached or answered an error, and nothing verified is still valid */
  | "TRUST_UNAVAILABLE"
  /** the GUN has no trust data at all on the server */
  | "TRUST_NOT_FOUND"
  /** bytes that do not parse, are not canonical, are too large, or have the wrong shape */
  | "METADATA_INVALID"
  /** a role's signature threshold is not met by distinct valid keys */
  | "SIGNATURE_INVALID"
  /** a role's `expires` is in the past */
  | "EXPIRED"
  /** a role's version is lower than the trusted one */
  | "ROLLBACK"
  /** bytes do not match the hash or length the referring role signed */
  | "HASH_MISMATCH"
  /** the root is not signed by a pinned root key */
  | "ROOT_PIN_MISMATCH"
  /** a root certificate is a CA, names another GUN, or is outside its validity period */
  | "ROOT_CERT_INVALID"
  /** a delegation signs a path its parent does not allow */
  | "DELEGATION_INVALID"
  /** no trust source is configured for the registry, or not the kind the policy names */
  | "TRUST_NOT_CONFIGURED";

export class TrustError extends TrustgateError {
  override readonly code: TrustErrorCode;
  /** the GUN or TUF repository the failure belongs to */
  readonly gun: string;
  /** the role whose check failed, when one did */
  readonly role: string | undefined;
  constructor(
    code: TrustErrorCode,
    gun: string,
    role: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.code = code;
    this.gun = gun;
    this.role = role;
  }
}

/**
 * Persisted trust state could not be written or read (a full, read-only or missing state
 * directory). Not a trust failure: nothing was verified wrong, the proxy cannot keep its record
 * of what it trusts (rollback floors), so it answers "unavailable" (503) and the next request
 * tries again; writes are whole-file and atomic, so nothing half-written remains (REVIEW U8).
 */
export class StateStorageError extends TrustgateError {
  override readonly code = "STATE_UNAVAILABLE";
  readonly operation: "write" | "read";
  /** the errno code, e.g. ENOSPC, EROFS, ENOTDIR */
  readonly errno: string;
  readonly path: string;
  constructor(operation: "write" | "read", path: string, errno: string, options?: { cause?: unknown }) {
    super(
      "STATE_UNAVAILABLE",
      `trust state could not be ${operation === "write" ? "saved" : "read"}: ${errno} at ${path}`,
      options,
    );
    this.operation = operation;
    this.errno = errno;
    this.path = path;
  }
}
