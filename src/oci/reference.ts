/**
 * The distribution reference grammar for the pieces of a /v2/ URL: repository name, tag, digest.
 * Source: OCI distribution-spec "Pulling manifests" (name and reference grammar) and
 * distribution/reference's regexp.go, which registries and clients enforce.
 */

/** path-component: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`. */
const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
const NAME_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
/** distribution's NameTotalLengthMax: clients and registries refuse longer names. */
export const NAME_MAX_LENGTH = 255;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** OCI image-spec "Digests": algorithm ":" encoded. */
const DIGEST_RE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** Registered algorithms (image-spec) with the exact encoding each requires; node:crypto hashes both. */
const DIGEST_ALGORITHMS: Record<string, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};

export interface Digest {
  /** "sha256:<hex>" exactly as given */
  value: string;
  algorithm: "sha256" | "sha512";
  hex: string;
}

export type Reference = { kind: "tag"; tag: string } | { kind: "digest"; digest: Digest };

export function isValidRepositoryName(name: string): boolean {
  return name.length <= NAME_MAX_LENGTH && NAME_RE.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** A digest we can verify, or undefined when it is malformed or uses an unregistered algorithm. */
export function parseDigest(text: string): Digest | undefined {
  const m = DIGEST_RE.exec(text);
  if (!m) return undefined;
  const [, algorithm, hex] = m;
  if (algorithm === undefined || hex === undefined) return undefined;
  const encoding = DIGEST_ALGORITHMS[algorithm];
  if (!encoding?.test(hex)) return undefined;
  return { value: text, algorithm: algorithm as Digest["algorithm"], hex };
}

/** True when the text has a digest's shape (contains ":"): then it must parse as one. */
export function looksLikeDigest(text: string): boolean {
  return text.includes(":");
}

/**
 * A manifest `<reference>`: a digest when it contains ":" (tags cannot), else a tag.
 * Returns undefined when it is neither valid tag nor valid digest.
 */
export function parseReference(text: string): Reference | undefined {
  if (looksLikeDigest(text)) {
    const digest = parseDigest(text);
    return digest ? { kind: "digest", digest } : undefined;
  }
  return isValidTag(text) ? { kind: "tag", tag: text } : undefined;
}

/**
 * Docker's rule for the first component of a name: it is a registry host when it contains
 * "." or ":" or is "localhost" (distribution/reference normalize.go splitDockerDomain).
 */
export function looksLikeRegistryHost(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

/** `host[:port]` as used for registry names in config and containerd's `ns` parameter. */
const HOST_RE =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/;
export function isValidRegistryHost(host: string): boolean {
  return host.length <= 255 && HOST_RE.test(host);
}
