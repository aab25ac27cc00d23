/**
 * A `notation:` rule from a policy file to a verdict: loadPolicyDir reads the trust policy and
 * trust store through the plug, SignatureVerifier discovers the signatures in the fixture layout
 * (as from distribution 2.8: the sha256-<hex> index) and the Notation verifier judges them.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

import { formatProblem, loadPolicyDir } from "../../src/policy/index.js";
import type { SignatureFetcher } from "../../src/signatures/discover.js";
import { SignatureVerifier } from "../../src/signatures/verifier.js";
import { layoutFetcher, OciLayout } from "../helpers/oci-layout.js";
import { tempDir } from "../helpers/process.js";

const FIXTURES = resolve("test/fixtures/signatures/notation");
const SUBJECT = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";

async function policySet(caseName: string, trustPolicy: string, trustStore = "truststore") {
  const material = join(FIXTURES, caseName, "material");
  const dir = await tempDir("notation-policy");
  await mkdir(join(dir, "policies"));
  await writeFile(
    join(dir, "policies", "e2e.yaml"),
    `name: e2e
match: ["127.0.0.1:5000/e2e"]
mode: enforce
signatures:
  rules:
    - notation:
        trustPolicy: ${join(material, "trustpolicies", trustPolicy)}
        trustStore: ${join(material, trustStore)}
`,
  );
  return loadPolicyDir(join(dir, "policies"));
}

async function judge(
  caseName: string,
  trustPolicy: string,
  trustStore?: string,
  fetcher: SignatureFetcher = layoutFetcher(new OciLayout(join(FIXTURES, caseName))),
) {
  const loaded = await policySet(caseName, trustPolicy, trustStore);
  expect(loaded.problems.map(formatProblem)).toEqual([]);
  const policy = loaded.set?.policies.find((p: { name: string }) => p.name === "e2e");
  expect(policy).toBeDefined();
  const verifier = new SignatureVerifier({ fetcherFor: () => fetcher });
  return verifier.verify(policy as never, { registry: "127.0.0.1:5000", repository: "e2e", digest: SUBJECT });
}

describe("notation rule: policy file -> SignatureVerifier -> Notation verifier", () => {
  it("jws-valid is satisfied and the summary names the signer", async () => {
    const v = await judge("jws-valid", "trustpolicy.json");
    expect(v?.satisfied, v?.summary).toBe(true);
    expect(v?.summary).toContain('signed by "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"');
  });

  it("wrong identity and untrusted certificate are refused with the reason", async () => {
    const id = await judge("jws-valid", "invalid_trusted_identity_trustpolicy.json");
    expect(id?.satisfied).toBe(false);
    expect(id?.summary).toContain("does not match the X.509 trusted identities");
    const cert = await judge("jws-valid", "trustpolicy.json", "truststore-wrong-cert");
    expect(cert?.satisfied).toBe(false);
    expect(cert?.summary).toContain("signatures rule 1 (notation)");
  });

  it("tampered and expired signatures are refused; a different material gives a different cache key", async () => {
    expect((await judge("jws-invalid-signature", "trustpolicy.json"))?.satisfied).toBe(false);
    expect((await judge("jws-expired-signature", "trustpolicy.json"))?.satisfied).toBe(false);
    const a = await policySet("jws-valid", "trustpolicy.json");
    const b = await policySet("jws-valid", "trustpolicy.json", "truststore-wrong-cert");
    const fp = (s: typeof a) => s.set?.policies.find((p: { name: string }) => p.name === "e2e")?.signatures;
    expect((fp(a) as { fingerprint: string }).fingerprint).not.toBe(
      (fp(b) as { fingerprint: string }).fingerprint,
    );
  });

  it("level skip fetches nothing: a registry failing every request does not fail a skipped image", async () => {
    const asked: string[] = [];
    const fail = (what: string) => async () => {
      asked.push(what);
      throw new Error("registry unreachable");
    };
    const broken: SignatureFetcher = {
      manifest: fail("manifest"),
      referrers: fail("referrers"),
      blob: fail("blob"),
    };
    const v = await judge("jws-invalid-signature", "skip_trustpolicy.json", undefined, broken);
    expect(v?.satisfied, v?.summary).toBe(true);
    expect(v?.summary).toContain("skip");
    expect(asked).toEqual([]);
    // the same broken registry does fail a verifying level (fail closed)
    const strict = await judge("jws-valid", "trustpolicy.json", undefined, broken);
    expect(strict?.satisfied).toBe(false);
    expect(strict?.summary).toContain("registry unreachable");
  });

  it("a bad trust policy is a policy problem naming the file", async () => {
    const loaded = await policySet("jws-valid", "../certs/e2e.crt");
    expect(loaded.set).toBeUndefined();
    expect(loaded.problems.map(formatProblem).join("\n")).toMatch(
      /e2e\.yaml:\d+: signatures\.rules\[1\]\.notation: .*is not valid JSON/,
    );
  });
});
