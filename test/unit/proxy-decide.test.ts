/**
 * The proxy's decision wiring (src/proxy/decide.ts, index-children.ts, trust/sources.ts): which
 * source a policy's query goes to, what a missing or mismatched source means, how children of a
 * signed index are vouched for (and stop being vouched for), and TUF's delegated signers.
 */
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { RegistryConfig } from "../../src/config/types.js";
import { createLogger } from "../../src/log.js";
import { type Digest, parseDigest } from "../../src/oci/reference.js";
import { type Policy, PolicySet, parsePolicyFile } from "../../src/policy/index.js";
import { TrustDecider } from "../../src/proxy/decide.js";
import { TrustEnforcingResolver } from "../../src/proxy/enforce.js";
import { IndexChildren } from "../../src/proxy/index-children.js";
import type { ManifestAnswer, ManifestRequest, ManifestStore } from "../../src/proxy/manifests.js";
import { SignedTagLister, type TagLister } from "../../src/proxy/tags.js";
import { createApp } from "../../src/server.js";
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

const REQUIRE_ALL = setOf([
  "acme.yaml",
  'match: ["reg.test/acme/**"]\nmode: enforce\ntrust:\n  roles: [targets/releases, targets]\n  requireAll: true\n',
]);
const REL = "targets/releases";

describe("T3: one judgement on every path (requireAll)", () => {
  it("T3: with requireAll, a digest signed in targets only is refused by digest just as by tag", async () => {
    const source = new ListSource("notary", [{ name: "v1", digest: D_INDEX, size: 99, role: "targets" }]);
    const dec = decider(REQUIRE_ALL, new Map([["reg.test", source]]));
    const byTag = await dec.decideTag("reg.test", "acme/app", "v1");
    expect(byTag.decision.decision).toBe("deny");
    const byDigest = await dec.decideDigest("reg.test", "acme/app", D_INDEX, undefined);
    expect(byDigest).toMatchObject({ signedVia: undefined, root: undefined, decision: { decision: "deny" } });
    expect(byDigest.decision.reason).toBe(
      `reg.test/acme/app@${D_INDEX}, signed as tag v1 in targets, is not signed in targets/releases (policy acme requires all of targets/releases, targets)`,
    );
    // once both roles sign it, both paths allow it, pinned to the same digest and size
    source.targets.push({ name: "v1", digest: D_INDEX, size: 99, role: REL });
    expect((await dec.decideTag("reg.test", "acme/app", "v1")).decision).toMatchObject({
      decision: "allow",
      role: `${REL}+targets`,
    });
    expect(await dec.decideDigest("reg.test", "acme/app", D_INDEX, undefined)).toMatchObject({
      signedVia: "target",
      root: D_INDEX,
      size: 99,
      decision: { decision: "allow", role: `${REL}+targets`, digest: D_INDEX },
    });
  });

  it("T3: signatures of one digest under two different tags do not add up to requireAll", async () => {
    const source = new ListSource("notary", [
      { name: "v1", digest: D_INDEX, size: 99, role: "targets" },
      { name: "v2", digest: D_INDEX, size: 99, role: REL },
    ]);
    const dec = decider(REQUIRE_ALL, new Map([["reg.test", source]]));
    expect((await dec.decideTag("reg.test", "acme/app", "v1")).decision.decision).toBe("deny");
    expect((await dec.decideTag("reg.test", "acme/app", "v2")).decision.decision).toBe("deny");
    expect((await dec.decideDigest("reg.test", "acme/app", D_INDEX, undefined)).decision.decision).toBe(
      "deny",
    );
  });

  it("T3: an index signed by one role does not vouch for its children when the policy requires all", async () => {
    const source = new ListSource("notary", [{ name: "v1", digest: D_INDEX, size: 99, role: "targets" }]);
    const reachable = new IndexChildren();
    reachable.recordIfIndex("reg.test", "acme/app", D_INDEX, indexBytes, INDEX_TYPE);
    const dec = decider(REQUIRE_ALL, new Map([["reg.test", source]]));
    const child = await dec.decideDigest("reg.test", "acme/app", D_CHILD, reachable);
    expect(child.decision.decision).toBe("deny");
    expect(child.decision.reason).toContain(
      `is listed in the index ${D_INDEX}, which is not signed as policy acme demands`,
    );
    source.targets.push({ name: "v1", digest: D_INDEX, size: 99, role: REL });
    expect(await dec.decideDigest("reg.test", "acme/app", D_CHILD, reachable)).toMatchObject({
      signedVia: "index",
      root: D_INDEX,
      size: 321,
      decision: { decision: "allow", index: D_INDEX, role: `${REL}+targets` },
    });
  });

  it("T3: tags/list lists only the tags the policy accepts (requireAll)", async () => {
    const source = new ListSource("notary", [
      { name: "both", digest: D_INDEX, size: 99, role: REL },
      { name: "both", digest: D_INDEX, size: 99, role: "targets" },
      { name: "targets-only", digest: D_OTHER, size: 7, role: "targets" },
    ]);
    const dec = decider(REQUIRE_ALL, new Map([["reg.test", source]]));
    const passThrough: TagLister = {
      list: async () => {
        throw new Error("an enforced repository's tags never come from the upstream");
      },
    };
    const lister = new SignedTagLister(dec, passThrough, createLogger("silent"));
    const answer = await lister.list({
      registry: "reg.test",
      repository: "acme/app",
      query: new URLSearchParams(),
    });
    expect(JSON.parse(answer.bytes.toString())).toEqual({ name: "acme/app", tags: ["both"] });
    // without requireAll the same trust data lists both
    const plain = new SignedTagLister(
      decider(ACME, new Map([["reg.test", source]])),
      passThrough,
      createLogger("silent"),
    );
    const all = await plain.list({
      registry: "reg.test",
      repository: "acme/app",
      query: new URLSearchParams(),
    });
    expect(JSON.parse(all.bytes.toString())).toEqual({ name: "acme/app", tags: ["both", "targets-only"] });
  });

  it("TUF: a digest signed by a delegation counts through targets, as the tag does", async () => {
    const source = new ListSource("tuf", [{ name: "v1", digest: D_INDEX, size: 99, role: "acme" }]);
    const d = await decider(ACME, new Map([["reg.test", source]])).decideDigest(
      "reg.test",
      "acme/app",
      D_INDEX,
      undefined,
    );
    expect(d).toMatchObject({ signedVia: "target", decision: { decision: "allow", role: "targets" } });
  });
});

