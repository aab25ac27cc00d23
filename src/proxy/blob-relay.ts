/**
 * The blob endpoint: from the verified blob cache when it holds the blob, otherwise relayed from
 * the upstream (blobs.ts verifies the bytes on the way), or, in `blobRedirect` mode, a 307 to the
 * upstream. server.ts only routes here.
 *
 * A relay holds an upstream connection for as long as its client takes to read, so a client that
 * does not read must not be able to starve the others (REVIEW U3):
 *  - a relay that moves no byte to its client for `upstreamTimeouts.bodyMs` is cut, and with it
 *    the upstream connection (undici's own bodyTimeout does not fire while its consumer applies
 *    backpressure, which is exactly the stalled client's case);
 *  - one client address holds at most MAX_RELAYS_PER_CLIENT relays at a time; beyond that it is
 *    told 429 TOOMANYREQUESTS, which pull clients retry;
 *  - blobs have their own upstream pool (upstream/client.ts), so manifests and tokens never wait
 *    behind them.
 * Progress is read from the client socket's byte counter once per tick: nothing is added per chunk.
 */
import type { ServerResponse } from "node:http";
import type { Context } from "hono";
import type { Logger } from "../log.js";
import { OciCode, OciError } from "../oci/errors.js";
import { type Digest, parseDigest } from "../oci/reference.js";
import type { RegistryClient } from "../upstream/client.js";
import type { BlobCache, CachedBlob } from "./blob-cache.js";
import { DeferredFills } from "./blob-cache-filler.js";
import { BlobDigestMismatchError, blobHeaders, blobRedirectUrl, DigestVerifier } from "./blobs.js";
import type { AppEnv } from "./context.js";
import { rawResponse, requestHeader, sendBytes, sendHead, sendStream } from "./respond.js";
import type { Target } from "./route.js";

/** What a blob relay needs of the app (server.ts AppDeps is one); nothing imports back up. */
export interface BlobRelayDeps {
  config: {
    blobRedirect: boolean;
    /** bodyMs also bounds how long a blob relay may stall on its client */
    upstreamTimeouts?: { bodyMs: number };
  };
  clients: ReadonlyMap<string, RegistryClient>;
  logger: Logger;
  blobCache?: BlobCache;
}

/**
 * Concurrent upstream relays per client address. A pull moves three layers at once (dockerd's
 * and containerd's default), a node pulling several images at once a few times that; 32 leaves
 * room for that and keeps the blob pool (128 connections per origin) from one address.
 */
export const MAX_RELAYS_PER_CLIENT = 32;
/** config/load.ts DEFAULTS.upstreamTimeouts.bodyMs, for apps built without a full config */
const DEFAULT_STALL_MS = 60_000;

export interface BlobRelayOptions {
  /** cut a relay that moves no byte to its client for this long */
  stallMs?: number;
  maxPerClient?: number;
}

export class BlobRelay {
  readonly #deps: BlobRelayDeps;
  readonly #stallMs: number;
  readonly #maxPerClient: number;
  /** open upstream relays per client address */
  readonly #active = new Map<string, number>();
  /** cache fills, each after the relay that missed (with a blob cache) */
  readonly #fills: DeferredFills | undefined;

  constructor(deps: BlobRelayDeps, opts: BlobRelayOptions = {}) {
    this.#deps = deps;
    this.#fills = deps.blobCache ? new DeferredFills(deps.blobCache, deps.logger) : undefined;
    this.#stallMs = opts.stallMs ?? deps.config.upstreamTimeouts?.bodyMs ?? DEFAULT_STALL_MS;
    this.#maxPerClient = opts.maxPerClient ?? MAX_RELAYS_PER_CLIENT;
  }

  /** relays open now for `client` (tests, metrics) */
  activeFor(client: string): number {
    return this.#active.get(client) ?? 0;
  }

