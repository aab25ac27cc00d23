/**
 * The proxy's decision wiring (src/proxy/decide.ts, index-children.ts, trust/sources.ts): which
 * source a policy's query goes to, what a missing or mismatched source means, how children of a
 * signed index are vouched for (and stop being vouched for), and TUF's delegated signers.
 */
import { describe, expect, it } from "vitest";
import { type Policy, PolicySet, parsePolicyFile } from "../../src/policy/index.js";
import { TrustDecider } from "../../src/proxy/decide.js";
import { IndexChildren } from "../../src/proxy/index-children.js";
import { TrustError } from "../../src/trust/errors.js";
import { sourceMismatches, TrustSources } from "../../src/trust/sources.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../../src/trust/types.js";

const D_INDEX = `sha256:${"a".repeat(64)}`;
const D_CHILD = `sha256:${"b".repeat(64)}`;
const D_OTHER = `sha256:${"c".repeat(64)}`;
const INDEX_TYPE = "application/vnd.oci.image.index.v1+json";
const indexBytes = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: INDEX_TYPE,
    manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: D_CHILD, size: 321 }],
  }),
);

/** A trust source answering from a mutable list of signed targets. */
class ListSource implements TrustSource {
  queries: TrustQuery[] = [];
  constructor(
    readonly kind: "notary" | "tuf",
    public targets: SignedTarget[],
  ) {}
  async resolveTag(query: TrustQuery, tag: string): Promise<TagSignatures> {
    this.queries.push(query);
    const signatures = this.targets.filter((t) => t.name === tag);
    return { tag, signatures, source: `${this.kind} test`, expires: new Date("2099-01-01T00:00:00Z") };
  }
  async listSigned(query: TrustQuery): Promise<SignedTarget[]> {
    this.queries.push(query);
    return this.targets;
  }
  async signedByDigest(query: TrustQuery, digest: string): Promise<SignedTarget[]> {
    this.queries.push(query);
    return this.targets.filter((t) => t.digest === digest);
  }
}

function setOf(...yamls: Array<[file: string, yaml: string]>): PolicySet {
  const policies = yamls.map(([file, yaml]) => {
    const { policy, problems } = parsePolicyFile(file, yaml);
    expect(problems).toEqual([]);
    return policy as Policy;
  });
  const { set, problems } = PolicySet.build(policies);
  expect(problems).toEqual([]);
  return set as PolicySet;
}

const ACME = setOf(["acme.yaml", 'match: ["reg.test/acme/**"]\nmode: enforce\n']);

function decider(set: PolicySet, sources: Map<string, TrustSource>): TrustDecider {
  return new TrustDecider({
    policies: { current: set },
    defaultPolicy: "refuse",
    sources: TrustSources.fromMap(sources),
  });
}

