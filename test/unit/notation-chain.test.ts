/**
 * The Notation verifier on CA-issued chains, in addition to (never instead of) the real notation
 * fixtures of notation-verify.test.ts: openssl makes a root CA and ECDSA P-256 leaves, node:crypto
 * signs the JWS the way `notation sign` lays it out (ES256, raw r||s), so the chain rules of the
 * signature specification ("Certificate Requirements"), ES256 and revocation pointers are covered.
 */
import { execFileSync } from "node:child_process";
import { constants, createPrivateKey, sign, X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode, Tag } from "cbor2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNotationMaterial, type NotationMaterial } from "../../src/signatures/notation/material.js";
import { verifyNotation } from "../../src/signatures/notation/verify.js";

const SUBJECT = {
  digest: `sha256:${"ab".repeat(32)}`,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  size: 1234,
};
const EXTENSIONS = `
[req]
distinguished_name=dn
[dn]
[v3_ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
[v3_leaf]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
[v3_leaf_crl]
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
crlDistributionPoints=URI:http://127.0.0.1:1/ca.crl
[v3_leaf_rsa]
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
[v3_leaf_tls]
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
`;

let dir: string;
const leaves: Record<string, { key: Buffer; cert: Buffer }> = {};
let root: Buffer;

function openssl(args: string[]) {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "notation-chain-"));
  await writeFile(join(dir, "ext.cnf"), EXTENSIONS);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const req = ["req", "-config", "ext.cnf", ...ec];
  openssl([
    ...req,
    "-x509",
    "-extensions",
    "v3_ca",
    "-days",
    "30",
    "-keyout",
    "root.key",
    "-out",
    "root.crt",
    "-subj",
    "/C=US/ST=WA/O=Test Root",
  ]);
  root = await readFile(join(dir, "root.crt"));
  for (const kind of ["v3_leaf", "v3_leaf_crl", "v3_leaf_tls", "v3_leaf_rsa"]) {
    const keyArgs = kind === "v3_leaf_rsa" ? ["-newkey", "rsa:2048", "-nodes"] : ec;
    openssl([
      "req",
      "-config",
      "ext.cnf",
      ...keyArgs,
      "-keyout",
      `${kind}.key`,
      "-out",
      `${kind}.csr`,
      "-subj",
      "/C=US/ST=WA/O=Test/CN=signer",
    ]);
    openssl([
      "x509",
      "-req",
      "-in",
      `${kind}.csr`,
      "-CA",
      "root.crt",
      "-CAkey",
      "root.key",
      "-CAcreateserial",
      "-out",
      `${kind}.crt`,
      "-days",
      "10",
      "-extfile",
      "ext.cnf",
      "-extensions",
      kind,
    ]);
    leaves[kind] = {
      key: await readFile(join(dir, `${kind}.key`)),
      cert: await readFile(join(dir, `${kind}.crt`)),
    };
  }
  const store = join(dir, "truststore", "x509", "ca", "test");
  await mkdir(store, { recursive: true });
  await writeFile(join(store, "root.pem"), root);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function der(pem: Buffer): string {
  return new X509Certificate(pem).raw.toString("base64");
}

/** A JWS envelope as notation writes it, signed with ES256 by `leaf`, with header overrides. */
function jws(
  leaf: { key: Buffer; cert: Buffer },
  opts: { header?: Record<string, unknown>; chain?: Buffer[]; target?: typeof SUBJECT } = {},
): Buffer {
  const header = {
    alg: "ES256",
    crit: ["io.cncf.notary.signingScheme"],
    cty: "application/vnd.cncf.notary.payload.v1+json",
    "io.cncf.notary.signingScheme": "notary.x509",
    "io.cncf.notary.signingTime": new Date(Date.now() + 2_000).toISOString().replace(/\.\d+Z$/, "Z"),
    ...opts.header,
  };
  const protectedB64 = Buffer.from(JSON.stringify(header)).toString("base64url");
  const payloadB64 = Buffer.from(JSON.stringify({ targetArtifact: opts.target ?? SUBJECT })).toString(
    "base64url",
  );
  const signature = sign("sha256", Buffer.from(`${protectedB64}.${payloadB64}`), {
    key: createPrivateKey(leaf.key),
    dsaEncoding: "ieee-p1363",
  });
  return Buffer.from(
    JSON.stringify({
      payload: payloadB64,
      protected: protectedB64,
      header: { x5c: (opts.chain ?? [leaf.cert, root]).map(der), "io.cncf.notary.signingAgent": "test" },
      signature: signature.toString("base64url"),
    }),
  );
}

