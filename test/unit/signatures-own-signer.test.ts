/**
 * Cases the fixtures do not have, made by our own signer (in addition to the real tools' cases,
 * never instead): ed25519 and RSA cosign keys, `require: any` vs `all`, an index child covered by
 * the signature on its index, and referrers listed by the OCI 1.1 API (not the tag schema).
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Policy } from "../../src/policy/types.js";
import {
  discoverSignatures,
  SIGSTORE_BUNDLE_V03,
  type SignatureFetcher,
} from "../../src/signatures/discover.js";
import { loadCosignRule } from "../../src/signatures/material.js";
import type { LoadedCosignRule } from "../../src/signatures/types.js";
import { SignatureVerifier } from "../../src/signatures/verifier.js";
import { tempDir } from "../helpers/process.js";

const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const INDEX = sha("an index");
const CHILD = sha("a platform manifest");
const IMAGE_REPO = "acme/app";

/** A registry holding `.sig` images made the way cosign makes them (one layer per signature). */
function registryWith(
  sigs: Record<string, Array<{ key: KeyObject; algorithm: "ed25519" | "rsa" }>>,
): SignatureFetcher {
  const blobs = new Map<string, Buffer>();
  const tags = new Map<string, Buffer>();
  for (const [digest, signers] of Object.entries(sigs)) {
    const payload = Buffer.from(
      JSON.stringify({
        critical: {
          identity: { "docker-reference": `reg.test/${IMAGE_REPO}` },
          image: { "docker-manifest-digest": digest },
          type: "cosign container image signature",
        },
        optional: null,
      }),
    );
    blobs.set(sha(payload), payload);
    const layers = signers.map(({ key, algorithm }) => ({
      mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
      size: payload.length,
      digest: sha(payload),
      annotations: {
        "dev.cosignproject.cosign/signature": sign(
          algorithm === "ed25519" ? null : "sha256",
          payload,
          key,
        ).toString("base64"),
      },
    }));
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", size: 2, digest: sha("{}") },
      layers,
    };
    tags.set(`sha256-${digest.slice(7)}.sig`, Buffer.from(JSON.stringify(manifest)));
  }
  return {
    async manifest(_r, ref) {
      return tags.get(ref);
    },
    async referrers() {
      return Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.index.v1+json",
          manifests: [],
        }),
      );
    },
    async blob(_r, digest) {
      const b = blobs.get(digest);
      if (!b) throw new Error("no blob");
      return b;
    },
  };
}

async function keyFile(dir: string, name: string, key: KeyObject) {
  await writeFile(join(dir, name), key.export({ type: "spki", format: "pem" }) as string);
  return { written: name, path: join(dir, name), line: 7 };
}

async function ruleFor(index: number, keys: Array<{ written: string; path: string; line: number }>) {
  const problems: string[] = [];
  const r = await loadCosignRule(
    {
      kind: "cosign",
      index,
      line: 5 + index,
      keys,
      identities: [],
      trustedRoot: undefined,
      requireTlog: false,
      dockerReferences: [],
    },
    (_l, m) => problems.push(m),
  );
  expect(problems).toEqual([]);
  return r as LoadedCosignRule;
}

function policy(require: "all" | "any", rules: LoadedCosignRule[]): Policy {
  return {
    name: "acme",
    signatures: {
      loaded: true,
      require,
      rules,
      line: 4,
      fingerprint: `${require}:${rules.map((r) => r.fingerprint).join(",")}`,
    },
  } as unknown as Policy;
}

describe("own signer: ed25519 and RSA keys, require any/all, index children", async () => {
  const dir = await tempDir("own-signer");
  const ed = generateKeyPairSync("ed25519");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const edRule = await ruleFor(1, [await keyFile(dir, "ed.pub", ed.publicKey)]);
  const rsaRule = await ruleFor(2, [await keyFile(dir, "rsa.pub", rsa.publicKey)]);
  const target = (digest: string, index?: string) => ({
    registry: "reg.test",
    repository: IMAGE_REPO,
    digest,
    index,
  });

  it("ed25519 and RSA signatures verify; require all needs both, any needs one", async () => {
    const onlyEd = new SignatureVerifier({
      fetcherFor: () => registryWith({ [CHILD]: [{ key: ed.privateKey, algorithm: "ed25519" }] }),
    });
    expect((await onlyEd.verify(policy("all", [edRule]), target(CHILD)))?.summary).toContain(
      "by key ed.pub (ed25519)",
    );
    expect((await onlyEd.verify(policy("any", [edRule, rsaRule]), target(CHILD)))?.satisfied).toBe(true);
    const all = await onlyEd.verify(policy("all", [edRule, rsaRule]), target(CHILD));
    expect(all?.satisfied).toBe(false);
    expect(all?.summary).toContain(
      "signatures rule 2 (cosign) line 7: .sig layer 0: signature does not verify with rsa.pub",
    );
    const both = new SignatureVerifier({
      fetcherFor: () =>
        registryWith({
          [CHILD]: [
            { key: ed.privateKey, algorithm: "ed25519" },
            { key: rsa.privateKey, algorithm: "rsa" },
          ],
        }),
    });
    const ok = await both.verify(policy("all", [edRule, rsaRule]), target(CHILD));
    expect(ok?.satisfied, ok?.summary).toBe(true);
    expect(ok?.summary).toContain("by key rsa.pub (rsa)");
  });

  it("an index child is covered by the signature on the index it was reached through, not without it", async () => {
    const v = new SignatureVerifier({
      fetcherFor: () => registryWith({ [INDEX]: [{ key: ed.privateKey, algorithm: "ed25519" }] }),
    });
    const viaIndex = await v.verify(policy("all", [edRule]), target(CHILD, INDEX));
    expect(viaIndex?.satisfied, viaIndex?.summary).toBe(true);
    expect(viaIndex?.summary).toContain(`on the index ${INDEX} that lists it`);
    expect((await v.verify(policy("all", [edRule]), target(CHILD)))?.satisfied).toBe(false);
  });

  it("referrers from the OCI 1.1 API are used as they are (no tag lookup)", async () => {
    const requests: string[] = [];
    const fetcher: SignatureFetcher = {
      async manifest(_r, ref) {
        requests.push(ref);
        return undefined;
      },
      async referrers() {
        return Buffer.from(
          JSON.stringify({
            manifests: [
              {
                mediaType: "application/vnd.oci.image.manifest.v1+json",
                digest: sha("x"),
                size: 1,
                artifactType: "application/example",
              },
            ],
          }),
        );
      },
      async blob() {
        throw new Error("none");
      },
    };
    const found = await discoverSignatures(fetcher, IMAGE_REPO, CHILD, {
      legacy: false,
      artifactTypes: [SIGSTORE_BUNDLE_V03],
    });
    expect(found.referrersVia).toBe("api");
    expect(requests).toEqual([]); // an artifact type not asked for is not even fetched
  });
});
