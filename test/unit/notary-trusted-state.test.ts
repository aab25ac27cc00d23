/**
 * The Notary trusted state (src/trust/notary/trusted-state.ts) through NotarySource, against
 * metadata the tests sign (test/helpers/notary-signer.ts): version floors that outlive a role's
 * absence (T2), failure scoped to the resolution path (T5), the root walk bound (T9), and the
 * root certificates re-checked offline (T10).
 */
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { TrustError } from "../../src/trust/errors.js";
import type { MetadataFetcher } from "../../src/trust/notary/fetcher.js";
import { MAX_ROOT_ROTATIONS, ROOT_WALK_MAX_MS } from "../../src/trust/notary/limits.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import { NotaryStateStore } from "../../src/trust/notary/store.js";
import { MapFetcher, queryFor } from "../helpers/notary-fixtures.js";
import {
  ecdsaKey,
  fileMeta,
  type PublishOptions,
  type TestKey,
  TestRepo,
  x509Key,
} from "../helpers/notary-signer.js";

const GUN = "registry.test:5000/acme/state";
// Certificates are minted with notBefore = the moment openssl runs: pin the clock a little later.
const NOW = new Date(Date.now() + 5 * 60_000);
const DAY = 86_400_000;
const D1 = "a".repeat(64);
const D2 = "b".repeat(64);
const D3 = "c".repeat(64);
const docker = queryFor(GUN);
const RELEASES = "targets/releases";

let rootKey: TestKey;
let base: string;
beforeAll(() => {
  rootKey = x509Key(GUN);
  base = mkdtempSync(join(tmpdir(), "tg-state-"));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

let n = 0;
const newStateDir = () => join(base, String(n++));

function client(
  fetcher: MetadataFetcher,
  opts: { stateDir?: string; now?: () => Date; refreshSeconds?: number } = {},
) {
  return new NotarySource({
    url: "http://notary.invalid",
    stateDir: opts.stateDir ?? newStateDir(),
    fetcher,
    now: opts.now ?? (() => NOW),
    refreshSeconds: opts.refreshSeconds ?? 0,
  });
}

async function refusal(p: Promise<unknown>): Promise<TrustError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrustError);
  expect((err as TrustError).gun).toBe(GUN);
  return err as TrustError;
}

const digestOf = async (c: NotarySource, tag: string, q = docker) =>
  (await c.resolveTag(q, tag)).signatures[0]?.digest;

/** `files` with `role` served as `bytes` and the snapshot/timestamp re-signed to list them. */
function withOldRole(r: TestRepo, role: string, bytes: Buffer): Map<string, Buffer> {
  const files = r.publish({
    edit: { snapshot: (s) => ((s.meta as Record<string, unknown>)[role] = fileMeta(bytes)) },
  });
  files.set(`${role}.${createHash("sha256").update(bytes).digest("hex")}.json`, bytes);
  return files;
}

/** Published with `role` left out of the snapshot (what a holder of the snapshot key can sign). */
function withoutRole(r: TestRepo, role: string): Map<string, Buffer> {
  return r.publish({ edit: { snapshot: (s) => delete (s.meta as Record<string, unknown>)[role] } });
}

