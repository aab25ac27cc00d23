/**
 * The registry client for one configured upstream: two undici keep-alive Agents (one for blobs,
 * one for manifests, tag lists and tokens, so relays that a slow client holds open can never
 * take the connections a manifest pull needs: REVIEW U3; each pools per origin, so a blob CDN
 * gets its own pool too), the token flow and Basic auth (auth.ts), custom CA, timeouts (idle and
 * a total deadline per fetch: U4), bounded retries of idempotent requests on connection errors,
 * and redirects followed without sending the upstream's credentials to another host.
 *
 * It is not an SSRF tool (U2): a redirect never downgrades https to http, and every connection
 * to a host other than the configured origin (a redirect target, a token realm) is checked on
 * the address it really connects to (destination.ts). Credentials go only to a token realm on
 * the upstream's own origin or one the operator listed (U9).
 */

import type { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher, request } from "undici";
import type { RegistryConfig, UpstreamTimeouts } from "../config/types.js";
import type { Logger } from "../log.js";
import type { UpstreamObserver } from "../metrics.js";
import { BLOB_HIGH_WATER_MARK, readCapped } from "../streaming.js";
import {
  basicAuthorization,
  type Challenge,
  parseChallenge,
  pullScope,
  type RealmRules,
  requestToken,
  type TokenCache,
  TokenFetchError,
} from "./auth.js";
import { entryKeys, guardedConnector, hostPortKey, refusalIn } from "./destination.js";
import { UpstreamError, type UpstreamResource } from "./errors.js";

export type ResponseHeaders = Record<string, string | string[] | undefined>;

export interface UpstreamResponse {
  statusCode: number;
  headers: ResponseHeaders;
  /** undici's body: a Node Readable with backpressure; always consume or destroy it */
  body: Readable;
  /** where the answer finally came from (after redirects) */
  url: URL;
}

export interface FetchedManifest {
  bytes: Buffer;
  /** Content-Type as the upstream sent it (may be absent) */
  contentType: string | undefined;
  /** the upstream's Docker-Content-Digest header (unverified) */
  digestHeader: string | undefined;
}

/** distribution refuses manifests over 4 MiB (registry/handlers/manifests.go maxManifestBodySize). */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;
const TAGS_MAX_BYTES = 16 * 1024 * 1024;
const ERROR_BODY_MAX_BYTES = 64 * 1024;
const MAX_REDIRECTS = 5;
const MAX_ATTEMPTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Failures before any response: safe to retry for GET/HEAD. */
const RETRYABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
]);
const TIMEOUT_CODES = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);
const USER_AGENT = "trustgate/0.1";
/** config/load.ts DEFAULTS.upstreamTimeouts.totalMs (not imported: the client does not depend on the loader) */
const DEFAULT_TOTAL_MS = 60_000;
/**
 * Connections per origin. Blobs get their own Agent, so however many relays are open the
 * manifest, tag and token requests keep theirs; each blob relay is also bounded per client and
 * cut when its client stalls (proxy/blob-relay.ts).
 */
const API_CONNECTIONS = 32;
const BLOB_CONNECTIONS = 128;
/**
 * Token realms known to belong to an upstream: Docker Hub's registry names auth.docker.io
 * (docs.docker.com "Registry authentication"). Others are listed by the operator (tokenRealms).
 */
const WELL_KNOWN_TOKEN_REALMS: Record<string, string[]> = {
  "registry-1.docker.io": ["auth.docker.io"],
};

