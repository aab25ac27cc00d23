/**
 * Image -> TUF target path. The template names the target a tag is signed under, e.g. the default
 * "{registry}/{repository}:{tag}" maps docker.io/acme/app:v1 to "docker.io/acme/app:v1", which a
 * delegation with paths ["docker.io/acme/*"] covers (tuf-js matches path patterns segment by
 * segment: "*" never crosses a "/").
 */
import { ConfigError } from "../../errors.js";

export const DEFAULT_TARGET_PATH_TEMPLATE = "{registry}/{repository}:{tag}";

const PLACEHOLDER = /\{(registry|repository|tag)\}/g;
/** OCI distribution spec: a tag is [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
const TAG_PATTERN = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}";

export interface ImageName {
  registry: string;
  repository: string;
}

/** The target paths of one image's tags, as seen by the digest index (session.ts resolveScope). */
export interface TargetScope {
  /** whether `path` is the target path of one of the image's tags */
  matches(path: string): boolean;
  /**
   * Whether a delegation with these path patterns may cover a target path of the image. It may
   * answer true for a delegation that covers none (the index then loads one role too many), never
   * false for one that covers some (a signed tag would be missing from the index).
   */
  mayDelegate(patterns: readonly string[]): boolean;
}

/** Characters with a meaning to minimatch (globs, classes, braces, extglobs, escapes, negation, comments). */
const GLOB_CHARS = /[*?[\]{}()!+@\\#]/;
/** stands for the tag while a template is split into path segments: no pattern or path holds it */
const TAG_SENTINEL = "\u0000";

export class TargetPathTemplate {
  constructor(readonly template: string = DEFAULT_TARGET_PATH_TEMPLATE) {
    const unknown = template.replace(PLACEHOLDER, "").match(/\{[^}]*\}/);
    if (unknown) throw new ConfigError(`tuf.targetPath: unknown placeholder ${unknown[0]} in "${template}"`);
    if (template.split("{tag}").length !== 2) {
      throw new ConfigError(`tuf.targetPath: "${template}" must contain {tag} exactly once`);
    }
  }

  render(image: ImageName, tag: string): string {
    return this.template.replace(PLACEHOLDER, (_, name: string) =>
      name === "registry" ? image.registry : name === "repository" ? image.repository : tag,
    );
  }

  /**
   * The image's target paths, and which delegations may cover them. tuf-js matches a delegated
   * path pattern segment by segment, each with minimatch (@tufjs/models isTargetInPathPattern), and
   * a tag never holds "/", so every target path of the image has the template's segments: the
   * segments without {tag} are literals, the one with it is `<before>TAG<after>`. A pattern may
   * cover the image when it has as many segments, each literal pattern segment equals the image's,
   * and the tag segment's literal start and end (before the first, after the last glob character)
   * agree with `<before>` and `<after>`.
   */
  scope(image: ImageName): TargetScope {
    const matcher = this.tagMatcher(image);
    const segments = this.render(image, TAG_SENTINEL).split("/");
    const tagIndex = segments.findIndex((segment) => segment.includes(TAG_SENTINEL));
    const [before = "", after = ""] = (segments[tagIndex] ?? "").split(TAG_SENTINEL);
    const tagSegment = new RegExp(`^${escapeRegExp(before)}${TAG_PATTERN}${escapeRegExp(after)}$`);
    const compatible = (a: string, b: string, at: "start" | "end") =>
      at === "start" ? a.startsWith(b) || b.startsWith(a) : a.endsWith(b) || b.endsWith(a);
    const mayCover = (pattern: string): boolean => {
      const parts = pattern.split("/");
      if (parts.length !== segments.length) return false;
      return parts.every((part, i) => {
        if (i !== tagIndex) return GLOB_CHARS.test(part) || part === segments[i];
        if (!GLOB_CHARS.test(part)) return tagSegment.test(part);
        const start = part.slice(0, part.search(GLOB_CHARS));
        const reversed = [...part].reverse().join("");
        const end = part.slice(part.length - reversed.search(GLOB_CHARS));
        return compatible(before, start, "start") && compatible(after, end, "end");
      });
    };
    return {
      matches: (path) => matcher.test(path),
      mayDelegate: (patterns) => patterns.some(mayCover),
    };
  }

  /** Matches the target paths of `image`'s tags; group 1 is the tag. */
  tagMatcher(image: ImageName): RegExp {
    const [before = "", after = ""] = this.template.split("{tag}");
    const literal = (part: string) =>
      escapeRegExp(
        part.replace(PLACEHOLDER, (_, name: string) =>
          name === "registry" ? image.registry : image.repository,
        ),
      );
    return new RegExp(`^${literal(before)}(${TAG_PATTERN})${literal(after)}$`);
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
