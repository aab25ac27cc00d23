import { describe, expect, it } from "vitest";
import type { RegistryConfig } from "../../src/config/types.js";
import { OciError } from "../../src/oci/errors.js";
import { parseApiPath, type RoutingConfig, selectTarget } from "../../src/proxy/route.js";

function registries(...names: string[]): Map<string, RegistryConfig> {
  return new Map(names.map((name) => [name, { name, upstream: new URL(`https://${name}`) }]));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof OciError ? err.code : "not an OciError";
  }
  return undefined;
}

describe("API paths", () => {
  it("splits manifests, blobs and tags/list with multi-segment names", () => {
    expect(parseApiPath("/v2/a/b/c/manifests/v1")).toEqual({
      kind: "manifest",
      name: "a/b/c",
      reference: "v1",
    });
    expect(parseApiPath("/v2/ghcr.io/org/app/blobs/sha256:x")).toEqual({
      kind: "blob",
      name: "ghcr.io/org/app",
      digest: "sha256:x",
    });
    expect(parseApiPath("/v2/org/app/tags/list")).toEqual({ kind: "tags", name: "org/app" });
    // a repository may itself be called "manifests"
    expect(parseApiPath("/v2/org/manifests/manifests/v1")).toEqual({
      kind: "manifest",
      name: "org/manifests",
      reference: "v1",
    });
    expect(parseApiPath("/v2/org/app/blobs/uploads/")).toBeUndefined();
    expect(parseApiPath("/v2/_catalog")).toBeUndefined();
  });
});

describe("registry selection", () => {
  const config: RoutingConfig = {
    registries: registries("docker.io", "ghcr.io", "127.0.0.1:5000"),
    defaultRegistry: "docker.io",
  };

  it("uses ?ns= (containerd), with Docker Hub's library/ rule on docker.io", () => {
    expect(selectTarget(config, "org/app", "ghcr.io")).toMatchObject({
      registry: { name: "ghcr.io" },
      repository: "org/app",
    });
    expect(selectTarget(config, "library/alpine", "docker.io").repository).toBe("library/alpine");
    expect(selectTarget(config, "alpine", "docker.io").repository).toBe("library/alpine");
    expect(selectTarget(config, "alpine", "ghcr.io").repository).toBe("alpine");
    expect(selectTarget(config, "acme/app", "127.0.0.1:5000").registry.name).toBe("127.0.0.1:5000");
  });

  it("uses a registry prefix in the path", () => {
    expect(selectTarget(config, "ghcr.io/org/app", undefined)).toMatchObject({
      registry: { name: "ghcr.io" },
      repository: "org/app",
    });
    expect(selectTarget(config, "127.0.0.1:5000/acme/app", undefined).repository).toBe("acme/app");
    expect(selectTarget(config, "docker.io/alpine", undefined).repository).toBe("library/alpine");
  });

  it("T15: Docker Hub's other names in ?ns= or a path prefix are docker.io", () => {
    for (const alias of ["registry-1.docker.io", "index.docker.io", "Registry-1.Docker.IO"]) {
      expect(selectTarget(config, "alpine", alias)).toMatchObject({
        registry: { name: "docker.io" },
        repository: "library/alpine",
      });
      expect(selectTarget(config, `${alias}/acme/app`, undefined)).toMatchObject({
        registry: { name: "docker.io" },
        repository: "acme/app",
      });
    }
    expect(codeOf(() => selectTarget(config, "alpine", "registry.hub.docker.com"))).toBe("NAME_UNKNOWN");
  });

  it("falls back to defaultRegistry when nothing names one (Docker's registry-mirrors)", () => {
    expect(selectTarget(config, "alpine", undefined)).toMatchObject({
      registry: { name: "docker.io" },
      repository: "library/alpine",
    });
    expect(selectTarget(config, "acme/app", undefined).repository).toBe("acme/app");
  });

  it("never contacts an unconfigured registry: NAME_UNKNOWN", () => {
    expect(codeOf(() => selectTarget(config, "org/app", "quay.io"))).toBe("NAME_UNKNOWN");
    expect(codeOf(() => selectTarget(config, "quay.io/org/app", undefined))).toBe("NAME_UNKNOWN");
    expect(codeOf(() => selectTarget(config, "localhost/app", undefined))).toBe("NAME_UNKNOWN");
    expect(codeOf(() => selectTarget({ ...config, defaultRegistry: undefined }, "acme/app", undefined))).toBe(
      "NAME_UNKNOWN",
    );
  });

  it("validates the repository name: NAME_INVALID", () => {
    expect(codeOf(() => selectTarget(config, "Org/App", undefined))).toBe("NAME_INVALID");
    expect(codeOf(() => selectTarget(config, "ghcr.io/Org", undefined))).toBe("NAME_INVALID");
    expect(codeOf(() => selectTarget(config, "a//b", "ghcr.io"))).toBe("NAME_INVALID");
  });
});
