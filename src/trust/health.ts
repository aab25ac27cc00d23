/**
 * What a trust source tells the operator about its refreshes (issue 12 items 4 and 5):
 *  - every network refresh goes to the TrustObserver (metrics.ts: refreshes by result, latency);
 *  - trust trouble is logged once per change of state per source and GUN (or TUF repository),
 *    never once per pull: a failed refresh (warn, with the reason), serving from verified data
 *    while the trust server is down (warn, with the time left until it expires), and recovery
 *    (info). With the server down, a pull every second would otherwise log a line every
 *    `trustRefreshSeconds` for every GUN in use, and the line that matters would drown.
 *
 * A state is "ok", or a failure with its code and whether verified data still serves; a change of
 * code (unreachable, then expired) is a change of state. Only keys in trouble are held, in an LRU
 * bounded like the sources' caches, so memory stays bounded when many repositories fail (an
 * unsigned repository fails with TRUST_NOT_FOUND on every refresh).
 */
import { LRUCache } from "lru-cache";
import { TrustgateError } from "../errors.js";
import type { Logger } from "../log.js";
import type { TrustObserver, TrustSourceRef } from "./observer.js";
import type { RefreshOutcome } from "./refresh.js";

export interface TrustHealthOptions {
  source: TrustSourceRef;
  logger?: Logger;
  observer?: TrustObserver;
  /** keys in trouble remembered (default 10,000); a forgotten one logs its next change again */
  max?: number;
  /** the clock (ms) for "time left until expiry" */
  now: () => number;
}

interface Trouble {
  code: string;
  serving: boolean;
  since: number;
}

/** The bounded `result` label and log code of a refresh failure. */
export function failureCode(err: unknown): string {
  return err instanceof TrustgateError ? err.code : "other";
}

export class TrustHealth {
  private readonly troubled: LRUCache<string, Trouble>;

  constructor(private readonly options: TrustHealthOptions) {
    this.troubled = new LRUCache({ max: options.max ?? 10_000 });
  }

  /** One refresh of `key` (a GUN, or the TUF repository) ended with `outcome`. */
  readonly record = (key: string, outcome: RefreshOutcome): void => {
    const { source, observer, logger } = this.options;
    const result = outcome.ok ? "ok" : failureCode(outcome.error);
    observer?.onRefresh(source, result, outcome.seconds);
    const before = this.troubled.get(key);
    const fields = { trustSource: source.kind, registry: source.registry, gun: key };
    if (outcome.ok) {
      if (before) {
        this.troubled.delete(key);
        logger?.info(
          {
            ...fields,
            after: before.code,
            troubleSeconds: Math.round((this.options.now() - before.since) / 1000),
          },
          "trust refresh recovered",
        );
      }
      return;
    }
    const serving = outcome.servingUntil !== undefined;
    if (before && before.code === result && before.serving === serving) return;
    this.troubled.set(key, { code: result, serving, since: before?.since ?? this.options.now() });
    const reason = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
    if (outcome.servingUntil !== undefined) {
      logger?.warn(
        {
          ...fields,
          code: result,
          reason,
          servingUntil: new Date(outcome.servingUntil).toISOString(),
          secondsLeft: Math.max(0, Math.floor((outcome.servingUntil - this.options.now()) / 1000)),
        },
        "trust server unreachable: serving verified metadata until it expires",
      );
    } else {
      logger?.warn({ ...fields, code: result, reason }, "trust refresh failed");
    }
  };
}
