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
