/**
 * Docker Hub's names. `docker.io` is the canonical one, in image references, policies and Notary
 * GUNs (`docker.io/library/alpine`). distribution/reference normalize.go maps the legacy index
 * name `index.docker.io` to it; `registry-1.docker.io` is the host its registry API really lives
 * on (what docker and containers/image dial for docker.io), and policy explain already treats it
 * as docker.io (src/policy/image-reference.ts). `registry.hub.docker.com` is left alone: no
 * reference client normalises it, so it stays a registry of its own name.
 */
export const DOCKER_HUB = "docker.io";

const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set(["index.docker.io", "registry-1.docker.io"]);

/** `docker.io` for Docker Hub's other names; any other (lower-case) registry name as is (REVIEW T15). */
export function canonicalRegistryName(name: string): string {
  return DOCKER_HUB_ALIASES.has(name) ? DOCKER_HUB : name;
}
