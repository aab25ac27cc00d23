/**
 * Notary's canonical JSON (github.com/docker/go/canonical/json, the OLPC form TUF signs over):
 * object keys sorted by their UTF-8 bytes, no insignificant whitespace, integers only, and in
 * strings only `\` and `"` escaped (every other character, control characters included, stays raw).
 *
 * Signatures cover canonical(signed), never the served bytes, so a value that has no canonical
 * form (a float, an exponent, an integer JSON.parse cannot hold exactly) must be refused rather
 * than silently rounded: a rounded value would canonicalise to bytes the signer never signed.
 */

/** Thrown for input that has no canonical form; callers turn it into a METADATA_INVALID TrustError. */
export class NonCanonicalError extends Error {}

const INTEGER_TOKEN = /^-?(?:0|[1-9][0-9]*)$/;

/**
 * JSON.parse loses the difference between `1`, `1.0` and `1e0`; canonical JSON allows only the
 * first. This scans the raw text (skipping string contents) and checks every number token.
 */
export function assertIntegerNumbers(text: string): void {
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i++;
      while (i < text.length && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1;
      i++;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < text.length && /[0-9eE.+-]/.test(text.charAt(end))) end++;
      const token = text.slice(i, end);
      if (!INTEGER_TOKEN.test(token) || !Number.isSafeInteger(Number(token))) {
        throw new NonCanonicalError(`number ${token} has no canonical JSON form (integers only)`);
      }
      i = end;
    } else {
      i++;
    }
  }
}

/** Parses metadata bytes strictly: UTF-8, valid JSON, integers only. */
export function parseStrictJson(bytes: Uint8Array): unknown {
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  assertIntegerNumbers(text);
  return JSON.parse(text);
}

function encodeString(s: string): string {
  return `"${s.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`;
}

function byUtf8Bytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

function encode(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return encodeString(value);
    case "number":
      if (!Number.isSafeInteger(value)) throw new NonCanonicalError(`number ${value} is not an integer`);
      return String(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map(encode).join(",")}]`;
      const entries = Object.keys(value as object)
        .sort(byUtf8Bytes)
        .map((k) => `${encodeString(k)}:${encode((value as Record<string, unknown>)[k])}`);
      return `{${entries.join(",")}}`;
    }
    default:
      throw new NonCanonicalError(`a ${typeof value} has no JSON form`);
  }
}

/** The canonical JSON bytes of a parsed value. */
export function canonicalJson(value: unknown): Buffer {
  return Buffer.from(encode(value), "utf8");
}