describe("T2: version floors", () => {
  function releasesRepo(): TestRepo {
    const r = new TestRepo(GUN, NOW, rootKey);
    r.targets = { v1: { digest: D1, size: 1 } };
    r.delegations = [{ name: RELEASES, keys: [ecdsaKey()], targets: { v1: { digest: D2, size: 2 } } }];
    return r;
  }

  it("T2: the two-step rollback (snapshot omits targets/releases, then lists an old one) is refused, across a restart too", async () => {
    const r = releasesRepo();
    const old = r.publish({ versions: { [RELEASES]: 3 } }).get(`${RELEASES}.json`) as Buffer; // old, unexpired
    r.delegations[0] = {
      ...(r.delegations[0] as (typeof r.delegations)[0]),
      targets: { v1: { digest: D3, size: 3 } },
    };
    const f = new MapFetcher(r.publish({ versions: { [RELEASES]: 5 } }));
    const stateDir = newStateDir();
    const c = client(f, { stateDir });
    expect(await digestOf(c, "v1")).toBe(`sha256:${D3}`);

    // Step 1: targets still delegates targets/releases, the snapshot no longer lists it. Before
    // the fix the tag fell back to the older `targets` entry at once.
    f.files = withoutRole(r, RELEASES);
    const dropped = await refusal(c.resolveTag(docker, "v1"));
    expect(dropped.code).toBe("ROLLBACK");
    expect(dropped.role).toBe(RELEASES);
    expect(dropped.message).toContain("trusted version 5");

    // Step 2: a snapshot listing the old, unexpired targets/releases (version 3).
    f.files = withOldRole(r, RELEASES, old);
    const rolledBack = await refusal(c.resolveTag(docker, "v1"));
    expect(rolledBack.code).toBe("ROLLBACK");
    expect(rolledBack.role).toBe(RELEASES);

    // After a restart, both steps are still refused: the floor is in the state file.
    for (const files of [withoutRole(r, RELEASES), withOldRole(r, RELEASES, old)]) {
      const restarted = client(new MapFetcher(files), { stateDir });
      const err = await refusal(restarted.resolveTag(docker, "v1"));
      expect(err.code).toBe("ROLLBACK");
      expect(err.role).toBe(RELEASES);
    }
  });

  it("T2: a role's floor outlives its absence from the snapshot (its parent broken) and a restart", async () => {
    const TEAM = "targets/team";
    const TEAM_RELEASES = "targets/team/releases";
    const team = { name: TEAM, keys: [ecdsaKey()], targets: {} };
    const teamReleases = {
      name: TEAM_RELEASES,
      keys: [ecdsaKey()],
      targets: { v1: { digest: D2, size: 2 } },
    };
    const r = new TestRepo(GUN, NOW, rootKey);
    r.targets = { v1: { digest: D1, size: 1 } };
    r.delegations = [team, teamReleases];
    const old = r.publish({ versions: { [TEAM_RELEASES]: 3 } }).get(`${TEAM_RELEASES}.json`) as Buffer;
    const f = new MapFetcher(r.publish({ versions: { [TEAM_RELEASES]: 5 } }));
    const stateDir = newStateDir();
    const teamQuery = queryFor(GUN, [TEAM_RELEASES, "targets"]);
    expect(await digestOf(client(f, { stateDir }), "v1", teamQuery)).toBe(`sha256:${D2}`);

    // targets/team expires on the server and the snapshot stops listing targets/team/releases:
    // accepted (nobody can tell whether team still delegates it), team's subtree refused...
    f.files = r.publish({
      expires: { [TEAM]: new Date(NOW.getTime() - DAY).toISOString() },
      edit: { snapshot: (s) => delete (s.meta as Record<string, unknown>)[TEAM_RELEASES] },
    });
    const c = client(f, { stateDir });
    expect(await digestOf(c, "v1")).toBe(`sha256:${D1}`);
    const below = await refusal(c.resolveTag(teamQuery, "v1"));
    expect(below.code).toBe("EXPIRED");
    expect(below.role).toBe(TEAM);

    // ...and after a restart, team is fresh again and the snapshot lists the old version 3 of
    // targets/team/releases: refused against the floor (5) kept while it was absent.
    const restarted = client(new MapFetcher(withOldRole(r, TEAM_RELEASES, old)), { stateDir });
    const err = await refusal(restarted.resolveTag(teamQuery, "v1"));
    expect(err.code).toBe("ROLLBACK");
    expect(err.role).toBe(TEAM_RELEASES);
    expect(err.message).toContain("trusted version 5");
    // Docker's roles do not read team's subtree: answered
    expect(await digestOf(restarted, "v1")).toBe(`sha256:${D1}`);
  });

  it("a role its parent stops delegating is removed, and may come back from version 1", async () => {
    const r = releasesRepo();
    const f = new MapFetcher(r.publish({ versions: { [RELEASES]: 7 } }));
    const c = client(f);
    expect(await digestOf(c, "v1")).toBe(`sha256:${D2}`);
    // targets (signed by its own key) removes the delegation: legitimate, the tag falls back
    r.delegations = [];
    f.files = r.publish();
    expect(await digestOf(c, "v1")).toBe(`sha256:${D1}`);
    // re-created (`docker trust signer add`), its metadata starts again from version 1
    r.delegations = [{ name: RELEASES, keys: [ecdsaKey()], targets: { v1: { digest: D3, size: 3 } } }];
    f.files = r.publish({ versions: { [RELEASES]: 1 } });
    expect(await digestOf(c, "v1")).toBe(`sha256:${D3}`);
  });

  it("T2: a format-1 state file is still read, and its roles' versions are the floors", async () => {
    const r = releasesRepo();
    const old = r.publish({ versions: { [RELEASES]: 3 } }).get(`${RELEASES}.json`) as Buffer;
    const stateDir = newStateDir();
    await client(new MapFetcher(r.publish({ versions: { [RELEASES]: 5 } })), { stateDir }).listSigned(docker);
    const path = new NotaryStateStore(stateDir).pathFor(GUN);
    const doc = JSON.parse(readFileSync(path, "utf8"));
    expect(doc.format).toBe(2);
    expect(doc.floors).toEqual({ targets: expect.any(Number), [RELEASES]: 5 });
    writeFileSync(path, JSON.stringify({ format: 1, gun: GUN, files: doc.files }));

    const offline = new MapFetcher(new Map());
    offline.offline = true;
    expect(await digestOf(client(offline, { stateDir }), "v1")).toBe(`sha256:${D2}`);
    const err = await refusal(
      client(new MapFetcher(withOldRole(r, RELEASES, old)), { stateDir }).listSigned(docker),
    );
    expect(err.code).toBe("ROLLBACK");
    expect(err.role).toBe(RELEASES);
  });
});

