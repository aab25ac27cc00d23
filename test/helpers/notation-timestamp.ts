/**
 * Test-only PKI for Notation signatures with RFC 3161 countersignatures. Everything cryptographic
 * is made by real tools: `openssl ca` issues certificates with chosen validity dates (back-dated
 * ones included), the OpenSSL TSA (`openssl ts -query` / `openssl ts -reply -token_out`) makes the
 * TimeStampTokens over the envelope's signature bytes, and `openssl cms -sign -cades` re-signs a
 * real TSTInfo where OpenSSL's TSA refuses to (a signer without the timeStamping EKU). node:crypto
 * signs the envelopes the way `notation sign` lays them out (as test/unit/notation-chain.test.ts).
 */
import { execFileSync } from "node:child_process";
import { constants, createPrivateKey, sign, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode, Tag } from "cbor2";

const CONFIG = `
[ca]
default_ca = ca_default
[ca_default]
database = index.txt
new_certs_dir = .
serial = ca.serial
default_md = sha256
policy = policy_any
preserve = yes
email_in_dn = no
unique_subject = no
copy_extensions = none
[policy_any]
countryName = optional
stateOrProvinceName = optional
organizationName = optional
commonName = optional
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[v3_leaf]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
[v3_tsa]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
[v3_tsa_ocsp]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
authorityInfoAccess = OCSP;URI:http://ocsp.tsa.test
[v3_tsa_codesigning]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,codeSigning
`;

export interface Issued {
  name: string;
  key: Buffer;
  /** PEM */
  cert: Buffer;
}

export interface TokenOptions {
  /** `accuracy` line of the TSA section, e.g. "secs:1" (default) or "secs:3600" */
  accuracy?: string;
  /** TSA policy OID (default 1.2.3.4.1) */
  policy?: string;
  /** ask for the TSA certificate in the token (`-cert`, default true) */
  certReq?: boolean;
  /** ESS signing certificate hash: sha256 gives signing-certificate-v2, sha1 signing-certificate */
  essCertIdAlg?: "sha1" | "sha256";
  /** extra certificates (PEM file names in the work dir) the TSA adds to the token */
  chainFile?: string;
}

/** A work directory holding one `openssl ca` database for every issuer of the test. */
export class TestPki {
  readonly dir: string;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "notation-tsa-"));
    writeFileSync(join(this.dir, "pki.cnf"), CONFIG);
    writeFileSync(join(this.dir, "index.txt"), "");
    writeFileSync(join(this.dir, "ca.serial"), "1000\n");
  }

  openssl(args: string[]): void {
    execFileSync("openssl", args, { cwd: this.dir, stdio: "pipe" });
  }

  private keyArgs(key: "ec" | "rsa"): string[] {
    return key === "rsa"
      ? ["-newkey", "rsa:2048", "-nodes"]
      : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  }

  /**
   * Issues `name` with subject `subj`, valid from `start` to `end`; self-signed when `issuer` is
   * omitted (then `extensions` is usually v3_ca).
   */
  issue(opts: {
    name: string;
    subj: string;
    extensions: "v3_ca" | "v3_leaf" | "v3_tsa" | "v3_tsa_ocsp" | "v3_tsa_codesigning";
    start: Date;
    end: Date;
    issuer?: Issued;
    key?: "ec" | "rsa";
  }): Issued {
    const { name } = opts;
    this.openssl([
      "req",
      "-config",
      "pki.cnf",
      "-new",
      ...this.keyArgs(opts.key ?? "ec"),
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      opts.subj,
    ]);
    const signer = opts.issuer
      ? ["-cert", `${opts.issuer.name}.crt`, "-keyfile", `${opts.issuer.name}.key`]
      : ["-selfsign", "-keyfile", `${name}.key`];
    this.openssl([
      "ca",
      "-batch",
      "-config",
      "pki.cnf",
      ...signer,
      "-in",
      `${name}.csr`,
      "-out",
      `${name}.crt`,
      "-startdate",
      asn1Time(opts.start),
      "-enddate",
      asn1Time(opts.end),
      "-extensions",
      opts.extensions,
      "-notext",
    ]);
    return {
      name,
      key: readFileSync(join(this.dir, `${name}.key`)),
      cert: readFileSync(join(this.dir, `${name}.crt`)),
    };
  }

  /** A TimeStampToken from the OpenSSL TSA signed by `tsa`, over `data` (SHA-256 imprint). */
  timestamp(data: Buffer, tsa: Issued, opts: TokenOptions = {}): Buffer {
    const id = Math.random().toString(36).slice(2);
    writeFileSync(join(this.dir, `${id}.data`), data);
    writeFileSync(
      join(this.dir, `${id}.tsa.cnf`),
      [
        "[tsa]",
        "default_tsa = tsa_config",
        "[tsa_config]",
        "serial = tsa.serial",
        "crypto_device = builtin",
        "signer_digest = sha256",
        `default_policy = ${opts.policy ?? "1.2.3.4.1"}`,
        "digests = sha256, sha384, sha512",
        `accuracy = ${opts.accuracy ?? "secs:1"}`,
        "ordering = no",
        "tsa_name = no",
        "ess_cert_id_chain = no",
        `ess_cert_id_alg = ${opts.essCertIdAlg ?? "sha256"}`,
        ...(opts.chainFile ? [`certs = ${opts.chainFile}`] : []),
        "",
      ].join("\n"),
    );
    this.openssl([
      "ts",
      "-query",
      "-data",
      `${id}.data`,
      "-sha256",
      ...(opts.certReq === false ? [] : ["-cert"]),
      "-no_nonce",
      "-out",
      `${id}.tsq`,
    ]);
    this.openssl([
      "ts",
      "-reply",
      "-config",
      `${id}.tsa.cnf`,
      "-queryfile",
      `${id}.tsq`,
      "-inkey",
      `${tsa.name}.key`,
      "-signer",
      `${tsa.name}.crt`,
      "-token_out",
      "-out",
      `${id}.tok`,
    ]);
    return readFileSync(join(this.dir, `${id}.tok`));
  }

  /**
   * The TSTInfo of `token`, re-signed as CMS SignedData (eContentType id-ct-TSTInfo, CAdES
   * signing-certificate-v2) by `signer`: how a token from a certificate OpenSSL's TSA would refuse
   * to use is made.
   */
  resign(token: Buffer, signer: Issued): Buffer {
    const id = Math.random().toString(36).slice(2);
    writeFileSync(join(this.dir, `${id}.tok`), token);
    this.openssl([
      "cms",
      "-verify",
      "-noverify",
      "-binary",
      "-inform",
      "DER",
      "-in",
      `${id}.tok`,
      "-out",
      `${id}.tstinfo`,
    ]);
    this.openssl([
      "cms",
      "-sign",
      "-binary",
      "-nodetach",
      "-nosmimecap",
      "-cades",
      "-md",
      "sha256",
      "-econtent_type",
      "1.2.840.113549.1.9.16.1.4",
      "-in",
      `${id}.tstinfo`,
      "-signer",
      `${signer.name}.crt`,
      "-inkey",
      `${signer.name}.key`,
      "-outform",
      "DER",
      "-out",
      `${id}.resigned`,
    ]);
    return readFileSync(join(this.dir, `${id}.resigned`));
  }
}