  async serve(
    c: Context<AppEnv>,
    target: Target,
    rawDigest: string,
    method: "GET" | "HEAD",
  ): Promise<Response> {
    const deps = this.#deps;
    const digest = parseDigest(rawDigest);
    if (!digest)
      throw new OciError(OciCode.DIGEST_INVALID, { message: `invalid digest ${JSON.stringify(rawDigest)}` });
    const client = clientFor(deps, target);
    if (deps.config.blobRedirect) {
      // Only for anonymous upstreams (config refuses credentials with it): the client fetches
      // the blob itself and verifies its digest, as every client does. The location is the
      // configured upstream's own URL; hops beyond it are the client's to follow.
      return sendBytes(
        c,
        307,
        { location: blobRedirectUrl(client, target.repository, digest), "content-length": "0" },
        null,
      );
    }
    const range = method === "GET" ? requestHeader(c, "range") : undefined;
    const requestLog = c.get("requestLog");
    const cache = deps.blobCache;
    if (cache && method === "GET" && range === undefined) {
      const cached = await cache.open(target.registry.name, target.repository, digest, async () => {
        // Not yet seen in this repository: the upstream must have it there (throws its 404 if not).
        (await client.openBlob(target.repository, digest.value, "HEAD", undefined)).body.resume();
      });
      if (cached) return this.#sendCached(c, target, digest, cached);
      requestLog.cache = "miss";
    }
    const address = c.env?.incoming.socket.remoteAddress ?? "";
    const release = this.#admit(address);
    try {
      return await this.#relay(c, client, target, digest, method, range, release);
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Count a relay for `address`, or refuse it; the returned function ends it (idempotent). */
  #admit(address: string): () => void {
    const open = this.#active.get(address) ?? 0;
    if (open >= this.#maxPerClient)
      throw new OciError(OciCode.TOOMANYREQUESTS, {
        message: `too many blob transfers from this client at once (at most ${this.#maxPerClient})`,
      });
    this.#active.set(address, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#active.get(address) ?? 1) - 1;
      if (left <= 0) this.#active.delete(address);
      else this.#active.set(address, left);
    };
  }

  async #relay(
    c: Context<AppEnv>,
    client: RegistryClient,
    target: Target,
    digest: Digest,
    method: "GET" | "HEAD",
    range: string | undefined,
    release: () => void,
  ): Promise<Response> {
    const deps = this.#deps;
    const requestLog = c.get("requestLog");
    // openBlob refuses a 206 to a request without Range (U1): what is not a slice the client
    // asked for is a whole blob, and is verified below.
    const upstream = await client.openBlob(target.repository, digest.value, method, range);
    const headers = blobHeaders(upstream.headers, digest, upstream.statusCode);
    if (method === "HEAD") {
      upstream.body.resume();
      release();
      return sendBytes(c, 200, headers, null);
    }
    if (upstream.statusCode === 206) {
      // A slice the client asked for cannot be verified against the digest of the whole blob: it
      // passes as is, and the client verifies the assembled blob, which is what the digest is for.
      requestLog.bytes = Number(headers["content-length"] ?? 0);
      const { response, done } = sendStream(c, 206, headers, upstream.body);
      this.#watch(c, done, release);
      done.catch(() => {
        upstream.body.destroy();
        requestLog.outcome ??= "broken";
      });
      return response;
    }
    const verifier = new DigestVerifier(digest);
    requestLog.streamedBytes = () => verifier.bytesPassed;
    upstream.body.pipe(verifier);
    upstream.body.once("error", (err) => verifier.destroy(err));
    const { response, done } = sendStream(c, 200, headers, verifier);
    this.#watch(c, done, release);
    // The copy for the cache is fetched again once this relay ended verified, so the client
    // never waits for the disk (blob-cache-filler.ts says why and what it costs).
    const length = Number(headers["content-length"]);
    if (this.#fills && Number.isSafeInteger(length))
      done.then(
        () =>
          this.#fills?.schedule({
            registry: target.registry.name,
            repository: target.repository,
            digest,
            size: length,
            open: () => client.openBlob(target.repository, digest.value, "GET", undefined),
          }),
        () => {},
      );
    done.catch((err: unknown) => {
      upstream.body.destroy();
      if (requestLog.outcome === "client-stalled") return;
      if (err instanceof BlobDigestMismatchError) {
        requestLog.outcome = "digest-mismatch";
        deps.logger.error(
          {
            reqId: c.get("requestId"),
            registry: target.registry.name,
            repository: target.repository,
            expected: err.expected,
            actual: err.actual,
          },
          "blob digest mismatch: connection aborted",
        );
      } else if ((err as { code?: unknown }).code === "ERR_STREAM_PREMATURE_CLOSE") {
        // The client went away; nothing is wrong upstream.
        requestLog.outcome = "client-aborted";
      } else {
        requestLog.outcome = "broken";
        deps.logger.warn(
          { reqId: c.get("requestId"), registry: target.registry.name, err: String(err) },
          "blob transfer broken",
        );
      }
    });
    return response;
  }

  /**
   * Until `done`: cut the answer when its client socket takes no byte for stallMs (the pipeline
   * then destroys the upstream body, which frees the upstream connection); `release` runs when
   * the transfer ends either way.
   */
  #watch(c: Context<AppEnv>, done: Promise<void>, release: () => void): void {
    const out = rawResponse(c);
    const stop = out
      ? cutWhenStalled(out, this.#stallMs, () => {
          c.get("requestLog").outcome = "client-stalled";
          this.#deps.logger.warn(
            { reqId: c.get("requestId"), stallMs: this.#stallMs },
            "blob transfer cut: the client read nothing for too long",
          );
        })
      : () => {};
    done.then(
      () => {
        stop();
        release();
      },
      () => {
        stop();
        release();
      },
    );
  }

  /** A blob from the verified cache: its digest was checked when it was stored. */
  #sendCached(c: Context<AppEnv>, target: Target, digest: Digest, cached: CachedBlob): Response {
    const deps = this.#deps;
    const requestLog = c.get("requestLog");
    requestLog.cache = "hit";
    requestLog.bytes = cached.size;
    const headers = {
      "content-type": "application/octet-stream",
      "content-length": String(cached.size),
      "docker-content-digest": digest.value,
    };
    const out = rawResponse(c);
    const { response, done } = out
      ? { response: sendHead(c, 200, headers), done: cached.pipeTo(out) }
      : sendStream(c, 200, headers, cached.stream());
    // No upstream connection to free, but the file handle is held as long: the same stall bound.
    this.#watch(c, done, () => {});
    done.catch((err: unknown) => {
      if (requestLog.outcome === "client-stalled") return;
      if ((err as { code?: unknown }).code === "ERR_STREAM_PREMATURE_CLOSE") {
        requestLog.outcome = "client-aborted";
        return;
      }
      requestLog.outcome = "broken";
      deps.logger.warn(
        { reqId: c.get("requestId"), registry: target.registry.name, digest: digest.value, err: String(err) },
        "cached blob transfer broken",
      );
    });
    return response;
  }
}

/**
 * Destroy `out` once its socket has taken no byte for `stallMs` (checked a few times per
 * period, on an unref'd timer). Returns the function that stops watching.
 */
export function cutWhenStalled(out: ServerResponse, stallMs: number, onStall: () => void): () => void {
  const socket = out.socket;
  if (!socket) return () => {};
  let last = socket.bytesWritten;
  let lastMovedAt = performance.now();
  const timer = setInterval(
    () => {
      const now = performance.now();
      const written = socket.bytesWritten;
      if (written !== last) {
        last = written;
        lastMovedAt = now;
        return;
      }
      if (now - lastMovedAt < stallMs) return;
      clearInterval(timer);
      onStall();
      out.destroy();
    },
    Math.max(50, Math.min(1_000, stallMs / 4)),
  );
  timer.unref();
  return () => clearInterval(timer);
}

function clientFor(deps: BlobRelayDeps, target: Target): RegistryClient {
  const client = deps.clients.get(target.registry.name);
  if (!client) throw new Error(`no upstream client for ${target.registry.name}`);
  return client;
}
