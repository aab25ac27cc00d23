/**
 * A validated, immutable set of policies and the one question the request path asks of it:
 * which policy governs this canonical image?
 *
 * Built once per (re)load; patterns are grouped by registry and pre-sorted by specificity, so
 * `match` is a map lookup and a scan that stops at the first (most specific) matching pattern.
 * Ties are refused when the set is built, so the first match is the only possible answer.
 */
import { compareSpecificity, type ImagePattern, matchSegments, overlapWitness } from "./pattern.js";
import type { Policy, PolicyProblem } from "./types.js";

export interface PolicyMatch {
  readonly policy: Policy;
  /** the pattern that won */
  readonly pattern: ImagePattern;
  /** for logs and explain: which pattern won and over what (computed on first read, off the hot path) */
  readonly why: string;
}

class LazyMatch implements PolicyMatch {
  readonly policy: Policy;
  readonly pattern: ImagePattern;
  readonly #entries: readonly Entry[];
  readonly #index: number;
  readonly #path: readonly string[];
  #why: string | undefined;
  constructor(entries: readonly Entry[], index: number, path: readonly string[]) {
    const entry = entries[index] as Entry;
    this.policy = entry.policy;
    this.pattern = entry.pattern;
    this.#entries = entries;
    this.#index = index;
    this.#path = path;
  }
  get why(): string {
    this.#why ??= describeWin(this.#entries, this.#index, this.#path);
    return this.#why;
  }
}

interface Entry {
  readonly pattern: ImagePattern;
  readonly policy: Policy;
  readonly line: number;
}

export class PolicySet {
  readonly policies: readonly Policy[];
  /** per registry, every pattern, most specific first */
  readonly #byRegistry: ReadonlyMap<string, readonly Entry[]>;

  private constructor(policies: readonly Policy[], byRegistry: ReadonlyMap<string, readonly Entry[]>) {
    this.policies = policies;
    this.#byRegistry = byRegistry;
    Object.freeze(this);
  }

  static empty(): PolicySet {
    return new PolicySet(Object.freeze([]), new Map());
  }

  /**
   * Cross-policy checks (unique names, no ties) and indexing. `policies` are already valid one by one.
   * Problems are reported at the second occurrence, naming the first.
   */
  static build(policies: readonly Policy[]): { set: PolicySet | undefined; problems: PolicyProblem[] } {
    const problems: PolicyProblem[] = [];
    const byName = new Map<string, Policy>();
    for (const policy of policies) {
      const first = byName.get(policy.name);
      if (first) {
        problems.push({
          file: policy.file,
          line: 1,
          message: `policy name "${policy.name}" is already used by ${first.file}; names must be unique`,
        });
      } else {
        byName.set(policy.name, policy);
      }
    }

    const byRegistry = new Map<string, Entry[]>();
    for (const policy of policies) {
      policy.match.forEach((pattern, k) => {
        const line = policy.matchLines[k] ?? 1;
        const list = byRegistry.get(pattern.registry) ?? [];
        for (const other of list) {
          if (other.policy === policy || compareSpecificity(other.pattern, pattern) !== 0) continue;
          const example = overlapWitness(other.pattern, pattern);
          if (example === undefined) continue;
          problems.push({
            file: policy.file,
            line,
            message:
              `match pattern "${pattern.source}" ties with "${other.pattern.source}" of policy "${other.policy.name}" ` +
              `(${other.policy.file}:${other.line}): equally specific, and both match e.g. ${example}; ` +
              `make one of them more specific`,
          });
        }
        list.push({ pattern, policy, line });
        byRegistry.set(pattern.registry, list);
      });
    }
    if (problems.length > 0) return { set: undefined, problems };
    for (const list of byRegistry.values()) {
      // Stable sort: among equally specific (hence disjoint, or same-policy) patterns, file order.
      list.sort((a, b) => compareSpecificity(a.pattern, b.pattern));
      Object.freeze(list);
    }
    return { set: new PolicySet(Object.freeze([...policies]), byRegistry), problems };
  }

  /**
   * The policy governing `canonicalImage` (`docker.io/library/alpine`: registry, then repository;
   * no tag, no digest), or undefined when none does. Hot path: no allocation beyond the split.
   */
  match(canonicalImage: string): PolicyMatch | undefined {
    const slash = canonicalImage.indexOf("/");
    if (slash <= 0) return undefined;
    const entries = this.#byRegistry.get(canonicalImage.slice(0, slash));
    if (!entries) return undefined;
    const path = canonicalImage.slice(slash + 1).split("/");
    for (let k = 0; k < entries.length; k++) {
      const entry = entries[k] as Entry;
      if (!matchSegments(entry.pattern.segments, path)) continue;
      return new LazyMatch(entries, k, path);
    }
    return undefined;
  }

  /** Every pattern that matches, most specific first (explain only; not for the request path). */
  allMatches(canonicalImage: string): Array<{ policy: Policy; pattern: ImagePattern }> {
    const slash = canonicalImage.indexOf("/");
    const entries = slash > 0 ? this.#byRegistry.get(canonicalImage.slice(0, slash)) : undefined;
    const path = canonicalImage.slice(slash + 1).split("/");
    return (entries ?? [])
      .filter((e) => matchSegments(e.pattern.segments, path))
      .map((e) => ({ policy: e.policy, pattern: e.pattern }));
  }
}

function describeWin(entries: readonly Entry[], index: number, path: readonly string[]): string {
  const winner = entries[index] as Entry;
  const where = `${winner.policy.file}:${winner.line}`;
  // The runners-up are the later (less specific) entries that also match.
  const losers: string[] = [];
  for (let k = index + 1; k < entries.length && losers.length < 3; k++) {
    const e = entries[k] as Entry;
    if (matchSegments(e.pattern.segments, path)) losers.push(`"${e.pattern.source}" (${e.policy.name})`);
  }
  return losers.length === 0
    ? `pattern "${winner.pattern.source}" (${where}) is the only one that matches`
    : `pattern "${winner.pattern.source}" (${where}) is more specific than ${losers.join(", ")}`;
}
