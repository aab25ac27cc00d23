/**
 * How TUF metadata bytes reach tuf-js: our implementation of tuf-js's `Fetcher` hook.
 *
 * Why not tuf-js's DefaultFetcher: it uses the global fetch (no custom CA), retries on its own
 * schedule, and spools every download through a temp file. We need undici with our timeouts and
 * optional CA, `file://` for air-gapped sites, and exact tuf-js error types, because the Updater
 * branches on them: a `DownloadHTTPError` with 403/404 on `N.root.json` is how it learns that the
 * current root is the newest (client workflow 5.3.3), so a missing file must look like a 404.
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Fetcher } from "tuf-js";
import { DownloadError, DownloadHTTPError, DownloadLengthMismatchError } from "tuf-js/dist/error.js";
import { Agent, request } from "undici";

export interface TransportOptions {
  /** whole-request budget (connect, headers and body) per download */
  timeoutMs: number;
  /** PEM of an extra CA for https:// metadata URLs */
  caPem?: string | undefined;
}

/** Shared by every Updater of one source: one connection pool, one CA, one timeout. */
export class MetadataTransport {
  private readonly agent: Agent;
  private readonly timeoutMs: number;

  constructor(options: TransportOptions) {
    this.timeoutMs = options.timeoutMs;
    this.agent = new Agent({
      connect:
        options.caPem === undefined
          ? { timeout: options.timeoutMs }
          : { timeout: options.timeoutMs, ca: options.caPem },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /** The bytes at `url`, at most `maxLength` of them (TUF spec 5.2: every download is bounded). */
  async fetchBytes(url: string, maxLength: number): Promise<Buffer> {
    const parsed = new URL(url);
    if (parsed.protocol === "file:") return readLocalFile(parsed, maxLength);
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
      throw new DownloadError(`unsupported metadata URL scheme ${parsed.protocol}`);
    }
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(parsed, {
        method: "GET",
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { accept: "application/json" },
      });
    } catch (err) {
      throw new DownloadError(`cannot reach ${parsed.origin}: ${describe(err)}`, { cause: err });
    }
    const { statusCode, headers, body } = response;
    if (statusCode < 200 || statusCode > 299) {
      discard(body);
      throw new DownloadHTTPError(`GET ${url} answered ${statusCode}`, statusCode);
    }
    const declared = Number(headers["content-length"]);
    if (Number.isFinite(declared) && declared > maxLength) {
      discard(body);
      throw new DownloadLengthMismatchError(
        `${url} is ${declared} bytes, more than the ${maxLength} allowed`,
      );
    }
    const chunks: Buffer[] = [];
    let received = 0;
    try {
      for await (const chunk of body) {
        const bytes = chunk as Buffer;
        received += bytes.length;
        if (received > maxLength) {
          discard(body);
          throw new DownloadLengthMismatchError(`${url} is more than the ${maxLength} bytes allowed`);
        }
        chunks.push(bytes);
      }
    } catch (err) {
      if (err instanceof DownloadError) throw err;
      throw new DownloadError(`reading ${url} failed: ${describe(err)}`, { cause: err });
    }
    return Buffer.concat(chunks, received);
  }

  /** Idempotent: a source may be closed by its owner and again at shutdown. */
  async close(): Promise<void> {
    if (!this.agent.closed && !this.agent.destroyed) await this.agent.close();
  }
}

async function readLocalFile(url: URL, maxLength: number): Promise<Buffer> {
  const path = fileURLToPath(url);
  try {
    const info = await stat(path);
    if (info.size > maxLength) {
      throw new DownloadLengthMismatchError(
        `${path} is ${info.size} bytes, more than the ${maxLength} allowed`,
      );
    }
    const chunks: Buffer[] = [];
    let received = 0;
    for await (const chunk of createReadStream(path, { end: maxLength })) {
      received += (chunk as Buffer).length;
      if (received > maxLength) throw new DownloadLengthMismatchError(`${path} grew past ${maxLength} bytes`);
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks, received);
  } catch (err) {
    if (err instanceof DownloadError) throw err;
    // A file that is not there is the air-gapped equivalent of 404: for N.root.json it tells the
    // Updater that the current root is the newest one (client workflow 5.3.3).
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new DownloadHTTPError(`${path} does not exist`, 404);
    throw new DownloadError(`cannot read ${path}: ${describe(err)}`, { cause: err });
  }
}

/**
 * One Updater's view of the transport. It remembers whether its most recent download failed:
 * tuf-js 5 wraps snapshot and targets failures in a `RuntimeError` without a cause, and this is how
 * we still tell "the repository is down" from "the repository served bad metadata" (see errors.ts).
 * It also counts successful downloads: tuf-js persists metadata only after downloading it, so a
 * changed count is the signal to promote the work directory to durable state (persistence.ts).
 */
export class UpdaterFetcher implements Fetcher {
  lastDownloadFailed = false;
  successfulDownloads = 0;

  constructor(
    private readonly transport: MetadataTransport,
    private readonly offline = false,
  ) {}

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    if (this.offline) {
      this.lastDownloadFailed = true;
      throw new DownloadError(`offline: not fetching ${url}`);
    }
    try {
      const bytes = await this.transport.fetchBytes(url, maxLength);
      this.lastDownloadFailed = false;
      this.successfulDownloads += 1;
      return bytes;
    } catch (err) {
      this.lastDownloadFailed = true;
      throw err;
    }
  }

  /** Only the conformance client downloads targets; the proxy needs target info alone. */
  async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    const bytes = await this.downloadBytes(url, maxLength);
    const dir = await mkdtemp(join(tmpdir(), "trustgate-tuf-"));
    try {
      const file = join(dir, randomBytes(8).toString("hex"));
      await writeFile(file, bytes);
      return await handler(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** Drop a response body we will not read; its abort must not surface as an uncaught error. */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  body.on("error", () => undefined);
  body.destroy();
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}
