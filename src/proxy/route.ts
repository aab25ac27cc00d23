/**
 * Which upstream a request is for, and which repository there. Three ways to say it
 * (shared/LAB.md):
 *  - containerd's mirror requests carry `?ns=<registry>` (ns=docker.io, ns=ghcr.io, ns=127.0.0.1:5000);
 *  - a client addressing trustgate as a registry may prefix the registry: /v2/ghcr.io/org/app/...
 *    (podman/skopeo mirror location `host/ghcr.io`);
 *  - Docker's registry-mirrors sends no hint: that means `defaultRegistry`.
 * Only configured registries are ever contacted: an unknown ns or prefix is NAME_UNKNOWN,
 * so trustgate is never an open proxy.
 */
import type { RegistryConfig } from "../config/types.js";
import { canonicalRegistryName, DOCKER_HUB } from "../oci/docker-hub.js";
import { OciCode, OciError } from "../oci/errors.js";
import { isValidRepositoryName, looksLikeRegistryHost } from "../oci/reference.js";

export type ApiRoute =
  | { kind: "manifest"; name: string; reference: string }
  | { kind: "blob"; name: string; digest: string }
  | { kind: "tags"; name: string };

const MANIFEST_OR_BLOB = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;
const TAGS = /^\/v2\/(.+)\/tags\/list$/;

/** Split a /v2/ path into the endpoint and its raw parts (validated later). */
export function parseApiPath(path: string): ApiRoute | undefined {
  const m = MANIFEST_OR_BLOB.exec(path);
  if (m?.[1] !== undefined && m[3] !== undefined) {
    return m[2] === "manifests"
      ? { kind: "manifest", name: m[1], reference: m[3] }
      : { kind: "blob", name: m[1], digest: m[3] };
  }
  const t = TAGS.exec(path);
  if (t?.[1] !== undefined) return { kind: "tags", name: t[1] };
  return undefined;
}

export interface Target {
  registry: RegistryConfig;
  /** the repository at that registry, e.g. "library/alpine" */
  repository: string;
}

export interface RoutingConfig {
  registries: ReadonlyMap<string, RegistryConfig>;
  defaultRegistry: string | undefined;
}

function dockerHubNormalize(registry: RegistryConfig, repository: string): string {
  // distribution/reference normalize.go: "alpine" on Docker Hub is "library/alpine".
  return canonicalRegistryName(registry.name) === DOCKER_HUB && !repository.includes("/")
    ? `library/${repository}`
    : repository;
}

function unknownRegistry(registry: string, how: string): OciError {
  return new OciError(OciCode.NAME_UNKNOWN, {
    message: `registry ${registry} (from ${how}) is not configured on this proxy`,
    detail: { registry },
  });
}

function checkName(name: string): string {
  if (!isValidRepositoryName(name))
    throw new OciError(OciCode.NAME_INVALID, {
      message: `invalid repository name ${JSON.stringify(name.slice(0, 300))}`,
    });
  return name;
}

/** Resolve the (registry, repository) a request means, or throw NAME_UNKNOWN / NAME_INVALID. */
export function selectTarget(config: RoutingConfig, rawName: string, ns: string | undefined): Target {
  if (ns !== undefined && ns !== "") {
    // Registry names are canonical in the config: ns=registry-1.docker.io is docker.io (T15).
    const registry = config.registries.get(canonicalRegistryName(ns.toLowerCase()));
    if (!registry) throw unknownRegistry(ns, "?ns=");
    return { registry, repository: dockerHubNormalize(registry, checkName(rawName)) };
  }
  const slash = rawName.indexOf("/");
  const first = slash > 0 ? rawName.slice(0, slash) : undefined;
  if (first !== undefined && looksLikeRegistryHost(first)) {
    const registry = config.registries.get(canonicalRegistryName(first.toLowerCase()));
    if (!registry) throw unknownRegistry(first, "the path prefix");
    return { registry, repository: dockerHubNormalize(registry, checkName(rawName.slice(slash + 1))) };
  }
  if (config.defaultRegistry === undefined)
    throw new OciError(OciCode.NAME_UNKNOWN, {
      message: "the request names no registry (no ?ns= and no prefix) and no defaultRegistry is configured",
    });
  const registry = config.registries.get(config.defaultRegistry);
  if (!registry) throw unknownRegistry(config.defaultRegistry, "defaultRegistry");
  return { registry, repository: dockerHubNormalize(registry, checkName(rawName)) };
}
