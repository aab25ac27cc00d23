/**
 * Typed failures. Every error trustgate raises on purpose carries a fixed string `code`;
 * callers branch on the class or the code, never on the message text. The HTTP layer maps
 * codes to OCI error responses in one place (src/oci/errors.ts).
 */
export class TrustgateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad configuration or policy input: the message names the file and the key. */
export class ConfigError extends TrustgateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CONFIG_INVALID", message, options);
  }
}

/** Command-line misuse: exit code 2. */
export class UsageError extends TrustgateError {
  constructor(message: string) {
    super("USAGE", message);
  }
}