/** ASN.1 time as `openssl ca -startdate/-enddate` takes it: YYYYMMDDHHMMSSZ. */
function asn1Time(d: Date): string {
  return `${d
    .toISOString()
    .replace(/[-:T]/g, "")
    .replace(/\.\d+Z$/, "")}Z`;
}

export const SUBJECT = {
  digest: `sha256:${"cd".repeat(32)}`,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  size: 4321,
};

/**
 * What the countersignature header gets: a function of the envelope's signature bytes (the token
 * to place), or a raw header value (for malformed-header cases).
 */
export type Countersign = ((signature: Buffer) => Buffer) | { raw: unknown };

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

/** A notary.x509 JWS envelope (ES256) by `leaf`, chain `[leaf, ...chain]`, optionally countersigned. */
export function jwsEnvelope(
  leaf: Issued,
  chain: Issued[],
  opts: { signingTime: Date; countersign?: Countersign },
): Buffer {
  const header = {
    alg: "ES256",
    crit: ["io.cncf.notary.signingScheme"],
    cty: "application/vnd.cncf.notary.payload.v1+json",
    "io.cncf.notary.signingScheme": "notary.x509",
    "io.cncf.notary.signingTime": rfc3339(opts.signingTime),
  };
  const protectedB64 = Buffer.from(JSON.stringify(header)).toString("base64url");
  const payloadB64 = Buffer.from(JSON.stringify({ targetArtifact: SUBJECT })).toString("base64url");
  const signature = sign("sha256", Buffer.from(`${protectedB64}.${payloadB64}`), {
    key: createPrivateKey(leaf.key),
    dsaEncoding: "ieee-p1363",
  });
  const unprotected: Record<string, unknown> = {
    x5c: [leaf, ...chain].map((c) => new X509Certificate(c.cert).raw.toString("base64")),
    "io.cncf.notary.signingAgent": "trustgate-test",
  };
  if (opts.countersign)
    unprotected["io.cncf.notary.timestampSignature"] =
      typeof opts.countersign === "function"
        ? opts.countersign(signature).toString("base64")
        : opts.countersign.raw;
  return Buffer.from(
    JSON.stringify({
      payload: payloadB64,
      protected: protectedB64,
      header: unprotected,
      signature: signature.toString("base64url"),
    }),
  );
}

/** The same as a COSE_Sign1_Tagged envelope (ES256, or PS256 for an RSA leaf). */
export function coseEnvelope(
  leaf: Issued,
  chain: Issued[],
  opts: { signingTime: Date; countersign?: Countersign },
): Buffer {
  const key = createPrivateKey(leaf.key);
  const rsa = key.asymmetricKeyType === "rsa";
  const protectedBytes = encode(
    new Map<unknown, unknown>([
      [1, rsa ? -37 : -7],
      [2, ["io.cncf.notary.signingScheme"]],
      [3, "application/vnd.cncf.notary.payload.v1+json"],
      ["io.cncf.notary.signingScheme", "notary.x509"],
      ["io.cncf.notary.signingTime", new Tag(1, Math.floor(opts.signingTime.getTime() / 1000))],
    ]),
  );
  const payload = new Uint8Array(Buffer.from(JSON.stringify({ targetArtifact: SUBJECT })));
  const toBeSigned = encode(["Signature1", protectedBytes, new Uint8Array(0), payload]);
  const signature = rsa
    ? sign("sha256", toBeSigned, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
    : sign("sha256", toBeSigned, { key, dsaEncoding: "ieee-p1363" });
  const unprotected = new Map<unknown, unknown>([
    [33, [leaf, ...chain].map((c) => new Uint8Array(new X509Certificate(c.cert).raw))],
    ["io.cncf.notary.signingAgent", "trustgate-test"],
  ]);
  if (opts.countersign)
    unprotected.set(
      "io.cncf.notary.timestampSignature",
      typeof opts.countersign === "function"
        ? new Uint8Array(opts.countersign(signature))
        : opts.countersign.raw,
    );
  return Buffer.from(encode(new Tag(18, [protectedBytes, unprotected, payload, new Uint8Array(signature)])));
}
