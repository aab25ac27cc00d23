/**
 * Both trust sources during a cut-over (issue 14 point 5): `trust.sources` / `trust.notaryUntil`
 * validation (src/policy/parse-file.ts), the order the sources are asked and the first that
 * verifies deciding (src/proxy/decide.ts, src/policy/across-sources.ts), Notary before and after
 * its date with an injected clock, and the start-up check (src/trust/sources.ts sourceMismatches).
 */
import { describe, expect, it } from "vitest";
import {
  explain,
  type Policy,
  PolicySet,
  parseImageReference,
  parsePolicyFile,
  renderExplanation,
} from "../../src/policy/index.js";
import { TrustDecider } from "../../src/proxy/decide.js";
import { TrustError } from "../../src/trust/errors.js";
import { sourceMismatches, TrustSources } from "../../src/trust/sources.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../../src/trust/types.js";

const D_TUF = `sha256:${"1".repeat(64)}`;
const D_NOTARY = `sha256:${"2".repeat(64)}`;

class ListSource implements TrustSource {
  asked = 0;
  constructor(
    readonly kind: "notary" | "tuf",
    public targets: SignedTarget[],
    public failing = false,
  ) {}
  async resolveTag(_query: TrustQuery, tag: string): Promise<TagSignatures> {
    this.asked++;
    if (this.failing)
      throw new TrustError("TRUST_UNAVAILABLE", "reg.test/acme/app", undefined, "server down");
    return {
      tag,
      signatures: this.targets.filter((t) => t.name === tag),
      source: `${this.kind} https://${this.kind}.test`,
      expires: new Date("2099-01-01T00:00:00Z"),
      reuseUntil: Date.parse("2099-01-01T00:00:00Z"),
    };
  }
  async listSigned(): Promise<SignedTarget[]> {
    this.asked++;
    if (this.failing)
      throw new TrustError("TRUST_UNAVAILABLE", "reg.test/acme/app", undefined, "server down");
    return this.targets;
  }
  async signedByDigest(_q: TrustQuery, digest: string): Promise<SignedTarget[]> {
    this.asked++;
    if (this.failing)
      throw new TrustError("TRUST_UNAVAILABLE", "reg.test/acme/app", undefined, "server down");
    return this.targets.filter((t) => t.digest === digest);
  }
}

function parse(yaml: string) {
  return parsePolicyFile("cut.yaml", yaml);
}

function policyOf(yaml: string): Policy {
  const { policy, problems } = parse(yaml);
  expect(problems).toEqual([]);
  return policy as Policy;
}

const CUTOVER = `match: ["reg.test/acme/**"]
mode: enforce
trust:
  sources: [tuf, notary]
  notaryUntil: 2026-12-08
`;

function setup(yaml = CUTOVER, now = "2026-12-01T00:00:00Z") {
  const tuf = new ListSource("tuf", [
    { name: "both", digest: D_TUF, size: 10, role: "targets" },
    { name: "tuf-only", digest: D_TUF, size: 10, role: "targets" },
  ]);
  const notary = new ListSource("notary", [
    { name: "both", digest: D_NOTARY, size: 20, role: "targets" },
    { name: "notary-only", digest: D_NOTARY, size: 20, role: "targets" },
  ]);
  const { set } = PolicySet.build([policyOf(yaml)]);
  const clock = { now: new Date(now) };
  const sources = TrustSources.fromMap(new Map([["reg.test", [notary, tuf]]]));
  const decider = new TrustDecider({
    policies: { current: set as PolicySet },
    defaultPolicy: "refuse",
    sources,
    now: () => clock.now,
  });
  return { tuf, notary, decider, clock, set: set as PolicySet, sources };
}

