/**
 * Keys, signatures and pinning of the Notary client (REVIEW T1, T4, T7, T8, T11, T12), against
 * metadata the tests sign themselves (test/helpers/notary-signer.ts). Each case names the
 * Notary code it follows: trustpinning/certs.go, tuf/signed/verifiers.go, tuf/data/roles.go,
 * tuf/utils/x509.go.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { TrustError } from "../../src/trust/errors.js";
import * as keys from "../../src/trust/notary/keys.js";
import { parseEnvelope, type RootSigned } from "../../src/trust/notary/models.js";
import { keysResolver, MAX_SIGNATURES, requireThreshold } from "../../src/trust/notary/signatures.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import { MapFetcher, queryFor } from "../helpers/notary-fixtures.js";
import {
  bareAlias,
  craftedRsaPublicKey,
  ecdsaKey,
  resealSnapshot,
  rsaKey,
  rsaKeyWithoutPrivate,
  type TestKey,
  TestRepo,
  unpaddedAlias,
  x509Key,
} from "../helpers/notary-signer.js";

// Count the signature verifications (the crypto) the client makes, without changing them.
vi.mock("../../src/trust/notary/keys.js", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/trust/notary/keys.js")>();
  return { ...real, verifySignature: vi.fn(real.verifySignature) };
});
const verifyCalls = () => vi.mocked(keys.verifySignature).mock.calls.length;

const GUN = "registry.test:5000/acme/app";
// Certificates are minted with notBefore = the moment openssl runs; pin the clock a few minutes
// later so they are valid. Every metadata expiry is relative to the repo's clock.
const NOW = new Date(Date.now() + 5 * 60_000);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const D1 = "a".repeat(64);
const D2 = "b".repeat(64);
const query = queryFor(GUN);

let state: string;
let rootKey: TestKey;
let otherRootKey: TestKey;
beforeAll(() => {
  state = mkdtempSync(join(tmpdir(), "tg-keys-"));
  rootKey = x509Key(GUN);
  otherRootKey = x509Key(GUN);
});
afterAll(() => rmSync(state, { recursive: true, force: true }));
beforeEach(() => {
  vi.mocked(keys.verifySignature).mockClear();
});

let n = 0;
function client(fetcher: MapFetcher, opts: { now?: Date; stateDir?: string } = {}) {
  return new NotarySource({
    url: "http://notary.invalid",
    stateDir: opts.stateDir ?? join(state, String(n++)),
    fetcher,
    now: () => opts.now ?? NOW,
    refreshSeconds: 0,
  });
}

function repo(now = NOW, key = rootKey): TestRepo {
  const r = new TestRepo(GUN, now, key);
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

/** Replaces the signatures of one served file (all its names) with `signatures`. */
function withSignatures(
  files: Map<string, Buffer>,
  role: string,
  signatures: unknown[],
): Map<string, Buffer> {
  const bytes = files.get(`${role}.json`) as Buffer;
  const env = JSON.parse(bytes.toString());
  const out = Buffer.from(JSON.stringify({ signed: env.signed, signatures }));
  const next = new Map(files);
  for (const [name, b] of files) if (b === bytes) next.set(name, out);
  return next;
}

const signaturesOf = (files: Map<string, Buffer>, role: string) =>
  JSON.parse((files.get(`${role}.json`) as Buffer).toString()).signatures as { keyid: string }[];

/** The root's self-signature check alone (what a first-contact pull runs), timed; parsing is not. */
function timedRootCheck(bytes: Buffer): { err: TrustError | undefined; ms: number } {
  const env = parseEnvelope<RootSigned>(GUN, "root", bytes);
  const started = performance.now();
  try {
    requireThreshold(
      GUN,
      "root",
      env,
      env.signed.roles.root,
      keysResolver(env.signed.keys),
      "self-signature",
    );
    return { err: undefined, ms: performance.now() - started };
  } catch (err) {
    return { err: err as TrustError, ms: performance.now() - started };
  }
}

const junk = (keyid: string, method: string, bytes: number) => ({
  keyid,
  method,
  sig: Buffer.alloc(bytes, 7).toString("base64"),
});

