import { describe, expect, it } from "vitest";
import {
  isValidRegistryHost,
  isValidRepositoryName,
  isValidTag,
  looksLikeRegistryHost,
  parseDigest,
  parseReference,
} from "../../src/oci/reference.js";

const HEX64 = "a".repeat(64);

describe("repository names (distribution reference grammar)", () => {
  it.each([
    "alpine",
    "library/alpine",
    "acme/app",
    "a/b/c/d",
    "my-org/my_app",
    "a__b/c",
    "x.y/z",
    "a---b",
    "0/1",
  ])("accepts %s", (name) => expect(isValidRepositoryName(name)).toBe(true));

  it.each([
    "",
    "Alpine",
    "acme//app",
    "/acme",
    "acme/",
    "acme/-app",
    "acme/app-",
    "a___b",
    "a..b",
    "acme/app:v1",
    "127.0.0.1:5000/acme",
    "a b",
    `${"a".repeat(256)}`,
  ])("rejects %j", (name) => expect(isValidRepositoryName(name)).toBe(false));

  it("caps the total length at 255", () => {
    expect(isValidRepositoryName("a".repeat(255))).toBe(true);
    expect(isValidRepositoryName(`${"a".repeat(127)}/${"b".repeat(128)}`)).toBe(false);
  });
});

describe("tags", () => {
  it.each(["latest", "v1.2.3", "1", "_x", "A-b_c.d", "a".repeat(128)])("accepts %s", (t) =>
    expect(isValidTag(t)).toBe(true),
  );
  it.each(["", ".x", "-x", "a".repeat(129), "a/b", "a:b", "a+b"])("rejects %j", (t) =>
    expect(isValidTag(t)).toBe(false),
  );
});

describe("digests", () => {
  it("parses sha256 and sha512", () => {
    expect(parseDigest(`sha256:${HEX64}`)).toEqual({
      value: `sha256:${HEX64}`,
      algorithm: "sha256",
      hex: HEX64,
    });
    expect(parseDigest(`sha512:${"b".repeat(128)}`)?.algorithm).toBe("sha512");
  });
  it.each([
    `sha256:${"a".repeat(63)}`,
    `sha256:${"A".repeat(64)}`,
    `sha256:${"g".repeat(64)}`,
    `sha512:${HEX64}`,
    `md5:${"a".repeat(32)}`,
    `sha256${HEX64}`,
    `:${HEX64}`,
    `SHA256:${HEX64}`,
  ])("rejects %s", (d) => expect(parseDigest(d)).toBeUndefined());
});

describe("manifest references", () => {
  it("is a digest when it contains a colon, else a tag", () => {
    expect(parseReference("v1")).toEqual({ kind: "tag", tag: "v1" });
    expect(parseReference(`sha256:${HEX64}`)?.kind).toBe("digest");
    expect(parseReference("sha256:nothex")).toBeUndefined();
    expect(parseReference("-bad")).toBeUndefined();
  });
});

describe("registry hosts", () => {
  it("applies Docker's domain rule to a first path component", () => {
    expect(looksLikeRegistryHost("ghcr.io")).toBe(true);
    expect(looksLikeRegistryHost("127.0.0.1:5000")).toBe(true);
    expect(looksLikeRegistryHost("localhost")).toBe(true);
    expect(looksLikeRegistryHost("library")).toBe(false);
  });
  it("validates host[:port] names", () => {
    for (const h of [
      "docker.io",
      "ghcr.io",
      "127.0.0.1:5000",
      "localhost",
      "[::1]:5000",
      "my-reg.example.com:443",
    ])
      expect(isValidRegistryHost(h), h).toBe(true);
    for (const h of ["", "http://x", "a/b", "a:b:c", "-x.io", "x.io:port"])
      expect(isValidRegistryHost(h), h).toBe(false);
  });
});