describe("trust.sources and trust.notaryUntil: validation", () => {
  it("reads the list in order and the date as that day's start, UTC", () => {
    const p = policyOf(CUTOVER);
    expect(p.trust.sources).toEqual(["tuf", "notary"]);
    expect(p.trust.notaryUntil?.toISOString()).toBe("2026-12-08T00:00:00.000Z");
    expect(
      policyOf(
        `${CUTOVER.replace("2026-12-08", "2026-12-08T12:30:00+01:00")}`,
      ).trust.notaryUntil?.toISOString(),
    ).toBe("2026-12-08T11:30:00.000Z");
    // trust.source: X is trust.sources [X]
    expect(
      policyOf('match: ["reg.test/**"]\nmode: enforce\ntrust:\n  source: notary\n').trust.sources,
    ).toEqual(["notary"]);
  });

  it("names the line and the problem: unknown source, twice, notaryUntil without notary, bad date, both keys", () => {
    const messages = (yaml: string) => parse(yaml).problems.map((p) => `${p.line}: ${p.message}`);
    expect(messages('match: ["r.io/**"]\nmode: enforce\ntrust:\n  sources: [tuf, cosign]\n')).toEqual([
      '4: trust.sources: unknown source "cosign" (known: notary, tuf)',
    ]);
    expect(messages('match: ["r.io/**"]\nmode: enforce\ntrust:\n  sources: [tuf, tuf]\n')).toEqual([
      '4: trust.sources: "tuf" is listed twice',
    ]);
    expect(
      messages('match: ["r.io/**"]\nmode: enforce\ntrust:\n  sources: [tuf]\n  notaryUntil: 2026-12-08\n'),
    ).toEqual(["5: trust.notaryUntil says until when Notary counts, but notary is not in trust.sources"]);
    expect(
      messages(
        'match: ["r.io/**"]\nmode: enforce\ntrust:\n  sources: [notary]\n  notaryUntil: 2026-02-30\n',
      )[0],
    ).toContain("5: trust.notaryUntil must be a date (2026-12-08");
    expect(
      messages(
        'match: ["r.io/**"]\nmode: enforce\ntrust:\n  sources: [notary]\n  notaryUntil: next week\n',
      )[0],
    ).toContain('not "next week"');
    expect(
      messages('match: ["r.io/**"]\nmode: enforce\ntrust:\n  source: tuf\n  sources: [tuf, notary]\n'),
    ).toEqual(["5: trust.source and trust.sources cannot both be set: list them in trust.sources"]);
    expect(messages('match: ["r.io/**"]\nmode: enforce\ntrust:\n  sources: []\n')).toEqual([
      "4: trust.sources must not be empty",
    ]);
  });
});

