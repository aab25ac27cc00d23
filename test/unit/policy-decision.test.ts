import { describe, expect, it } from "vitest";
import {
  type AppliedPolicy,
  applyPolicy,
  type DigestSignatures,
  decideDigestPull,
  decideTag,
  needsTrust,
  type Policy,
  PolicySet,
  parsePolicyFile,
  trustQueryFor,
} from "../../src/policy/index.js";
import { TrustError } from "../../src/trust/errors.js";
import type { SignedTarget, TagSignatures } from "../../src/trust/types.js";

const PINNED = "5f9c1e3a7b2d4c6e8f0a1b3c5d7e9f2a4b6c8d0e1f3a5b7c9d2e4f6a8b0c1d3e";
const SERVER_ROOT = "0b8ad3c6e1f4a7d2c5b8e1f4a7d0c3b6e9f2a5d8c1b4e7f0a3d6c9b2e5f8a1d4";
const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;

function policyFrom(yaml: string): Policy {
  const { policy, problems } = parsePolicyFile("test.yaml", yaml);
  expect(problems).toEqual([]);
  return policy as Policy;
}

function applied(yaml: string, image = "docker.io/acme/app"): AppliedPolicy {
  const { set, problems } = PolicySet.build([policyFrom(yaml)]);
  expect(problems).toEqual([]);
  return applyPolicy(set as PolicySet, image, "refuse");
}

function signed(tag: string, ...targets: Array<[role: string, digest: string]>): TagSignatures {
  const signatures: SignedTarget[] = targets.map(([role, digest]) => ({
    name: tag,
    role,
    digest,
    size: 1234,
  }));
  return { tag, signatures, source: "notary https://notary.test", expires: new Date("2030-01-01T00:00:00Z") };
}

const ref = { image: "docker.io/acme/app", tag: "latest" };

/** What signedByDigest answers: the digest's signatures, as (tag, role, digest). */
function bySig(tag: string, ...targets: Array<[role: string, digest: string]>): DigestSignatures {
  return { signatures: signed(tag, ...targets).signatures };
}
const NONE: DigestSignatures = { signatures: [] };
const ENFORCE = "name: acme\nmatch: [docker.io/acme/**]\nmode: enforce\n";
const AUDIT = "name: acme\nmatch: [docker.io/acme/**]\nmode: audit\n";

describe("enforce", () => {
  it("allows a tag signed in the first role that has it, in policy order (Docker)", () => {
    const d = decideTag(applied(ENFORCE), ref, signed("latest", ["targets/releases", D1], ["targets", D2]));
    expect(d).toMatchObject({
      decision: "allow",
      digest: D1,
      size: 1234,
      role: "targets/releases",
      policy: "acme",
    });
    const onlyTargets = decideTag(applied(ENFORCE), ref, signed("latest", ["targets", D2]));
    expect(onlyTargets).toMatchObject({ decision: "allow", digest: D2, role: "targets" });
  });

  it("refuses an unsigned tag, naming the image, the tag and the roles", () => {
    const d = decideTag(applied(ENFORCE), ref, signed("latest"));
    expect(d).toEqual({
      decision: "deny",
      policy: "acme",
      mode: "enforce",
      reason: "docker.io/acme/app:latest is not signed in targets/releases or targets",
    });
  });

  it("a signature in a role the policy does not list never counts", () => {
    const d = decideTag(applied(ENFORCE), ref, signed("latest", ["targets/qa", D1]));
    expect(d.decision).toBe("deny");
    const releasesOnly = applied(`${ENFORCE}trust:\n  roles: [targets/releases]\n`);
    expect(decideTag(releasesOnly, ref, signed("latest", ["targets", D1])).reason).toBe(
      "docker.io/acme/app:latest is not signed in targets/releases",
    );
  });

  it("a pinned root key that does not match refuses, naming both key IDs", () => {
    const pinned = applied(`${ENFORCE}trust:\n  rootKeys: [${PINNED}]\n`);
    const err = new TrustError(
      "ROOT_PIN_MISMATCH",
      "docker.io/acme/app",
      "root",
      `root.json is signed by ${SERVER_ROOT}, not by a pinned key`,
    );
    const d = decideTag(pinned, ref, err);
    expect(d.decision).toBe("deny");
    expect(d.reason).toContain(PINNED);
    expect(d.reason).toContain(SERVER_ROOT);
    expect(d.reason).toMatch(
      /^docker\.io\/acme\/app:latest: the trust root of docker\.io\/acme\/app is not signed by a key pinned by policy acme/,
    );
  });

  it("fails closed on any trust error and when trust was not consulted", () => {
    const err = new TrustError(
      "TRUST_UNAVAILABLE",
      "docker.io/acme/app",
      undefined,
      "notary.test: connection refused",
    );
    expect(decideTag(applied(ENFORCE), ref, err)).toMatchObject({ decision: "deny" });
    expect(decideTag(applied(ENFORCE), ref, err).reason).toContain("TRUST_UNAVAILABLE");
    expect(decideTag(applied(ENFORCE), ref, undefined).decision).toBe("deny");
  });

  it("refuses a trust answer for another tag", () => {
    expect(decideTag(applied(ENFORCE), ref, signed("v2", ["targets", D1])).decision).toBe("deny");
  });
});

