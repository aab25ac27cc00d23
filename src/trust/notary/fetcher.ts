/**
 * Downloads Notary metadata: `GET <server>/v2/<gun>/_trust/tuf/<file>` (notary-server's API).
 * Every download is bounded in time (connect, headers, body) and size (checked on
 * Content-Length and again while reading, so a lying or missing header cannot exhaust memory).
 * http:// is allowed: the metadata is signed, TLS is defence in depth.
 *
 * Token auth (Docker Hub's, Harbor's, IBM's notary servers; notary-server's `auth: {type: token}`):
 * a 401 with `WWW-Authenticate: Bearer realm,service,scope=repository:<gun>:pull` is answered with
 * the registry token flow of upstream/auth.ts (the same client, the same rule on where the
 * credentials may go: the notary server's origin or a host in `tokenRealms`, never plain http to a
 * non-loopback host), the token cached per (realm, service, scope) until it expires, and the
 * request retried once. Every failure is a TrustError (fail closed); no token or password is in
 * any message.
 */
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { Agent, request } from "undici";
import { readCapped } from "../../streaming.js";
import {
  type Challenge,
  parseChallenge,
  pullScope,
  type RealmRules,
  requestToken,
  TokenCache,
  type TokenCredentials,
  TokenFetchError,
} from "../../upstream/auth.js";
import { entryKeys, guardedConnector, hostPortKey, refusalIn } from "../../upstream/destination.js";
import { TrustError } from "../errors.js";

