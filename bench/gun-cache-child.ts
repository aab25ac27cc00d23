/**
 * Child process of the trust-at-scale scenario: a NotarySource (the module trustgate uses)
 * resolving one tag in each of N GUNs served at <url>, so its memory is measured alone.
 * Prints one JSON line (GunCacheResult). Run with --expose-gc so RSS is read after a collection.
 */
import { DOCKER_ROLES, NotarySource } from "../src/trust/notary/index.js";

const [url, stateDir, gunsArg, tagsArg] = process.argv.slice(2);
const guns = Number(gunsArg);
const tagsPerGun = Number(tagsArg);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

const source = new NotarySource({ url: url as string, stateDir: stateDir as string, refreshSeconds: 3600 });
gc();
const rssBeforeBytes = process.memoryUsage().rss;
const t0 = performance.now();
// A few GUNs at a time, as a proxy under load would fill its cache.
const CONCURRENCY = 8;
for (let g = 0; g < guns; g += CONCURRENCY) {
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, guns - g) }, async (_, i) => {
      const answer = await source.resolveTag(
        { registry: "bench.local", repository: `scale/app-${g + i}`, roles: DOCKER_ROLES },
        "tag-0",
      );
      if (answer.signatures.length === 0) throw new Error(`scale/app-${g + i}: tag-0 not signed`);
    }),
  );
}
const elapsedMs = performance.now() - t0;
gc();
const mem = process.memoryUsage();
await source.close();
process.stdout.write(
  `${JSON.stringify({ guns, tagsPerGun, rssBeforeBytes, rssAfterBytes: mem.rss, heapUsedAfterBytes: mem.heapUsed, elapsedMs })}\n`,
);