/** Manifest bytes, their digest and size; an index names its children with digest and size. */
function manifestOf(doc: Record<string, unknown>): { bytes: Buffer; digest: string; size: number } {
  const bytes = Buffer.from(JSON.stringify(doc));
  return { bytes, digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`, size: bytes.length };
}
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const indexOf = (note: string, ...children: Array<{ digest: string; size: number; mediaType: string }>) =>
  manifestOf({
    schemaVersion: 2,
    mediaType: INDEX_TYPE,
    manifests: children.map((c) => ({ mediaType: c.mediaType, digest: c.digest, size: c.size })),
    annotations: { note },
  });

/** A ManifestStore that answers from a map of verified manifests (by digest) and tags. */
function storeOf(manifests: Array<{ bytes: Buffer; digest: string }>, mediaTypes: Map<string, string>) {
  const byDigest = new Map(manifests.map((m) => [m.digest, m]));
  const answer = (digest: string): ManifestAnswer => {
    const m = byDigest.get(digest);
    if (!m) throw new Error(`no manifest ${digest}`);
    return { bytes: m.bytes, digest, mediaType: mediaTypes.get(digest) ?? OCI_MANIFEST };
  };
  return {
    byDigest: async (_r: string, _repo: string, digest: Digest) => answer(digest.value),
    byTag: async () => {
      throw new Error("no pass-through by tag in these tests");
    },
  } as unknown as ManifestStore;
}

const digestRef = (value: string): ManifestRequest["reference"] => ({
  kind: "digest",
  digest: parseDigest(value) as Digest,
});

describe("index children through the resolver", () => {
  it("T13: an index of indexes: a nested index's children are recorded under the root that vouched for it", async () => {
    const leaf = manifestOf({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      layers: [],
      annotations: { n: "leaf" },
    });
    const nested = indexOf("nested", { ...leaf, mediaType: OCI_MANIFEST });
    const oldRoot = indexOf("old", { ...nested, mediaType: INDEX_TYPE });
    const newRoot = indexOf("new", { ...nested, mediaType: INDEX_TYPE });
    const types = new Map([nested, oldRoot, newRoot].map((m) => [m.digest, INDEX_TYPE]));
    const source = new ListSource("notary", [
      { name: "v1", digest: oldRoot.digest, size: oldRoot.size, role: "targets" },
    ]);
    const resolver = new TrustEnforcingResolver({
      decider: decider(ACME, new Map([["reg.test", source]])),
      store: storeOf([leaf, nested, oldRoot, newRoot], types),
      reachable: new IndexChildren(),
      logger: createLogger("silent"),
    });
    const pull = (reference: ManifestRequest["reference"]) =>
      resolver.resolve({
        registry: "reg.test",
        repository: "acme/app",
        reference,
        method: "GET",
        accept: undefined,
      });
    expect((await pull({ kind: "tag", tag: "v1" })).digest).toBe(oldRoot.digest);
    // v1 is re-signed to a new index that names the same nested index: the old root stops vouching
    source.targets = [{ name: "v1", digest: newRoot.digest, size: newRoot.size, role: "targets" }];
    expect((await pull({ kind: "tag", tag: "v1" })).digest).toBe(newRoot.digest);
    // the nested index is vouched for by the new root (its first-recorded root is no longer signed)
    expect((await pull(digestRef(nested.digest))).digest).toBe(nested.digest);
    // ... and so is its child: recorded under the new root, not the stale first one
    const answer = await pull(digestRef(leaf.digest));
    expect(answer.bytes.equals(leaf.bytes)).toBe(true);
  });
});

describe("trust errors in the index-root loop", () => {
  const failingRoot = (root: string): TrustSource => ({
    kind: "notary",
    resolveTag: async (_q, tag) => ({
      tag,
      signatures: [],
      source: "notary test",
      expires: new Date("2099-01-01"),
    }),
    listSigned: async () => [],
    signedByDigest: async (_q, digest) => {
      if (digest === root)
        throw new TrustError(
          "TRUST_UNAVAILABLE",
          "reg.test/acme/app",
          undefined,
          "notary.test: connection refused",
        );
      return [];
    },
  });

  async function appFor(mode: "audit" | "enforce") {
    const child = manifestOf({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      layers: [],
      annotations: { n: "child" },
    });
    const index = indexOf("root", { ...child, mediaType: OCI_MANIFEST });
    const reachable = new IndexChildren();
    reachable.recordIfIndex("reg.test", "acme/app", index.digest, index.bytes, INDEX_TYPE);
    const set = setOf(["acme.yaml", `match: ["reg.test/acme/**"]\nmode: ${mode}\n`]);
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    const logger = createLogger("info", sink);
    const registry: RegistryConfig = { name: "reg.test", upstream: new URL("http://reg.test") };
    const app = createApp({
      config: {
        registries: new Map([["reg.test", registry]]),
        defaultRegistry: "reg.test",
        blobRedirect: false,
      },
      clients: new Map(),
      manifests: new TrustEnforcingResolver({
        decider: decider(set, new Map([["reg.test", failingRoot(index.digest)]])),
        store: storeOf([child, index], new Map([[index.digest, INDEX_TYPE]])),
        reachable,
        logger,
      }),
      tags: { list: async () => ({ bytes: Buffer.from("{}"), contentType: "application/json" }) },
      logger,
    });
    return { app, lines, child };
  }

  it("T14: audit mode allows with wouldDeny and the audit fields on the access line", async () => {
    const { app, lines, child } = await appFor("audit");
    const res = await app.request(`/v2/acme/app/manifests/${child.digest}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(child.bytes)).toBe(true);
    await expect
      .poll(() => lines.find((l) => l.msg === "request"))
      .toMatchObject({
        status: 200,
        audit: true,
        decision: "allow",
        wouldDeny: true,
        mode: "audit",
        policy: "acme",
        image: "reg.test/acme/app",
        reference: child.digest,
        reason: expect.stringContaining("TRUST_UNAVAILABLE"),
      });
  });

  it("T14: enforce mode refuses with 403 DENIED naming the trust failure, audited on the access line", async () => {
    const { app, lines, child } = await appFor("enforce");
    const res = await app.request(`/v2/acme/app/manifests/${child.digest}`);
    expect(res.status).toBe(403);
    expect(res.statusText).toContain("trust not established (TRUST_UNAVAILABLE)");
    await expect
      .poll(() => lines.find((l) => l.msg === "request"))
      .toMatchObject({
        status: 403,
        audit: true,
        decision: "deny",
        mode: "enforce",
        reference: child.digest,
      });
  });
});
