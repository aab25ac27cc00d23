/**
 * Discovery on the signature fixtures (OCI layouts made by the real tools): the cosign `.sig` tag,
 * the referrers tag schema when the registry has no referrers API, a referrer counted only for the
 * subject it names, and bytes checked against their digests.
 */
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  COSIGN_SIGNATURE_ANNOTATION,
  DiscoveryError,
  discoverSignatures,
  REFERRERS_ABSENT_TTL_MS,
  SIGSTORE_BUNDLE_V03,
} from "../../src/signatures/discover.js";
import type { CosignRuleSpec } from "../../src/signatures/types.js";
import { SignatureVerifier } from "../../src/signatures/verifier.js";
import { policyRequiring, testCosignRule } from "../helpers/cosign-rule.js";
import { layoutFetcher, OciLayout } from "../helpers/oci-layout.js";

const FIXTURES = resolve("test/fixtures/signatures");
const LEGACY = new OciLayout(join(FIXTURES, "cosign-legacy/key-two-valid-signatures"));
const BUNDLE = new OciLayout(join(FIXTURES, "sigstore-bundle/cosign-v3-oci-attestation"));
const SUBJECT = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";
const BUNDLE_SUBJECT = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";
const TAG2 = "sha256:3d56b3c004797db33c7f771a2194d4c43a6cb740954863530b45f471da48cc08";
const ALL = { legacy: true, artifactTypes: [SIGSTORE_BUNDLE_V03] };

describe("signature discovery", () => {
  it("cosign legacy: the sha256-<hex>.sig image and its layers, each with its signature annotation", async () => {
    const fetcher = layoutFetcher(LEGACY);
    const found = await discoverSignatures(fetcher, "repo", SUBJECT, ALL);
    expect(found.legacy?.digest).toBe(
      "sha256:a359aa1e72597773b1874d66871df2c4b334468be1ececbb53937934f5d99bdc",
    );
    expect(found.legacy?.layers).toHaveLength(2);
    expect(found.legacy?.layers.every((l) => l.annotations[COSIGN_SIGNATURE_ANNOTATION])).toBe(true);
    expect(found.referrers).toEqual([]);
    // one .sig lookup and one referrers lookup (API, then the tag schema): nothing else
    expect(fetcher.requests.sort()).toEqual(
      [
        `manifest sha256-${SUBJECT.slice(7)}.sig`,
        `referrers ${SUBJECT}`,
        `manifest sha256-${SUBJECT.slice(7)}`,
      ].sort(),
    );
    const payload = await found.blob(found.legacy?.layers[0] as never);
    expect(JSON.parse(payload.toString()).critical.image["docker-manifest-digest"]).toBe(SUBJECT);
  });

  it("referrers tag schema: the bundle referrer of the subject, fetched by digest", async () => {
    const found = await discoverSignatures(layoutFetcher(BUNDLE), "repo", BUNDLE_SUBJECT, ALL);
    expect(found.referrersVia).toBe("tag");
    expect(found.referrers.map((r) => r.digest)).toEqual([
      "sha256:33fb607c1282b93f97b6f164528e46a735ee58196efdce63654dabb28132abea",
    ]);
    expect(found.referrers[0]?.artifactType).toBe(SIGSTORE_BUNDLE_V03);
    expect(found.legacy).toBeUndefined();
  });

  it("a referrer listed for another subject does not count for this one", async () => {
    // the tag2 fallback index lists a referrer whose subject is tag2's digest: fine for tag2 ...
    const forTag2 = await discoverSignatures(layoutFetcher(BUNDLE), "repo", TAG2, ALL);
    expect(forTag2.referrers).toHaveLength(1);
    // ... but served as the index of the signed subject, it is ignored
    const layout = layoutFetcher(BUNDLE);
    const swapped = {
      ...layout,
      manifest: (repo: string, ref: string) =>
        layout.manifest(repo, ref === `sha256-${BUNDLE_SUBJECT.slice(7)}` ? `sha256-${TAG2.slice(7)}` : ref),
    };
    const found = await discoverSignatures(swapped, "repo", BUNDLE_SUBJECT, ALL);
    expect(found.referrers).toEqual([]);
  });

  it("bytes that do not hash to their digest are a discovery error", async () => {
    const bundleLayer = "sha256:a6c1fc36d2a9d6c7844bdb3caf052947fc48b4360e421d637d4647db40d4f9b0";
    const flip = (d: string, b: Buffer) =>
      d === bundleLayer || d.endsWith("abea") ? Buffer.concat([b, Buffer.from(" ")]) : b;
    await expect(
      discoverSignatures(layoutFetcher(BUNDLE, flip), "repo", BUNDLE_SUBJECT, ALL),
    ).rejects.toThrow(DiscoveryError);
  });

  it("nothing asked for, nothing fetched", async () => {
    const fetcher = layoutFetcher(BUNDLE);
    const found = await discoverSignatures(fetcher, "repo", BUNDLE_SUBJECT, {
      legacy: false,
      artifactTypes: [],
    });
    expect(found.referrers).toEqual([]);
    expect(fetcher.requests).toEqual([]);
  });
});