describe("T1: one pin rule, at bootstrap, rotation and every query", () => {
  /** A root listing `rootKey` and `otherRootKey` (threshold 1), signed by `rootKey` only. */
  function twoKeyRoot() {
    const r = repo();
    r.rootKeys = [rootKey, otherRootKey];
    r.signRoot([rootKey]);
    return r;
  }
  const canonical = (k: TestKey) => keys.canonicalKeyId(keys.loadPublicKey(k.json), k.id);

  it("T1: a pin added after trust on first use: a root that lists the pinned cert but is signed by another key is refused", async () => {
    const f = new MapFetcher(twoKeyRoot().publish());
    const dir = join(state, "tofu-then-pin");
    const c = client(f, { stateDir: dir });
    expect(await c.listSigned(query)).toHaveLength(1); // trust on first use, no pin
    for (const pin of [otherRootKey.id, canonical(otherRootKey)]) {
      const err = await refusal(c.listSigned({ ...query, rootKeys: [pin] }));
      expect(err.code).toBe("ROOT_PIN_MISMATCH");
      expect(err.message).toContain(pin);
      expect(err.message).toContain(rootKey.id);
    }
    // the key that did sign pins it, by either ID
    expect(await c.listSigned({ ...query, rootKeys: [rootKey.id] })).toHaveLength(1);
    expect(await c.listSigned({ ...query, rootKeys: [canonical(rootKey)] })).toHaveLength(1);
    // and across a restart, from the persisted state
    f.offline = true;
    const restarted = client(f, { stateDir: dir });
    const err = await refusal(restarted.listSigned({ ...query, rootKeys: [otherRootKey.id] }));
    expect(err.code).toBe("ROOT_PIN_MISMATCH");
  });

  it("T1: at bootstrap, a pinned key that is only listed does not count", async () => {
    const f = new MapFetcher(twoKeyRoot().publish());
    const err = await refusal(client(f).listSigned({ ...query, rootKeys: [otherRootKey.id] }));
    expect(err.code).toBe("ROOT_PIN_MISMATCH");
    expect(await client(f).listSigned({ ...query, rootKeys: [rootKey.id] })).toHaveLength(1);
  });

  it("T1: at a root rotation, the new root must be signed by a threshold of pinned keys", async () => {
    const r = repo();
    r.rootKeys = [rootKey, otherRootKey];
    r.signRoot([rootKey, otherRootKey]);
    const f = new MapFetcher(r.publish());
    const c = client(f);
    const pinned = { ...query, rootKeys: [otherRootKey.id] };
    expect(await c.listSigned(pinned)).toHaveLength(1); // version 1: signed by the pinned key
    // version 2 keeps both keys listed, but only the unpinned one signs it: the old root's
    // threshold (1) and its own are met, the pin is not
    r.signRoot([rootKey]);
    f.files = r.publish();
    const err = await refusal(c.listSigned(pinned));
    expect(err.code).toBe("ROOT_PIN_MISMATCH");
    // signed by the pinned key again (version 3), the rotation is followed
    r.signRoot([rootKey, otherRootKey]);
    f.files = r.publish();
    expect(await client(f).listSigned(pinned)).toHaveLength(1);
  });

  it("T1: the pin is checked with crypto once per root and pin set; warm queries verify nothing", async () => {
    const c = client(new MapFetcher(repo().publish()));
    const pinned = { ...query, rootKeys: [rootKey.id] };
    await c.listSigned(pinned);
    const afterFirst = verifyCalls();
    expect(afterFirst).toBeGreaterThan(0);
    // every query re-runs the update (refreshSeconds 0) over unchanged bytes; the pin check must
    // add no verification: the only ones are the update's own (root, timestamp, ...), the same each time
    vi.mocked(keys.verifySignature).mockClear();
    await c.listSigned(query);
    const perUpdate = verifyCalls(); // an unpinned query: the update's verifications only
    vi.mocked(keys.verifySignature).mockClear();
    for (let i = 0; i < 5; i++) await c.listSigned(pinned);
    expect(verifyCalls()).toBe(5 * perUpdate);
  });
});

describe("T4: Notary delegations have paths only", () => {
  it("T4: a delegation with only path_hash_prefixes grants no path", async () => {
    const r = repo();
    r.delegations = [
      {
        name: "targets/releases",
        keys: [ecdsaKey()],
        pathHashPrefixes: [""], // every hash starts with "": TUF would grant everything
        targets: { v2: { digest: D2, size: 7 } },
      },
    ];
    const c = client(new MapFetcher(r.publish()));
    expect((await c.resolveTag(query, "v2")).signatures).toEqual([]);
    expect(await c.listSigned(queryFor(GUN, ["targets/releases"]))).toEqual([]);
  });

  it("T4: a nested delegation's paths are restricted to its parent's (Restrict), not widened", async () => {
    const r = repo();
    r.delegations = [
      { name: "targets/a", keys: [ecdsaKey()], paths: ["release-"], targets: {} },
      // "" and "rel" are prefixes of the parent's "release-": Notary drops them; "release-1" stays
      {
        name: "targets/a/b",
        parent: "targets/a",
        keys: [ecdsaKey()],
        paths: ["", "rel", "release-1"],
        targets: {
          "release-1": { digest: D2, size: 1 },
          "release-2": { digest: D2, size: 2 },
        },
      },
    ];
    const list = await client(new MapFetcher(r.publish())).listSigned(queryFor(GUN, ["targets/a/b"]));
    expect(list).toEqual([{ name: "release-1", digest: `sha256:${D2}`, size: 1, role: "targets/a/b" }]);
  });
});

