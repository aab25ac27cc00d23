/**
 * The signature requirement inside the one decision (src/proxy/decide.ts, policy/decision.ts):
 * enforce refuses naming the rule, audit serves the same digest and reports would-deny, a warm
 * answer lasts no longer than its verdict, no verifier means refusal (fail closed), and
 * `policy explain` says what `tagTrust: registry` gives up. Verification is real (fixtures).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { explain, loadPolicyDir, type PolicySet, parseImageReference } from "../../src/policy/index.js";
import { TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS, TrustDecider } from "../../src/proxy/decide.js";
import { REFUSED_TTL_MS, SignatureVerifier, VERIFIED_TTL_MS } from "../../src/signatures/verifier.js";
import { TrustSources } from "../../src/trust/sources.js";
import type { TagSignatures, TrustSource } from "../../src/trust/types.js";
import { layoutFetcher, OciLayout } from "../helpers/oci-layout.js";
import { tempDir } from "../helpers/process.js";

const CASE = resolve("test/fixtures/signatures/cosign-legacy/key-valid");
const SUBJECT = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";
const REGISTRY = "192.168.64.2:5000";
const REPO = "cosign-signed-single-sample";
const NOW = 1_800_000_000_000;

async function policies(mode: string, key: string, extra = ""): Promise<PolicySet> {
  const dir = join(await tempDir("signatures-decision"), "policies");
  await mkdir(dir);
  await writeFile(
    join(dir, "acme.yaml"),
    `name: acme\nmatch: ["${REGISTRY}/**"]\nmode: ${mode}\n${extra}signatures:\n  rules:\n    - cosign:\n        keys: [${join(CASE, "material", key)}]\n`,
  );
  const loaded = await loadPolicyDir(dir);
  expect(loaded.problems).toEqual([]);
  return loaded.set as PolicySet;
}

const source: TrustSource = {
  kind: "tuf",
  async resolveTag(_q, tag): Promise<TagSignatures> {
    return {
      tag,
      signatures: [{ name: tag, digest: SUBJECT, size: 428, role: "targets" }],
      source: "tuf test",
      expires: new Date(NOW + 86_400_000),
      reuseUntil: NOW + 3_600_000,
    };
  },
  async listSigned() {
    return [];
  },
  async signedByDigest() {
    return [{ name: "latest", digest: SUBJECT, size: 428, role: "targets" }];
  },
};

function decider(set: PolicySet, withVerifier = true) {
  const fetcher = layoutFetcher(new OciLayout(CASE));
  return new TrustDecider({
    policies: { current: set },
    defaultPolicy: "refuse",
    sources: TrustSources.fromMap(new Map([[REGISTRY, source]])),
    ...(withVerifier
      ? { signatures: new SignatureVerifier({ fetcherFor: () => fetcher, now: () => NOW }) }
      : {}),
  });
}

describe("signatures in the decision", () => {
  it("enforce: a TUF-signed tag whose digest lacks the signature is refused, naming the rule", async () => {
    const d = await decider(await policies("enforce", "cosign2.pub")).decideTag(REGISTRY, REPO, "latest");
    expect(d.decision.decision).toBe("deny");
    expect(d.decision.reason).toContain("is signed in targets");
    expect(d.decision.reason).toContain(
      "but signatures not verified (policy acme, require all): signatures rule 1 (cosign) line 6",
    );
    expect(d.reuse).toBeUndefined();
    const byDigest = await decider(await policies("enforce", "cosign2.pub")).decideDigest(
      REGISTRY,
      REPO,
      SUBJECT,
      undefined,
    );
    expect(byDigest.decision.decision).toBe("deny");
    expect(byDigest.signedVia).toBeUndefined();
  });

  it("audit: the same signed digest is served, reported as would-deny with the rule", async () => {
    const d = await decider(await policies("audit", "cosign2.pub")).decideTag(REGISTRY, REPO, "latest");
    expect(d.decision).toMatchObject({ decision: "allow", wouldDeny: true, digest: SUBJECT });
    expect(d.decision.signatures).toContain("signatures rule 1 (cosign) line 6");
    expect(d.reuse?.until).toBe(NOW + REFUSED_TTL_MS);
  });

  it("satisfied: allowed, the audit record says which key; a warm answer lasts no longer than the verdict", async () => {
    const d = await decider(await policies("enforce", "cosign.pub")).decideTag(REGISTRY, REPO, "latest");
    expect(d.decision).toMatchObject({ decision: "allow", digest: SUBJECT, role: "targets" });
    expect(d.decision.signatures).toContain("cosign signature by key");
    expect(d.reuse?.until).toBe(NOW + VERIFIED_TTL_MS);
  });

  it("no verifier wired: a policy with signatures refuses (fail closed)", async () => {
    const d = await decider(await policies("enforce", "cosign.pub"), false).decideTag(
      REGISTRY,
      REPO,
      "latest",
    );
    expect(d.decision.decision).toBe("deny");
    expect(d.decision.reason).toContain("signatures cannot be checked");
  });

  it("policy explain: tagTrust: registry says what it gives up", async () => {
    const set = await policies("enforce", "cosign.pub", "tagTrust: registry\n");
    const e = explain(
      set,
      `${REGISTRY}/${REPO}:latest`,
      parseImageReference(`${REGISTRY}/${REPO}:latest`),
      "refuse",
    );
    expect(e.tagTrust).toContain("gives up freshness and rollback protection");
    expect(e.tagTrust).toContain("move the tag to any other signed digest");
    expect(e.signatures?.rules[0]).toContain("rule 1 (cosign): keys");
    expect(e.summary).toContain("signature rule(s)");
  });
});

describe("signatures and digestPulls / audit", () => {
  it("digestPulls: any waives tag trust, not the signatures; audit reports would-deny once", async () => {
    const unsignedSource: TrustSource = { ...source, signedByDigest: async () => [] };
    const build = (set: PolicySet) =>
      new TrustDecider({
        policies: { current: set },
        defaultPolicy: "refuse",
        sources: TrustSources.fromMap(new Map([[REGISTRY, unsignedSource]])),
        signatures: new SignatureVerifier({
          fetcherFor: () => layoutFetcher(new OciLayout(CASE)),
          now: () => NOW,
        }),
      });
    const any = await build(await policies("enforce", "cosign2.pub", "digestPulls: any\n")).decideDigest(
      REGISTRY,
      REPO,
      SUBJECT,
      undefined,
    );
    expect(any.decision.decision).toBe("deny");
    expect(any.decision.reason).toContain("signatures rule 1 (cosign)");
    const anyOk = await build(await policies("enforce", "cosign.pub", "digestPulls: any\n")).decideDigest(
      REGISTRY,
      REPO,
      SUBJECT,
      undefined,
    );
    expect(anyOk.decision.decision).toBe("allow");
    const audit = await build(await policies("audit", "cosign2.pub")).decideDigest(
      REGISTRY,
      REPO,
      SUBJECT,
      undefined,
    );
    expect(audit.decision).toMatchObject({ decision: "allow", wouldDeny: true });
    expect(audit.decision.reason.match(/would deny/g)).toHaveLength(1);
    expect(audit.decision.signatures).toContain("signatures not verified");
  });
});

describe("signatures in tags/list (TrustDecider.acceptedTags)", () => {
  const unsigned = (i: number) => `sha256:${i.toString(16).padStart(64, "0")}`;
  /** a TUF source signing `latest` -> the cosign-signed SUBJECT, and `n` tags of unsigned digests */
  function listing(n: number, signedTag = "latest"): TrustSource {
    const targets = [
      { name: signedTag, digest: SUBJECT, size: 428, role: "targets" },
      ...Array.from({ length: n }, (_, i) => ({
        name: `t${String(i).padStart(3, "0")}`,
        digest: unsigned(i + 1),
        size: 428,
        role: "targets",
      })),
    ];
    return { ...source, listSigned: async () => targets };
  }
  function lister(set: PolicySet, src: TrustSource) {
    const fetcher = layoutFetcher(new OciLayout(CASE));
    const d = new TrustDecider({
      policies: { current: set },
      defaultPolicy: "refuse",
      sources: TrustSources.fromMap(new Map([[REGISTRY, src]])),
      signatures: new SignatureVerifier({ fetcherFor: () => fetcher, now: () => NOW }),
    });
    const policy = set.policies[0] as never;
    return { d, policy, fetcher };
  }

  it("a TUF-signed tag whose digest lacks the required signature is not listed", async () => {
    const { d, policy } = lister(await policies("enforce", "cosign.pub"), listing(2));
    expect(await d.acceptedTags(REGISTRY, REPO, policy)).toEqual(["latest"]);
    // with the wrong key, not even the signed one
    const wrong = lister(await policies("enforce", "cosign2.pub"), listing(2));
    expect(await wrong.d.acceptedTags(REGISTRY, REPO, wrong.policy)).toEqual([]);
  });

  it(`at most ${TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS} new verifications per listing; the rest are left out until verified`, async () => {
    // "zz" sorts last: beyond the budget on the first listing
    const n = TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS + 4;
    const { d, policy, fetcher } = lister(await policies("enforce", "cosign.pub"), listing(n, "zz"));
    const omitted: number[] = [];
    expect(await d.acceptedTags(REGISTRY, REPO, policy, (k) => omitted.push(k))).toEqual([]);
    const sigLookups = () => fetcher.requests.filter((r) => r.endsWith(".sig")).length;
    expect(sigLookups()).toBe(TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS);
    expect(omitted).toEqual([5]);
    // the next listing reuses the cached verdicts and verifies the remaining five: zz is listed
    expect(await d.acceptedTags(REGISTRY, REPO, policy, (k) => omitted.push(k))).toEqual(["zz"]);
    expect(sigLookups()).toBe(n + 1);
    expect(omitted).toEqual([5]);
  });
});