describe("requireAll: every listed role signs the same digest", () => {
  const REQUIRE_ALL = `${ENFORCE}trust:\n  roles: [targets/qa, targets/releases]\n  requireAll: true\n`;
  it("allows when all roles sign the same digest", () => {
    const d = decideTag(
      applied(REQUIRE_ALL),
      ref,
      signed("latest", ["targets/qa", D1], ["targets/releases", D1]),
    );
    expect(d).toMatchObject({ decision: "allow", digest: D1, role: "targets/qa+targets/releases" });
  });
  it("refuses naming the missing delegation", () => {
    const d = decideTag(applied(REQUIRE_ALL), ref, signed("latest", ["targets/releases", D1]));
    expect(d.decision).toBe("deny");
    expect(d.reason).toBe(
      "docker.io/acme/app:latest is not signed in targets/qa (policy acme requires all of targets/qa, targets/releases)",
    );
  });
  it("refuses when the roles sign different digests", () => {
    const d = decideTag(
      applied(REQUIRE_ALL),
      ref,
      signed("latest", ["targets/qa", D1], ["targets/releases", D2]),
    );
    expect(d.decision).toBe("deny");
    expect(d.reason).toContain(`targets/qa: ${D1}, targets/releases: ${D2}`);
  });
});

describe("audit and off", () => {
  it("audit lets an unsigned tag through and reports the would-be refusal", () => {
    const d = decideTag(applied(AUDIT), ref, signed("latest"));
    expect(d).toEqual({
      decision: "allow",
      wouldDeny: true,
      policy: "acme",
      mode: "audit",
      reason: "audit: would deny: docker.io/acme/app:latest is not signed in targets/releases or targets",
    });
    expect(d.digest).toBeUndefined();
  });
  it("audit still pins a signed tag to its digest", () => {
    const d = decideTag(applied(AUDIT), ref, signed("latest", ["targets", D1]));
    expect(d).toMatchObject({ decision: "allow", wouldDeny: false, digest: D1 });
  });
  it("off allows without trust, and the caller need not ask", () => {
    const off = applied("name: acme\nmatch: [docker.io/acme/**]\nmode: off\n");
    expect(needsTrust(off)).toBe(false);
    expect(decideTag(off, ref, undefined)).toMatchObject({ decision: "allow", mode: "off" });
    expect(needsTrust(applied(AUDIT))).toBe(true);
  });
  it("no policy: refused with the default's name and the reason", () => {
    const none = applied(ENFORCE, "ghcr.io/other/app");
    expect(needsTrust(none)).toBe(false);
    expect(decideTag(none, { image: "ghcr.io/other/app", tag: "v1" }, undefined)).toEqual({
      decision: "deny",
      policy: "defaultPolicy",
      mode: "refuse",
      reason: "ghcr.io/other/app:v1: no policy covers ghcr.io/other/app",
    });
  });
});