describe("T5: failure scoped to the resolution path", () => {
  const ALICE = "targets/alice";

  function signerRepo(): TestRepo {
    const r = new TestRepo(GUN, NOW, rootKey);
    r.targets = { v1: { digest: D1, size: 1 } };
    r.delegations = [
      { name: RELEASES, keys: [ecdsaKey()], targets: { v2: { digest: D2, size: 2 } } },
      { name: ALICE, keys: [ecdsaKey()], targets: { v3: { digest: D3, size: 3 } } },
    ];
    return r;
  }

  it.each([
    ["expired", "EXPIRED", { expires: { [ALICE]: new Date(NOW.getTime() - DAY).toISOString() } }],
    ["under threshold", "SIGNATURE_INVALID", { signers: { [ALICE]: [ecdsaKey()] } }],
    [
      "malformed",
      "METADATA_INVALID",
      { edit: { [ALICE]: (s: Record<string, unknown>) => delete s.targets } },
    ],
  ] satisfies [string, string, PublishOptions][])(
    "T5: a per-signer targets/alice that is %s does not block targets/releases or targets; a query for it is refused",
    async (_what, code, opts) => {
      const c = client(new MapFetcher(signerRepo().publish(opts)));
      expect(await digestOf(c, "v1")).toBe(`sha256:${D1}`);
      expect(await digestOf(c, "v2")).toBe(`sha256:${D2}`);
      expect((await c.listSigned(docker)).map((t) => t.name)).toEqual(["v1", "v2"]);
      const err = await refusal(c.resolveTag(queryFor(GUN, [ALICE, "targets"]), "v3"));
      expect(err.code).toBe(code);
      expect(err.role).toBe(ALICE);
      expect((await refusal(c.listSigned(queryFor(GUN, [ALICE])))).role).toBe(ALICE);
    },
  );

  it("T5: a broken role stays refused after a restart, served offline, while the path roles answer", async () => {
    const stateDir = newStateDir();
    const past = new Date(NOW.getTime() - DAY).toISOString();
    await client(new MapFetcher(signerRepo().publish({ expires: { [ALICE]: past } })), {
      stateDir,
    }).listSigned(docker);
    const offline = new MapFetcher(new Map());
    offline.offline = true;
    const c = client(offline, { stateDir });
    expect(await digestOf(c, "v2")).toBe(`sha256:${D2}`);
    const err = await refusal(c.resolveTag(queryFor(GUN, [ALICE]), "v3"));
    expect(err.code).toBe("EXPIRED");
    expect(err.role).toBe(ALICE);
  });

  it("T5: a role off the path that expires in memory neither refuses nor forces an update", async () => {
    const f = new MapFetcher(
      signerRepo().publish({ expires: { [ALICE]: new Date(NOW.getTime() + 10_000).toISOString() } }),
    );
    let now = NOW.getTime();
    const c = client(f, { now: () => new Date(now), refreshSeconds: 60 });
    expect(await digestOf(c, "v3", queryFor(GUN, [ALICE]))).toBe(`sha256:${D3}`);
    const requests = f.requests.length;
    now += 20_000; // alice expired, the last check is 20 s old (ahead point 45 s)
    expect(await digestOf(c, "v2")).toBe(`sha256:${D2}`);
    expect(f.requests.length).toBe(requests);
    // a query that reads alice goes to the server, which still serves the expired role: refused
    const err = await refusal(c.resolveTag(queryFor(GUN, [ALICE]), "v3"));
    expect(err.code).toBe("EXPIRED");
    expect(err.role).toBe(ALICE);
    expect(f.requests.length).toBeGreaterThan(requests);
  });

  it("T5: a broken role on the path is checked again on the next query, as a failed update is", async () => {
    const r = signerRepo();
    const f = new MapFetcher(r.publish({ signers: { [RELEASES]: [ecdsaKey()] } }));
    const c = client(f, { refreshSeconds: 60 });
    const err = await refusal(c.resolveTag(docker, "v2"));
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe(RELEASES);
    f.files = r.publish(); // the signer re-signs: answered at once, not after refreshSeconds
    expect(await digestOf(c, "v2")).toBe(`sha256:${D2}`);
  });

  it("T5: a delegation that breaks is logged once (not per pull), and once when it verifies again", async () => {
    const lines: { level: string; msg: string; role?: string; code?: string }[] = [];
    const rec = (level: string) => (obj: Record<string, unknown>, msg: string) =>
      lines.push({ level, msg, role: obj.role as string, code: obj.code as string });
    const logger = { warn: rec("warn"), info: rec("info") } as unknown as import("pino").Logger;
    const r = signerRepo();
    const f = new MapFetcher(r.publish({ signers: { [RELEASES]: [ecdsaKey()] } }));
    const c = new NotarySource({
      url: "http://notary.invalid",
      stateDir: newStateDir(),
      fetcher: f,
      now: () => NOW,
      refreshSeconds: 0,
      logger,
    });
    for (let i = 0; i < 5; i++) expect(await digestOf(c, "v3", queryFor(GUN, [ALICE]))).toBe(`sha256:${D3}`);
    const skipped = lines.filter((l) => l.msg.startsWith("delegation skipped"));
    expect(skipped).toEqual([
      expect.objectContaining({ level: "warn", role: RELEASES, code: "SIGNATURE_INVALID" }),
    ]);
    f.files = r.publish();
    for (let i = 0; i < 3; i++) expect(await digestOf(c, "v2")).toBe(`sha256:${D2}`);
    expect(lines.filter((l) => l.msg === "delegation verifies again")).toEqual([
      expect.objectContaining({ level: "info", role: RELEASES }),
    ]);
    expect(lines.filter((l) => l.msg.startsWith("delegation skipped"))).toHaveLength(1);
  });

  it("T5: the top-level targets role still fails the whole update", async () => {
    const r = signerRepo();
    const err = await refusal(
      client(new MapFetcher(r.publish({ signers: { targets: [ecdsaKey()] } }))).listSigned(docker),
    );
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe("targets");
  });
});