export interface MetadataFetcher {
  /** The bytes of `roleFile` for `gun`; throws TrustError (TRUST_NOT_FOUND on 404). */
  fetch(gun: string, roleFile: string, maxBytes: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

export interface HttpFetcherOptions {
  url: string;
  caFile?: string;
  timeoutMs?: number;
  /** sent (Basic) to the token realm only; absent: tokens are asked for anonymously */
  credentials?: TokenCredentials;
  /** host[:port] of token realms other than the server's origin that may get the credentials */
  tokenRealms?: string[];
  /** how messages name the settings: config keys, or the CLI's flags */
  settings?: { credentials: string; tokenRealms: string };
}

const USER_AGENT = "trustgate/0.1";
/** Notary servers whose token service is known (docs.docker.com "Content trust"): no listing needed. */
const WELL_KNOWN_TOKEN_REALMS: Record<string, string[]> = { "notary.docker.io": ["auth.docker.io"] };

/** The role a file name belongs to: `targets/releases.<hex>.json` -> `targets/releases`, `3.root.json` -> `root`. */
export function roleOfFile(file: string): string {
  const base = file.replace(/\.json$/, "").replace(/\.[0-9a-f]{64}$/, "");
  return /^\d+\.root$/.test(base) ? "root" : base;
}

// GUNs are host[:port]/path; refusing anything else keeps the URL path what it claims to be.
const GUN_PATTERN = /^[A-Za-z0-9][A-Za-z0-9.:_-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)+$/;

/** Whether `gun` is a GUN a fetcher may put in a path: host[:port]/path, no `.` or `..` segment. */
export function isValidGun(gun: string): boolean {
  return GUN_PATTERN.test(gun) && !gun.split("/").some((s) => s === "." || s === "..");
}

export class HttpMetadataFetcher implements MetadataFetcher {
  private readonly base: URL;
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly credentials: TokenCredentials | undefined;
  private readonly rules: RealmRules;
  private readonly settings: { credentials: string; tokenRealms: string };
  private readonly tokens = new TokenCache({ max: 10_000 });

  constructor(options: HttpFetcherOptions) {
    this.base = new URL(options.url);
    if (this.base.protocol !== "https:" && this.base.protocol !== "http:") {
      throw new TypeError(`notary server URL must be http(s): ${options.url}`);
    }
    this.timeoutMs = options.timeoutMs ?? 10_000;
    // Read once at construction (startup), never on the request path.
    const ca = options.caFile ? readFileSync(options.caFile, "utf8") : undefined;
    this.credentials = options.credentials;
    this.settings = options.settings ?? { credentials: "notary.username", tokenRealms: "notary.tokenRealms" };
    const own = hostPortKey(this.base.hostname, this.base.port, this.base.protocol);
    const realms = [...(options.tokenRealms ?? [])];
    if (this.base.protocol === "https:") realms.push(...(WELL_KNOWN_TOKEN_REALMS[this.base.hostname] ?? []));
    const listed = new Set([own, ...realms.flatMap(entryKeys)]);
    this.rules = { origin: this.base, listed, plainHttp: "loopback" };
    this.agent = new Agent({
      // The server and the listed realms are the operator's; any other host (a realm a 401
      // named) is connected to only on a public address (upstream/destination.ts, REVIEW U2).
      // The extra CA adds to the system roots, so a realm with a public certificate works too.
      connect: guardedConnector(
        { timeout: this.timeoutMs, ...(ca ? { ca: [...rootCertificates, ca] } : {}) },
        listed,
      ),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connections: 8,
    });
  }

  async fetch(gun: string, roleFile: string, maxBytes: number): Promise<Uint8Array> {
    const role = roleOfFile(roleFile);
    if (!isValidGun(gun)) {
      throw new TrustError("TRUST_NOT_FOUND", gun, role, `${gun}: not a valid GUN`);
    }
    const path = `${this.base.pathname.replace(/\/$/, "")}/v2/${gun}/_trust/tuf/${roleFile}`;
    const url = new URL(path, this.base);
    const where = `${gun}: ${role}: GET ${url.href}`;
    const scope = pullScope(gun);
    let authorization = await this.authorizationFor(gun, role, scope);
    let res = await this.get(url, authorization, gun, role, where);
    if (res.statusCode === 401) {
      const challenge = parseChallenge(headerOf(res.headers, "www-authenticate"));
      await res.body.dump().catch(() => undefined);
      if (challenge?.scheme !== "bearer" || !challenge.params.realm)
        throw new TrustError(
          "TRUST_UNAVAILABLE",
          gun,
          role,
          `notary server demands authentication (401) for ${gun} but sent no Bearer token challenge`,
        );
      this.tokens.rememberChallenge(this.base.origin, challenge);
      // The token we sent (if any) was refused: fetch a new one, then try once more.
      this.tokens.invalidate(tokenKey(challenge), scope);
      authorization = `Bearer ${await this.token(challenge, gun, role, scope)}`;
      res = await this.get(url, authorization, gun, role, where);
      if (res.statusCode === 401) {
        await res.body.dump().catch(() => undefined);
        this.tokens.invalidate(tokenKey(challenge), scope);
        throw new TrustError(
          "TRUST_UNAVAILABLE",
          gun,
          role,
          this.credentials
            ? `notary server refused credentials (401) for ${gun}: its token does not grant pull`
            : `notary server requires credentials (401) for ${gun}: set ${this.settings.credentials}`,
        );
      }
    }
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => undefined);
      const code = res.statusCode === 404 ? "TRUST_NOT_FOUND" : "TRUST_UNAVAILABLE";
      throw new TrustError(code, gun, role, `${where}: HTTP ${res.statusCode}`);
    }
    const declared = Number(res.headers["content-length"]);
    const tooLarge = () =>
      new TrustError(
        "METADATA_INVALID",
        gun,
        role,
        `${where}: response larger than the ${maxBytes}-byte cap`,
      );
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.body.destroy();
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body) {
        total += (chunk as Buffer).length;
        if (total > maxBytes) {
          res.body.destroy();
          throw tooLarge();
        }
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      if (err instanceof TrustError) throw err;
      throw new TrustError("TRUST_UNAVAILABLE", gun, role, `${where}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return Buffer.concat(chunks, total);
  }

  private async get(
    url: URL,
    authorization: string | undefined,
    gun: string,
    role: string,
    where: string,
  ): Promise<Awaited<ReturnType<typeof request>>> {
    try {
      return await request(url, {
        dispatcher: this.agent,
        headers: { accept: "application/json", ...(authorization ? { authorization } : {}) },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new TrustError("TRUST_UNAVAILABLE", gun, role, `${where}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** A cached token for the GUN, or one fetched up front from the realm this server named before. */
  private async authorizationFor(gun: string, role: string, scope: string): Promise<string | undefined> {
    const challenge = this.tokens.challengeFor(this.base.origin);
    if (!challenge) return undefined;
    const cached = this.tokens.get(tokenKey(challenge), scope);
    if (cached !== undefined) return `Bearer ${cached}`;
    return `Bearer ${await this.token(challenge, gun, role, scope)}`;
  }

  /** A pull token for the GUN from the challenge's realm, cached per (realm, service, scope). */
  private token(challenge: Challenge, gun: string, role: string, scope: string): Promise<string> {
    return this.tokens.getOrFetch(tokenKey(challenge), scope, async () => {
      try {
        return await requestToken({
          challenge,
          scope,
          credentials: this.credentials,
          rules: this.rules,
          get: async (url, headers) => {
            try {
              return await request(url, {
                dispatcher: this.agent,
                headers,
                signal: AbortSignal.timeout(this.timeoutMs),
              });
            } catch (err) {
              const refused = refusalIn(err);
              throw new TrustError(
                "TRUST_UNAVAILABLE",
                gun,
                role,
                refused
                  ? `the token realm for ${gun} is on a ${refused.addressClass} address: refused (${this.settings.tokenRealms} allows a host)`
                  : `the token service for ${gun} is unreachable: ${(err as Error).message}`,
                { cause: err },
              );
            }
          },
          read: (body, max, tooLarge) => readCapped(body, max, tooLarge),
          userAgent: USER_AGENT,
        });
      } catch (err) {
        if (err instanceof TokenFetchError) throw this.tokenError(err, gun, role);
        if (err instanceof TrustError) throw err;
        throw new TrustError(
          "TRUST_UNAVAILABLE",
          gun,
          role,
          `the token service for ${gun} broke off its answer`,
          {
            cause: err,
          },
        );
      }
    });
  }

  private tokenError(err: TokenFetchError, gun: string, role: string): TrustError {
    const refused = err.status === 401 || err.status === 403;
    const message = {
      "invalid-realm": `notary server named an invalid token realm for ${gun}`,
      "foreign-realm": `notary server named a token realm on another host (${err.realmHost}) for ${gun}; credentials go only to its own origin or a host in ${this.settings.tokenRealms}`,
      "plain-http-realm": `notary server named a plain-http token realm (${err.realmHost}) for ${gun}: credentials are never sent over http to a non-loopback host`,
      status: refused
        ? // The realm, not notary-server, judged the password: say so and name the setting.
          this.credentials
          ? `the token service refused the credentials (HTTP ${err.status}) for ${gun}: check ${this.settings.credentials}`
          : `the token service refused an anonymous token (HTTP ${err.status}) for ${gun}: set ${this.settings.credentials}`
        : `the token service for ${gun} answered HTTP ${err.status}`,
      "invalid-response": `the token service for ${gun} sent no usable token (${err.message})`,
    }[err.reason];
    return new TrustError("TRUST_UNAVAILABLE", gun, role, message);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Tokens are per (realm, service): one realm may serve several services. */
function tokenKey(challenge: Challenge): string {
  return `${challenge.params.realm ?? ""}\u0000${challenge.params.service ?? ""}`;
}

function headerOf(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}
