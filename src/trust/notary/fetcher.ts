/**
 * Downloads Notary metadata: `GET <server>/v2/<gun>/_trust/tuf/<file>` (notary-server's API).
 * Every download is bounded in time (connect, headers, body) and size (checked on
 * Content-Length and again while reading, so a lying or missing header cannot exhaust memory).
 * http:// is allowed: the metadata is signed, TLS is defence in depth.
 */
import { readFileSync } from "node:fs";
import { Agent, request } from "undici";
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
}

/** The role a file name belongs to: `targets/releases.<hex>.json` -> `targets/releases`, `3.root.json` -> `root`. */
export function roleOfFile(file: string): string {
  const base = file.replace(/\.json$/, "").replace(/\.[0-9a-f]{64}$/, "");
  return /^\d+\.root$/.test(base) ? "root" : base;
}

// GUNs are host[:port]/path; refusing anything else keeps the URL path what it claims to be.
const GUN_PATTERN = /^[A-Za-z0-9][A-Za-z0-9.:_-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)+$/;

export class HttpMetadataFetcher implements MetadataFetcher {
  private readonly base: URL;
  private readonly agent: Agent;
  private readonly timeoutMs: number;

  constructor(options: HttpFetcherOptions) {
    this.base = new URL(options.url);
    if (this.base.protocol !== "https:" && this.base.protocol !== "http:") {
      throw new TypeError(`notary server URL must be http(s): ${options.url}`);
    }
    this.timeoutMs = options.timeoutMs ?? 10_000;
    // Read once at construction (startup), never on the request path.
    const ca = options.caFile ? readFileSync(options.caFile) : undefined;
    this.agent = new Agent({
      connect: { timeout: this.timeoutMs, ...(ca ? { ca } : {}) },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connections: 8,
    });
  }

  async fetch(gun: string, roleFile: string, maxBytes: number): Promise<Uint8Array> {
    const role = roleOfFile(roleFile);
    if (!GUN_PATTERN.test(gun) || gun.split("/").some((s) => s === "." || s === "..")) {
      throw new TrustError("TRUST_NOT_FOUND", gun, role, `${gun}: not a valid GUN`);
    }
    const path = `${this.base.pathname.replace(/\/$/, "")}/v2/${gun}/_trust/tuf/${roleFile}`;
    const url = new URL(path, this.base);
    const where = `${gun}: ${role}: GET ${url.href}`;
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(url, {
        dispatcher: this.agent,
        headers: { accept: "application/json" },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new TrustError("TRUST_UNAVAILABLE", gun, role, `${where}: ${(err as Error).message}`, {
        cause: err,
      });
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

  async close(): Promise<void> {
    await this.agent.close();
  }
}
