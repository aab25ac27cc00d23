import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatProblem, loadPolicyDir, parsePolicyFile } from "../../src/policy/index.js";

const INVALID = "test/fixtures/policies/invalid";

// One fixture directory per validation error: the exact file:line and a fragment of the message.
const cases: Array<[dir: string, file: string, line: number, fragment: string]> = [
  ["yaml-syntax", "acme.yaml", 3, "YAML: Flow sequence"],
  ["duplicate-yaml-key", "acme.yaml", 4, "YAML: Map keys must be unique"],
  ["empty-file", "acme.yaml", 1, "file is empty"],
  ["unknown-key", "acme.yaml", 3, 'unknown key "rootkeys"'],
  ["unknown-trust-key", "acme.yaml", 6, 'unknown key "trust.rootKey"'],
  ["bad-key-id", "acme.yaml", 7, "is not a key ID (64 lower-case hex characters)"],
  ["short-key-id", "acme.yaml", 5, '"5f9c1e3a7b2d4c6e" is not a key ID'],
  ["pattern-no-registry", "official.yaml", 4, 'pattern "alpine" must begin with a registry name'],
  [
    "pattern-library-no-registry",
    "official.yaml",
    2,
    'pattern "library/alpine" must begin with a registry name',
  ],
  ["pattern-partial-wildcard", "acme.yaml", 4, "wildcards are whole segments"],
  ["pattern-registry-only", "acme.yaml", 4, "names no repository"],
  ["missing-mode", "acme.yaml", 1, "missing key: mode"],
  ["bad-mode", "acme.yaml", 3, 'mode must be one of enforce | audit | off, not "enforcing"'],
  ["bad-digest-pulls", "acme.yaml", 4, "digestPulls must be one of signed | any"],
  ["exception-without-reason", "acme.yaml", 7, "an exception needs a reason"],
  ["exception-outside-policy", "acme.yaml", 5, "matches no image this policy covers"],
  ["exception-bad-tag", "acme.yaml", 5, "is not a tag glob"],
  ["notary-role", "acme.yaml", 6, '"releases" is not a Notary role'],
  ["require-all-not-bool", "acme.yaml", 6, "trust.requireAll must be true or false"],
  ["bad-file-name", "Acme Corp.yaml", 1, "is not a valid policy name; add a name: key"],
  [
    "duplicate-name",
    "b.yaml",
    1,
    `policy name "acme" is already used by ${join(INVALID, "duplicate-name", "a.yaml")}`,
  ],
  ["tie-identical", "acme.yaml", 3, `ties with "docker.io/acme/**" of policy "acme-audit"`],
  [
    "tie-star",
    "b.yaml",
    2,
    `ties with "docker.io/*/app" of policy "a" (${join(INVALID, "tie-star", "a.yaml")}:2)`,
  ],
  ["tie-overlap", "tools.yaml", 4, "both match e.g. docker.io/base/tools"],
];

describe("policy validation: every error is file:line: message, and the directory does not load", () => {
  it.each(cases)("%s", async (dir, file, line, fragment) => {
    const result = await loadPolicyDir(join(INVALID, dir));
    expect(result.set).toBeUndefined();
    expect(result.problems).toHaveLength(1);
    const text = formatProblem(result.problems[0] as (typeof result.problems)[number]);
    expect(text.startsWith(`${join(INVALID, dir, file)}:${line}: `)).toBe(true);
    expect(text).toContain(fragment);
  });

  it("reports every problem of a file, not only the first", () => {
    const text = "name: acme\nmatch: [alpine, docker.io/acme/**]\nmode: strict\nfoo: 1\n";
    const { policy, problems } = parsePolicyFile("p.yaml", text);
    expect(policy).toBeUndefined();
    expect(problems.map((p) => p.line)).toEqual([2, 3, 4]);
  });

  it("a missing directory is a problem, not a crash", async () => {
    const result = await loadPolicyDir(join(INVALID, "does-not-exist"));
    expect(result.set).toBeUndefined();
    expect(formatProblem(result.problems[0] as (typeof result.problems)[number])).toMatch(
      /does-not-exist: cannot read policy directory: no such file/,
    );
  });

  it("ties are only between policies: the same shape inside one policy is fine", () => {
    const { problems } = parsePolicyFile(
      "p.yaml",
      "match: [docker.io/**/a/**, docker.io/**/b/**]\nmode: enforce\n",
    );
    expect(problems).toEqual([]);
  });

  it("the name defaults to the file stem", () => {
    const { policy } = parsePolicyFile("dir/globex.yml", "match: [docker.io/globex/**]\nmode: audit\n");
    expect(policy?.name).toBe("globex");
    expect(policy?.trust.roles).toEqual(["targets/releases", "targets"]);
    expect(policy?.trust.rootKeys).toEqual([]);
    expect(policy?.digestPulls).toBe("signed");
  });
});

describe("shipped policies/", () => {
  it("lints clean and covers the documented cases", async () => {
    const result = await loadPolicyDir("policies");
    expect(result.problems).toEqual([]);
    const set = result.set;
    expect(set).toBeDefined();
    const pinned = set?.match("docker.io/acme/app")?.policy;
    expect(pinned?.mode).toBe("enforce");
    expect(pinned?.trust.rootKeys).toHaveLength(1);
    expect(pinned?.trust.roles).toEqual(["targets/releases"]);
    expect(set?.match("ghcr.io/globex/web")?.policy.mode).toBe("audit");
    expect(set?.match("docker.io/library/alpine")?.policy.name).toBe("official-images");
  });
});
