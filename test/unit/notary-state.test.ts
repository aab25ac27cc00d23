/** NotarySource's state bounds: bytes in memory and files on disk (REVIEW U5), file names (U7). */
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TrustError } from "../../src/trust/errors.js";
import type { MetadataFetcher } from "../../src/trust/notary/fetcher.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import { NotaryStateStore } from "../../src/trust/notary/store.js";
import { readFileIfExists, writeFileAtomic } from "../../src/trust/state.js";
import {
  FIXTURE_NOW,
  FIXTURES,
  loadRepoFiles,
  MapFetcher,
  queryFor,
  readExpected,
} from "../helpers/notary-fixtures.js";
import { serveNotaryFiles } from "../helpers/notary-http.js";
import { TestRepo, x509Key } from "../helpers/notary-signer.js";

const BASIC = join(FIXTURES, "signer-ecdsa", "basic");
const RETAG = join(FIXTURES, "signer-ecdsa", "retag");
const basicGun = readExpected(BASIC).gun;
const retagGun = readExpected(RETAG).gun;
const DAY_MS = 24 * 3600_000;
const dirs: string[] = [];
const sources: NotarySource[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "tg-state-"));
  dirs.push(d);
  return d;
};
afterEach(async () => {
  for (const s of sources.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function source(opts: ConstructorParameters<typeof NotarySource>[0]): NotarySource {
  const s = new NotarySource(opts);
  sources.push(s);
  return s;
}

/** basic's files for basic's GUN, retag's (after/ unless swapped) for retag's */
function twoGuns() {
  const basic = new MapFetcher(loadRepoFiles(BASIC));
  const retag = new MapFetcher(loadRepoFiles(join(RETAG, "after")));
  const fetcher: MetadataFetcher = {
    fetch: (g, file, max) => (g === basicGun ? basic : retag).fetch(g, file, max),
  };
  return { basic, retag, fetcher };
}

async function refusal(p: Promise<unknown>): Promise<TrustError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrustError);
  return err as TrustError;
}

describe("U5: the verified metadata in memory is bounded by bytes", () => {
  // basic's and retag's verified metadata are ~4.1 KB each: room for one, not for both
  const MAX = 6000;

  it("U5: a GUN evicted by the byte bound is re-read from the state dir, so a rollback is still refused", async () => {
    const { retag, fetcher } = twoGuns();
    const src = source({
      url: "http://x",
      stateDir: tmp(),
      fetcher,
      now: () => FIXTURE_NOW,
      maxCacheBytes: MAX,
    });
    await src.listSigned(queryFor(retagGun));
    await src.listSigned(queryFor(retagGun));
    expect(retag.requests.filter((r) => r === "timestamp.json")).toHaveLength(1); // from memory
    await src.listSigned(queryFor(basicGun)); // the bytes bound evicts retag's GUN
    await src.listSigned(queryFor(retagGun));
    // not in memory any more: updated again (same clock, so it is not the refresh window)
    expect(retag.requests.filter((r) => r === "timestamp.json")).toHaveLength(2);
    // the server now serves the older metadata: only the persisted state can tell
    await src.listSigned(queryFor(basicGun));
    retag.files = loadRepoFiles(join(RETAG, "before"));
    expect((await refusal(src.listSigned(queryFor(retagGun)))).code).toBe("ROLLBACK");
  });

  it("U5: within the byte bound both GUNs stay in memory", async () => {
    const { basic, retag, fetcher } = twoGuns();
    const src = source({
      url: "http://x",
      stateDir: tmp(),
      fetcher,
      now: () => FIXTURE_NOW,
      maxCacheBytes: 2 * MAX,
    });
    for (let i = 0; i < 3; i++) {
      await src.listSigned(queryFor(retagGun));
      await src.listSigned(queryFor(basicGun));
    }
    expect(retag.requests.filter((r) => r === "timestamp.json")).toHaveLength(1);
    expect(basic.requests.filter((r) => r === "timestamp.json")).toHaveLength(1);
  });
});

describe("U5: state on disk of GUNs long unused is pruned", () => {
  /** a state dir trusting both GUNs, then every file's mtime set `ageDays` before FIXTURE_NOW */
  async function stateDirTrustingBoth(): Promise<{ state: string; store: NotaryStateStore }> {
    const state = tmp();
    const { fetcher } = twoGuns();
    const first = source({
      url: "http://x",
      stateDir: state,
      fetcher,
      now: () => FIXTURE_NOW,
      pruneAfterDays: 0,
    });
    await first.listSigned(queryFor(basicGun));
    await first.listSigned(queryFor(retagGun));
    return { state, store: new NotaryStateStore(state) };
  }
  const age = (path: string, days: number) => {
    const t = new Date(FIXTURE_NOW.getTime() - days * DAY_MS);
    utimesSync(path, t, t);
  };

  it("U5: a use of a GUN is its state file's mtime (by the injected clock)", async () => {
    const { store } = await stateDirTrustingBoth();
    expect(statSync(store.pathFor(basicGun)).mtimeMs).toBe(FIXTURE_NOW.getTime());
  });

  it("U5: at start, the state of a GUN unused for pruneAfterDays goes; a more recent one stays", async () => {
    const { state, store } = await stateDirTrustingBoth();
    age(store.pathFor(basicGun), 31);
    age(store.pathFor(retagGun), 29);
    const src = source({
      url: "http://x",
      stateDir: state,
      fetcher: twoGuns().fetcher,
      now: () => FIXTURE_NOW,
      pruneAfterDays: 30,
    });
    await src.idle();
    expect(existsSync(store.pathFor(basicGun))).toBe(false);
    expect(existsSync(store.pathFor(retagGun))).toBe(true);
  });

  it("U5: a GUN in memory is never pruned, however old its file", async () => {
    const { state, store } = await stateDirTrustingBoth();
    const src = source({
      url: "http://x",
      stateDir: state,
      fetcher: twoGuns().fetcher,
      now: () => FIXTURE_NOW,
      pruneAfterDays: 30,
    });
    await src.idle();
    await src.listSigned(queryFor(basicGun));
    age(store.pathFor(basicGun), 400);
    age(store.pathFor(retagGun), 400);
    await src.pruneState();
    expect(existsSync(store.pathFor(basicGun))).toBe(true);
    expect(existsSync(store.pathFor(retagGun))).toBe(false);
  });

  it("U5: pruneAfterDays 0 never prunes", async () => {
    const { state, store } = await stateDirTrustingBoth();
    age(store.pathFor(basicGun), 4000);
    const src = source({
      url: "http://x",
      stateDir: state,
      fetcher: twoGuns().fetcher,
      now: () => FIXTURE_NOW,
      pruneAfterDays: 0,
    });
    await src.pruneState();
    expect(existsSync(store.pathFor(basicGun))).toBe(true);
  });

  it("U5: a file removed while its GUN is trusted in memory is written again on the GUN's next update", async () => {
    const { state, store } = await stateDirTrustingBoth();
    let now = FIXTURE_NOW.getTime();
    const { retag, fetcher } = twoGuns();
    const src = source({
      url: "http://x",
      stateDir: state,
      fetcher,
      now: () => new Date(now),
      pruneAfterDays: 0,
    });
    await src.listSigned(queryFor(retagGun));
    rmSync(store.pathFor(retagGun)); // e.g. pruned by another registry's source sharing the dir
    now += 31_000;
    await src.listSigned(queryFor(retagGun)); // an update with nothing changed on the server
    expect(existsSync(store.pathFor(retagGun))).toBe(true);
    // and it carries rollback protection across a restart again
    retag.files = loadRepoFiles(join(RETAG, "before"));
    const restarted = source({
      url: "http://x",
      stateDir: state,
      fetcher,
      now: () => new Date(now),
      pruneAfterDays: 0,
    });
    expect((await refusal(restarted.listSigned(queryFor(retagGun)))).code).toBe("ROLLBACK");
  });

  it("U5: temp files a crash left behind go when an hour old; the pruned GUN is trusted on first use again", async () => {
    const { state, store } = await stateDirTrustingBoth();
    const leftover = join(state, "notary", `.${basename(store.pathFor(basicGun))}.1.abcdef.tmp`);
    await writeFileAtomic(leftover, "{}");
    const hourAgo = new Date(Date.now() - 3600_000 - 1000);
    utimesSync(leftover, hourAgo, hourAgo);
    age(store.pathFor(retagGun), 100);
    const { retag, fetcher } = twoGuns();
    retag.files = loadRepoFiles(join(RETAG, "before"));
    const src = source({
      url: "http://x",
      stateDir: state,
      fetcher,
      now: () => FIXTURE_NOW,
      pruneAfterDays: 90,
    });
    await src.idle();
    expect(existsSync(leftover)).toBe(false);
    // The trade-off of pruning: the older metadata is no longer known to be a rollback.
    expect((await src.listSigned(queryFor(retagGun))).length).toBeGreaterThan(0);
  });
});

describe("U7: repository names of any legal length map to bounded file names", () => {
  it("U7: writeFileAtomic writes a file whose name is 255 bytes (the temp name is bounded too)", async () => {
    const dir = tmp();
    const path = join(dir, `${"n".repeat(250)}.json`);
    await writeFileAtomic(path, "x");
    expect((await readFileIfExists(path))?.toString()).toBe("x");
    expect(readdirSync(dir)).toEqual([basename(path)]);
  });

  it("U7: a signed 255-character repository name resolves over HTTP, persists, and is trusted from the state dir after a restart", async () => {
    const repository = `acme/${"r".repeat(250)}`;
    expect(repository).toHaveLength(255);
    const gun = `registry.test:5000/${repository}`;
    // certificates are minted now (notBefore = when openssl runs): pin the clock a little later
    const now = new Date(Date.now() + 5 * 60_000);
    const repo = new TestRepo(gun, now, x509Key(gun));
    const D1 = "d".repeat(64);
    repo.targets = { v1: { digest: D1, size: 401 } };
    const server = await serveNotaryFiles(gun, repo.publish());
    const state = tmp();
    const query = queryFor(gun);
    try {
      const src = source({ url: server.url, stateDir: state, now: () => now });
      expect((await src.resolveTag(query, "v1")).signatures[0]?.digest).toBe(`sha256:${D1}`);
    } finally {
      await server.close();
    }
    const store = new NotaryStateStore(state);
    expect(readdirSync(join(state, "notary"))).toEqual([basename(store.pathFor(gun))]);
    expect(basename(store.pathFor(gun)).length).toBeLessThanOrEqual(69);
    const offline = new MapFetcher(new Map());
    offline.offline = true;
    const restarted = source({ url: "http://x", stateDir: state, fetcher: offline, now: () => now });
    expect((await restarted.resolveTag(query, "v1")).signatures[0]?.digest).toBe(`sha256:${D1}`);
  });

  it("U7: state written under the old file name is read, moved to the new one, and keeps rollback protection", async () => {
    const state = tmp();
    const { retag, fetcher } = twoGuns();
    await source({ url: "http://x", stateDir: state, fetcher, now: () => FIXTURE_NOW }).listSigned(
      queryFor(retagGun),
    );
    const store = new NotaryStateStore(state);
    renameSync(store.pathFor(retagGun), store.legacyPathFor(retagGun)); // as the last release wrote it
    retag.files = loadRepoFiles(join(RETAG, "before"));
    const upgraded = source({ url: "http://x", stateDir: state, fetcher, now: () => FIXTURE_NOW });
    expect((await refusal(upgraded.listSigned(queryFor(retagGun)))).code).toBe("ROLLBACK");
    expect(readdirSync(join(state, "notary"))).toEqual([basename(store.pathFor(retagGun))]);
  });
});
