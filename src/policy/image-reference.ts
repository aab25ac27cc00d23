/**
 * Turn what a user types (`alpine`, `acme/app:1.2`, `ghcr.io/org/x@sha256:...`) into the canonical
 * image name policies match against, following Docker Hub's normalisation
 * (distribution/reference normalize.go): no registry -> docker.io; a single path component on
 * docker.io -> library/<name>; `index.docker.io` -> docker.io. Used by `policy explain`; the proxy
 * builds canonical names from the request and its registry configuration.
 */
import { looksLikeRegistry } from "./pattern.js";

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

export interface ImageReference {
  /** canonical name: docker.io/library/alpine */
  readonly image: string;
  readonly registry: string;
  /** repository path inside the registry: library/alpine */
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

export class ImageReferenceError extends Error {}

export function parseImageReference(input: string): ImageReference {
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ImageReferenceError(`"${input}": "${digest}" is not a digest`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ImageReferenceError(`"${input}": "${tag}" is not a valid tag`);
  }
  const parts = rest.split("/");
  let registry = "docker.io";
  // Docker also treats an upper-case first component as a registry; canonical registries are lower case.
  if (parts.length > 1 && (looksLikeRegistry(parts[0] as string) || parts[0] !== parts[0]?.toLowerCase())) {
    registry = (parts.shift() as string).toLowerCase();
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = "docker.io";
  if (registry === "docker.io" && parts.length === 1) parts.unshift("library");
  for (const part of parts) {
    if (!PATH_COMPONENT.test(part)) {
      throw new ImageReferenceError(
        `"${input}": "${part}" is not a valid repository path component (lower case)`,
      );
    }
  }
  const repository = parts.join("/");
  return { image: `${registry}/${repository}`, registry, repository, tag, digest };
}
