import { describe, expect, it } from "vitest";
import { assertIntegerNumbers, byUtf8Bytes, canonicalJson } from "../../src/trust/notary/canonical.js";

const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

describe("canonical JSON key order", () => {
  // Where UTF-16 and UTF-8 orders disagree: U+E000..U+FFFF against supplementary characters.
  const keys = [
    "a",
    "b",
    "ab",
    "",
    "é",
    "z",
    "\u{E000}",
    "\uFFFD",
    "\u{1F600}",
    "\u{10000}",
    "a\u{1F600}",
    "a\uFFFF",
    "~",
    "\u007F",
    "\u0080",
    "\u07FF",
    "\u0800",
    "\uD7FF",
  ];

  it("orders keys by their UTF-8 bytes, as Go's canonical JSON does", () => {
    for (const a of keys)
      for (const b of keys)
        expect(Math.sign(byUtf8Bytes(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(
          Math.sign(utf8Order(a, b)),
        );
  });

  it("agrees with a byte comparison on random strings", () => {
    const pool = ["a", "Z", "\u00E9", "\u4E2D", "\uE000", "\uFFFF", "\u{1F600}", "\u{10FFFF}", "\u{10000}"];
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const word = () => Array.from({ length: 1 + rand(4) }, () => pool[rand(pool.length)]).join("");
    for (let i = 0; i < 5000; i++) {
      const a = word();
      const b = word();
      expect(Math.sign(byUtf8Bytes(a, b))).toBe(Math.sign(utf8Order(a, b)));
    }
  });

  it("writes sorted keys, escapes only backslash and quote", () => {
    const value = { "\u{1F600}": 1, "\uE000": 2, b: 'say "hi" \\ \n', a: [true, null, -3] };
    expect(canonicalJson(value).toString("utf8")).toBe(
      `{"a":[true,null,-3],"b":"say \\"hi\\" \\\\ \n","\uE000":2,"\u{1F600}":1}`,
    );
  });

  it("refuses numbers that have no canonical form", () => {
    expect(() => assertIntegerNumbers('{"a":1.0}')).toThrow();
    expect(() => assertIntegerNumbers('{"a":1e3}')).toThrow();
    expect(() => assertIntegerNumbers('{"a":-0.5}')).toThrow();
    expect(() => assertIntegerNumbers('{"a":9007199254740993}')).toThrow();
    expect(() => assertIntegerNumbers('{"a":"1.5e3","b":[0,-12]}')).not.toThrow();
  });
});