describe("both sources for one registry: the decision", () => {
  it("asks in the listed order; the first that verifies wins and later ones are not asked", async () => {
    const { decider, tuf, notary } = setup();
    const d = await decider.decideTag("reg.test", "acme/app", "both");
    expect(d.decision).toMatchObject({ decision: "allow", digest: D_TUF, size: 10 });
    expect(d.source).toBe("tuf https://tuf.test");
    expect([tuf.asked, notary.asked]).toEqual([1, 0]);
    // the other order: notary first
    const other = setup(CUTOVER.replace("[tuf, notary]", "[notary, tuf]"));
    const n = await other.decider.decideTag("reg.test", "acme/app", "both");
    expect(n.decision.digest).toBe(D_NOTARY);
    expect(n.source).toBe("notary https://notary.test");
  });

  it("a tag signed only in Notary is served via notary before notaryUntil, refused after, naming the date", async () => {
    const { decider, clock, notary } = setup();
    const before = await decider.decideTag("reg.test", "acme/app", "notary-only");
    expect(before.decision).toMatchObject({ decision: "allow", digest: D_NOTARY });
    expect(before.source).toBe("notary https://notary.test");
    // the decision is never reused past the cut-over
    expect(before.reuse?.until).toBe(Date.parse("2026-12-08T00:00:00Z"));
    clock.now = new Date("2026-12-08T00:00:00Z");
    const asked = notary.asked;
    const after = await decider.decideTag("reg.test", "acme/app", "notary-only");
    expect(after.decision.decision).toBe("deny");
    expect(after.decision.reason).toBe(
      "tuf: reg.test/acme/app:notary-only is not signed in targets/releases or targets; notary: Notary signatures no longer count since 2026-12-08 (policy cut: trust.notaryUntil)",
    );
    expect(notary.asked).toBe(asked);
    // by digest and in tags/list alike
    const digest = await decider.decideDigest("reg.test", "acme/app", D_NOTARY, undefined);
    expect(digest.decision.decision).toBe("deny");
    expect(digest.decision.reason).toContain("since 2026-12-08");
    const policy = setup().set.policies[0] as Policy;
    expect(await decider.acceptedTags("reg.test", "acme/app", policy)).toEqual(["both", "tuf-only"]);
    clock.now = new Date("2026-12-07T23:59:59Z");
    expect(await decider.acceptedTags("reg.test", "acme/app", policy)).toEqual([
      "both",
      "notary-only",
      "tuf-only",
    ]);
    expect((await decider.decideDigest("reg.test", "acme/app", D_NOTARY, undefined)).source).toBe("notary");
  });

  it("a failing first source does not stop the second; audit and exceptions apply once, to both reasons", async () => {
    const { decider, tuf } = setup();
    tuf.failing = true;
    const d = await decider.decideTag("reg.test", "acme/app", "notary-only");
    expect(d.decision).toMatchObject({ decision: "allow", digest: D_NOTARY });
    expect(d.reuse).toBeUndefined();
    const refused = await decider.decideTag("reg.test", "acme/app", "unsigned");
    expect(refused.decision.reason).toMatch(
      /^tuf: .*TRUST_UNAVAILABLE.*; notary: reg.test\/acme\/app:unsigned is not signed/,
    );
    expect(refused.trustFailure).toBe("TRUST_UNAVAILABLE");
    const audit = setup(CUTOVER.replace("mode: enforce", "mode: audit"));
    const a = await audit.decider.decideTag("reg.test", "acme/app", "unsigned");
    expect(a.decision).toMatchObject({ decision: "allow", wouldDeny: true });
    expect(a.decision.reason).toMatch(/^audit: would deny: tuf: .*; notary: /);
    const ok = await audit.decider.decideTag("reg.test", "acme/app", "notary-only");
    expect(ok.decision).toMatchObject({
      decision: "allow",
      wouldDeny: false,
      mode: "audit",
      digest: D_NOTARY,
    });
  });

  it("a registry with both sources and a policy that names none is refused, and the start-up check says so", async () => {
    const plain = 'match: ["reg.test/acme/**"]\nmode: enforce\n';
    const { decider, set, sources } = setup(plain);
    const d = await decider.decideTag("reg.test", "acme/app", "both");
    expect(d.decision.decision).toBe("deny");
    expect(d.decision.reason).toContain(
      "registry reg.test has both notary and tuf configured: policy cut must say which count",
    );
    expect(sourceMismatches(set, sources)).toEqual([
      "cut.yaml:1: policy cut names no trust source for reg.test/acme/**, but registry reg.test has both notary and tuf: say which count, in order (trust.sources: [tuf, notary])",
    ]);
  });

  it("a listed source the registry lacks: refused at request time and listed at start", async () => {
    const { set } = PolicySet.build([policyOf(CUTOVER)]);
    const sources = TrustSources.fromMap(new Map([["reg.test", new ListSource("tuf", [])]]));
    expect(sourceMismatches(set as PolicySet, sources)).toEqual([
      "cut.yaml:1: policy cut lists notary in trust.sources for reg.test/acme/**, but registry reg.test has no notary: block (configured: tuf)",
    ]);
    const decider = new TrustDecider({
      policies: { current: set as PolicySet },
      defaultPolicy: "refuse",
      sources,
      now: () => new Date("2026-12-01T00:00:00Z"),
    });
    const d = await decider.decideTag("reg.test", "acme/app", "x");
    expect(d.decision.reason).toContain(
      "(TRUST_NOT_CONFIGURED): policy cut lists notary in trust.sources, but registry reg.test has no notary: block",
    );
  });

  it("policy explain names the sources in order and Notary's date", () => {
    const { set } = setup();
    const e = explain(set, "reg.test/acme/app:v1", parseImageReference("reg.test/acme/app:v1"), "refuse");
    expect(e.demands?.source).toBe("tuf, then notary (until 2026-12-08) (the first that verifies decides)");
    expect(renderExplanation(e)).toContain("trust:       source tuf, then notary (until 2026-12-08)");
  });
});
