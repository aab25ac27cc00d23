/**
 * Notation's "Authentic timestamp" under notary.x509 (trust-store-trust-policy.md, "Validate Trusted
 * Timestamp"): RFC 3161 tokens made by the real OpenSSL TSA over signatures signed in the test
 * (test/helpers/notation-timestamp.ts), verified against the trust policy's `tsa` stores.
 * The clock is moved by the `now` the verifier is given: a certificate valid while it signs and is
 * timestamped has expired at a `now` ten days later.
 */
import { X509Certificate } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNotationMaterial, type NotationMaterial } from "../../src/signatures/notation/material.js";
import {
  MAX_TIMESTAMP_TOKEN_BYTES,
  TimestampError,
  verifyTimestampToken,
} from "../../src/signatures/notation/timestamp.js";
import { verifyNotation } from "../../src/signatures/notation/verify.js";
import {
  type Countersign,
  coseEnvelope,
  type Issued,
  jwsEnvelope,
  SUBJECT,
  TestPki,
} from "../helpers/notation-timestamp.js";

const DAY = 24 * 3600 * 1000;
const T = new Date(Math.floor(Date.now() / 1000) * 1000);
const at = (ms: number) => new Date(T.getTime() + ms);
/** verification time: every signing leaf below has expired by then, every root is still valid */
const LATER = at(10 * DAY);

let pki: TestPki;
let root: Issued; // signing CA, in ca:test
let leaf: Issued; // valid [T-1d, T+1d]: valid now, expired at LATER
let leafGone: Issued; // valid [T-10d, T-1d]: expired before any timestamp taken now
let leafShort: Issued; // valid [T-1d, T+5min]: within validity only with a small accuracy
let tsaRoot: Issued; // in tsa:test
let tsa: Issued; // RSA, timeStamping EKU, issued by tsaRoot
let tsaEc: Issued; // ECDSA, timeStamping EKU, issued by tsaRoot
let tsaCodeSigning: Issued; // codeSigning EKU instead of timeStamping, issued by tsaRoot
let tsaOcsp: Issued; // timeStamping EKU and an OCSP pointer, issued by tsaRoot
let otherTsaRoot: Issued; // in no store
let otherTsa: Issued;

beforeAll(() => {
  pki = new TestPki();
  root = pki.issue({
    name: "root",
    subj: "/C=US/ST=WA/O=Test Root",
    extensions: "v3_ca",
    start: at(-30 * DAY),
    end: at(30 * DAY),
  });
  const signer = { subj: "/C=US/ST=WA/O=Test/CN=signer", extensions: "v3_leaf", issuer: root } as const;
  leaf = pki.issue({ ...signer, name: "leaf", start: at(-DAY), end: at(DAY) });
  leafGone = pki.issue({ ...signer, name: "leaf-gone", start: at(-10 * DAY), end: at(-DAY) });
  leafShort = pki.issue({ ...signer, name: "leaf-short", start: at(-DAY), end: at(5 * 60 * 1000) });
  const tsaCa = { extensions: "v3_ca", start: at(-30 * DAY), end: at(30 * DAY), key: "rsa" } as const;
  tsaRoot = pki.issue({ ...tsaCa, name: "tsa-root", subj: "/C=US/O=Test TSA Root" });
  otherTsaRoot = pki.issue({ ...tsaCa, name: "other-tsa-root", subj: "/C=US/O=Other TSA Root" });
  const tsaLeaf = { extensions: "v3_tsa", start: at(-DAY), end: at(30 * DAY), key: "rsa" } as const;
  tsa = pki.issue({ ...tsaLeaf, name: "tsa", subj: "/C=US/O=Test TSA/CN=tsa", issuer: tsaRoot });
  tsaEc = pki.issue({
    ...tsaLeaf,
    key: "ec",
    name: "tsa-ec",
    subj: "/C=US/O=Test TSA/CN=tsa-ec",
    issuer: tsaRoot,
  });
  tsaCodeSigning = pki.issue({
    ...tsaLeaf,
    extensions: "v3_tsa_codesigning",
    name: "tsa-cs",
    subj: "/C=US/O=Test TSA/CN=tsa-codesigning",
    issuer: tsaRoot,
  });
  tsaOcsp = pki.issue({
    ...tsaLeaf,
    extensions: "v3_tsa_ocsp",
    name: "tsa-ocsp",
    subj: "/C=US/O=Test TSA/CN=tsa-ocsp",
    issuer: tsaRoot,
  });
  otherTsa = pki.issue({
    ...tsaLeaf,
    name: "other-tsa",
    subj: "/C=US/O=Other TSA/CN=tsa",
    issuer: otherTsaRoot,
  });

  for (const [type, name, cert] of [
    ["ca", "test", root],
    ["tsa", "test", tsaRoot],
  ] as const) {
    const store = join(pki.dir, "truststore", "x509", type, name);
    mkdirSync(store, { recursive: true });
    writeFileSync(join(store, "root.pem"), cert.cert);
  }
});

