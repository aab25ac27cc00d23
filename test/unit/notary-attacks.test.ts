/**
 * Attacks on Notary metadata the tests sign themselves (test/helpers/notary-signer.ts): every
 * one must end in a TrustError with the right code, GUN and role, never in a wrong answer.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TrustError } from "../../src/trust/errors.js";
import { canonicalKeyId, loadPublicKey } from "../../src/trust/notary/keys.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import { MapFetcher, queryFor } from "../helpers/notary-fixtures.js";
import {
  ecdsaKey,
  resealSnapshot,
  signEnvelope,
  type TestKey,
  TestRepo,
  x509Key,
} from "../helpers/notary-signer.js";

const GUN = "registry.test:5000/acme/app";
const NOW = new Date(); // certificates are minted now; every expiry below is relative to it
const DAY = 86_400_000;
const D1 = "a".repeat(64);
const D2 = "b".repeat(64);
const query = queryFor(GUN);

let state: string;
let rootKey: TestKey;
beforeAll(() => {
  state = mkdtempSync(join(tmpdir(), "tg-attack-"));
  rootKey = x509Key(GUN);
});
afterAll(() => rmSync(state, { recursive: true, force: true }));

let n = 0;
function client(fetcher: MapFetcher, opts: { now?: () => Date; pins?: string[] } = {}) {
  return new NotarySource({
    url: "http://notary.invalid",
    stateDir: join(state, String(n++)),
    fetcher,
    now: opts.now ?? (() => NOW),
    refreshSeconds: 0,
  });
}

function repo(): TestRepo {
  const r = new TestRepo(GUN, NOW, rootKey);
  r.targets = { v1: { digest: D1, size: 401 } };
  return r;
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

/** trust `first`, then serve `second` to the same client */
async function afterTrusting(first: Map<string, Buffer>, second: Map<string, Buffer>) {
  const f = new MapFetcher(first);
  const c = client(f);
  await c.listSigned(query);
  f.files = second;
  return c.listSigned(query);
}

describe("notary signer baseline", () => {
  it("verifies what the test signer signs (so refusals below are about the attack)", async () => {
    const r = repo();
    r.delegations = [
      { name: "targets/releases", keys: [ecdsaKey()], targets: { v2: { digest: D2, size: 7 } } },
    ];
    const list = await client(new MapFetcher(r.publish())).listSigned(query);
    expect(list).toEqual([
      { name: "v1", digest: `sha256:${D1}`, size: 401, role: "targets" },
      { name: "v2", digest: `sha256:${D2}`, size: 7, role: "targets/releases" },
    ]);
  });
});

