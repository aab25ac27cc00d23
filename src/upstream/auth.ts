/**
 * The Docker registry token flow (distribution docs "Token Authentication Specification": a 401
 * with `WWW-Authenticate: Bearer realm,service,scope` -> GET realm?service&scope ->
 * `{token|access_token, expires_in, issued_at}`) and Basic auth, for every server that speaks it:
 * the upstream registries (client.ts) and the Notary servers (trust/notary/fetcher.ts; Docker
 * Hub's, Harbor's and IBM's notary servers send the same challenge with
 * `scope="repository:<gun>:pull"`). One token client, so both apply the same rule on where
 * credentials may go (checkCredentialRealm) and the same lifetime rules.
 * Tokens are cached per (key, scope) until they expire; concurrent misses share one fetch.
 * Client credentials never reach this module: only configured credentials do.
 */
import type { Readable } from "node:stream";
import { LRUCache } from "lru-cache";
import type { Secret } from "../config/types.js";
import { classifyAddress, hostPortKey } from "./destination.js";

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
 * Cache of bearer tokens per (key, scope), with single-flight fetches: the key is the registry
 * name for the registry client, the realm and service for a Notary server. Also remembers the
 * last Bearer challenge per key so a new repository can get its token before the first
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
      // Check expiry against the clock on every read (no cached "now").
      ttlResolution: 0,
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

export interface TokenCredentials {
  username: string;
  password: Secret;
}

/** Why no token came back; each caller words it for its own error type and config keys. */
export type TokenFailureReason =
  /** the realm is not a URL, or not http(s) */
  | "invalid-realm"
  /** credentials are configured and the realm is on a host they may not go to */
  | "foreign-realm"
  /** credentials are configured and the realm is plain http where that is not allowed */
  | "plain-http-realm"
  /** the token endpoint answered something other than 200 (401/403: it refused the credentials) */
  | "status"
  /** the answer is too large, not JSON, or carries no token */
  | "invalid-response";

export class TokenFetchError extends Error {
  constructor(
    readonly reason: TokenFailureReason,
    /** the realm's host[:port] (never its path or query) */
    readonly realmHost: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "TokenFetchError";
  }
}

/** Where the configured credentials may go. */
export interface RealmRules {
  /** the server that sent the challenge: a realm on its origin may always get the credentials */
  origin: URL;
  /** host:port keys (destination.ts entryKeys) of other hosts the operator listed */
  listed: ReadonlySet<string>;
  /**
   * Plain-http realms: "origin-http" allows them when the challenging server is itself plain http
   * (the operator chose http already: the registry client's rule); "loopback" only on a loopback
   * host (the Notary rule: a password never crosses a network in clear).
   */
  plainHttp: "origin-http" | "loopback";
}

/** `localhost`, or an IP literal in 127.0.0.0/8 or ::1 (RFC 6761 §6.3: localhost is loopback). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return host === "localhost" || classifyAddress(host) === "loopback";
}

/**
 * The configured credentials go to a token realm only on the challenging server's own origin or
 * on a host the operator listed, and never over plain http (except as `rules.plainHttp` allows).
 * A realm is data from the network: without this the server, or whoever can alter its 401 on a
 * plain-http hop, collects the password (REVIEW U9). Callers refuse rather than fetch
 * anonymously: an anonymous token for a private repository would only turn into a puzzling 401.
 */
export function credentialRealmProblem(realm: URL, rules: RealmRules): TokenFetchError | undefined {
  const sameOrigin = realm.origin === rules.origin.origin;
  const listed = rules.listed.has(hostPortKey(realm.hostname, realm.port, realm.protocol));
  if (!sameOrigin && !listed)
    return new TokenFetchError("foreign-realm", realm.host, `token realm on another host (${realm.host})`);
  if (realm.protocol === "http:") {
    const allowed =
      rules.plainHttp === "origin-http" ? rules.origin.protocol === "http:" : isLoopbackHost(realm.hostname);
    if (!allowed) return new TokenFetchError("plain-http-realm", realm.host, "plain-http token realm");
  }
  return undefined;
}

export const TOKEN_MAX_BYTES = 1024 * 1024;

export interface TokenRequest {
  challenge: Challenge;
  /** what we ask for: always pull (pullScope), never the scope the server suggests */
  scope: string;
  credentials?: TokenCredentials | undefined;
  rules: RealmRules;
  /** one GET through the caller's connection pool, deadline and retries; throws the caller's errors */
  get(url: URL, headers: Record<string, string>): Promise<{ statusCode: number; body: Readable }>;
  /** reads a body, at most `max` bytes, failing with `tooLarge()`; throws the caller's errors otherwise */
  read(body: Readable, max: number, tooLarge: () => Error): Promise<Buffer>;
  userAgent: string;
  now?: () => number;
}

function drainBody(body: Readable): void {
  body.resume();
  body.on("error", () => {});
}

/**
 * GET `realm?service=&scope=` (with Basic credentials when configured, after the realm check) and
 * return the token with how long it may be cached. TokenFetchError for the token flow's own
 * failures; transport errors are whatever `get` / `read` throw.
 */
export async function requestToken(req: TokenRequest): Promise<{ token: string; ttlMs: number }> {
  const realm = req.challenge.params.realm ?? "";
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new TokenFetchError("invalid-realm", "", "invalid token realm");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new TokenFetchError("invalid-realm", url.host, "non-HTTP token realm");
  const creds = req.credentials;
  if (creds) {
    const problem = credentialRealmProblem(url, req.rules);
    if (problem) throw problem;
  }
  if (req.challenge.params.service) url.searchParams.set("service", req.challenge.params.service);
  url.searchParams.set("scope", req.scope);
  const headers: Record<string, string> = { "user-agent": req.userAgent, accept: "application/json" };
  if (creds) headers.authorization = basicAuthorization(creds.username, creds.password.reveal());
  const res = await req.get(url, headers);
  if (res.statusCode !== 200) {
    drainBody(res.body);
    throw new TokenFetchError(
      "status",
      url.host,
      `token endpoint answered HTTP ${res.statusCode}`,
      res.statusCode,
    );
  }
  const bytes = await req.read(
    res.body,
    TOKEN_MAX_BYTES,
    () => new TokenFetchError("invalid-response", url.host, "token response too large"),
  );
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const answer =
    parsed && typeof parsed === "object"
      ? interpretTokenResponse(parsed, (req.now ?? Date.now)())
      : undefined;
  if (!answer) throw new TokenFetchError("invalid-response", url.host, "token endpoint sent no token");
  return answer;
}
