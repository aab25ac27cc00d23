/**
 * cosign legacy signatures with Sigstore material (cosign-legacy-sigstore.ts): a keyless
 * signature made by cosign against the public-good Fulcio and Rekor (test/fixtures/signatures/
 * cosign-legacy/keyless-rekor-valid, from containers/image's test data), verified offline against
 * the public-good trusted root, and its tampered forms; then key-signed legacy signatures under
 * `requireTlog` with a Rekor entry made by our own signer (a Rekor key of our own in a trusted
 * root of our own: the fixtures hold no key-signed legacy signature with a Rekor bundle), in
 * addition to the real one, never instead.
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { canonicalize } from "@tufjs/canonical-json";
import { describe, expect, it } from "vitest";
import type { SignatureFetcher } from "../../src/signatures/discover.js";
import type { CosignIdentity, LoadedCosignRule } from "../../src/signatures/types.js";
import { SignatureVerifier } from "../../src/signatures/verifier.js";
import { policyRequiring, testCosignRule } from "../helpers/cosign-rule.js";
import { layoutFetcher, OciLayout } from "../helpers/oci-layout.js";
import { tempDir } from "../helpers/process.js";

const FIXTURES = resolve("test/fixtures/signatures");
const CASE = join(FIXTURES, "cosign-legacy/keyless-rekor-valid");
const PUBLIC_GOOD_ROOT = join(
  FIXTURES,
  "sigstore-bundle/cosign-v3-oci-attestation/material/trusted_root.json",
);
const expected = JSON.parse(readFileSync(join(CASE, "expected.json"), "utf8")) as {
  subject: { digest: string; signedAs: string };
  expectations: Array<{ id: string; expect: "pass" | "fail"; material: { issuer: string; subject: string } }>;
};
const SIGNED = expected.subject.digest;
const material = (f: string) => readFileSync(join(CASE, "material", f), "utf8");
const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const ref = (path: string) => ({ written: path.split("/").pop() as string, path, line: 7 });
const identity = (over: Partial<CosignIdentity>): CosignIdentity => ({
  issuer: undefined,
  subject: undefined,
  subjectPattern: undefined,
  line: 8,
  ...over,
});

const rule = testCosignRule;
const policyWith = (r: LoadedCosignRule) => policyRequiring([r]);

async function judge(r: LoadedCosignRule, fetcher: SignatureFetcher, digest = SIGNED) {
  const verifier = new SignatureVerifier({ fetcherFor: () => fetcher });
  return verifier.verify(policyWith(r), { registry: "docker.io", repository: "acme/app", digest });
}

/** A registry holding one `.sig` image for `digest`, one layer per {payload, annotations}. */
function sigRegistry(
  digest: string,
  layers: Array<{ payload: Buffer; annotations: Record<string, string> }>,
): SignatureFetcher {
  const blobs = new Map(layers.map((l) => [sha(l.payload), l.payload]));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", size: 2, digest: sha("{}") },
      layers: layers.map((l) => ({
        mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
        size: l.payload.length,
        digest: sha(l.payload),
        annotations: l.annotations,
      })),
    }),
  );
  return {
    async manifest(_r, reference) {
      return reference === `sha256-${digest.slice(7)}.sig` ? manifest : undefined;
    },
    async referrers() {
      return "unsupported" as const;
    },
    async blob(_r, d) {
      const b = blobs.get(d);
      if (!b) throw new Error(`no blob ${d}`);
      return b;
    },
  };
}

/** The fixture's layer, with some annotations changed. */
function fixtureLayer(change: (a: Record<string, string>) => void = () => {}) {
  const annotations: Record<string, string> = {
    "dev.cosignproject.cosign/signature": material("rekor-sig"),
    "dev.sigstore.cosign/certificate": material("fulcio-cert"),
    "dev.sigstore.cosign/chain": material("fulcio-chain"),
    "dev.sigstore.cosign/bundle": material("rekor-set"),
  };
  change(annotations);
  return { payload: Buffer.from(material("rekor-payload")), annotations };
}

const ISSUER = "https://github.com/login/oauth";
const keylessRule = (identities: CosignIdentity[]) =>
  rule({ trustedRoot: ref(PUBLIC_GOOD_ROOT), identities, dockerReferences: [expected.subject.signedAs] });