afterAll(() => {
  rmSync(pki.dir, { recursive: true, force: true });
});

async function material(
  signatureVerification: Record<string, unknown>,
  trustStores = ["ca:test", "tsa:test"],
): Promise<NotationMaterial> {
  const file = join(pki.dir, `policy-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      version: "1.0",
      trustPolicies: [
        {
          name: "ts",
          registryScopes: ["*"],
          signatureVerification,
          trustStores,
          trustedIdentities: ["x509.subject: C=US, ST=WA, O=Test, CN=signer"],
        },
      ],
    }),
  );
  return loadNotationMaterial(file, join(pki.dir, "truststore"));
}

async function verdict(m: NotationMaterial, bytes: Buffer, now = LATER, mediaType = "application/jose+json") {
  return verifyNotation({
    material: m,
    reference: "registry.example/app",
    subject: SUBJECT,
    envelopes: [{ mediaType, bytes }],
    now,
  });
}

/** countersign with the OpenSSL TSA `by` (defaults: the trusted RSA TSA, accuracy 1 s) */
const stamp =
  (by: Issued = tsa, opts: Parameters<TestPki["timestamp"]>[2] = {}): Countersign =>
  (signature) =>
    pki.timestamp(signature, by, opts);

describe("Notation authentic timestamp: a valid countersignature", () => {
  it("verifies a JWS whose signing certificate expired after it was timestamped", async () => {
    const bytes = jwsEnvelope(leaf, [root], { signingTime: T, countersign: stamp() });
    const v = await verdict(await material({ level: "strict" }), bytes);
    expect(v.outcome, v.reason).toBe("verified");
    expect(v.identity).toBe("CN=signer,O=Test,ST=WA,C=US");
    // the audit line says the acceptance rests on a timestamp, and whose
    expect(v.reason).toMatch(
      /; timestamped at \d{4}-\d\d-\d\dT[\d:.]+Z ±1000 ms by "CN=tsa,O=Test TSA,C=US"\)$/,
    );
  });

  it("verifies a COSE envelope countersigned by an ECDSA TSA the same way", async () => {
    const bytes = coseEnvelope(leaf, [root], { signingTime: T, countersign: stamp(tsaEc) });
    const v = await verdict(await material({ level: "strict" }), bytes, LATER, "application/cose");
    expect(v.outcome, v.reason).toBe("verified");
  });

  it("accepts the RFC 2634 signing-certificate attribute (ESS SHA-1 cert id) as the spec allows", async () => {
    const bytes = jwsEnvelope(leaf, [root], {
      signingTime: T,
      countersign: stamp(tsa, { essCertIdAlg: "sha1" }),
    });
    const v = await verdict(await material({ level: "strict" }), bytes);
    expect(v.outcome, v.reason).toBe("verified");
  });

  it("a token whose TSA chain carries the root as well verifies", async () => {
    const bytes = jwsEnvelope(leaf, [root], {
      signingTime: T,
      countersign: stamp(tsa, { chainFile: "tsa-root.crt" }),
    });
    const v = await verdict(await material({ level: "strict" }), bytes);
    expect(v.outcome, v.reason).toBe("verified");
  });
});

describe("Notation authentic timestamp: the range against the signing chain", () => {
  it("refuses a timestamp taken after the signing certificate expired", async () => {
    // signed (untrusted signing time) while the certificate was valid, timestamped at T: too late
    const bytes = jwsEnvelope(leafGone, [root], { signingTime: at(-2 * DAY), countersign: stamp() });
    const v = await verdict(await material({ level: "strict" }), bytes, T);
    expect(v.outcome).toBe("refused");
    expect(v.reason).toContain("authentic timestamp validation failed");
    expect(v.reason).toContain("was not valid during the whole timestamp range");
  });

  it("takes the accuracy into account: the whole [genTime - accuracy, genTime + accuracy] must be inside", async () => {
    const m = await material({ level: "strict" });
    // leafShort expires 5 minutes after T; an hour of accuracy reaches past that
    const wide = jwsEnvelope(leafShort, [root], {
      signingTime: T,
      countersign: stamp(tsa, { accuracy: "secs:3600" }),
    });
    const refused = await verdict(m, wide);
    expect(refused.outcome).toBe("refused");
    expect(refused.reason).toContain("was not valid during the whole timestamp range");
    const narrow = jwsEnvelope(leafShort, [root], {
      signingTime: T,
      countersign: stamp(tsa, { accuracy: "secs:1" }),
    });
    const verified = await verdict(m, narrow);
    expect(verified.outcome, verified.reason).toBe("verified");
  });

  it("uses 1 s of accuracy for the baseline policy when the token gives none (RFC 3628)", async () => {
    const token = pki.timestamp(Buffer.from("sig"), tsa, { accuracy: "secs:0", policy: "0.4.0.2023.1.1" });
    const ts = verifyTimestampToken(token, Buffer.from("sig"), [new X509Certificate(tsaRoot.cert)]);
    expect(ts.accuracyMs).toBe(1000);
    expect(ts.upper.getTime() - ts.lower.getTime()).toBe(2000);
    const other = pki.timestamp(Buffer.from("sig"), tsa, { accuracy: "secs:0" });
    expect(
      verifyTimestampToken(other, Buffer.from("sig"), [new X509Certificate(tsaRoot.cert)]).accuracyMs,
    ).toBe(0);
  });
});

describe("Notation authentic timestamp: countersignatures that are refused", () => {
  // Each uses the leaf that is valid at T and is verified at T: without timestamp evaluation these
  // signatures would verify, so each refusal is the countersignature's doing.
  const refusedAtT = async (countersign: Countersign, expected: string, cose = false) => {
    const opts = { signingTime: T, countersign };
    const bytes = cose ? coseEnvelope(leaf, [root], opts) : jwsEnvelope(leaf, [root], opts);
    const v = await verdict(
      await material({ level: "strict" }),
      bytes,
      T,
      cose ? "application/cose" : undefined,
    );
    expect(v.outcome, v.reason).toBe("refused");
    expect(v.reason).toContain("authentic timestamp validation failed");
    expect(v.reason).toContain(expected);
  };

  it("a token over other bytes", async () => {
    await refusedAtT(
      () => pki.timestamp(Buffer.from("some other signature"), tsa),
      "messageImprint is not the hash of this signature",
    );
  });

  it("a TSA that does not chain to the tsa stores", async () => {
    await refusedAtT(stamp(otherTsa), 'signing certificate "CN=tsa,O=Other TSA,C=US" does not chain');
  });

  it("a TSA certificate without the timeStamping extended key usage", async () => {
    await refusedAtT(
      (signature) => pki.resign(pki.timestamp(signature, tsa), tsaCodeSigning),
      "the extended key usage must be exactly timeStamping",
    );
  });

  it("a token that does not carry the TSA certificate", async () => {
    await refusedAtT(stamp(tsa, { certReq: false }), "does not carry its signer's certificate");
  });

  it("a token whose signature was altered", async () => {
    await refusedAtT((signature) => {
      const token = pki.timestamp(signature, tsa);
      const i = token.length - 10; // inside the RSA signature value, the token's last field
      token[i] = (token[i] as number) ^ 0x01;
      return token;
    }, "signature does not verify");
  });

  it("malformed tokens and headers, never a crash", async () => {
    await refusedAtT(() => Buffer.from("not a token"), "cannot be decoded");
    await refusedAtT((signature) => pki.timestamp(signature, tsa).subarray(0, 300), "cannot be decoded");
    await refusedAtT(
      (signature) => Buffer.concat([pki.timestamp(signature, tsa), Buffer.from([0])]),
      "not a single DER-encoded ContentInfo",
    );
    await refusedAtT(() => Buffer.alloc(0), "the timestamp token is empty");
    await refusedAtT({ raw: 42 }, "is not a base64 string");
    await refusedAtT({ raw: "%%%" }, "is not base64");
    await refusedAtT(
      { raw: "A".repeat(Math.ceil(MAX_TIMESTAMP_TOKEN_BYTES / 3) * 4 + 4) },
      "longer than a 65536-byte token",
    );
    await refusedAtT({ raw: "a string" }, "is not a byte string", true);
    await refusedAtT(() => Buffer.alloc(MAX_TIMESTAMP_TOKEN_BYTES + 1), "more than 65536", true);
    // BER inside the SignedData (a certificate's critical flag as BOOLEAN 0x01, not DER's 0xFF):
    // re-encoded, the certificate would regain its signed bytes; refused instead
    await refusedAtT((signature) => {
      const token = pki.timestamp(signature, tsa);
      const i = token.indexOf(Buffer.from([0x01, 0x01, 0xff]));
      token[i + 2] = 0x01;
      return token;
    }, "SignedData is not DER-encoded");
    // a ContentInfo that is well-formed DER but of the wrong type (a certificate's outer SEQUENCE)
    await refusedAtT(() => new X509Certificate(tsa.cert).raw, "cannot be decoded");
  });
});

describe("Notation authentic timestamp: hostile tokens", () => {
  it("every single-byte corruption of a real token is a TimestampError, never a crash", () => {
    const signature = Buffer.from("the signature bytes");
    const token = pki.timestamp(signature, tsa);
    const trusted = [new X509Certificate(tsaRoot.cert)];
    // Bytes 0..42 hold the outer headers, the SignedData version and its digestAlgorithms set:
    // the last two are informational (tspclient-go does not read them either); from the
    // encapsulated TSTInfo on, every byte is covered by a check.
    const unsigned = 43;
    const accepted: number[] = [];
    for (let i = unsigned; i < token.length; i += 5) {
      const bad = Buffer.from(token);
      bad[i] = (bad[i] as number) ^ 0x5a;
      try {
        verifyTimestampToken(bad, signature, trusted);
        accepted.push(i);
      } catch (err) {
        expect(err).toBeInstanceOf(TimestampError);
      }
    }
    expect(accepted).toEqual([]);
  });
});

describe("Notation authentic timestamp: when it is not evaluated, and levels", () => {
  it("no tsa store in the trust policy: the countersignature is not evaluated, the chain must be valid now", async () => {
    const m = await material({ level: "strict" }, ["ca:test"]);
    const expiredStamped = jwsEnvelope(leaf, [root], { signingTime: T, countersign: stamp() });
    const later = await verdict(m, expiredStamped);
    expect(later.outcome).toBe("refused");
    expect(later.reason).toContain("was not valid at verification time");
    // even a countersignature from an untrusted TSA is ignored, as notation-go does
    const untrusted = jwsEnvelope(leaf, [root], { signingTime: T, countersign: stamp(otherTsa) });
    expect((await verdict(m, untrusted, T)).outcome).toBe("verified");
  });

  it("no countersignature with a tsa store configured: the chain must be valid now (the spec's fallback)", async () => {
    const m = await material({ level: "strict" });
    const bytes = jwsEnvelope(leaf, [root], { signingTime: T });
    expect((await verdict(m, bytes, T)).outcome).toBe("verified");
    const later = await verdict(m, bytes);
    expect(later.outcome).toBe("refused");
    expect(later.reason).toContain("was not valid at verification time");
  });

  it("permissive and audit log a bad countersignature, override authenticTimestamp: log as well", async () => {
    const bad = jwsEnvelope(leaf, [root], { signingTime: T, countersign: stamp(otherTsa) });
    for (const sv of [
      { level: "permissive" },
      { level: "audit" },
      { level: "strict", override: { authenticTimestamp: "log" } },
    ]) {
      const v = await verdict(await material(sv), bad, T);
      expect(v.outcome, JSON.stringify(sv)).toBe("logged");
      expect(v.reason).toContain("authentic timestamp (logged): the timestamp countersignature is not valid");
    }
  });
});

describe("Notation authentic timestamp: the TSA's revocation status", () => {
  it("a TSA naming OCSP is 'revocation unavailable' offline, like a signing certificate: strict refuses, revocation skip or log accepts", async () => {
    const bytes = jwsEnvelope(leaf, [root], { signingTime: T, countersign: stamp(tsaOcsp) });
    const strict = await verdict(await material({ level: "strict" }), bytes);
    expect(strict.outcome).toBe("refused");
    expect(strict.reason).toContain(
      'revocation validation failed: revocation status of "CN=tsa-ocsp,O=Test TSA,C=US" cannot be determined',
    );
    const skipped = await verdict(
      await material({ level: "strict", override: { revocation: "skip" } }),
      bytes,
    );
    expect(skipped.outcome).toBe("verified");
    const logged = await verdict(await material({ level: "strict", override: { revocation: "log" } }), bytes);
    expect(logged.outcome).toBe("logged");
    expect(logged.reason).toContain("revocation (logged)");
    // the same signature timestamped by a TSA without pointers needs no override
    const plain = jwsEnvelope(leaf, [root], { signingTime: T, countersign: stamp() });
    expect((await verdict(await material({ level: "strict" }), plain)).outcome).toBe("verified");
  });
});
