/**
 * Blob cache fills from their own upstream request, after the relay that missed (issue 16).
 *
 * Why not keep the copy while relaying: the client then pays for the disk. On the 2-core bench
 * machine the kernel's cost of filling new page-cache pages (1.3-2.2 CPU-s/GB, bench/README.md
 * "First pull: CPU by stage") ran on the same cores as the verified relay: a first pull kept in
 * the cache reached 0.30x the pull-through cache's first fill, a relay alone 0.57x (README
 * Performance). distribution's pull-through cache makes the same choice: it copies one upstream
 * GET to the client and fills its store from a second GET the client never waits for
 * (registry/proxy/proxyblobstore.go ServeBlob). The price: a blob new to the cache crosses the
 * upstream link twice, once.
 *
 * A fill is scheduled only by a relay that ended verified (one that failed, was cut or lied
 * schedules nothing); it verifies its own bytes (DigestVerifier) and is kept only then
 * (BlobFill.commit: fsync, rename), for the repository it was fetched for. One fill per digest
 * (BlobCache.beginFill); at most MAX_CONCURRENT_FILLS at once and MAX_QUEUED_FILLS waiting, more
 * are dropped and logged (the blob's next miss schedules it again). A fill's upstream body has no
 * client behind it, so undici's own body timeout bounds a dripping upstream.
 */
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "../log.js";
import type { Digest } from "../oci/reference.js";
import type { UpstreamResponse } from "../upstream/client.js";
import type { BlobCache, BlobFill } from "./blob-cache.js";
import { DigestVerifier } from "./blobs.js";

export const MAX_CONCURRENT_FILLS = 2;
export const MAX_QUEUED_FILLS = 64;

export interface FillRequest {
  readonly registry: string;
  readonly repository: string;
  readonly digest: Digest;
  /** the length the relay verified */
  readonly size: number;
  /** a GET of the whole blob from the upstream, for this repository */
  readonly open: () => Promise<UpstreamResponse>;
}

export class DeferredFills {
  readonly #queue: FillRequest[] = [];
  /** digests queued or running (the cache knows only the running ones) */
  readonly #pending = new Set<string>();
  #running = 0;
  readonly #settled = new Set<() => void>();

  constructor(
    private readonly cache: BlobCache,
    private readonly logger: Logger,
    private readonly limits = { concurrent: MAX_CONCURRENT_FILLS, queued: MAX_QUEUED_FILLS },
  ) {}

  /** After a verified relay: fetch the blob again and keep it, unless it is kept or coming. */
  schedule(req: FillRequest): void {
    const digest = req.digest.value;
    if (this.cache.has(digest) || this.#pending.has(digest)) return;
    if (this.#queue.length >= this.limits.queued) {
      this.logger.warn(
        { digest, queued: this.#queue.length },
        "blob not kept in the cache: too many fills waiting (the next miss tries again)",
      );
      return;
    }
    this.#pending.add(digest);
    this.#queue.push(req);
    this.#next();
  }

  /** fills queued or running */
  get pending(): number {
    return this.#pending.size;
  }

  /** Resolves when no fill is queued or running (tests, drain). */
  idle(): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#settled.add(resolve));
  }

  #next(): void {
    while (this.#running < this.limits.concurrent && this.#queue.length > 0) {
      const req = this.#queue.shift() as FillRequest;
      this.#running++;
      void this.#fill(req).finally(() => {
        this.#running--;
        this.#pending.delete(req.digest.value);
        this.#next();
        if (this.#pending.size === 0) {
          const waiting = [...this.#settled];
          this.#settled.clear();
          for (const resolve of waiting) resolve();
        }
      });
    }
  }

  async #fill(req: FillRequest): Promise<void> {
    const digest = req.digest.value;
    const fill = this.cache.beginFill(req.registry, req.repository, req.digest, req.size);
    if (!fill) return; // kept meanwhile, or larger than the whole cache
    try {
      const upstream = await req.open();
      if (upstream.statusCode !== 200) {
        upstream.body.destroy();
        fill.abort();
        this.logger.warn(
          { digest, status: upstream.statusCode },
          "blob not kept in the cache: the upstream's second answer was not the whole blob",
        );
        return;
      }
      await pipeline(upstream.body, new DigestVerifier(req.digest, fill), discard());
    } catch (err) {
      fill.abort();
      this.logger.warn({ digest, err: String(err) }, "blob not kept in the cache");
      return;
    }
    await keepInCache(this.logger, req.digest, fill);
  }
}

/** A Writable that takes every chunk and keeps none: the fill's bytes go to the file only. */
function discard(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}

/** After a verified fill: the copy goes into the blob cache, or the log says why not. */
async function keepInCache(logger: Logger, digest: Digest, fill: BlobFill): Promise<void> {
  try {
    // Logged once the cache answers for it (commit resolves after the index knows the file), so
    // the line says exactly when later pulls of this digest become hits.
    if (await fill.commit()) logger.info({ digest: digest.value }, "blob kept in the cache");
    else logger.warn({ digest: digest.value, reason: fill.failure }, "blob not kept in the cache");
  } catch (err) {
    logger.warn({ digest: digest.value, err: String(err) }, "blob cache write failed");
  }
}
