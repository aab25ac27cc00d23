/**
 * Image-name patterns: the `match:` entries of a policy file and the `repository:` of an exception.
 *
 * A pattern is a canonical image name (`<registry>/<path>`, as Docker and containerd name images
 * after normalisation: `docker.io/library/alpine`, never `alpine`) whose path segments may be
 * wildcards. Wildcards are whole segments only, which keeps matching, ordering and the overlap
 * check exact:
 *   - a literal segment matches itself;
 *   - `*` matches exactly one segment;
 *   - `**` matches any number of segments, including none (as in .gitignore).
 * The registry segment is always literal: a pattern says which registry it is about.
 *
 * Specificity (which of several matching patterns wins) is lexicographic over segments, left to
 * right, with the rank literal > `*` > (end of pattern) > `**`. The first segment where two patterns
 * differ in rank decides. So `docker.io/acme/app` beats `docker.io/acme/*` beats `docker.io/acme/**`,
 * and `docker.io/acme/*` beats `docker.io/*\/app` (the earlier literal wins). Two patterns with the
 * same rank sequence are equally specific; if both can match one image, that is a tie (a load error).
 */

/** OCI distribution path component grammar (distribution/reference: `path-component`). */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
/** A registry host[:port] as Docker's reference grammar accepts it (lower case: canonical form). */
const REGISTRY =
  /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$/;

export type Segment =
  | { readonly kind: "literal"; readonly value: string }
  | { readonly kind: "one" } // `*`
  | { readonly kind: "any" }; // `**`

export interface ImagePattern {
  /** the pattern as written */
  readonly source: string;
  /** the registry (first segment, literal) */
  readonly registry: string;
  /** path segments after the registry */
  readonly segments: readonly Segment[];
  /** rank per segment, for ordering; see `compareSpecificity` */
  readonly ranks: readonly number[];
}

const RANK_LITERAL = 3;
const RANK_ONE = 2;
const RANK_END = 1;
const RANK_ANY = 0;

export class PatternSyntaxError extends Error {}

/**
 * Docker's rule for "does this name start with a registry": the first component contains a `.` or
 * a `:`, or is `localhost` (distribution/reference normalize.go `splitDockerDomain`).
 */
