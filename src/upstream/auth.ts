/**
 * Upstream authentication: the Docker registry token flow (distribution docs "Token
 * Authentication Specification": a 401 with `WWW-Authenticate: Bearer realm,service,scope`
 * -> GET realm?service&scope -> `{token|access_token, expires_in, issued_at}`) and Basic auth.
 * Tokens are cached per (registry, scope) until they expire; concurrent misses share one fetch.
 * Client credentials never reach this module: only the configured upstream credentials do.
 */
import { LRUCache } from "lru-cache";

export interface Challenge {
  /** lowercased auth scheme, e.g. "bearer" or "basic" */
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parse the first challenge of a WWW-Authenticate header (RFC 9110 §11.6.1): scheme, then
 * comma-separated auth-params whose values may be quoted strings containing commas
 * (scope="repository:a:pull,push") and backslash escapes.
 */
export function parseChallenge(header: string | null | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*/.exec(header);
  if (!m?.[1]) return undefined;
  const scheme = m[1].toLowerCase();
  const params: Record<string, string> = {};
  let rest = header.slice(m[0].length);
  const param = /^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)/;
  for (;;) {
    const p = param.exec(rest);
    if (!p?.[1]) break;
    const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
    params[p[1].toLowerCase()] = value;
    rest = rest.slice(p[0].length);
  }
  return { scheme, params };
}

/** The only scope trustgate ever asks for: pull (distribution token scope grammar). */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export interface TokenResponse {
  token?: unknown;
  access_token?: unknown;
  expires_in?: unknown;
  issued_at?: unknown;
}

/** Tokens without `expires_in` live 60 s (token spec); we stop using one a little early. */
const DEFAULT_EXPIRES_IN_S = 60;
const EXPIRY_MARGIN_MS = 5_000;

/** The token and how long it may be cached (ms; <= 0: do not cache). */
export function interpretTokenResponse(
  body: TokenResponse,
  nowMs: number,
): { token: string; ttlMs: number } | undefined {
  const token =
    typeof body.token === "string" && body.token !== ""
      ? body.token
      : typeof body.access_token === "string" && body.access_token !== ""
        ? body.access_token
        : undefined;
  if (token === undefined) return undefined;
  const expiresIn =
    typeof body.expires_in === "number" && Number.isFinite(body.expires_in) && body.expires_in > 0
      ? body.expires_in
      : DEFAULT_EXPIRES_IN_S;
  const issuedMs = typeof body.issued_at === "string" ? Date.parse(body.issued_at) : Number.NaN;
  // An issued_at in the future (clock skew) must not extend the lifetime.
  const start = Number.isFinite(issuedMs) ? Math.min(issuedMs, nowMs) : nowMs;
  const expiresAt = start + expiresIn * 1000;
  const margin = Math.min(EXPIRY_MARGIN_MS, (expiresIn * 1000) / 10);
  return { token, ttlMs: expiresAt - margin - nowMs };
}

/**
 * Cache of bearer tokens per (registry, scope), with single-flight fetches. Also remembers the
 * last Bearer challenge per registry so a new repository can get its token before the first
 * request instead of after a 401 round trip.
 */
export class TokenCache {
  readonly #tokens: LRUCache<string, string>;
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #challenges = new Map<string, Challenge>();
  readonly #now: () => number;

  constructor(opts: { max?: number; now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#tokens = new LRUCache<string, string>({
      max: opts.max ?? 10_000,
      ttlAutopurge: false,
      // lru-cache's clock follows ours so tests can move time.
      perf: { now: () => this.#now() },
    });
  }

  static key(registry: string, scope: string): string {
    return `${registry}\u0000${scope}`;
  }

  get(registry: string, scope: string): string | undefined {
    return this.#tokens.get(TokenCache.key(registry, scope));
  }

  rememberChallenge(registry: string, challenge: Challenge): void {
    this.#challenges.set(registry, challenge);
  }

  challengeFor(registry: string): Challenge | undefined {
    return this.#challenges.get(registry);
  }

  invalidate(registry: string, scope: string): void {
    this.#tokens.delete(TokenCache.key(registry, scope));
  }

  /**
   * The cached token, or the result of `fetchToken` (shared by concurrent callers), cached for
   * the ttl it returns.
   */
  async getOrFetch(
    registry: string,
    scope: string,
    fetchToken: () => Promise<{ token: string; ttlMs: number }>,
  ): Promise<string> {
    const key = TokenCache.key(registry, scope);
    const cached = this.#tokens.get(key);
    if (cached !== undefined) return cached;
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = fetchToken()
        .then(({ token, ttlMs }) => {
          if (ttlMs > 0) this.#tokens.set(key, token, { ttl: ttlMs });
          return token;
        })
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, "utf8").toString("base64")}`;
}