describe("T9: root rotations per update", () => {
  /** A client that trusts version 1 of a repository, and a fetcher whose versioned roots a test can take over. */
  async function trustingVersion1() {
    const r = new TestRepo(GUN, NOW, rootKey);
    r.targets = { v1: { digest: D1, size: 1 } };
    const f = new MapFetcher(r.publish());
    const versioned: { serve?: (version: number) => Promise<Buffer> } = {};
    const walked: number[] = [];
    const fetcher: MetadataFetcher = {
      async fetch(gun, file, max) {
        const m = /^(\d+)\.root\.json$/.exec(file);
        if (m) walked.push(Number(m[1]));
        if (m && versioned.serve) return versioned.serve(Number(m[1]));
        return f.fetch(gun, file, max);
      },
    };
    const c = client(fetcher);
    await c.listSigned(docker);
    return { r, f, c, versioned, walked };
  }

  it("T9: a root claiming version 1e9 makes no root walk", async () => {
    const { r, f, c, versioned, walked } = await trustingVersion1();
    // A hostile repository owner signs whatever root version is asked for; before the fix every
    // one was fetched in turn (here the server gives up after 200).
    r.signRoot(undefined, { version: 1e9 });
    f.files = r.publish();
    versioned.serve = async (v) => {
      if (walked.length > 200) throw new TrustError("TRUST_NOT_FOUND", GUN, "root", "gone");
      return r.signRoot(undefined, { version: v });
    };
    const err = await refusal(c.listSigned(docker));
    expect(err.code).toBe("METADATA_INVALID");
    expect(err.role).toBe("root");
    expect(err.message).toContain(`at most ${MAX_ROOT_ROTATIONS} root rotations`);
    expect(walked).toEqual([]);
  });

  it(`T9: ${MAX_ROOT_ROTATIONS} root versions are followed in one update, ${MAX_ROOT_ROTATIONS + 1} refused before any is fetched`, async () => {
    const { r, f, c, walked } = await trustingVersion1();
    for (let i = 0; i < MAX_ROOT_ROTATIONS; i++) r.signRoot();
    f.files = r.publish();
    expect(await c.listSigned(docker)).toHaveLength(1);
    expect(walked).toHaveLength(MAX_ROOT_ROTATIONS - 1); // 2 .. 32; 33 is root.json
    walked.length = 0;
    for (let i = 0; i <= MAX_ROOT_ROTATIONS; i++) r.signRoot();
    f.files = r.publish();
    const err = await refusal(c.listSigned(docker));
    expect(err.code).toBe("METADATA_INVALID");
    expect(walked).toEqual([]);
  });

  it("T9: the root walk stops at its wall-clock budget, and counts as the server being unavailable", async () => {
    const { r, f, c, versioned, walked } = await trustingVersion1();
    for (let i = 0; i < 10; i++) r.signRoot();
    f.files = r.publish();
    // each versioned root answered just under a 10 s per-request timeout
    let clock = 0;
    vi.spyOn(performance, "now").mockImplementation(() => clock);
    versioned.serve = async (v) => {
      clock += 9_999;
      return r.roots.get(v) as Buffer;
    };
    // answered from the trusted metadata, as when the server is down
    expect(await c.listSigned(docker)).toHaveLength(1);
    expect(walked).toHaveLength(Math.floor(ROOT_WALK_MAX_MS / 9_999) + 1);
  });
});

