import { describe, expect, it } from "vitest";
import {
  basicAuthorization,
  interpretTokenResponse,
  parseChallenge,
  pullScope,
  TokenCache,
} from "../../src/upstream/auth.js";

describe("WWW-Authenticate challenges", () => {
  it("parses Docker Hub's bearer challenge, with commas inside quoted values", () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push"',
      ),
    ).toEqual({
      scheme: "bearer",
      params: {
        realm: "https://auth.docker.io/token",
        service: "registry.docker.io",
        scope: "repository:library/alpine:pull,push",
      },
    });
  });

  it("handles spacing, token values, escapes and case", () => {
    expect(parseChallenge('bearer  Realm = "http://a/t" , service=reg, error="invalid_\\"token\\""')).toEqual(
      {
        scheme: "bearer",
        params: { realm: "http://a/t", service: "reg", error: 'invalid_"token"' },
      },
    );
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({
      scheme: "basic",
      params: { realm: "Registry Realm" },
    });
  });

  it("returns undefined for nothing usable", () => {
    expect(parseChallenge(undefined)).toBeUndefined();
    expect(parseChallenge("")).toBeUndefined();
    expect(parseChallenge('"quoted"')).toBeUndefined();
  });

  it("always asks for pull only", () => {
    expect(pullScope("library/alpine")).toBe("repository:library/alpine:pull");
  });

  it("builds Basic credentials", () => {
    expect(basicAuthorization("robot", "pa:ss")).toBe(
      `Basic ${Buffer.from("robot:pa:ss").toString("base64")}`,
    );
  });
});

describe("token responses", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  it("prefers token, accepts access_token, defaults to 60 s", () => {
    expect(interpretTokenResponse({ token: "t1", access_token: "t2", expires_in: 300 }, now)).toEqual({
      token: "t1",
      ttlMs: 295_000,
    });
    expect(interpretTokenResponse({ access_token: "t2" }, now)).toEqual({ token: "t2", ttlMs: 55_000 });
    expect(interpretTokenResponse({ expires_in: 300 }, now)).toBeUndefined();
    expect(interpretTokenResponse({ token: "" }, now)).toBeUndefined();
  });

  it("counts from issued_at, never from the future", () => {
    const issued = new Date(now - 100_000).toISOString();
    expect(interpretTokenResponse({ token: "t", expires_in: 300, issued_at: issued }, now)?.ttlMs).toBe(
      195_000,
    );
    const future = new Date(now + 100_000).toISOString();
    expect(interpretTokenResponse({ token: "t", expires_in: 300, issued_at: future }, now)?.ttlMs).toBe(
      295_000,
    );
    // already expired: not cacheable
    const old = new Date(now - 400_000).toISOString();
    expect(interpretTokenResponse({ token: "t", expires_in: 300, issued_at: old }, now)?.ttlMs).toBeLessThan(
      0,
    );
  });
});

describe("token cache", () => {
  it("caches per (registry, scope) until the token expires", async () => {
    let clock = 1_000_000;
    const cache = new TokenCache({ now: () => clock });
    let fetches = 0;
    const fetchToken = async () => ({ token: `tok${++fetches}`, ttlMs: 60_000 });
    expect(await cache.getOrFetch("r", "repository:a:pull", fetchToken)).toBe("tok1");
    expect(await cache.getOrFetch("r", "repository:a:pull", fetchToken)).toBe("tok1");
    expect(await cache.getOrFetch("r", "repository:b:pull", fetchToken)).toBe("tok2");
    expect(await cache.getOrFetch("other", "repository:a:pull", fetchToken)).toBe("tok3");
    clock += 59_000;
    expect(cache.get("r", "repository:a:pull")).toBe("tok1");
    clock += 2_000;
    expect(cache.get("r", "repository:a:pull")).toBeUndefined();
    expect(await cache.getOrFetch("r", "repository:a:pull", fetchToken)).toBe("tok4");
  });

  it("shares one fetch between concurrent misses and does not cache failures", async () => {
    const cache = new TokenCache();
    let fetches = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow = async () => {
      fetches++;
      await gate;
      return { token: "shared", ttlMs: 60_000 };
    };
    const all = Promise.all([1, 2, 3].map(() => cache.getOrFetch("r", "s", slow)));
    release();
    expect(await all).toEqual(["shared", "shared", "shared"]);
    expect(fetches).toBe(1);
    await expect(cache.getOrFetch("r", "t", async () => Promise.reject(new Error("down")))).rejects.toThrow(
      "down",
    );
    expect(await cache.getOrFetch("r", "t", async () => ({ token: "ok", ttlMs: 1000 }))).toBe("ok");
  });

  it("does not cache a token with no lifetime left, and forgets on invalidate", async () => {
    const cache = new TokenCache();
    await cache.getOrFetch("r", "s", async () => ({ token: "dead", ttlMs: -5 }));
    expect(cache.get("r", "s")).toBeUndefined();
    await cache.getOrFetch("r", "s", async () => ({ token: "live", ttlMs: 60_000 }));
    cache.invalidate("r", "s");
    expect(cache.get("r", "s")).toBeUndefined();
  });
});