describe("cosign keyless legacy signature made with the public-good Fulcio and Rekor", () => {
  const layout = layoutFetcher(new OciLayout(CASE));

  it.each(expected.expectations)("$id: $expect", async (e) => {
    const r = await keylessRule([identity({ issuer: e.material.issuer, subject: e.material.subject })]);
    const v = await judge(r, layout);
    expect(v?.satisfied, v?.summary).toBe(e.expect === "pass");
    if (e.expect === "pass") {
      expect(v?.summary).toContain("identity mitr@redhat.com (issuer https://github.com/login/oauth)");
      expect(v?.summary).toContain("Rekor entry 8949589");
    } else
      expect(v?.summary).toContain(
        "signed by mitr@redhat.com (issuer https://github.com/login/oauth), not an identity",
      );
  });

  it("issuer and subject by pattern, anchored: a pattern matching only part of a name does not count", async () => {
    const ok = await keylessRule([
      identity({ issuerPattern: "https://github\\.com/login/.+", subjectPattern: "[a-z]+@redhat\\.com" }),
    ]);
    expect((await judge(ok, layout))?.satisfied).toBe(true);
    for (const partial of [
      identity({ issuer: ISSUER, subjectPattern: "redhat\\.com" }),
      identity({ issuerPattern: "github\\.com", subject: "mitr@redhat.com" }),
    ]) {
      const v = await judge(await keylessRule([partial]), layout);
      expect(v?.satisfied, JSON.stringify(partial)).toBe(false);
    }
  });

  it("the same signature served for another digest: the payload names the signed one", async () => {
    const other = sha("another manifest");
    const r = await keylessRule([identity({ issuer: ISSUER, subject: "mitr@redhat.com" })]);
    const v = await judge(r, sigRegistry(other, [fixtureLayer()]), other);
    expect(v?.satisfied).toBe(false);
    expect(v?.summary).toContain(`(identity mitr@redhat.com): the payload names ${SIGNED}, not ${other}`);
  });

  it.each([
    [
      "without its Rekor bundle the ten-minute certificate cannot be dated",
      (a: Record<string, string>) => delete a["dev.sigstore.cosign/bundle"],
      "no Rekor bundle (dev.sigstore.cosign/bundle) to date the certificate",
    ],
    [
      "an integrated time moved by a minute (inside the certificate's validity): the SET fails",
      (a: Record<string, string>) => {
        a["dev.sigstore.cosign/bundle"] = (a["dev.sigstore.cosign/bundle"] as string).replace(
          '"integratedTime":1670870899',
          '"integratedTime":1670870959',
        );
      },
      "TLOG_INCLUSION_PROMISE_ERROR",
    ],
    [
      "another signature (the Rekor entry names the original)",
      (a: Record<string, string>) => {
        const sig = Buffer.from(a["dev.cosignproject.cosign/signature"] as string, "base64");
        sig.writeUInt8((sig.at(-1) as number) ^ 1, sig.length - 1);
        a["dev.cosignproject.cosign/signature"] = sig.toString("base64");
      },
      "TLOG_BODY_ERROR",
    ],
    [
      "another certificate (the bundle fixture's Fulcio certificate for cody@soyland.com)",
      (a: Record<string, string>) => {
        const bundle = JSON.parse(
          readFileSync(
            join(FIXTURES, "sigstore-bundle/cosign-v3-oci-attestation/material/bundle.sigstore.json"),
            "utf8",
          ),
        ) as { verificationMaterial: { certificate: { rawBytes: string } } };
        const der = bundle.verificationMaterial.certificate.rawBytes;
        a["dev.sigstore.cosign/certificate"] =
          `-----BEGIN CERTIFICATE-----\n${der.match(/.{1,64}/g)?.join("\n")}\n-----END CERTIFICATE-----\n`;
      },
      "logged for another signer than this layer's",
    ],
    [
      "a Rekor bundle that is not JSON",
      (a: Record<string, string>) => {
        a["dev.sigstore.cosign/bundle"] = "{not json";
      },
      "its Rekor bundle annotation is not JSON",
    ],
  ])("refused: %s", async (_name, change, reason) => {
    const r = await keylessRule([identity({ issuer: ISSUER, subject: "mitr@redhat.com" })]);
    const v = await judge(r, sigRegistry(SIGNED, [fixtureLayer(change)]));
    expect(v?.satisfied).toBe(false);
    expect(v?.summary).toContain(reason);
  });

  it("a rule with keys only does not accept it, and says the rule lists no identities", async () => {
    const r = await rule({ keys: [ref(join(FIXTURES, "cosign-legacy/key-valid/material/cosign.pub"))] });
    const v = await judge(r, layout);
    expect(v?.satisfied).toBe(false);
    expect(v?.summary).toContain(
      "signed keyless (a certificate annotation), and the rule lists no identities",
    );
  });
});

