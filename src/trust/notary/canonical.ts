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

/** A character that can continue a JSON number token: [0-9eE.+-] (a char-code test, not a regex per character). */
function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x65 || c === 0x45 || c === 0x2e || c === 0x2b || c === 0x2d;
}

/**
 * JSON.parse loses the difference between `1`, `1.0` and `1e0`; canonical JSON allows only the
 * first. This scans the raw text (skipping string contents) and checks every number token.
 */
export function assertIntegerNumbers(text: string): void {
  let i = 0;
  // Position of the next backslash at or after the scan point (-1: not looked for yet), so
  // string contents are skipped with native indexOf rather than a loop per character.
  let backslash = -1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // Skip to the closing quote; a backslash escapes the character after it.
      let j = i + 1;
      for (;;) {
        const quote = text.indexOf('"', j);
        if (quote < 0) {
          j = text.length;
          break;
        }
        if (backslash !== Number.POSITIVE_INFINITY && backslash < j) {
          const b = text.indexOf("\\", j);
          backslash = b < 0 ? Number.POSITIVE_INFINITY : b;
        }
        if (backslash < quote) {
          j = backslash + 2;
          continue;
        }
        j = quote + 1;
        break;
      }
      i = j;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < text.length && isNumberChar(text.charCodeAt(end))) end++;
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

const NEEDS_ESCAPE = /[\\"]/;

function encodeString(s: string): string {
  // Most strings (hashes, key IDs, tag names) need no escape: test before replacing.
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(/[\\"]/g, (ch) => `\\${ch}`)}"` : `"${s}"`;
}

/**
 * Orders strings by their UTF-8 bytes without encoding them. UTF-16 code-unit order equals
 * UTF-8 byte order except where a surrogate (a code point above U+FFFF, 4 UTF-8 bytes starting
 * 0xF0) meets a unit in U+E000..U+FFFF (3 bytes starting 0xEE/0xEF): there the surrogate is
 * greater in UTF-8 although smaller in UTF-16. Lone surrogates cannot occur: JSON.parse of
 * strictly decoded UTF-8 never produces them, and they have no UTF-8 form anyway.
 */
export function byUtf8Bytes(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      const xSurrogate = x <= 0xdfff;
      const ySurrogate = y <= 0xdfff;
      if (xSurrogate !== ySurrogate) return xSurrogate ? 1 : -1;
    }
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Appends the canonical form of `value` to `out` (one growing string: V8 joins appended pieces
 * without copying, so a 10,000-target role costs no intermediate arrays).
 */
function encode(value: unknown, out: string): string {
  if (value === null) return `${out}null`;
  switch (typeof value) {
    case "boolean":
      return out + (value ? "true" : "false");
    case "string":
      return out + encodeString(value);
    case "number":
      if (!Number.isSafeInteger(value)) throw new NonCanonicalError(`number ${value} is not an integer`);
      return out + String(value);
    case "object": {
      if (Array.isArray(value)) {
        out += "[";
        for (let i = 0; i < value.length; i++) out = encode(value[i], i === 0 ? out : `${out},`);
        return `${out}]`;
      }
      const keys = Object.keys(value as object).sort(byUtf8Bytes);
      out += "{";
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i] as string;
        out = encode((value as Record<string, unknown>)[k], `${out}${i === 0 ? "" : ","}${encodeString(k)}:`);
      }
      return `${out}}`;
    }
    default:
      throw new NonCanonicalError(`a ${typeof value} has no JSON form`);
  }
}

/** The canonical JSON bytes of a parsed value. */
export function canonicalJson(value: unknown): Buffer {
  return Buffer.from(encode(value, ""), "utf8");
}