export function looksLikeRegistry(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

export function parseImagePattern(source: string): ImagePattern {
  const parts = source.split("/");
  const registry = parts[0] ?? "";
  if (registry === "" || registry === "*" || registry === "**") {
    throw new PatternSyntaxError(`pattern "${source}" must begin with a registry name, e.g. docker.io/...`);
  }
  if (!looksLikeRegistry(registry)) {
    throw new PatternSyntaxError(
      `pattern "${source}" must begin with a registry name (a host with a "." or ":", or localhost); ` +
        `Docker Hub images are written docker.io/library/<name> or docker.io/<org>/<name>`,
    );
  }
  if (!REGISTRY.test(registry)) {
    throw new PatternSyntaxError(
      `pattern "${source}": "${registry}" is not a lower-case registry host[:port]`,
    );
  }
  const rest = parts.slice(1);
  if (rest.length === 0) {
    throw new PatternSyntaxError(
      `pattern "${source}" names no repository; write ${registry}/** for every repository of the registry`,
    );
  }
  const segments: Segment[] = rest.map((part) => {
    if (part === "*") return { kind: "one" } as const;
    if (part === "**") return { kind: "any" } as const;
    if (part.includes("*")) {
      throw new PatternSyntaxError(
        `pattern "${source}": "${part}" mixes "*" with other characters; wildcards are whole segments (* or **)`,
      );
    }
    if (!PATH_COMPONENT.test(part)) {
      throw new PatternSyntaxError(
        `pattern "${source}": "${part}" is not a valid repository path component (lower case a-z, 0-9, separators . _ __ -)`,
      );
    }
    return { kind: "literal", value: part } as const;
  });
  for (let i = 1; i < segments.length; i++) {
    if (segments[i]?.kind === "any" && segments[i - 1]?.kind === "any") {
      throw new PatternSyntaxError(`pattern "${source}": "**/**" is redundant; write "**" once`);
    }
  }
  const ranks = segments.map((s) =>
    s.kind === "literal" ? RANK_LITERAL : s.kind === "one" ? RANK_ONE : RANK_ANY,
  );
  return Object.freeze({ source, registry, segments: Object.freeze(segments), ranks: Object.freeze(ranks) });
}

/**
 * Order by specificity: negative when `a` is MORE specific than `b`, 0 when equally specific.
 * Sorting ascending with this comparator puts the winner first.
 */
export function compareSpecificity(a: ImagePattern, b: ImagePattern): number {
  const n = Math.max(a.ranks.length, b.ranks.length);
  for (let i = 0; i < n; i++) {
    const ra = a.ranks[i] ?? RANK_END;
    const rb = b.ranks[i] ?? RANK_END;
    if (ra !== rb) return rb - ra;
  }
  return 0;
}

/**
 * Does `pattern` match the path segments of a canonical image (registry already compared)?
 * The classic wildcard algorithm with single backtrack point, on segments instead of characters
 * (`**` plays the role of `*`, `*` of `?`): linear for one `**`, O(n*m) worst case, no allocation.
 */
export function matchSegments(segments: readonly Segment[], path: readonly string[]): boolean {
  let p = 0;
  let s = 0;
  let starP = -1;
  let starS = 0;
  while (s < path.length) {
    const seg = segments[p];
    if (seg !== undefined && seg.kind === "any") {
      starP = p++;
      starS = s;
    } else if (seg !== undefined && (seg.kind === "one" || seg.value === path[s])) {
      p++;
      s++;
    } else if (starP >= 0) {
      p = starP + 1;
      s = ++starS;
    } else {
      return false;
    }
  }
  while (p < segments.length && segments[p]?.kind === "any") p++;
  return p === segments.length;
}

/**
 * Can some image match both patterns? Breadth-first search over the product of the two patterns'
 * automata (state = position in each pattern). Returns an example image when they overlap, so the
 * tie error can show the user a concrete name; undefined when the languages are disjoint.
 */
export function overlapWitness(a: ImagePattern, b: ImagePattern): string | undefined {
  if (a.registry !== b.registry) return undefined;
  const x = a.segments;
  const y = b.segments;
  type State = { i: number; j: number; path: readonly string[] };
  const seen = new Set<number>();
  const key = (i: number, j: number) => i * (y.length + 1) + j;
  const queue: State[] = [{ i: 0, j: 0, path: [] }];
  seen.add(key(0, 0));
  const push = (i: number, j: number, path: readonly string[]) => {
    if (seen.has(key(i, j))) return;
    seen.add(key(i, j));
    queue.push({ i, j, path });
  };
  // Moves of one automaton on one segment: [next position, required literal or undefined for "any"].
  const moves = (segs: readonly Segment[], i: number): Array<[number, string | undefined]> => {
    const seg = segs[i];
    if (seg === undefined) return [];
    if (seg.kind === "literal") return [[i + 1, seg.value]];
    if (seg.kind === "one") return [[i + 1, undefined]];
    return [[i, undefined]]; // `**` consumes a segment and stays
  };
  for (let head = 0; head < queue.length; head++) {
    const { i, j, path } = queue[head] as State;
    if (i === x.length && j === y.length) {
      // A zero-segment path is never an image; but a `**`-only pair also matches one segment.
      return `${a.registry}/${(path.length > 0 ? path : ["x"]).join("/")}`;
    }
    // `**` may also match nothing.
    if (x[i]?.kind === "any") push(i + 1, j, path);
    if (y[j]?.kind === "any") push(i, j + 1, path);
    for (const [ni, li] of moves(x, i)) {
      for (const [nj, lj] of moves(y, j)) {
        if (li !== undefined && lj !== undefined && li !== lj) continue;
        push(ni, nj, [...path, li ?? lj ?? "x"]);
      }
    }
  }
  return undefined;
}