describe("key-signed legacy signatures under requireTlog (own signer, own Rekor key)", () => {
  const digest = sha("a signed manifest");
  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { "docker-reference": "docker.io/acme/app" },
        image: { "docker-manifest-digest": digest },
        type: "cosign container image signature",
      },
      optional: null,
    }),
  );
  const signer = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rekor = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = (k: KeyObject) => k.export({ type: "spki", format: "der" });
  const pem = (k: KeyObject) => k.export({ type: "spki", format: "pem" }).toString();
  const logID = createHash("sha256").update(spki(rekor.publicKey)).digest("hex");
  const signature = sign("sha256", payload, signer.privateKey);

  /** Rekor's answer for a hashedrekord entry naming `entryKey`, signed by `setKey`. */
  function rekorBundle(entryKey: KeyObject, setKey: KeyObject = rekor.privateKey): string {
    const body = Buffer.from(
      canonicalize({
        apiVersion: "0.0.1",
        kind: "hashedrekord",
        spec: {
          data: { hash: { algorithm: "sha256", value: sha(payload).slice(7) } },
          signature: {
            content: signature.toString("base64"),
            publicKey: { content: Buffer.from(pem(entryKey)).toString("base64") },
          },
        },
      }),
    ).toString("base64");
    const entry = { body, integratedTime: 1_700_000_000, logIndex: 42, logID };
    const set = sign("sha256", Buffer.from(canonicalize(entry)), setKey).toString("base64");
    return JSON.stringify({ SignedEntryTimestamp: set, Payload: entry });
  }

  async function tlogRule(): Promise<LoadedCosignRule> {
    const dir = await tempDir("tg-legacy-tlog-");
    const keyFile = join(dir, "cosign.pub");
    await writeFile(keyFile, pem(signer.publicKey));
    const rootFile = join(dir, "trusted_root.json");
    await writeFile(
      rootFile,
      JSON.stringify({
        mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        tlogs: [
          {
            baseUrl: "https://rekor.test",
            hashAlgorithm: "SHA2_256",
            publicKey: {
              rawBytes: spki(rekor.publicKey).toString("base64"),
              keyDetails: "PKIX_ECDSA_P256_SHA_256",
              validFor: { start: "2020-01-01T00:00:00Z" },
            },
            logId: { keyId: Buffer.from(logID, "hex").toString("base64") },
          },
        ],
        certificateAuthorities: [],
        ctlogs: [],
        timestampAuthorities: [],
      }),
    );
    return rule({ keys: [ref(keyFile)], trustedRoot: ref(rootFile), requireTlog: true });
  }

  const layer = (bundle?: string) => ({
    payload,
    annotations: {
      "dev.cosignproject.cosign/signature": signature.toString("base64"),
      ...(bundle ? { "dev.sigstore.cosign/bundle": bundle } : {}),
    },
  });

  it("with a Rekor entry for this signature, key and payload: accepted, naming the entry", async () => {
    const v = await judge(
      await tlogRule(),
      sigRegistry(digest, [layer(rekorBundle(signer.publicKey))]),
      digest,
    );
    expect(v?.satisfied, v?.summary).toBe(true);
    expect(v?.summary).toContain("by key cosign.pub (ecdsa-p256), Rekor entry 42");
  });

  it("an entry for the same signature and payload under another key does not count", async () => {
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const v = await judge(
      await tlogRule(),
      sigRegistry(digest, [layer(rekorBundle(other.publicKey))]),
      digest,
    );
    expect(v?.satisfied).toBe(false);
    expect(v?.summary).toContain("its Rekor entry 42 was logged for another signer than this layer's");
  });

  it("no Rekor bundle, or a SET by a key the trusted root does not hold: refused", async () => {
    const none = await judge(await tlogRule(), sigRegistry(digest, [layer()]), digest);
    expect(none?.satisfied).toBe(false);
    expect(none?.summary).toContain("requireTlog: the layer has no Rekor bundle");
    const stranger = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const forged = await judge(
      await tlogRule(),
      sigRegistry(digest, [layer(rekorBundle(signer.publicKey, stranger.privateKey))]),
      digest,
    );
    expect(forged?.satisfied).toBe(false);
    expect(forged?.summary).toContain("TLOG_INCLUSION_PROMISE_ERROR");
  });
});