describe("T7: thresholds count keys, not key IDs", () => {
  it.each([
    ["its base64 with and without padding", (k: TestKey) => [k, unpaddedAlias(k)], () => ecdsaKey()],
    ["ecdsa-x509 and the bare ecdsa key inside", (k: TestKey) => [k, bareAlias(k)], () => x509Key(GUN)],
  ])("T7: one key listed twice (%s) does not meet a threshold of 2", async (_what, aliases, make) => {
    const r = repo();
    const [a, b] = aliases(make()) as [TestKey, TestKey];
    expect(a.id).not.toBe(b.id);
    r.targetsKeys = [a, b];
    r.targetsThreshold = 2;
    r.signRoot();
    const err = await refusal(client(new MapFetcher(r.publish())).listSigned(query));
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.role).toBe("targets");
    expect(err.message).toContain("1 valid signature(s) from distinct keys, threshold 2");
    // two distinct keys do meet it
    r.targetsKeys = [a, ecdsaKey()];
    r.signRoot();
    expect(await client(new MapFetcher(r.publish())).listSigned(query)).toHaveLength(1);
  });
});

describe("T8: signature work is bounded before any crypto", () => {
  it(`T8: a root with 3,000 junk signatures is refused before any crypto (bound: ${MAX_SIGNATURES})`, async () => {
    const files = repo().publish();
    const junkSigs = Array.from({ length: 3000 }, () => junk(rootKey.id, "ecdsa", 64));
    const padded = withSignatures(files, "root", [...junkSigs, ...signaturesOf(files, "root")]);
    // The signature check alone, timed: 3,000 well-formed ECDSA signatures under the root's key
    // (576 KB, over the 512 KiB root cap, so only here; the review's 2,681 cost 290 ms per pull).
    const { err, ms } = timedRootCheck(padded.get("root.json") as Buffer);
    expect(err?.code).toBe("SIGNATURE_INVALID");
    expect(err?.message).toContain(`more than the ${MAX_SIGNATURES}`);
    expect(verifyCalls()).toBe(0);
    expect(ms).toBeLessThan(50);
    // and end to end, with signatures short enough to fit the root cap
    const short = withSignatures(files, "root", [...junkSigs.map((s) => ({ ...s, sig: "AA==" }))]);
    const pulled = await refusal(client(new MapFetcher(short)).listSigned(query));
    expect(pulled.code).toBe("SIGNATURE_INVALID");
    expect(verifyCalls()).toBe(0);
  });

  it("T8: at most one verification per listed key, however many signatures name it", async () => {
    const r = repo();
    const files = r.publish();
    const good = signaturesOf(files, "targets");
    const targetsKey = r.targetsKeys[0] as TestKey;
    const junkSigs = Array.from({ length: MAX_SIGNATURES - 1 }, () => junk(targetsKey.id, "ecdsa", 64));
    // a valid signature first: one verification, the junk after it is never looked at
    const first = resealSnapshot(r, withSignatures(files, "targets", [...good, ...junkSigs]), ["targets"]);
    expect(await client(new MapFetcher(first)).listSigned(query)).toHaveLength(1);
    const ok = verifyCalls();
    vi.mocked(keys.verifySignature).mockClear();
    expect(await client(new MapFetcher(files)).listSigned(query)).toHaveLength(1);
    expect(ok).toBe(verifyCalls()); // exactly what the unpadded repository costs
    // junk first: the key's one verification fails, and 254 more signatures add no crypto
    vi.mocked(keys.verifySignature).mockClear();
    const last = resealSnapshot(r, withSignatures(files, "targets", [...junkSigs, ...good]), ["targets"]);
    const err = await refusal(client(new MapFetcher(last)).listSigned(query));
    expect(err.role).toBe("targets");
    expect(verifyCalls()).toBe(ok); // root, timestamp, snapshot: one each; targets: one
  });

  it("T8: a first-contact root whose key has a huge RSA exponent is refused before any verification", async () => {
    const huge = x509Key(GUN, { forcePublicKey: craftedRsaPublicKey(3072, 3064) });
    const files = repo(NOW, huge).publish();
    // each of these would cost ~9 ms to verify: 2.3 s for one pull
    const padded = withSignatures(
      files,
      "root",
      Array.from({ length: MAX_SIGNATURES }, () => junk(huge.id, "rsapss", 384)),
    );
    const { err, ms } = timedRootCheck(padded.get("root.json") as Buffer);
    expect(err?.message).toContain("public exponent other than 65537");
    expect(verifyCalls()).toBe(0);
    expect(ms).toBeLessThan(50);
    const pulled = await refusal(client(new MapFetcher(padded)).listSigned(query));
    expect(pulled.code).toBe("ROOT_CERT_INVALID");
    expect(pulled.message).toContain("public exponent other than 65537");
    expect(verifyCalls()).toBe(0);
  });

  it.each([
    ["over 4096 bits", () => rsaKeyWithoutPrivate(craftedRsaPublicKey(4160)), "4160 bits, over 4096"],
    ["an exponent other than 65537", () => rsaKey(2048, 3), "public exponent other than 65537"],
  ])("T8: an RSA key with %s does not count", async (_what, make, message) => {
    const r = repo();
    r.targetsKeys = [make()];
    r.signRoot();
    const err = await refusal(client(new MapFetcher(r.publish())).listSigned(query));
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.message).toContain(message);
    expect(verifyCalls()).toBe(3); // root, timestamp, snapshot; none for the refused key
  });
});

