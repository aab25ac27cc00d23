/**
 * The Notation plug (src/signatures/notation/plug.ts) over the policy layer's discovery
 * (src/signatures/discover.ts) on the notation fixtures' OCI layouts, read as from a registry
 * without the referrers API (distribution 2.8): the `sha256-<hex>` index, the signature manifest
 * and the envelope blob, each by digest and checked, then judged by the trust policy.
 */
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { discoverSignatures, NOTATION_SIGNATURE } from "../../src/signatures/discover.js";
import { notationVerifierPlug } from "../../src/signatures/notation/plug.js";
import { layoutFetcher, OciLayout } from "../helpers/oci-layout.js";

const FIXTURES = resolve("test/fixtures/signatures/notation");
const SUBJECT = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";
const ENVELOPE = "sha256:c9af07e038b2b1a463e648986ad7273157511ffeba0b689f33e5472bae471f50";

async function judge(
  caseName: string,
  policy: string,
  opts: { store?: string; digest?: string; tamper?: (d: string, b: Buffer) => Buffer } = {},
) {
  const caseDir = join(FIXTURES, caseName);
  const { material, fingerprint } = await notationVerifierPlug.loadMaterial(
    join(caseDir, "material", "trustpolicies", policy),
    join(caseDir, "material", opts.store ?? "truststore"),
  );
  expect(fingerprint).toMatch(/^[0-9a-f]{64}$/);
  const digest = opts.digest ?? SUBJECT;
  const fetcher = layoutFetcher(new OciLayout(caseDir), opts.tamper);
  const signatures = () =>
    discoverSignatures(fetcher, "e2e", digest, {
      legacy: false,
      artifactTypes: [NOTATION_SIGNATURE],
    });
  return {
    ...(await notationVerifierPlug.verify({ material, image: "127.0.0.1:5000/e2e", digest, signatures })),
    fetcher,
  };
}

describe("Notation plug over discovery", () => {
  it("jws-valid: satisfied by the e2e signer, found through the sha256-<hex> index", async () => {
    const r = await judge("jws-valid", "trustpolicy.json");
    expect(r.satisfied, r.detail).toBe(true);
    expect(r.detail).toContain('signed by "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"');
    expect(r.fetcher.requests).toContain(`blob ${ENVELOPE}`);
  });

  it("jws-valid with the wrong trust store: not satisfied, says why", async () => {
    const r = await judge("jws-valid", "trustpolicy.json", { store: "truststore-wrong-cert" });
    expect(r.satisfied).toBe(false);
    expect(r.detail).toContain("does not contain any trusted certificate");
  });

  it("audit with the wrong trust store: satisfied, and the detail says what was only logged", async () => {
    const r = await judge("jws-valid", "audit_trustpolicy.json", { store: "truststore-wrong-cert" });
    expect(r.satisfied).toBe(true);
    expect(r.detail).toContain("authenticity (logged)");
  });

  it("jws-invalid-signature: not satisfied even at audit; skip is satisfied", async () => {
    expect((await judge("jws-invalid-signature", "audit_trustpolicy.json")).satisfied).toBe(false);
    const skip = await judge("jws-invalid-signature", "skip_trustpolicy.json");
    expect(skip.satisfied).toBe(true);
    expect(skip.detail).toContain("skip");
  });

  it("skip fetches nothing: a registry that fails every request does not fail a skipped image", async () => {
    const caseDir = join(FIXTURES, "jws-invalid-signature");
    const { material } = await notationVerifierPlug.loadMaterial(
      join(caseDir, "material", "trustpolicies", "skip_trustpolicy.json"),
      join(caseDir, "material", "truststore"),
    );
    let asked = 0;
    const broken = async () => {
      asked++;
      throw new Error("registry unreachable");
    };
    const skip = await notationVerifierPlug.verify({
      material,
      image: "127.0.0.1:5000/e2e",
      digest: SUBJECT,
      signatures: broken,
    });
    expect(skip.satisfied, skip.detail).toBe(true);
    expect(asked).toBe(0);
  });

  it("jws-expired-signature: strict refuses, permissive accepts with the expiry logged", async () => {
    expect((await judge("jws-expired-signature", "trustpolicy.json")).satisfied).toBe(false);
    const permissive = await judge("jws-expired-signature", "permissive_trustpolicy.json");
    expect(permissive.satisfied).toBe(true);
    expect(permissive.detail).toContain("expiry (logged)");
  });

  it("a digest without Notation signatures is not satisfied", async () => {
    const r = await judge("jws-valid", "trustpolicy.json", { digest: `sha256:${"0".repeat(64)}` });
    expect(r.satisfied).toBe(false);
    expect(r.detail).toContain("no Notation signature is associated");
  });

  it("an envelope blob the registry alters is not a signature (its digest is checked)", async () => {
    const r = await judge("jws-valid", "trustpolicy.json", {
      tamper: (d, b) => (d === ENVELOPE ? Buffer.concat([b, Buffer.from(" ")]) : b),
    });
    expect(r.satisfied).toBe(false);
    expect(r.detail).toContain("unusable");
  });
});
