import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TrustError } from "../../src/trust/errors.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import {
  FIXTURE_NOW,
  FIXTURES,
  loadRepoFiles,
  MapFetcher,
  queryFor,
  readExpected,
} from "../helpers/notary-fixtures.js";

const SETS = ["local-ed25519", "signer-ecdsa"];
const SINGLE = ["basic", "server-snapshot", "delegation"];
const TWO_STEP = ["rotate-targets", "rotate-root", "removed", "retag"];

const dirs: string[] = [];
function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), "tg-notary-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function source(fetcher: MapFetcher, dir: string, now = FIXTURE_NOW) {
  return new NotarySource({
    url: "http://notary.invalid",
    stateDir: dir,
    fetcher,
    now: () => now,
    refreshSeconds: 0,
  });
}

async function expectMatches(src: NotarySource, scenario: string) {
  const expected = readExpected(scenario);
  const query = queryFor(expected.gun);
  const listed = await src.listSigned(query);
  expect(
    Object.fromEntries(listed.map((t) => [t.name, { digest: t.digest, size: t.size, role: t.role }])),
  ).toEqual(expected.signed);
  for (const [tag, want] of Object.entries(expected.signed)) {
    const r = await src.resolveTag(query, tag);
    expect(r.signatures[0]).toEqual({ name: tag, ...want });
  }
  for (const tag of Object.keys(expected.refused)) {
    expect((await src.resolveTag(query, tag)).signatures).toEqual([]);
  }
  return listed;
}

/** docker trust inspect's SignedTags, as {tag: hex digest} */
function dockerInspect(dir: string): Record<string, string> {
  const doc = JSON.parse(readFileSync(join(dir, "docker-trust-inspect.json"), "utf8")) as {
    SignedTags: { SignedTag: string; Digest: string }[];
  }[];
  return Object.fromEntries((doc[0]?.SignedTags ?? []).map((t) => [t.SignedTag, t.Digest]));
}

describe.each(SETS)("notary fixtures %s", (set) => {
  it.each(SINGLE)(
    "%s resolves exactly to expected.json and agrees with docker trust inspect",
    async (name) => {
      const dir = join(FIXTURES, set, name);
      const listed = await expectMatches(source(new MapFetcher(loadRepoFiles(dir)), stateDir()), dir);
      expect(Object.fromEntries(listed.map((t) => [t.name, t.digest.slice(7)]))).toEqual(dockerInspect(dir));
    },
  );

  it.each(TWO_STEP)("%s: before/ then after/ in one state dir is followed", async (name) => {
    const dir = join(FIXTURES, set, name);
    const state = stateDir();
    const fetcher = new MapFetcher(loadRepoFiles(join(dir, "before")));
    const first = source(fetcher, state);
    const expected = readExpected(dir);
    await first.listSigned(queryFor(expected.gun));
    // A new instance (a restart) reads the trusted state back from the state dir.
    fetcher.files = loadRepoFiles(join(dir, "after"));
    const listed = await expectMatches(source(fetcher, state), dir);
    expect(Object.fromEntries(listed.map((t) => [t.name, t.digest.slice(7)]))).toEqual(
      dockerInspect(join(dir, "after")),
    );
  });

  it.each(TWO_STEP)("%s: after/ then before/ is refused as a rollback", async (name) => {
    const dir = join(FIXTURES, set, name);
    const state = stateDir();
    const expected = readExpected(dir);
    const fetcher = new MapFetcher(loadRepoFiles(join(dir, "after")));
    await source(fetcher, state).listSigned(queryFor(expected.gun));
    fetcher.files = loadRepoFiles(join(dir, "before"));
    const err = await source(fetcher, state)
      .listSigned(queryFor(expected.gun))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustError);
    expect((err as TrustError).code).toBe("ROLLBACK");
    expect((err as TrustError).gun).toBe(expected.gun);
  });
});