describe("tags/list under tagTrust: registry (TrustDecider.acceptedTags)", () => {
  const unsigned = (i: number) => `sha256:${i.toString(16).padStart(64, "0")}`;
  function registryLister(set: PolicySet, tags: Record<string, string | Error>) {
    const lookedUp: string[] = [];
    const d = new TrustDecider({
      policies: { current: set },
      defaultPolicy: "refuse",
      sources: TrustSources.fromMap(new Map()),
      signatures: new SignatureVerifier({
        fetcherFor: () => layoutFetcher(new OciLayout(CASE)),
        now: () => NOW,
      }),
      async registryTags() {
        return Object.keys(tags);
      },
      async registryTag(_r, _repo, tag) {
        lookedUp.push(tag);
        const digest = tags[tag];
        if (digest instanceof Error || digest === undefined) throw digest ?? new Error("no such tag");
        return { digest, size: 428 };
      },
    });
    return { d, policy: set.policies[0] as never, lookedUp };
  }

  it("lists the registry's tags whose registry digest carries the required signature; a failed lookup is left out", async () => {
    const set = await policies("enforce", "cosign.pub", "tagTrust: registry\n");
    const { d, policy } = registryLister(set, {
      v2: unsigned(1),
      latest: SUBJECT,
      gone: new Error("MANIFEST_UNKNOWN"),
    });
    const omitted: number[] = [];
    expect(await d.acceptedTags(REGISTRY, REPO, policy, (k) => omitted.push(k))).toEqual(["latest"]);
    expect(omitted).toEqual([1]);
    // the wrong key: nothing
    const wrong = registryLister(await policies("enforce", "cosign2.pub", "tagTrust: registry\n"), {
      latest: SUBJECT,
    });
    expect(await wrong.d.acceptedTags(REGISTRY, REPO, wrong.policy)).toEqual([]);
  });

  it(`looks up at most ${TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS} tags per listing, in lexical order; the rest are left out and counted`, async () => {
    const set = await policies("enforce", "cosign.pub", "tagTrust: registry\n");
    const tags: Record<string, string> = { latest: SUBJECT };
    for (let i = 0; i < TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS + 3; i++)
      tags[`a${String(i).padStart(3, "0")}`] = unsigned(i + 1);
    const { d, policy, lookedUp } = registryLister(set, tags);
    const omitted: number[] = [];
    // "latest" sorts after every a###: beyond the budget
    expect(await d.acceptedTags(REGISTRY, REPO, policy, (k) => omitted.push(k))).toEqual([]);
    expect(lookedUp).toHaveLength(TAGS_LIST_MAX_SIGNATURE_VERIFICATIONS);
    expect(lookedUp).not.toContain("latest");
    expect(omitted).toEqual([4]);
  });
});