describe("T11: NotBefore leeway of root certificates", () => {
  it("T11: a root certificate valid from up to one day ahead of the clock is accepted (Notary's leeway)", async () => {
    // the certificate was made just now; a client clock one hour behind sees it start in the future
    const behind = new Date(Date.now() - HOUR);
    const r = repo(behind);
    expect(await client(new MapFetcher(r.publish()), { now: behind }).listSigned(query)).toHaveLength(1);
  });

  it("T11: more than one day ahead is still refused", async () => {
    const farBehind = new Date(Date.now() - DAY - HOUR);
    const r = repo(farBehind);
    const err = await refusal(client(new MapFetcher(r.publish()), { now: farBehind }).listSigned(query));
    expect(err.code).toBe("ROOT_CERT_INVALID");
    expect(err.message).toContain("not valid before");
  });
});

describe("T12: weak RSA keys and SHA-1/MD5 certificates", () => {
  it("T12: an RSA key under 2048 bits does not count (verifiers.go minRSAKeySizeBit)", async () => {
    const r = repo();
    r.targetsKeys = [rsaKey(1024)];
    r.signRoot();
    const err = await refusal(client(new MapFetcher(r.publish())).listSigned(query));
    expect(err.code).toBe("SIGNATURE_INVALID");
    expect(err.message).toContain("1024 bits, under 2048");
    // a 2048-bit RSA key signing rsapss is fine
    r.targetsKeys = [rsaKey(2048)];
    r.signRoot();
    expect(await client(new MapFetcher(r.publish())).listSigned(query)).toHaveLength(1);
  });

  it("T12: an rsa-x509 root certificate under 2048 bits is refused", async () => {
    const err = await refusal(
      client(new MapFetcher(repo(NOW, x509Key(GUN, { rsaBits: 1024 })).publish())).listSigned(query),
    );
    expect(err.code).toBe("ROOT_CERT_INVALID");
    expect(err.message).toContain("1024 bits");
    // and a 2048-bit one is a valid root
    expect(
      await client(new MapFetcher(repo(NOW, x509Key(GUN, { rsaBits: 2048 })).publish())).listSigned(query),
    ).toHaveLength(1);
  });

  it.each([
    ["SHA-1 (ECDSA)", { digest: "sha1" as const }, "ecdsa-with-SHA1"],
    ["SHA-1 (RSA)", { digest: "sha1" as const, rsaBits: 2048 }, "sha1WithRSAEncryption"],
    ["MD5 (RSA)", { digest: "md5" as const, rsaBits: 2048 }, "md5WithRSAEncryption"],
  ])(
    "T12: a root certificate signed with %s is refused (x509.go ValidateCertificate)",
    async (_what, opts, alg) => {
      const err = await refusal(
        client(new MapFetcher(repo(NOW, x509Key(GUN, opts)).publish())).listSigned(query),
      );
      expect(err.code).toBe("ROOT_CERT_INVALID");
      expect(err.message).toContain(alg);
    },
  );
});
