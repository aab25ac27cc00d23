/**
 * Every cosign-legacy and sigstore-bundle expectation of the fixtures (test/fixtures/signatures/
 * <case>/expected.json: signatures made by the real tools), verified from the OCI layout with the
 * case's material, plus the verdict cache's key (a rotated key is never answered from cache).
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import type { CosignRuleSpec, LoadedCosignRule } from "../../src/signatures/types.js";
import { SignatureVerifier } from "../../src/signatures/verifier.js";
import { policyRequiring, testCosignRule } from "../helpers/cosign-rule.js";
import { layoutFetcher, OciLayout } from "../helpers/oci-layout.js";

const FIXTURES = resolve("test/fixtures/signatures");
const SIGNED_AS = "192.168.64.2:5000/cosign-signed-single-sample";

interface Expectation {
  id: string;
  expect: "pass" | "fail";
  verify: { digest?: string; imageReference?: string };
  material: Record<string, unknown>;
}

const rule = (_caseDir: string, spec: Partial<CosignRuleSpec>) => testCosignRule(spec);

function fileRef(caseDir: string, rel: string) {
  return { written: rel.split("/").pop() as string, path: join(caseDir, rel), line: 7 };
}

const policyWith = (r: LoadedCosignRule, require: "all" | "any" = "all") => policyRequiring([r], require);

async function judge(caseName: string, r: LoadedCosignRule, image: string, digest: string) {
  const layout = new OciLayout(join(FIXTURES, caseName));
  const verifier = new SignatureVerifier({ fetcherFor: () => layoutFetcher(layout) });
  const [registry, ...rest] = image.split("/");
  return verifier.verify(policyWith(r), { registry: registry as string, repository: rest.join("/"), digest });
}

/** The repository the image is served as: the fixture's own name, or the expectation's other name. */
function imageFor(e: Expectation): string {
  const ref = e.verify.imageReference;
  if (!ref) return "docker.io/acme/app";
  const name = ref.split(":")[0] as string;
  return name.includes(".") ? name : `docker.io/${name}`;
}

describe.each(["key-valid", "key-two-valid-signatures", "key-unknown-key-only", "key-modified-manifest"])(
  "cosign legacy fixture %s",
  (caseName) => {
    const caseDir = join(FIXTURES, "cosign-legacy", caseName);
    const expected = JSON.parse(readFileSync(join(caseDir, "expected.json"), "utf8")) as {
      subject: { digest: string };
      expectations: Expectation[];
    };
    it.each(expected.expectations.filter((e) => e.id !== "match-exact-tag"))("$id: $expect", async (e) => {
      const keys = (e.material.keys as string[]).map((k) => fileRef(caseDir, k));
      // signed as 192.168.64.2:5000/...: the image is served under another name, so the alias is
      // listed, except where the expectation is that the name does not match (imageReference)
      const dockerReferences = e.verify.imageReference ? [] : [SIGNED_AS];
      const r = await rule(caseDir, { keys, dockerReferences });
      const verdict = await judge(
        `cosign-legacy/${caseName}`,
        r,
        imageFor(e),
        e.verify.digest ?? expected.subject.digest,
      );
      expect(verdict?.satisfied, verdict?.summary).toBe(e.expect === "pass");
      expect(verdict?.summary).toContain("signatures rule 1 (cosign) line 7");
      if (e.expect === "pass") expect(verdict?.summary).toContain("by key cosign.pub (ecdsa-p256)");
    });
  },
);

describe("cosign legacy: the docker-reference rule", () => {
  const caseDir = join(FIXTURES, "cosign-legacy/key-valid");
  const digest = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";
  it("served under the name it was signed for, no alias is needed; any other name needs one", async () => {
    const r = await rule(caseDir, { keys: [fileRef(caseDir, "material/cosign.pub")] });
    expect((await judge("cosign-legacy/key-valid", r, SIGNED_AS, digest))?.satisfied).toBe(true);
    const other = await judge("cosign-legacy/key-valid", r, "docker.io/acme/app", digest);
    expect(other?.satisfied).toBe(false);
    expect(other?.summary).toContain(`signed for repository ${SIGNED_AS}, not docker.io/acme/app`);
  });
  it("requireTlog: a legacy signature without a verified Rekor proof does not count", async () => {
    const r = await rule(caseDir, {
      keys: [fileRef(caseDir, "material/cosign.pub")],
      trustedRoot: fileRef(FIXTURES, "sigstore-bundle/cosign-v3-oci-attestation/material/trusted_root.json"),
      requireTlog: true,
    });
    const v = await judge("cosign-legacy/key-valid", r, SIGNED_AS, digest);
    expect(v?.satisfied).toBe(false);
    expect(v?.summary).toContain("requireTlog");
  });
});