/** A COSE_Sign1_Tagged envelope as notation writes it (ES256 or PS256 by key), with header overrides. */
function cose(
  leaf: { key: Buffer; cert: Buffer },
  opts: { header?: Map<unknown, unknown>; alg?: number; payload?: Buffer } = {},
): Buffer {
  const key = createPrivateKey(leaf.key);
  const rsa = key.asymmetricKeyType === "rsa";
  const header = new Map<unknown, unknown>([
    [1, opts.alg ?? (rsa ? -37 : -7)],
    [2, ["io.cncf.notary.signingScheme"]],
    [3, "application/vnd.cncf.notary.payload.v1+json"],
    ["io.cncf.notary.signingScheme", "notary.x509"],
    ["io.cncf.notary.signingTime", new Tag(1, Math.floor(Date.now() / 1000) + 2)],
  ]);
  for (const [k, v] of opts.header ?? []) header.set(k, v);
  const protectedBytes = encode(header);
  const payload = new Uint8Array(Buffer.from(JSON.stringify({ targetArtifact: SUBJECT })));
  const toBeSigned = encode(["Signature1", protectedBytes, new Uint8Array(0), payload]);
  const signature = rsa
    ? sign("sha256", toBeSigned, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
    : sign("sha256", toBeSigned, { key, dsaEncoding: "ieee-p1363" });
  const unprotected = new Map<unknown, unknown>([
    [33, [leaf.cert, root].map((pem) => new Uint8Array(new X509Certificate(pem).raw))],
    ["io.cncf.notary.signingAgent", "test"],
  ]);
  return Buffer.from(
    encode(
      new Tag(18, [
        protectedBytes,
        unprotected,
        opts.payload ? new Uint8Array(opts.payload) : payload,
        new Uint8Array(signature),
      ]),
    ),
  );
}

async function material(signatureVerification: Record<string, unknown>, trustStores = ["ca:test"]) {
  const file = join(dir, `policy-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(
    file,
    JSON.stringify({
      version: "1.0",
      trustPolicies: [
        {
          name: "chain",
          registryScopes: ["*"],
          signatureVerification,
          trustStores,
          trustedIdentities: ["x509.subject: C=US, ST=WA, O=Test, CN=signer"],
        },
      ],
    }),
  );
  return loadNotationMaterial(file, join(dir, "truststore"));
}

async function verdict(m: NotationMaterial, bytes: Buffer, mediaType = "application/jose+json") {
  return verifyNotation({
    material: m,
    reference: "registry.example/app",
    subject: SUBJECT,
    envelopes: [{ mediaType, bytes }],
    now: new Date(),
  });
}

describe("Notation: CA-issued chains", () => {
  it("verifies an ES256 signature whose leaf chains to the trusted root", async () => {
    const v = await verdict(await material({ level: "strict" }), jws(leaves.v3_leaf as never));
    expect(v.outcome, v.reason).toBe("verified");
    expect(v.identity).toBe("CN=signer,O=Test,ST=WA,C=US");
  });

  it("refuses a chain without its root (must end in a self-signed root), even at audit", async () => {
    const leaf = leaves.v3_leaf as { key: Buffer; cert: Buffer };
    const v = await verdict(await material({ level: "audit" }), jws(leaf, { chain: [leaf.cert] }));
    expect(v.outcome).toBe("refused");
    expect(v.reason).toContain("is alone in the chain but is not self-signed");
  });

  it("refuses a leaf whose extended key usage is serverAuth", async () => {
    const v = await verdict(await material({ level: "strict" }), jws(leaves.v3_leaf_tls as never));
    expect(v.outcome).toBe("refused");
    expect(v.reason).toContain("extended key usage must not contain 1.3.6.1.5.5.7.3.1");
  });

  it("revocation: a leaf naming a CRL cannot be checked offline: strict refuses, permissive logs, override skip verifies", async () => {
    const bytes = jws(leaves.v3_leaf_crl as never);
    const strict = await verdict(await material({ level: "strict" }), bytes);
    expect(strict.outcome).toBe("refused");
    expect(strict.reason).toContain("revocation validation failed");
    const permissive = await verdict(await material({ level: "permissive" }), bytes);
    expect(permissive.outcome).toBe("logged");
    expect(permissive.reason).toContain("revocation (logged)");
    const skip = await verdict(await material({ level: "strict", override: { revocation: "skip" } }), bytes);
    expect(skip.outcome).toBe("verified");
  });

  it("refuses an alg that does not match the signing key (algorithm substitution)", async () => {
    const v = await verdict(
      await material({ level: "strict" }),
      jws(leaves.v3_leaf as never, { header: { alg: "ES384" } }),
    );
    expect(v.outcome).toBe("refused");
    expect(v.reason).toContain("alg ES384 does not match the signing certificate's key (ES256)");
  });

  it("refuses unknown critical headers, such as a verification plugin", async () => {
    const v = await verdict(
      await material({ level: "audit" }),
      jws(leaves.v3_leaf as never, {
        header: {
          crit: ["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"],
          "io.cncf.notary.verificationPlugin": "com.example.plugin",
        },
      }),
    );
    expect(v.outcome).toBe("refused");
    expect(v.reason).toContain(
      'critical header "io.cncf.notary.verificationPlugin" is not one trustgate understands',
    );
  });

  it("refuses an expiry that is not marked critical, and an expiry before the signing time", async () => {
    const m = await material({ level: "strict" });
    const notCritical = await verdict(
      m,
      jws(leaves.v3_leaf as never, { header: { "io.cncf.notary.expiry": "2999-01-01T00:00:00Z" } }),
    );
    expect(notCritical.reason).toContain('"io.cncf.notary.expiry" must be marked critical');
    const early = await verdict(
      m,
      jws(leaves.v3_leaf as never, {
        header: {
          crit: ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
          "io.cncf.notary.expiry": "2000-01-01T00:00:00Z",
        },
      }),
    );
    expect(early.outcome).toBe("refused");
    expect(early.reason).toContain("the expiry is not after the signing time");
  });

  it("a signingAuthority signature needs a signingAuthority store (authenticity, logged at audit)", async () => {
    const bytes = jws(leaves.v3_leaf as never, {
      header: {
        crit: ["io.cncf.notary.signingScheme", "io.cncf.notary.authenticSigningTime"],
        "io.cncf.notary.signingScheme": "notary.x509.signingAuthority",
        "io.cncf.notary.signingTime": undefined,
        "io.cncf.notary.authenticSigningTime": new Date(Date.now() + 2_000)
          .toISOString()
          .replace(/\.\d+Z$/, "Z"),
      },
    });
    const strict = await verdict(await material({ level: "strict" }), bytes);
    expect(strict.outcome).toBe("refused");
    expect(strict.reason, strict.reason).toContain("names no signingAuthority trust store");
    const audit = await verdict(await material({ level: "audit" }), bytes);
    expect(audit.outcome).toBe("logged");
  });

  it("refuses a store certificate that is neither a CA nor self-signed", async () => {
    const bad = join(dir, "badstore", "x509", "ca", "test");
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, "leaf.pem"), (leaves.v3_leaf as { cert: Buffer }).cert);
    const file = join(dir, "p.json");
    await writeFile(
      file,
      JSON.stringify({
        version: "1.0",
        trustPolicies: [
          {
            name: "p",
            registryScopes: ["*"],
            signatureVerification: { level: "strict" },
            trustStores: ["ca:test"],
            trustedIdentities: ["*"],
          },
        ],
      }),
    );
    await expect(loadNotationMaterial(file, join(dir, "badstore"))).rejects.toThrow(
      /is neither a CA certificate nor a self-signed signing certificate/,
    );
  });
});

describe("Notation: COSE envelopes", () => {
  const COSE = "application/cose";
  it("verifies COSE_Sign1 with ES256 and with PS256", async () => {
    const m = await material({ level: "strict" });
    const es = await verdict(m, cose(leaves.v3_leaf as never), COSE);
    expect(es.outcome, es.reason).toBe("verified");
    expect(es.identity).toBe("CN=signer,O=Test,ST=WA,C=US");
    const ps = await verdict(m, cose(leaves.v3_leaf_rsa as never), COSE);
    expect(ps.outcome, ps.reason).toBe("verified");
  });

  it("refuses a COSE payload changed after signing, even at audit", async () => {
    const tampered = cose(leaves.v3_leaf as never, {
      payload: Buffer.from(JSON.stringify({ targetArtifact: { ...SUBJECT, size: 1 } })),
    });
    const v = await verdict(await material({ level: "audit" }), tampered, COSE);
    expect(v.outcome).toBe("refused");
    expect(v.reason).toContain("the signature does not verify");
  });

  it("refuses a COSE alg that is not the key's, an integer crit label, a signing time that is not tag 1", async () => {
    const m = await material({ level: "strict" });
    const alg = await verdict(m, cose(leaves.v3_leaf as never, { alg: -35 }), COSE);
    expect(alg.reason).toContain("alg ES384 does not match the signing certificate's key (ES256)");
    const crit = await verdict(
      m,
      cose(leaves.v3_leaf as never, {
        header: new Map<unknown, unknown>([[2, ["io.cncf.notary.signingScheme", 4]]]),
      }),
      COSE,
    );
    expect(crit.outcome).toBe("refused");
    expect(crit.reason).toContain("the critical header 4 is not one trustgate understands");
    const time = await verdict(
      m,
      cose(leaves.v3_leaf as never, {
        header: new Map<unknown, unknown>([["io.cncf.notary.signingTime", "2026-01-01"]]),
      }),
      COSE,
    );
    expect(time.reason).toContain("io.cncf.notary.signingTime is not an epoch date/time");
  });

  it("a COSE envelope served as JWS (or the reverse) fails integrity", async () => {
    const m = await material({ level: "strict" });
    expect((await verdict(m, cose(leaves.v3_leaf as never), "application/jose+json")).outcome).toBe(
      "refused",
    );
    expect((await verdict(m, jws(leaves.v3_leaf as never), COSE)).outcome).toBe("refused");
  });
});
