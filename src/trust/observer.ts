/**
 * The hook the trust sources call to report refreshes and expiry. It lives with trust, not with
 * metrics, so that trust never imports the metrics module (which imports the proxy's types): the
 * request walks down server -> proxy -> policy -> trust, and nothing comes back up.
 */
/** Which trust source a refresh or an expiry belongs to. */
export interface TrustSourceRef {
  registry: string;
  kind: "notary" | "tuf";
}

/**
 * The hook the trust sources (src/trust/*) call; they do not import prom-client.
 *  - onRefresh: once per network refresh of one GUN / TUF repository, with "ok" or the
 *    TrustError code it failed with, and how long it took;
 *  - watchExpiry: once per source at start, a callback answering, at scrape time, the seconds
 *    until the earliest `expires` among the verified metadata it holds (undefined: nothing held).
 */
export interface TrustObserver {
  onRefresh(source: TrustSourceRef, result: string, seconds: number): void;
  watchExpiry(source: TrustSourceRef, secondsUntilEarliestExpiry: () => number | undefined): void;
}