describe("TrustDecider", () => {
  it("refuses, saying so, when the registry has no trust source", async () => {
    const d = await decider(ACME, new Map()).decideTag("reg.test", "acme/app", "v1");
    expect(d.decision.decision).toBe("deny");
    expect(d.decision.reason).toContain("registry reg.test has no trust source configured");
    expect(d.trustFailure).toBe("TRUST_NOT_CONFIGURED");
  });

  it("refuses when the policy names another source kind than the registry has; the start-up check lists it", async () => {
    const set = setOf(["hub.yaml", 'match: ["reg.test/**"]\nmode: enforce\ntrust:\n  source: tuf\n']);
    const sources = new Map<string, TrustSource>([["reg.test", new ListSource("notary", [])]]);
    const d = await decider(set, sources).decideTag("reg.test", "acme/app", "v1");
    expect(d.decision.decision).toBe("deny");
    expect(d.decision.reason).toContain("demands trust.source tuf");
    expect(sourceMismatches(set, TrustSources.fromMap(sources))).toEqual([
      "hub.yaml:1: policy hub demands trust.source tuf for reg.test/**, but registry reg.test is configured with notary",
    ]);
  });

  it("allows a signed tag with its digest, size and role; asks with the policy's roles", async () => {
    const source = new ListSource("notary", [{ name: "v1", digest: D_INDEX, size: 99, role: "targets" }]);
    const d = await decider(ACME, new Map([["reg.test", source]])).decideTag("reg.test", "acme/app", "v1");
    expect(d.decision).toMatchObject({
      decision: "allow",
      digest: D_INDEX,
      size: 99,
      role: "targets",
      policy: "acme",
    });
    expect(source.queries[0]).toMatchObject({ registry: "reg.test", repository: "acme/app" });
  });

  it("a child of a signed index is allowed by digest only while that index is still signed", async () => {
    const source = new ListSource("notary", [{ name: "v1", digest: D_INDEX, size: 99, role: "targets" }]);
    const reachable = new IndexChildren();
    const dec = decider(ACME, new Map([["reg.test", source]]));
    expect((await dec.decideDigest("reg.test", "acme/app", D_CHILD, reachable)).decision.decision).toBe(
      "deny",
    );
    reachable.recordIfIndex("reg.test", "acme/app", D_INDEX, indexBytes, INDEX_TYPE);
    const allowed = await dec.decideDigest("reg.test", "acme/app", D_CHILD, reachable);
    expect(allowed).toMatchObject({ signedVia: "index", size: 321, decision: { decision: "allow" } });
    // another repository does not inherit it
    expect((await dec.decideDigest("reg.test", "acme/other", D_CHILD, reachable)).decision.decision).toBe(
      "deny",
    );
    source.targets = []; // the tag was removed: its index no longer vouches for the child
    expect((await dec.decideDigest("reg.test", "acme/app", D_CHILD, reachable)).decision.decision).toBe(
      "deny",
    );
  });

  it("records children only of indexes", () => {
    const reachable = new IndexChildren();
    reachable.recordIfIndex("r", "a", D_INDEX, indexBytes, "application/vnd.oci.image.manifest.v1+json");
    expect(reachable.lookup("r", "a", D_CHILD)).toBeUndefined();
    reachable.recordIfIndex("r", "a", D_INDEX, Buffer.from("not json"), INDEX_TYPE);
    expect(reachable.lookup("r", "a", D_CHILD)).toBeUndefined();
  });

  it("a digest signed as a target is allowed; an unknown one is refused under digestPulls signed", async () => {
    const source = new ListSource("notary", [{ name: "v1", digest: D_INDEX, size: 99, role: "targets" }]);
    const dec = decider(ACME, new Map([["reg.test", source]]));
    expect(await dec.decideDigest("reg.test", "acme/app", D_INDEX, undefined)).toMatchObject({
      signedVia: "target",
      size: 99,
      decision: { decision: "allow", role: "targets" },
    });
    const other = await dec.decideDigest("reg.test", "acme/app", D_OTHER, undefined);
    expect(other.decision.decision).toBe("deny");
    expect(other.decision.reason).toContain("is not a signed manifest");
  });

  it("a trust failure is a refusal (fail closed) and carries its code", async () => {
    const failing: TrustSource = {
      kind: "notary",
      resolveTag: async () => {
        throw new TrustError("EXPIRED", "reg.test/acme/app", "timestamp", "timestamp expired");
      },
      listSigned: async () => [],
      signedByDigest: async () => {
        throw new TrustError("EXPIRED", "reg.test/acme/app", "timestamp", "timestamp expired");
      },
    };
    const d = await decider(ACME, new Map([["reg.test", failing]])).decideTag("reg.test", "acme/app", "v1");
    expect(d.decision.decision).toBe("deny");
    expect(d.trustFailure).toBe("EXPIRED");
  });

  it("TUF: a delegated signer counts through targets under Docker's default roles, and is named in source", async () => {
    const source = new ListSource("tuf", [{ name: "v1", digest: D_INDEX, size: 99, role: "acme" }]);
    const d = await decider(ACME, new Map([["reg.test", source]])).decideTag("reg.test", "acme/app", "v1");
    expect(d.decision).toMatchObject({ decision: "allow", digest: D_INDEX, role: "targets" });
    expect(d.source).toContain("signed by delegation acme");
    // a policy naming TUF roles of its own is matched as written
    const own = setOf([
      "own.yaml",
      'match: ["reg.test/acme/**"]\nmode: enforce\ntrust:\n  source: tuf\n  roles: [globex]\n',
    ]);
    const refused = await decider(own, new Map([["reg.test", source]])).decideTag(
      "reg.test",
      "acme/app",
      "v1",
    );
    expect(refused.decision.decision).toBe("deny");
  });
});
