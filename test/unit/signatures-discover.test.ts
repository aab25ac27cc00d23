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
  SIGSTORE_BUNDLE_V03,
} from "../../src/signatures/discover.js";
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
