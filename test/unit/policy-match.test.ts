import { beforeAll, describe, expect, it } from "vitest";
import { applyPolicy, loadPolicyDir, type PolicySet, parseImageReference } from "../../src/policy/index.js";

let set: PolicySet;
beforeAll(async () => {
  const loaded = await loadPolicyDir("test/fixtures/policies/precedence");
  expect(loaded.problems).toEqual([]);
  set = loaded.set as PolicySet;
});

describe("PolicySet.match: the most specific pattern wins", () => {
  it.each([
    ["docker.io/acme/app", "acme-app", "docker.io/acme/app"],
    ["docker.io/acme/web", "acme", "docker.io/acme/**"],
    ["docker.io/acme/team/app", "acme", "docker.io/acme/**"],
    ["docker.io/globex/app", "any-app", "docker.io/*/app"],
    ["docker.io/library/alpine", "official", "docker.io/library/*"],
    ["docker.io/library/team/alpine", "hub", "docker.io/**"],
    ["docker.io/globex/web", "hub", "docker.io/**"],
  ])("%s -> %s", (image, policy, pattern) => {
    const m = set.match(image);
    expect(m?.policy.name).toBe(policy);
    expect(m?.pattern.source).toBe(pattern);
  });

  it("says why: the winner and the patterns it beat", () => {
    const m = set.match("docker.io/acme/app");
    expect(m?.why).toMatch(/^pattern "docker\.io\/acme\/app" \(.*acme-app\.yaml:2\) is more specific than /);
    expect(m?.why).toContain('"docker.io/acme/**" (acme)');
    expect(m?.why).toContain('"docker.io/*/app" (any-app)');
  });

  it("no policy for another registry; ignores editor swap files and non-yaml files", () => {
    expect(set.match("ghcr.io/acme/app")).toBeUndefined();
    expect(set.policies.map((p) => p.name).sort()).toEqual([
      "acme",
      "acme-app",
      "any-app",
      "hub",
      "official",
    ]);
  });
});

describe("applyPolicy: defaultPolicy when nothing matches", () => {
  it("refuse (the shipped default) says no policy covers the image", () => {
    const applied = applyPolicy(set, "ghcr.io/acme/app", "refuse");
    expect(applied).toMatchObject({ kind: "refuse", why: "no policy covers ghcr.io/acme/app" });
  });
  it("a mode default applies Docker's roles with trust on first use", () => {
    const applied = applyPolicy(set, "ghcr.io/acme/app", "audit");
    expect(applied.kind).toBe("policy");
    if (applied.kind !== "policy") return;
    expect(applied.fromDefault).toBe(true);
    expect(applied.policy.mode).toBe("audit");
    expect(applied.policy.trust.roles).toEqual(["targets/releases", "targets"]);
  });
  it("a matching file beats the default", () => {
    const applied = applyPolicy(set, "docker.io/acme/web", "off");
    expect(applied.kind === "policy" && applied.policy.name).toBe("acme");
  });
});

describe("parseImageReference: Docker Hub normalisation", () => {
  it.each([
    ["alpine", "docker.io/library/alpine", undefined],
    ["alpine:3.20", "docker.io/library/alpine", "3.20"],
    ["acme/app:v1", "docker.io/acme/app", "v1"],
    ["docker.io/alpine", "docker.io/library/alpine", undefined],
    ["index.docker.io/acme/app", "docker.io/acme/app", undefined],
    ["localhost:5000/app:latest", "localhost:5000/app", "latest"],
    ["ghcr.io/org/team/app", "ghcr.io/org/team/app", undefined],
  ])("%s -> %s", (input, image, tag) => {
    const ref = parseImageReference(input);
    expect(ref.image).toBe(image);
    expect(ref.tag).toBe(tag);
  });
  it("keeps a digest and rejects upper-case repositories", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    expect(parseImageReference(`alpine@${digest}`).digest).toBe(digest);
    expect(() => parseImageReference("acme/App")).toThrow(/not a valid repository path component/);
  });
});