export function header(headers: ResponseHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function drain(body: Readable): void {
  // Reading to the end returns the connection to the pool; errors here do not matter.
  body.resume();
  body.on("error", () => {});
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export interface RegistryClientOptions {
  registry: RegistryConfig;
  /** totalMs defaults to config's default (tests that build a client need not name it) */
  timeouts: Omit<UpstreamTimeouts, "totalMs"> & { totalMs?: number };
  tokens: TokenCache;
  logger: Logger;
  /** for tests: a dispatcher to use instead of the two new Agents */
  dispatcher?: Dispatcher;
  /** told of every HTTP exchange (metrics.ts); absent: nothing is counted */
  observe?: UpstreamObserver;
}

/** Options for one logical request (send). */
export interface SendOptions {
  repository: string;
  resource: UpstreamResource;
  headers: Record<string, string>;
  followRedirects: boolean;
  /** aborts the whole request: redirects, token fetch, retries and (if still attached) the body */
  signal?: AbortSignal;
}

export class RegistryClient {
  readonly name: string;
  readonly upstream: URL;
  readonly #registry: RegistryConfig;
  /** manifests, tag lists, tokens */
  readonly #api: Dispatcher;
  readonly #blobs: Dispatcher;
  readonly #ownsDispatchers: boolean;
  readonly #tokens: TokenCache;
  readonly #logger: Logger;
  readonly #totalMs: number;
  /** where the configured credentials may go (auth.ts credentialRealmProblem) */
  readonly #realmRules: RealmRules;
  readonly #observe: UpstreamObserver | undefined;

  constructor(opts: RegistryClientOptions) {
    this.#registry = opts.registry;
    this.name = opts.registry.name;
    this.upstream = opts.registry.upstream;
    this.#tokens = opts.tokens;
    this.#logger = opts.logger;
    this.#observe = opts.observe;
    this.#totalMs = opts.timeouts.totalMs ?? DEFAULT_TOTAL_MS;
    const own = hostPortKey(this.upstream.hostname, this.upstream.port, this.upstream.protocol);
    const realms = [...(opts.registry.tokenRealms ?? [])];
    if (this.upstream.protocol === "https:")
      realms.push(...(WELL_KNOWN_TOKEN_REALMS[this.upstream.hostname] ?? []));
    // Credentials over plain http only when the upstream itself is plain http: the operator chose
    // http already (and then the password crosses that network to the registry anyway).
    this.#realmRules = {
      origin: this.upstream,
      listed: new Set([own, ...realms.flatMap(entryKeys)]),
      plainHttp: "origin-http",
    };
    // Where a connection needs no address check: the operator named these hosts.
    const allowed = new Set([
      own,
      ...(opts.registry.redirectHosts ?? []).flatMap(entryKeys),
      ...realms.flatMap(entryKeys),
    ]);
    this.#ownsDispatchers = opts.dispatcher === undefined;
    const agent = (connections: number) =>
      new Agent({
        connect: guardedConnector(
          {
            timeout: opts.timeouts.connectMs,
            // An extra CA adds to the system roots; it does not replace them (a CDN behind a
            // redirect still has a public certificate).
            ...(opts.registry.ca ? { ca: [...rootCertificates, opts.registry.ca] } : {}),
          },
          allowed,
        ),
        headersTimeout: opts.timeouts.headersMs,
        bodyTimeout: opts.timeouts.bodyMs,
        keepAliveTimeout: 30_000,
        connections,
      });
    this.#api = opts.dispatcher ?? agent(API_CONNECTIONS);
    this.#blobs = opts.dispatcher ?? agent(BLOB_CONNECTIONS);
  }

  /** `<upstream>/v2/<repository>/<rest>` */
  apiUrl(repository: string, rest: string): URL {
    return new URL(`${this.upstream.href.replace(/\/$/, "")}/v2/${repository}/${rest}`);
  }

  async close(): Promise<void> {
    if (this.#ownsDispatchers) await Promise.all([this.#api.close(), this.#blobs.close()]);
  }

  /** A deadline for one whole fetch (upstreamTimeouts.totalMs): U4, a dripping upstream. */
  #deadline(): AbortSignal {
    return AbortSignal.timeout(this.#totalMs);
  }

  /** GET a manifest by tag or digest with the given Accept; bytes capped at MANIFEST_MAX_BYTES. */
  async fetchManifest(repository: string, reference: string, accept: string): Promise<FetchedManifest> {
    const signal = this.#deadline();
    const res = await this.send("GET", this.apiUrl(repository, `manifests/${reference}`), {
      repository,
      resource: "manifest",
      headers: { accept },
      followRedirects: true,
      signal,
    });
    await this.#expectStatus(res, "manifest", [200]);
    const tooLarge = () =>
      new UpstreamError(
        "UPSTREAM_INVALID",
        this.name,
        "manifest",
        `registry ${this.name} sent a manifest larger than ${MANIFEST_MAX_BYTES} bytes for ${repository}:${reference}`,
      );
    const declared = Number(header(res.headers, "content-length"));
    if (Number.isFinite(declared) && declared > MANIFEST_MAX_BYTES) {
      res.body.destroy();
      throw tooLarge();
    }
    const bytes = await this.#readBody(res.body, MANIFEST_MAX_BYTES, "manifest", tooLarge, signal);
    return {
      bytes,
      contentType: header(res.headers, "content-type"),
      digestHeader: header(res.headers, "docker-content-digest"),
    };
  }

  /**
   * OCI 1.1 `GET /v2/<name>/referrers/<digest>` (distribution-spec "Listing Referrers"): the
   * image index of the digest's referrers, or undefined when the registry answers 404 or 405 (it has
   * no referrers API; the caller then reads the referrers tag). Bounded like a manifest.
   */
  async fetchReferrers(repository: string, digest: string): Promise<Buffer | undefined> {
    const signal = this.#deadline();
    const res = await this.send("GET", this.apiUrl(repository, `referrers/${digest}`), {
      repository,
      resource: "manifest",
      headers: { accept: "application/vnd.oci.image.index.v1+json" },
      followRedirects: true,
      signal,
    });
    // 404: no referrers API (distribution-spec v1.1 forbids a 404 where it exists); 405: a
    // registry or front proxy that routes /referrers/ but refuses the method. Both: use the tag schema.
    if (res.statusCode === 404 || res.statusCode === 405) {
      drain(res.body);
      return undefined;
    }
    await this.#expectStatus(res, "manifest", [200]);
    return this.#readBody(
      res.body,
      MANIFEST_MAX_BYTES,
      "manifest",
      () =>
        new UpstreamError(
          "UPSTREAM_INVALID",
          this.name,
          "manifest",
          `registry ${this.name} sent a referrers list larger than ${MANIFEST_MAX_BYTES} bytes for ${repository}@${digest}`,
        ),
      signal,
    );
  }

  /**
   * A small blob read whole (a signature payload or bundle), within the total deadline and at
   * most `maxBytes`; the caller checks it against its digest.
   */
  async fetchSmallBlob(repository: string, digest: string, maxBytes: number): Promise<Buffer> {
    const signal = this.#deadline();
    const res = await this.send("GET", this.apiUrl(repository, `blobs/${digest}`), {
      repository,
      resource: "blob",
      headers: {},
      followRedirects: true,
      signal,
    });
    await this.#expectStatus(res, "blob", [200]);
    const tooLarge = () =>
      new UpstreamError(
        "UPSTREAM_INVALID",
        this.name,
        "blob",
        `registry ${this.name} sent a blob larger than ${maxBytes} bytes for ${repository}@${digest}`,
      );
    const declared = Number(header(res.headers, "content-length"));
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.body.destroy();
      throw tooLarge();
    }
    return this.#readBody(res.body, maxBytes, "blob", tooLarge, signal);
  }

  /**
   * Open a blob (GET streams, HEAD has no body). The caller owns `body`. A client Range header is
   * forwarded; 200 is success, and 206 only when a Range was sent: a slice cannot be checked
   * against the blob's digest, so an unasked-for 206 would pass unverified bytes (REVIEW U1).
   * Until the headers arrive the total deadline applies (a full pool queues, a token fetch or a
   * redirect may hang); the body is bounded by the idle timeout and the relay's stall deadline.
   */
  async openBlob(
    repository: string,
    digest: string,
    method: "GET" | "HEAD",
    range: string | undefined,
  ): Promise<UpstreamResponse> {
    const headersDeadline = new AbortController();
    const timer = setTimeout(
      () => headersDeadline.abort(new Error("upstreamTimeouts.totalMs")),
      this.#totalMs,
    );
    let res: UpstreamResponse;
    try {
      res = await this.send(method, this.apiUrl(repository, `blobs/${digest}`), {
        repository,
        resource: "blob",
        headers: range ? { range } : {},
        followRedirects: true,
        signal: headersDeadline.signal,
      });
    } finally {
      // Headers are in: from here a long blob is bounded by idle timeouts, not by a total.
      clearTimeout(timer);
    }
    if (res.statusCode === 206 && range === undefined) {
      res.body.destroy();
      throw new UpstreamError(
        "UPSTREAM_INVALID",
        this.name,
        "blob",
        `registry ${this.name} answered a partial blob (206) to a request for the whole blob`,
        { status: 206 },
      );
    }
    await this.#expectStatus(res, "blob", range === undefined ? [200] : [200, 206]);
    return res;
  }

  /** GET tags/list with the client's pagination parameters (n, last). */
  async listTags(
    repository: string,
    query: URLSearchParams,
  ): Promise<{ bytes: Buffer; contentType: string | undefined }> {
    const url = this.apiUrl(repository, "tags/list");
    for (const key of ["n", "last"]) {
      const v = query.get(key);
      if (v !== null) url.searchParams.set(key, v);
    }
    const signal = this.#deadline();
    const res = await this.send("GET", url, {
      repository,
      resource: "tags",
      headers: {},
      followRedirects: true,
      signal,
    });
    await this.#expectStatus(res, "tags", [200]);
    const bytes = await this.#readBody(
      res.body,
      TAGS_MAX_BYTES,
      "tags",
      () =>
        new UpstreamError(
          "UPSTREAM_INVALID",
          this.name,
          "tags",
          `registry ${this.name} sent a tag list too large`,
        ),
      signal,
    );
    return { bytes, contentType: header(res.headers, "content-type") };
  }

  /**
   * One logical request: authorization from the token cache (or after a 401 challenge, retried
   * once), redirects followed (bounded) with Authorization only ever sent to the upstream's own
   * origin: every client drops it for a blob 307 to a CDN, and so do we. A redirect from https
   * to http is refused (it would expose the request, and the bytes, to the path); where a
   * redirect may connect is the connector's check (guardedConnector).
   */
  async send(method: "GET" | "HEAD", start: URL, opts: SendOptions): Promise<UpstreamResponse> {
    let url = start;
    let authorization = await this.#authorizationFor(opts.repository);
    let answeredChallenge = false;
    for (let redirects = 0; ; ) {
      const sameOrigin = url.origin === this.upstream.origin;
      const headers: Record<string, string> = { ...opts.headers, "user-agent": USER_AGENT };
      if (sameOrigin && authorization !== undefined) headers.authorization = authorization;
      const res = await this.#requestWithRetry(method, url, headers, opts.resource, opts.signal);
      if (res.statusCode === 401 && sameOrigin && !answeredChallenge) {
        const challenge = parseChallenge(header(res.headers, "www-authenticate"));
        drain(res.body);
        const fresh = await this.#authorizeAfterChallenge(challenge, opts.repository);
        if (fresh === undefined) return { ...res, url };
        authorization = fresh;
        answeredChallenge = true;
        continue;
      }
      const location = header(res.headers, "location");
      if (opts.followRedirects && REDIRECT_STATUSES.has(res.statusCode) && location) {
        drain(res.body);
        if (++redirects > MAX_REDIRECTS)
          throw new UpstreamError(
            "UPSTREAM_INVALID",
            this.name,
            opts.resource,
            `registry ${this.name}: too many redirects`,
          );
        const next = new URL(location, url);
        if (next.protocol !== "https:" && next.protocol !== "http:")
          throw new UpstreamError(
            "UPSTREAM_INVALID",
            this.name,
            opts.resource,
            `registry ${this.name}: redirect to a non-HTTP URL`,
          );
        if (url.protocol === "https:" && next.protocol === "http:")
          throw new UpstreamError(
            "UPSTREAM_INVALID",
            this.name,
            opts.resource,
            `registry ${this.name}: the ${opts.resource} redirect leads from https to plain http: refused`,
          );
        url = next;
        continue;
      }
      return { ...res, url };
    }
  }

  /** Authorization to send before any challenge: a cached token, or one fetched for a known realm. */
  async #authorizationFor(repository: string): Promise<string | undefined> {
    const challenge = this.#tokens.challengeFor(this.name);
    if (challenge?.scheme === "basic" && this.#registry.credentials) return this.#basic();
    const scope = pullScope(repository);
    const cached = this.#tokens.get(this.name, scope);
    if (cached !== undefined) return `Bearer ${cached}`;
    if (challenge?.scheme !== "bearer") return undefined;
    try {
      return `Bearer ${await this.#token(challenge, scope)}`;
    } catch (err) {
      // The remembered realm is a shortcut, not a requirement: a realm one repository's 401
      // named and we refused (or that failed) must not break requests that need no token.
      // If this one does, its own 401 fetches the token again and reports the failure.
      if (!(err instanceof UpstreamError)) throw err;
      this.#logger.debug({ registry: this.name, code: err.code }, "token before the request failed");
      return undefined;
    }
  }

  async #authorizeAfterChallenge(
    challenge: Challenge | undefined,
    repository: string,
  ): Promise<string | undefined> {
    if (challenge?.scheme === "bearer" && challenge.params.realm) {
      this.#tokens.rememberChallenge(this.name, challenge);
      const scope = pullScope(repository);
      // The token we sent (if any) was refused: fetch a new one.
      this.#tokens.invalidate(this.name, scope);
      return `Bearer ${await this.#token(challenge, scope)}`;
    }
    if (challenge?.scheme === "basic" && this.#registry.credentials) {
      this.#tokens.rememberChallenge(this.name, challenge);
      return this.#basic();
    }
    return undefined;
  }

  #basic(): string {
    const creds = this.#registry.credentials;
    if (!creds) throw new Error("no credentials configured");
    return basicAuthorization(creds.username, creds.password.reveal());
  }

  /**
   * A pull token for `scope`, cached. We always ask for `repository:<name>:pull`, never the
   * scope the upstream suggests, so the proxy never holds more than read access. The flow and the
   * rule on where credentials may go are auth.ts's (shared with the Notary fetcher); transport,
   * deadline and retries are this client's.
   */
  #token(challenge: Challenge, scope: string): Promise<string> {
    return this.#tokens.getOrFetch(this.name, scope, async () => {
      const signal = this.#deadline();
      let answer: { token: string; ttlMs: number };
      try {
        answer = await requestToken({
          challenge,
          scope,
          credentials: this.#registry.credentials,
          rules: this.#realmRules,
          get: (url, headers) => this.#requestWithRetry("GET", url, headers, "token", signal),
          read: (body, max, tooLarge) => this.#readBody(body, max, "token", tooLarge, signal),
          userAgent: USER_AGENT,
        });
      } catch (err) {
        if (err instanceof TokenFetchError) throw this.#tokenError(err);
        throw err;
      }
      this.#logger.debug({ registry: this.name, scope, ttlMs: answer.ttlMs }, "upstream token issued");
      return answer;
    });
  }

  /** The token flow's failure as an UpstreamError, naming this registry's config keys. */
  #tokenError(err: TokenFetchError): UpstreamError {
    const where = `registries.${this.name}.tokenRealms`;
    const message = {
      "invalid-realm": `registry ${this.name} named an invalid or non-HTTP token realm`,
      "foreign-realm": `registry ${this.name} named a token realm on another host (${err.realmHost}); its credentials go only to its own origin or a host in ${where}`,
      "plain-http-realm": `registry ${this.name} named a plain-http token realm: credentials are never sent over http`,
      status: `token endpoint of registry ${this.name} answered HTTP ${err.status}`,
      "invalid-response": `token endpoint of registry ${this.name} sent no usable token (${err.message})`,
    }[err.reason];
    return new UpstreamError(
      "UPSTREAM_AUTH_FAILED",
      this.name,
      "token",
      message,
      err.status !== undefined ? { status: err.status } : {},
    );
  }

  async #requestWithRetry(
    method: "GET" | "HEAD",
    url: URL,
    headers: Record<string, string>,
    resource: UpstreamResource,
    signal: AbortSignal | undefined,
  ): Promise<Omit<UpstreamResponse, "url">> {
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      try {
        const res = await request(url, {
          method,
          headers,
          dispatcher: resource === "blob" ? this.#blobs : this.#api,
          highWaterMark: BLOB_HIGH_WATER_MARK,
          ...(signal ? { signal } : {}),
        });
        this.#observe?.(this.name, resource, res.statusCode, (performance.now() - started) / 1000);
        return { statusCode: res.statusCode, headers: res.headers, body: res.body };
      } catch (err) {
        if (signal?.aborted) throw this.#deadlineExceeded(resource, err);
        const refused = refusalIn(err);
        if (refused) {
          this.#logger.warn(
            {
              registry: this.name,
              resource,
              host: refused.host,
              address: refused.address,
              class: refused.addressClass,
            },
            "upstream destination refused",
          );
          throw new UpstreamError(
            "UPSTREAM_INVALID",
            this.name,
            resource,
            `registry ${this.name} sent the ${resource} request to a ${refused.addressClass} address: refused (registries.${this.name}.redirectHosts allows a host)`,
            {},
            { cause: err },
          );
        }
        const code = errorCode(err);
        this.#observe?.(
          this.name,
          resource,
          code !== undefined && TIMEOUT_CODES.has(code) ? "timeout" : "error",
          (performance.now() - started) / 1000,
        );
        // Only failures before any response are retried, and only GET/HEAD (idempotent) reach here.
        if (code !== undefined && RETRYABLE_CODES.has(code) && attempt < MAX_ATTEMPTS) {
          this.#logger.debug({ registry: this.name, code, attempt }, "retrying upstream request");
          await new Promise((r) => setTimeout(r, 50 * 4 ** (attempt - 1)));
          continue;
        }
        const timeout = code !== undefined && TIMEOUT_CODES.has(code);
        throw new UpstreamError(
          timeout ? "UPSTREAM_TIMEOUT" : "UPSTREAM_UNREACHABLE",
          this.name,
          resource,
          `registry ${this.name} (${url.origin}) ${timeout ? "timed out" : "is unreachable"}${code ? ` (${code})` : ""}`,
          {},
          { cause: err },
        );
      }
    }
  }

  #deadlineExceeded(resource: UpstreamResource, cause: unknown): UpstreamError {
    return new UpstreamError(
      "UPSTREAM_TIMEOUT",
      this.name,
      resource,
      `registry ${this.name} took longer than upstreamTimeouts.totalMs (${this.#totalMs} ms) for the ${resource}`,
      {},
      { cause },
    );
  }

  async #readBody(
    body: Readable,
    max: number,
    resource: UpstreamResource,
    onTooLarge: () => Error,
    signal: AbortSignal | undefined,
  ): Promise<Buffer> {
    try {
      return await readCapped(body, max, onTooLarge);
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      if (signal?.aborted) throw this.#deadlineExceeded(resource, err);
      const code = errorCode(err);
      const timeout = code !== undefined && TIMEOUT_CODES.has(code);
      throw new UpstreamError(
        timeout ? "UPSTREAM_TIMEOUT" : "UPSTREAM_UNREACHABLE",
        this.name,
        resource,
        `registry ${this.name} broke off the ${resource} response${code ? ` (${code})` : ""}`,
        {},
        { cause: err },
      );
    }
  }

  /** Throw an UpstreamError carrying the status and the upstream's OCI code (if its body has one). */
  async #expectStatus(res: UpstreamResponse, resource: UpstreamResource, ok: number[]): Promise<void> {
    if (ok.includes(res.statusCode)) return;
    let ociCode: string | undefined;
    try {
      const text = (await readCapped(res.body, ERROR_BODY_MAX_BYTES, () => new Error("too large"))).toString(
        "utf8",
      );
      const parsed = JSON.parse(text) as { errors?: { code?: unknown }[] };
      const c = parsed.errors?.[0]?.code;
      if (typeof c === "string") ociCode = c;
    } catch {
      // HEAD answers, HTML error pages and oversized bodies carry no usable code.
      res.body.destroy();
    }
    throw new UpstreamError(
      "UPSTREAM_STATUS",
      this.name,
      resource,
      `registry ${this.name} answered HTTP ${res.statusCode} for the ${resource}`,
      { status: res.statusCode, ...(ociCode ? { ociCode } : {}) },
    );
  }
}