describe("T10: root certificates offline", () => {
  function shortCertRepo() {
    const key = x509Key(GUN, { days: 1 });
    const notAfter = Date.parse(new X509Certificate(Buffer.from(key.json.keyval.public, "base64")).validTo);
    const r = new TestRepo(GUN, NOW, key);
    r.targets = { v1: { digest: D1, size: 1 } };
    return { r, notAfter };
  }

  it("T10: offline, a trusted root whose certificate expired stops answering, also after a restart", async () => {
    const { r, notAfter } = shortCertRepo();
    const f = new MapFetcher(r.publish());
    let now = NOW.getTime();
    const stateDir = newStateDir();
    const c = client(f, { stateDir, now: () => new Date(now) });
    expect(await digestOf(c, "v1")).toBe(`sha256:${D1}`);
    f.offline = true;
    now = notAfter; // notAfter is inclusive: still valid
    expect(await digestOf(c, "v1")).toBe(`sha256:${D1}`);
    now = notAfter + 1_000; // the timestamp is good for 14 days, the certificate is not
    const err = await refusal(c.resolveTag(docker, "v1"));
    expect(err.code).toBe("ROOT_CERT_INVALID");
    expect(err.role).toBe("root");
    const restarted = client(f, { stateDir, now: () => new Date(now) });
    expect((await refusal(restarted.resolveTag(docker, "v1"))).code).toBe("ROOT_CERT_INVALID");
  });

  it("T10: the certificate's notAfter bounds reuse and freshness", async () => {
    const { r, notAfter } = shortCertRepo();
    const f = new MapFetcher(r.publish());
    let now = notAfter - 10_000;
    const c = client(f, { now: () => new Date(now), refreshSeconds: 3600 });
    const answer = await c.resolveTag(docker, "v1");
    expect(answer.reuseUntil).toBe(notAfter + 1);
    expect(answer.expires.getTime()).toBe(notAfter + 1);
    // within refreshSeconds of the last check, but past the certificate: not answered from memory
    f.offline = true;
    now = notAfter + 1;
    expect((await refusal(c.resolveTag(docker, "v1"))).code).toBe("ROOT_CERT_INVALID");
  });
});