describe("sigstore bundle fixture cosign-v3-oci-attestation", () => {
  const caseDir = join(FIXTURES, "sigstore-bundle/cosign-v3-oci-attestation");
  const expected = JSON.parse(readFileSync(join(caseDir, "expected.json"), "utf8")) as {
    expectations: Expectation[];
  };
  const root = fileRef(caseDir, "material/trusted_root.json");
  const issuer = "https://github.com/login/oauth";
  it.each(expected.expectations)("$id: $expect", async (e) => {
    const m = e.material as Record<string, string>;
    // cosign's --certificate-identity(-regexp); the issuer is matched exactly (cosign's regexp ".*" = the certificate's)
    const identity =
      m.certificateIdentity !== undefined
        ? {
            issuer: m.certificateOidcIssuer ?? issuer,
            subject: m.certificateIdentity,
            subjectPattern: undefined,
            line: 8,
          }
        : {
            issuer,
            subject: undefined,
            subjectPattern:
              m.certificateIdentityRegexp === ".*" ? ".*" : `.*${m.certificateIdentityRegexp}.*`,
            line: 8,
          };
    const r = await rule(caseDir, { trustedRoot: root, identities: [identity], requireTlog: true });
    const v = await judge(
      "sigstore-bundle/cosign-v3-oci-attestation",
      r,
      "docker.io/acme/app",
      e.verify.digest as string,
    );
    expect(v?.satisfied, v?.summary).toBe(e.expect === "pass");
    if (e.expect === "pass")
      expect(v?.summary).toContain(
        "signed by identity cody@soyland.com (issuer https://github.com/login/oauth)",
      );
    if (e.id === "other-image-same-bundle") expect(v?.summary).toContain("do not include sha256:3d56b3c0");
  });

  it("a wrong issuer does not count, and a key rule does not accept a keyless bundle", async () => {
    const wrongIssuer = await rule(caseDir, {
      trustedRoot: root,
      identities: [
        {
          issuer: "https://accounts.google.com",
          subject: "cody@soyland.com",
          subjectPattern: undefined,
          line: 8,
        },
      ],
    });
    const digest = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";
    const v = await judge(
      "sigstore-bundle/cosign-v3-oci-attestation",
      wrongIssuer,
      "docker.io/acme/app",
      digest,
    );
    expect(v?.satisfied).toBe(false);
    expect(v?.summary).toContain("not an identity the rule lists");
    const keyOnly = await rule(caseDir, {
      keys: [fileRef(FIXTURES, "cosign-legacy/key-valid/material/cosign.pub")],
    });
    expect(
      (await judge("sigstore-bundle/cosign-v3-oci-attestation", keyOnly, "docker.io/acme/app", digest))
        ?.satisfied,
    ).toBe(false);
  });
});

describe("verdict cache", () => {
  const caseDir = join(FIXTURES, "cosign-legacy/key-valid");
  const digest = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";
  it("a repeat is answered from cache; a rotated key (new fingerprint) is verified again", async () => {
    const layout = new OciLayout(caseDir);
    const fetcher = layoutFetcher(layout);
    const verifier = new SignatureVerifier({ fetcherFor: () => fetcher });
    const good = await rule(caseDir, { keys: [fileRef(caseDir, "material/cosign.pub")] });
    const rotated = await rule(caseDir, { keys: [fileRef(caseDir, "material/cosign2.pub")] });
    const target = { registry: "192.168.64.2:5000", repository: "cosign-signed-single-sample", digest };
    expect((await verifier.verify(policyWith(good), target))?.satisfied).toBe(true);
    // cold: one lookup (the .sig tag) and its payload; no referrers query when the .sig satisfies the rule
    expect(fetcher.requests).toEqual([
      `manifest sha256-${digest.slice(7)}.sig`,
      "blob sha256:cf482371b51a7633b3f02e29b87fc3f4a18b3f127af61cb114af5f2c04fcdd75",
    ]);
    const n = fetcher.requests.length;
    expect((await verifier.verify(policyWith(good), target))?.satisfied).toBe(true);
    expect(fetcher.requests.length).toBe(n);
    expect((await verifier.verify(policyWith(rotated), target))?.satisfied).toBe(false);
    expect(fetcher.requests.length).toBeGreaterThan(n);
  });

  it("a verdict expires: a refusal is looked at again after its short TTL", async () => {
    let now = 1_000_000;
    const fetcher = layoutFetcher(new OciLayout(caseDir));
    const verifier = new SignatureVerifier({ fetcherFor: () => fetcher, now: () => now });
    const wrong = await rule(caseDir, { keys: [fileRef(caseDir, "material/cosign2.pub")] });
    const target = { registry: "192.168.64.2:5000", repository: "cosign-signed-single-sample", digest };
    const first = await verifier.verify(policyWith(wrong), target);
    const n = fetcher.requests.length;
    now = (first?.until ?? 0) + 1;
    await verifier.verify(policyWith(wrong), target);
    expect(fetcher.requests.length).toBeGreaterThan(n);
  });
});
