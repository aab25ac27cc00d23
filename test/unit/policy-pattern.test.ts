import { describe, expect, it } from "vitest";
import {
  compareSpecificity,
  type ImagePattern,
  matchSegments,
  overlapWitness,
  parseImagePattern,
} from "../../src/policy/pattern.js";

const p = parseImagePattern;
const matches = (pattern: string, image: string) => {
  const parsed = p(pattern);
  const [registry, ...path] = image.split("/");
  return parsed.registry === registry && matchSegments(parsed.segments, path);
};

describe("pattern matching", () => {
  it("* is one segment, ** any number including none", () => {
    expect(matches("docker.io/acme/*", "docker.io/acme/app")).toBe(true);
    expect(matches("docker.io/acme/*", "docker.io/acme/team/app")).toBe(false);
    expect(matches("docker.io/acme/**", "docker.io/acme/team/app")).toBe(true);
    expect(matches("docker.io/acme/**", "docker.io/acme")).toBe(true);
    expect(matches("docker.io/acme/**", "docker.io/acmex/app")).toBe(false);
    expect(matches("docker.io/**/base", "docker.io/a/b/c/base")).toBe(true);
    expect(matches("docker.io/**/base", "docker.io/a/base/c")).toBe(false);
    expect(matches("docker.io/**/base/**", "docker.io/a/base/c")).toBe(true);
    expect(matches("docker.io/acme/**", "ghcr.io/acme/app")).toBe(false);
  });

  it("rejects names without a registry and malformed segments", () => {
    expect(() => p("alpine")).toThrow(/must begin with a registry name/);
    expect(() => p("library/alpine")).toThrow(/must begin with a registry name/);
    expect(() => p("**/alpine")).toThrow(/must begin with a registry name/);
    expect(() => p("docker.io/Acme")).toThrow(/not a valid repository path component/);
    expect(() => p("docker.io/**/**")).toThrow(/redundant/);
    expect(() => p("Docker.io/acme")).toThrow(/lower-case registry/);
    expect(p("localhost:5000/x").registry).toBe("localhost:5000");
  });
});

describe("specificity", () => {
  const order = (patterns: string[]) =>
    patterns
      .map(p)
      .sort(compareSpecificity)
      .map((x) => x.source);

  it("literal beats * beats end beats **, segment by segment from the left", () => {
    expect(
      order([
        "docker.io/**",
        "docker.io/acme/**",
        "docker.io/*/app",
        "docker.io/acme/*",
        "docker.io/acme/app",
      ]),
    ).toEqual([
      "docker.io/acme/app",
      "docker.io/acme/*",
      "docker.io/acme/**",
      "docker.io/*/app",
      "docker.io/**",
    ]);
    // a pattern that ends is more specific than one that continues with **
    expect(compareSpecificity(p("docker.io/acme/*"), p("docker.io/acme/*/**"))).toBeLessThan(0);
    expect(compareSpecificity(p("docker.io/a/*"), p("docker.io/b/*"))).toBe(0);
  });
});

describe("overlap check", () => {
  it("finds a witness or proves disjoint", () => {
    expect(overlapWitness(p("docker.io/**/base/**"), p("docker.io/**/tools/**"))).toBe(
      "docker.io/base/tools",
    );
    expect(overlapWitness(p("docker.io/a/*"), p("docker.io/b/*"))).toBeUndefined();
    expect(overlapWitness(p("docker.io/**/a"), p("docker.io/**/b"))).toBeUndefined();
    expect(overlapWitness(p("docker.io/*/app"), p("ghcr.io/*/app"))).toBeUndefined();
  });

  it("agrees with brute force on every pair of small patterns (bounded)", () => {
    // All patterns of 1..3 segments over {a, b, *, **}, checked against every path of 1..6 segments over {a, b, c}.
    const tokens = ["a", "b", "*", "**"];
    const patterns: ImagePattern[] = [];
    const grow = (prefix: string[]) => {
      if (prefix.length > 0) {
        try {
          patterns.push(p(`r.io/${prefix.join("/")}`));
        } catch {
          // `**/**` is rejected by design
        }
      }
      if (prefix.length < 3) for (const t of tokens) grow([...prefix, t]);
    };
    grow([]);
    const paths: string[][] = [];
    const walk = (prefix: string[]) => {
      if (prefix.length > 0) paths.push(prefix);
      if (prefix.length < 6) for (const s of ["a", "b", "c"]) walk([...prefix, s]);
    };
    walk([]);
    let checked = 0;
    for (const x of patterns) {
      for (const y of patterns) {
        const brute = paths.some(
          (path) => matchSegments(x.segments, path) && matchSegments(y.segments, path),
        );
        const witness = overlapWitness(x, y);
        expect(witness !== undefined, `${x.source} vs ${y.source}`).toBe(brute);
        if (witness) {
          const path = witness.split("/").slice(1);
          expect(matchSegments(x.segments, path) && matchSegments(y.segments, path)).toBe(true);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });
});