describe("exceptions", () => {
  const WITH_EXCEPTIONS =
    `${ENFORCE}exceptions:\n` +
    "  - repository: docker.io/acme/legacy\n    reason: legacy is retired in Q3\n" +
    '  - tag: "pr-*"\n    reason: PR previews\n' +
    "  - repository: docker.io/acme/tools/*\n    tag: nightly\n    reason: nightly tools\n";
  const app = (image: string) => applied(WITH_EXCEPTIONS, image);

  it("allows an unsigned pull that matches, logged as an exception", () => {
    const d = decideTag(
      app("docker.io/acme/legacy"),
      { image: "docker.io/acme/legacy", tag: "1.0" },
      signed("1.0"),
    );
    expect(d).toMatchObject({ decision: "allow", exception: "legacy is retired in Q3", policy: "acme" });
    expect(d.reason).toMatch(
      /^exception: legacy is retired in Q3 \(docker\.io\/acme\/legacy:1\.0 is not signed/,
    );
    expect(decideTag(app("docker.io/acme/app"), { ...ref, tag: "pr-17" }, signed("pr-17")).exception).toBe(
      "PR previews",
    );
  });
  it("repository and tag must both match when both are given", () => {
    const image = "docker.io/acme/tools/lint";
    expect(decideTag(app(image), { image, tag: "nightly" }, signed("nightly")).decision).toBe("allow");
    expect(decideTag(app(image), { image, tag: "v1" }, signed("v1")).decision).toBe("deny");
  });
  it("a signed tag under an exception is still pinned to its signed digest", () => {
    const d = decideTag(app("docker.io/acme/app"), { ...ref, tag: "pr-1" }, signed("pr-1", ["targets", D1]));
    expect(d).toMatchObject({ decision: "allow", digest: D1 });
    expect(d.exception).toBeUndefined();
  });
  it("tag exceptions never cover digest pulls; repository exceptions do", () => {
    const digestRef = { image: "docker.io/acme/app", digest: D1 };
    expect(decideDigestPull(app("docker.io/acme/app"), digestRef, NONE).decision).toBe("deny");
    const legacy = { image: "docker.io/acme/legacy", digest: D1 };
    expect(decideDigestPull(app("docker.io/acme/legacy"), legacy, NONE).decision).toBe("allow");
  });
});

describe("digest pulls", () => {
  it("signed: only signed digests; any: every digest", () => {
    const digestRef = { image: "docker.io/acme/app", digest: D1 };
    expect(decideDigestPull(applied(ENFORCE), digestRef, bySig("v1", ["targets", D1]))).toMatchObject({
      decision: "allow",
      digest: D1,
    });
    expect(decideDigestPull(applied(ENFORCE), digestRef, NONE).reason).toBe(
      `docker.io/acme/app@${D1} is not a signed manifest of docker.io/acme/app (policy acme: digestPulls: signed)`,
    );
    expect(decideDigestPull(applied(`${ENFORCE}digestPulls: any\n`), digestRef, NONE).decision).toBe("allow");
  });
});

describe("T3: a digest is judged by the policy's own tag rule", () => {
  const REQUIRE_ALL = `${ENFORCE}trust:\n  roles: [targets/releases, targets]\n  requireAll: true\n`;
  const digestRef = { image: "docker.io/acme/app", digest: D1 };

  it("T3: with requireAll, a digest signed in targets only is refused, as the tag is", () => {
    const tag = decideTag(applied(REQUIRE_ALL), ref, signed("latest", ["targets", D1]));
    const digest = decideDigestPull(applied(REQUIRE_ALL), digestRef, bySig("latest", ["targets", D1]));
    expect(tag.decision).toBe("deny");
    expect(digest).toEqual({
      decision: "deny",
      policy: "acme",
      mode: "enforce",
      reason: `docker.io/acme/app@${D1}, signed as tag latest in targets, is not signed in targets/releases (policy acme requires all of targets/releases, targets)`,
    });
    const both = bySig("latest", ["targets/releases", D1], ["targets", D1]);
    expect(decideDigestPull(applied(REQUIRE_ALL), digestRef, both)).toMatchObject({
      decision: "allow",
      digest: D1,
      size: 1234,
      role: "targets/releases+targets",
      reason: `docker.io/acme/app@${D1} is signed as tag latest in targets/releases and targets`,
    });
  });

  it("T3: audit reports the would-be refusal of an insufficiently signed digest", () => {
    const audit = `${AUDIT}trust:\n  roles: [targets/releases, targets]\n  requireAll: true\n`;
    expect(decideDigestPull(applied(audit), digestRef, bySig("latest", ["targets", D1]))).toMatchObject({
      decision: "allow",
      wouldDeny: true,
      reason: expect.stringContaining("is not signed in targets/releases"),
    });
  });

  it("T3: a digest's signatures under different tags do not add up; under one accepted tag they do", () => {
    const split: DigestSignatures = {
      signatures: [
        ...bySig("v1", ["targets", D1]).signatures,
        ...bySig("v2", ["targets/releases", D1]).signatures,
      ],
    };
    expect(decideDigestPull(applied(REQUIRE_ALL), digestRef, split).decision).toBe("deny");
    const plus: DigestSignatures = {
      signatures: [...split.signatures, ...bySig("v3", ["targets/releases", D1], ["targets", D1]).signatures],
    };
    expect(decideDigestPull(applied(REQUIRE_ALL), digestRef, plus)).toMatchObject({
      decision: "allow",
      reason: expect.stringContaining("as tag v3"),
    });
  });

  it("T3: a child is vouched for by its index only as far as the policy accepts the index", () => {
    const child = { image: "docker.io/acme/app", digest: D2 };
    const index = (sigs: DigestSignatures) => ({ signatures: [], index: { root: D1, size: 77, ...sigs } });
    expect(decideDigestPull(applied(REQUIRE_ALL), child, index(bySig("v1", ["targets", D1])))).toMatchObject({
      decision: "deny",
      reason: expect.stringContaining(
        `is listed in the index ${D1}, which is not signed as policy acme demands`,
      ),
    });
    expect(
      decideDigestPull(
        applied(REQUIRE_ALL),
        child,
        index(bySig("v1", ["targets/releases", D1], ["targets", D1])),
      ),
    ).toMatchObject({ decision: "allow", digest: D2, size: 77, index: D1, role: "targets/releases+targets" });
    // the default rule: one role in the policy's list is enough, any other role never counts
    expect(decideDigestPull(applied(ENFORCE), child, index(bySig("v1", ["targets", D1])))).toMatchObject({
      decision: "allow",
      index: D1,
      role: "targets",
    });
    expect(decideDigestPull(applied(ENFORCE), child, index(bySig("v1", ["targets/qa", D1]))).decision).toBe(
      "deny",
    );
  });

  it("digestPulls: any still lets an insufficiently signed digest through, unpinned", () => {
    const any = applied(`${REQUIRE_ALL}digestPulls: any\n`);
    const d = decideDigestPull(any, digestRef, bySig("latest", ["targets", D1]));
    expect(d).toMatchObject({ decision: "allow", reason: expect.stringContaining("digestPulls: any") });
    expect(d.digest).toBeUndefined();
  });

  it("a trust failure by digest names its code, as by tag", () => {
    const err = new TrustError("EXPIRED", "docker.io/acme/app", "timestamp", "timestamp expired");
    expect(decideDigestPull(applied(ENFORCE), digestRef, err).reason).toBe(
      `docker.io/acme/app@${D1}: trust could not be established (EXPIRED): timestamp expired`,
    );
  });
});

describe("trustQueryFor", () => {
  it("carries roles in order and pinned keys only when pinned", () => {
    const pinned = policyFrom(
      `${ENFORCE}trust:\n  rootKeys: [${PINNED}]\n  roles: [targets/releases]\n  source: tuf\n`,
    );
    expect(trustQueryFor(pinned, "docker.io", "acme/app")).toEqual({
      registry: "docker.io",
      repository: "acme/app",
      roles: ["targets/releases"],
      rootKeys: [PINNED],
    });
    expect(pinned.trust.source).toBe("tuf");
    expect(trustQueryFor(policyFrom(ENFORCE), "docker.io", "acme/app")).not.toHaveProperty("rootKeys");
  });
});