describe("notary attacks", () => {
  it("tampered targets bytes: hash mismatch against the snapshot", async () => {
    const files = repo().publish();
    const t = files.get("targets.json") as Buffer;
    const tampered = Buffer.from(
      t
        .toString()
        .replace(Buffer.from(D1, "hex").toString("base64"), Buffer.from(D2, "hex").toString("base64")),
    );
    for (const [k, v] of files) if (v === t) files.set(k, tampered);
    const err = await refusal(client(new MapFetcher(files)).listSigned(query));
    expect(err.code).toBe("HASH_MISMATCH");
    expect(err.role).toBe("targets");
  });

  it("tampered targets with snapshot and timestamp re-signed (server keys): targets signature fails", async () => {
    const r = repo();
    const files = r.publish();
    const t = files.get("targets.json") as Buffer;
    files.set("targets.json", Buffer.from(t.toString().replace('"length":401', '"length":402')));
    const err = await refusal(
      client(new MapFetcher(resealSnapshot(r, files, ["targets"]))).listSigned(query),
    );
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe("targets");
  });

  it("targets signed by a key the root does not list", async () => {
    const err = await refusal(
      client(new MapFetcher(repo().publish({ signers: { targets: [ecdsaKey()] } }))).listSigned(query),
    );
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe("targets");
  });

  it("targets signed by a revoked key after a targets key rotation", async () => {
    const r = repo();
    const first = r.publish();
    const old = r.targetsKeys;
    r.targetsKeys = [ecdsaKey()];
    r.signRoot();
    const err = await refusal(afterTrusting(first, r.publish({ signers: { targets: old } })));
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe("targets");
  });

  it("threshold 2 is not met by one key signing twice", async () => {
    const r = repo();
    r.targetsKeys = [ecdsaKey(), ecdsaKey()];
    r.targetsThreshold = 2;
    r.signRoot();
    const k = r.targetsKeys[0] as TestKey;
    const err = await refusal(
      client(new MapFetcher(r.publish({ signers: { targets: [k, k] } }))).listSigned(query),
    );
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.message).toContain("threshold 2");
    // and both keys do meet it
    const ok = await client(new MapFetcher(r.publish())).listSigned(query);
    expect(ok).toHaveLength(1);
  });

  it.each(["timestamp", "snapshot", "targets", "targets/releases"])("expired %s is refused", async (role) => {
    const r = repo();
    r.delegations = [{ name: "targets/releases", keys: [ecdsaKey()], targets: {} }];
    const past = new Date(NOW.getTime() - DAY).toISOString();
    const err = await refusal(
      client(new MapFetcher(r.publish({ expires: { [role]: past } }))).listSigned(query),
    );
    expect(err.code).toBe("EXPIRED");
    expect(err.role).toBe(role);
  });

  it("expired root is refused", async () => {
    const r = repo();
    r.signRoot(undefined, { expires: "2020-01-01T00:00:00.123456789-07:00" });
    const err = await refusal(client(new MapFetcher(r.publish())).listSigned(query));
    expect(err.code).toBe("EXPIRED");
    expect(err.role).toBe("root");
  });

  it("moving the clock past the timestamp expiry refuses, even from cache with the server gone", async () => {
    const f = new MapFetcher(repo().publish());
    let now = NOW;
    const c = client(f, { now: () => now });
    expect(await c.listSigned(query)).toHaveLength(1);
    f.offline = true;
    now = new Date(NOW.getTime() + DAY); // still fresh: answered from trusted metadata
    expect(await c.listSigned(query)).toHaveLength(1);
    now = new Date(NOW.getTime() + 15 * DAY);
    const err = await refusal(c.listSigned(query));
    expect(err.code).toBe("EXPIRED");
    expect(err.role).toBe("timestamp");
  });

  it.each(["timestamp", "snapshot", "targets", "targets/releases"])(
    "version rollback of %s",
    async (role) => {
      const r = repo();
      r.delegations = [{ name: "targets/releases", keys: [ecdsaKey()], targets: {} }];
      const first = r.publish({ versions: { [role]: 10 } });
      // Everything else moves forward (re-signed by its legitimate keys); only `role` goes back.
      const err = await refusal(afterTrusting(first, r.publish({ versions: { [role]: 9 } })));
      expect(err.code).toBe("ROLLBACK");
      expect(err.role).toBe(role);
    },
  );

  it("version rollback of root", async () => {
    const r = repo();
    const v1 = r.publish();
    r.rotateRoot([x509Key(GUN)]);
    const v2 = r.publish();
    const err = await refusal(afterTrusting(v2, v1));
    expect(err.code).toBe("ROLLBACK");
    expect(err.role).toBe("root");
  });

  it("mix-and-match: a snapshot that does not match the targets served", async () => {
    const r = repo();
    const a = r.publish();
    r.targets = { v1: { digest: D2, size: 401 } };
    const b = r.publish();
    const mixed = new Map(b);
    for (const [k, v] of a) if (k.startsWith("targets")) mixed.set(k, v);
    // serve a's targets under b's checksum name too, as a lying server would
    const snap = JSON.parse((b.get("snapshot.json") as Buffer).toString()).signed;
    mixed.set(
      `targets.${Buffer.from(snap.meta.targets.hashes.sha256, "base64").toString("hex")}.json`,
      a.get("targets.json") as Buffer,
    );
    const err = await refusal(client(new MapFetcher(mixed)).listSigned(query));
    expect(err.code).toBe("HASH_MISMATCH");
    expect(err.role).toBe("targets");
  });

  it("oversized timestamp is refused before it is parsed", async () => {
    const files = repo().publish({
      edit: { timestamp: (s) => Object.assign(s, { pad: "x".repeat(100_000) }) },
    });
    const err = await refusal(client(new MapFetcher(files)).listSigned(query));
    expect(err.code).toBe("METADATA_INVALID");
    expect(err.message).toContain("cap");
  });

  it("non-canonical JSON: a float in signed is refused", async () => {
    const r = repo();
    const files = r.publish();
    const t = (files.get("targets.json") as Buffer).toString().replace('"length":401', '"length":401.0');
    files.set("targets.json", Buffer.from(t));
    const err = await refusal(
      client(new MapFetcher(resealSnapshot(r, files, ["targets"]))).listSigned(query),
    );
    expect(err.code).toBe("METADATA_INVALID");
    expect(err.role).toBe("targets");
  });

  it("non-canonical JSON: a signature over a non-canonical serialisation does not verify", async () => {
    const r = repo();
    const files = r.publish();
    const env = JSON.parse((files.get("targets.json") as Buffer).toString());
    const bytes = signEnvelope(env.signed, r.targetsKeys, Buffer.from(JSON.stringify(env.signed, null, 2)));
    files.set("targets.json", bytes);
    const err = await refusal(
      client(new MapFetcher(resealSnapshot(r, files, ["targets"]))).listSigned(query),
    );
    expect(err.code).toBe("SIGNATURE_INVALID");
  });

  it("a delegation cannot sign a path its parent does not allow", async () => {
    const r = repo();
    r.delegations = [
      {
        name: "targets/releases",
        keys: [ecdsaKey()],
        paths: ["release-"],
        targets: {
          "release-1": { digest: D2, size: 9 },
          v1: { digest: D2, size: 9 },
          latest: { digest: D2, size: 9 },
        },
      },
    ];
    const c = client(new MapFetcher(r.publish()));
    expect(await c.listSigned(query)).toEqual([
      { name: "release-1", digest: `sha256:${D2}`, size: 9, role: "targets/releases" },
      { name: "v1", digest: `sha256:${D1}`, size: 401, role: "targets" },
    ]);
    expect((await c.resolveTag(query, "latest")).signatures).toEqual([]);
    expect((await c.resolveTag(query, "v1")).signatures.map((s) => s.role)).toEqual(["targets"]);
  });

  it("a delegation naming a role that is not its child is refused", async () => {
    const r = repo();
    r.delegations = [{ name: "targets/releases", keys: [ecdsaKey()], targets: {} }];
    const files = r.publish({
      edit: {
        targets: (s) =>
          (((s.delegations as { roles: { name: string }[] }).roles[0] as { name: string }).name =
            "targets/a/b"),
      },
    });
    const err = await refusal(client(new MapFetcher(files)).listSigned(query));
    expect(err.code).toBe("DELEGATION_INVALID");
  });

  it("a role outside query.roles never counts", async () => {
    const r = repo();
    r.delegations = [
      { name: "targets/ci", keys: [ecdsaKey()], targets: { nightly: { digest: D2, size: 3 } } },
    ];
    const c = client(new MapFetcher(r.publish()));
    expect((await c.resolveTag(query, "nightly")).signatures).toEqual([]);
    expect((await c.resolveTag(queryFor(GUN, ["targets/ci"]), "nightly")).signatures).toHaveLength(1);
  });

  it("root rotation signed only by the new key is refused", async () => {
    const r = repo();
    const first = r.publish();
    const next = x509Key(GUN);
    r.rotateRoot([next], [next]);
    const err = await refusal(afterTrusting(first, r.publish()));
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe("root");
    expect(err.message).toContain("trusted version 1");
  });

  it("root rotation signed by old and new keys is followed, across versions", async () => {
    const r = repo();
    const first = r.publish();
    r.rotateRoot([x509Key(GUN)]);
    r.rotateRoot([x509Key(GUN)]);
    r.targets = { v1: { digest: D2, size: 5 } };
    const list = await afterTrusting(first, r.publish());
    expect(list).toEqual([{ name: "v1", digest: `sha256:${D2}`, size: 5, role: "targets" }]);
  });

  it("pinned root key mismatch names both key IDs; the cert ID and canonical ID both pin", async () => {
    const files = repo().publish();
    const pin = x509Key(GUN).id;
    const f = new MapFetcher(files);
    const err = await refusal(client(f).listSigned({ ...query, rootKeys: [pin] }));
    expect(err.code).toBe("ROOT_PIN_MISMATCH");
    expect(err.message).toContain(pin);
    expect(err.message).toContain(rootKey.id);
    const canonical = canonicalKeyId(loadPublicKey(rootKey.json), rootKey.id);
    expect(canonical).not.toBe(rootKey.id);
    expect(err.message).toContain(canonical);
    expect(await client(f).listSigned({ ...query, rootKeys: [rootKey.id] })).toHaveLength(1);
    expect(await client(f).listSigned({ ...query, rootKeys: [canonical] })).toHaveLength(1);
  });

  it.each([
    ["a CA certificate", { ca: true }],
    ["a certificate for another GUN", { cn: "registry.test:5000/other/app" }],
  ])("root key that is %s is refused", async (_what, opts) => {
    const r = new TestRepo(GUN, NOW, x509Key(GUN, opts));
    const err = await refusal(client(new MapFetcher(r.publish())).listSigned(query));
    expect(err.code).toBe("ROOT_CERT_INVALID");
  });

  it("root certificate outside its validity period is refused", async () => {
    const r = new TestRepo(GUN, new Date(NOW.getTime() + 3 * DAY), x509Key(GUN, { days: 1 }));
    const err = await refusal(client(new MapFetcher(r.publish()), { now: () => r.now }).listSigned(query));
    expect(err.code).toBe("ROOT_CERT_INVALID");
    expect(err.message).toContain("expired");
  });

  it("unknown GUN on the server is TRUST_NOT_FOUND", async () => {
    const err = await refusal(client(new MapFetcher(new Map())).listSigned(query));
    expect(err.code).toBe("TRUST_NOT_FOUND");
  });
});