/**
 * The lookup budget (issue 15: a cold pull with a cosign rule costs one referrers or `.sig`
 * lookup): the verifier looks only where the rule can accept a signature, remembers that a
 * registry has no referrers API, and starts where the repository's last signature was.
 * "Lookups" are the discovery queries (a tag or the referrers API), not the by-digest fetches of
 * the artifacts they name. The fake registry is the layout, without a referrers API (as 2.8).
 */
describe("lookup budget of a cold verification", () => {
  const caseDir = join(FIXTURES, "sigstore-bundle/cosign-v3-oci-attestation");
  const ref = (rel: string) => ({ written: rel.split("/").pop() as string, path: rel, line: 7 });
  const identity = {
    issuer: "https://github.com/login/oauth",
    subject: "cody@soyland.com",
    subjectPattern: undefined,
    line: 8,
  };
  const cosignPolicy = async (spec: Partial<CosignRuleSpec>) => policyRequiring([await testCosignRule(spec)]);
  const lookups = (requests: string[]) =>
    requests.filter((r) => r.startsWith("referrers ") || /^manifest sha256-/.test(r));
  const target = (digest: string) => ({ registry: "reg.test", repository: "acme/app", digest });

  it("keyless rule: referrers first; the absent referrers API is asked once, then the tag schema alone", async () => {
    let now = 1_000_000;
    const fetcher = layoutFetcher(BUNDLE);
    const verifier = new SignatureVerifier({ fetcherFor: () => fetcher, now: () => now });
    const policy = await cosignPolicy({
      trustedRoot: ref(join(caseDir, "material/trusted_root.json")),
      identities: [identity],
    });
    const first = await verifier.verify(policy, target(BUNDLE_SUBJECT));
    expect(first?.satisfied, first?.summary).toBe(true);
    expect(lookups(fetcher.requests)).toEqual([
      `referrers ${BUNDLE_SUBJECT}`,
      `manifest sha256-${BUNDLE_SUBJECT.slice(7)}`,
    ]);
    // steady state: another cold digest of the same registry costs one lookup where the bundle
    // is; TAG2 carries none that names it, so the .sig tag (keyless legacy) is asked as well
    const tag2Lookups = [`manifest sha256-${TAG2.slice(7)}`, `manifest sha256-${TAG2.slice(7)}.sig`];
    fetcher.requests.length = 0;
    await verifier.verify(policy, target(TAG2));
    expect(lookups(fetcher.requests)).toEqual(tag2Lookups);
    // the belief expires REFERRERS_ABSENT_TTL_MS after the API said so, however often it is used
    // in between: the API is asked again (a registry can be upgraded)
    now += REFERRERS_ABSENT_TTL_MS / 2;
    fetcher.requests.length = 0;
    await verifier.verify(policy, { ...target(TAG2), repository: "acme/third" });
    expect(lookups(fetcher.requests)).toEqual(tag2Lookups);
    now += REFERRERS_ABSENT_TTL_MS / 2 + 1;
    fetcher.requests.length = 0;
    await verifier.verify(policy, { ...target(BUNDLE_SUBJECT), repository: "acme/other" });
    expect(lookups(fetcher.requests)).toEqual([
      `referrers ${BUNDLE_SUBJECT}`,
      `manifest sha256-${BUNDLE_SUBJECT.slice(7)}`,
    ]);
  });

  it("key + keyless rule: after a bundle verified, the next digest starts with the referrers, one lookup", async () => {
    const fetcher = layoutFetcher(BUNDLE);
    const verifier = new SignatureVerifier({ fetcherFor: () => fetcher });
    const policy = await cosignPolicy({
      keys: [ref(join(FIXTURES, "cosign-legacy/key-valid/material/cosign.pub"))],
      trustedRoot: ref(join(caseDir, "material/trusted_root.json")),
      identities: [identity],
    });
    expect((await verifier.verify(policy, target(BUNDLE_SUBJECT)))?.satisfied).toBe(true);
    // first contact: .sig (the rule has a key), the API, the tag schema
    expect(lookups(fetcher.requests)).toEqual([
      `manifest sha256-${BUNDLE_SUBJECT.slice(7)}.sig`,
      `referrers ${BUNDLE_SUBJECT}`,
      `manifest sha256-${BUNDLE_SUBJECT.slice(7)}`,
    ]);
    fetcher.requests.length = 0;
    // another cold verification of a bundle-signed digest (reached through an index: a new cache key)
    const repeat = await verifier.verify(policy, { ...target(BUNDLE_SUBJECT), index: TAG2 });
    expect(repeat?.satisfied, repeat?.summary).toBe(true);
    expect(lookups(fetcher.requests)).toEqual([`manifest sha256-${BUNDLE_SUBJECT.slice(7)}`]);
  });
});
