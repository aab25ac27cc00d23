import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContainerdPeer,
  ctrContentGet,
  ctrImageComplete,
  ctrImageDigest,
  ctrPull,
  ctrUnpackedFiles,
  startContainerd,
  writeHostsDir,
} from "../helpers/containerd.js";
import {
  type DockerdPeer,
  dockerImageDigests,
  dockerImageId,
  dockerPull,
  dockerUnpackedFiles,
  startDockerdIfAvailable,
} from "../helpers/dockerd.js";
import { type Image, makeImage, makeIndex, pushImage } from "../helpers/image.js";
import { tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoCopyToOciDir } from "../helpers/skopeo.js";
import { type LogLine, startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";

// Issue 2 end to end: images pushed to a real docker-registry, pulled THROUGH trustgate by the three
// real clients (skopeo addressing it as a registry, containerd with hosts.toml, dockerd with
// registry-mirrors). Each client must store exactly the bytes pushed, and trustgate's log must show
// the requests it served. The registry is configured twice in trustgate: as docker.io (the default
// registry, for dockerd's hint-less mirror requests) and as registry.test (reached by ?ns= or by a
// path prefix), both with the test registry as upstream.

const OTHER_REGISTRY = "registry.test";

/** One access-log line of trustgate (src/server.ts: reqId, method, path, ns, registry, status, bytes). */
interface RequestLog {
  method: string;
  /** the path without the query */
  path: string;
  status: number;
  ns: unknown;
  registry: unknown;
  bytes: unknown;
}

function asRequest(line: LogLine): RequestLog | undefined {
  const { method, path, status, ns, registry, bytes } = line;
  if (
    line.msg !== "request" ||
    typeof method !== "string" ||
    typeof path !== "string" ||
    typeof status !== "number"
  )
    return undefined;
  return { method, path, status, ns, registry, bytes };
}

describe("issue 2: real clients pull through trustgate, byte for byte", () => {
  let registry: RegistryPeer;
  let trustgate: TrustgatePeer;
  let containerd: ContainerdPeer;
  let dockerd: DockerdPeer | undefined;
  let dockerdUnavailable = "";
  const forSkopeo: Image = makeImage("pull e2e: skopeo");
  const forCtr: Image = makeImage("pull e2e: containerd");
  const forCtrNs: Image = makeImage("pull e2e: containerd via ns");
  const forDocker: Image = makeImage("pull e2e: dockerd");
  const forDockerLibrary: Image = makeImage("pull e2e: dockerd library");
  const multi: Image = makeIndex("pull e2e: multi-arch", ["amd64", "arm64"]);

  /** hosts dirs and OCI layouts of this file, removed in afterAll */
  let scratch: string;
  let scratchCount = 0;
  const fresh = (what: string) => join(scratch, `${what}-${++scratchCount}`);

  beforeAll(async () => {
    scratch = await tempDir("clients");
    registry = await startRegistry();
    await pushImage(registry.url, "acme/skopeo-app", "v1", forSkopeo);
    await pushImage(registry.url, "acme/ctr-app", "v1", forCtr);
    await pushImage(registry.url, "acme/ctr-ns-app", "v1", forCtrNs);
    await pushImage(registry.url, "acme/docker-app", "v1", forDocker);
    await pushImage(registry.url, "library/docker-lib", "v1", forDockerLibrary);
    await pushImage(registry.url, "acme/multi", "v1", multi);
    trustgate = await startTrustgate({
      registries: {
        "docker.io": { upstream: registry.url },
        [OTHER_REGISTRY]: { upstream: registry.url },
        // the registry under its own host:port name, as containerd's _default sends it (ns=127.0.0.1%3APORT)
        [registry.host]: { upstream: registry.url },
      },
      defaultRegistry: "docker.io",
      // The plumbing under test here is trust-agnostic; enforcement has its own e2e files.
      extraConfig: { defaultPolicy: "off" },
    });
    containerd = await startContainerd();
    ({ dockerd, unavailable: dockerdUnavailable } = await startDockerdIfAvailable({
      registryMirrors: [trustgate.url],
      insecureRegistries: [trustgate.host],
    }));
  });
  afterAll(async () => {
    await dockerd?.stop();
    await containerd?.stop();
    await trustgate?.stop();
    await registry?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** Wait for trustgate to have logged `method path` and return that line. */
  async function logged(method: string, path: string): Promise<RequestLog> {
    const line = await trustgate.waitForLog((l) => {
      const r = asRequest(l);
      return r?.method === method && r.path === path;
    });
    return asRequest(line) as RequestLog;
  }

  async function expectBlobsLogged(repo: string, image: Image): Promise<void> {
    for (const blob of image.blobs) {
      const line = await logged("GET", `/v2/${repo}/blobs/${blob.digest}`);
      expect(line.status).toBe(200);
      // the access log counts the bytes the client really received
      expect(line.bytes).toBe(blob.bytes.length);
    }
  }

  it("skopeo copy (trustgate as a registry) stores the pushed manifest and blobs byte for byte", async () => {
    const copy = await skopeoCopyToOciDir(`${trustgate.host}/acme/skopeo-app:v1`, fresh("oci"));
    expect(copy.stderr).toBe("");
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(forSkopeo.digest);
    expect(copy.manifest?.equals(forSkopeo.manifest)).toBe(true);
    for (const blob of forSkopeo.blobs)
      expect((await copy.readBlob(blob.digest))?.equals(blob.bytes)).toBe(true);
    const manifest = await logged("GET", "/v2/acme/skopeo-app/manifests/v1");
    expect(manifest.status).toBe(200);
    expect(manifest.registry).toBe("docker.io");
    await expectBlobsLogged("acme/skopeo-app", forSkopeo);
  });

  it("skopeo copy with a registry prefix in the path reaches that configured registry", async () => {
    const copy = await skopeoCopyToOciDir(
      `${trustgate.host}/${OTHER_REGISTRY}/acme/skopeo-app:v1`,
      fresh("oci"),
    );
    expect(copy.code).toBe(0);
    expect(copy.manifest?.equals(forSkopeo.manifest)).toBe(true);
    const manifest = await logged("GET", `/v2/${OTHER_REGISTRY}/acme/skopeo-app/manifests/v1`);
    expect(manifest.status).toBe(200);
    expect(manifest.registry).toBe(OTHER_REGISTRY);
  });

  it("ctr pull (hosts.toml: server = trustgate + [host]) stores the pushed digest and bytes, unpacked", async () => {
    const hostsDir = await writeHostsDir(trustgate.url, { dir: fresh("hosts") });
    const ref = "docker.io/acme/ctr-app:v1";
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(forCtr.digest);
    expect(await ctrImageComplete(containerd, ref)).toBe(true);
    expect((await ctrContentGet(containerd, forCtr.digest))?.equals(forCtr.manifest)).toBe(true);
    for (const blob of forCtr.blobs)
      expect((await ctrContentGet(containerd, blob.digest))?.equals(blob.bytes)).toBe(true);
    expect(await ctrUnpackedFiles(containerd, "etc/motd")).toContain("pull e2e: containerd\n");
    // containerd HEADs the tag, then GETs the digest from that HEAD, each with ?ns=docker.io.
    const head = await logged("HEAD", "/v2/acme/ctr-app/manifests/v1");
    expect(head.status).toBe(200);
    expect(head.ns).toBe("docker.io");
    expect(head.registry).toBe("docker.io");
    expect((await logged("GET", `/v2/acme/ctr-app/manifests/${forCtr.digest}`)).status).toBe(200);
    await expectBlobsLogged("acme/ctr-app", forCtr);
  });

  it("ctr pull of another configured registry is routed by ?ns=<registry>", async () => {
    const hostsDir = await writeHostsDir(trustgate.url, {
      dir: fresh("hosts"),
      registries: [OTHER_REGISTRY],
    });
    const ref = `${OTHER_REGISTRY}/acme/ctr-ns-app:v1`;
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(forCtrNs.digest);
    for (const blob of forCtrNs.blobs)
      expect((await ctrContentGet(containerd, blob.digest))?.equals(blob.bytes)).toBe(true);
    const head = await logged("HEAD", "/v2/acme/ctr-ns-app/manifests/v1");
    expect(head.status).toBe(200);
    expect(head.ns).toBe(OTHER_REGISTRY);
    expect(head.registry).toBe(OTHER_REGISTRY);
  });

  it("ctr pull via _default of a host:port registry sends ns=host:port and is routed there", async () => {
    const hostsDir = await writeHostsDir(trustgate.url, {
      dir: fresh("hosts"),
      registries: [],
      catchAll: true,
    });
    const ref = `${registry.host}/acme/ctr-ns-app:v1`;
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(forCtrNs.digest);
    const head = await trustgate.waitForLog((l) => {
      const r = asRequest(l);
      return r?.method === "HEAD" && r.ns === registry.host;
    });
    expect(asRequest(head)?.registry).toBe(registry.host);
    expect(asRequest(head)?.status).toBe(200);
  });

  it("ctr pull --platform of a multi-arch index fetches that platform's manifest by digest", async () => {
    const hostsDir = await writeHostsDir(trustgate.url, { dir: fresh("hosts") });
    const ref = "docker.io/acme/multi:v1";
    const [amd64, arm64] = multi.platforms ?? [];
    if (!amd64 || !arm64) throw new Error("index has no platforms");
    const pull = await ctrPull(containerd, ref, { hostsDir, platform: "linux/arm64" });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(multi.digest);
    expect((await ctrContentGet(containerd, multi.digest))?.equals(multi.manifest)).toBe(true);
    expect((await ctrContentGet(containerd, arm64.digest))?.equals(arm64.manifest)).toBe(true);
    for (const blob of arm64.blobs)
      expect((await ctrContentGet(containerd, blob.digest))?.equals(blob.bytes)).toBe(true);
    expect(await ctrContentGet(containerd, amd64.digest)).toBeUndefined();
    expect((await logged("GET", `/v2/acme/multi/manifests/${arm64.digest}`)).status).toBe(200);
    await expectBlobsLogged("acme/multi", arm64);
  });

  it("ctr pull of an unconfigured registry (via _default) is refused, never proxied", async () => {
    const hostsDir = await writeHostsDir(trustgate.url, {
      dir: fresh("hosts"),
      registries: [],
      catchAll: true,
    });
    const pull = await ctrPull(containerd, "unknown.example/acme/ctr-app:v1", { hostsDir });
    expect(pull.code).not.toBe(0);
    // NAME_UNKNOWN is a 404: containerd reports "not found" and, with server = trustgate, tries no other host.
    expect(pull.stderr).toMatch(/not found/);
    await trustgate.waitForLog((l) => asRequest(l)?.ns === "unknown.example");
    const seen = (await trustgate.logs()).map(asRequest).filter((r) => r?.ns === "unknown.example");
    expect(seen.length).toBeGreaterThan(0);
    for (const r of seen) expect(r?.status).toBe(404);
  });

  it("dockerd (registry-mirrors = trustgate) pulls docker.io images byte for byte", async (ctx) => {
    if (!dockerd) {
      console.warn(`skipping dockerd test: ${dockerdUnavailable}`);
      return ctx.skip(`dockerd unavailable: ${dockerdUnavailable}`);
    }
    const pull = await dockerPull(dockerd, "acme/docker-app:v1");
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await dockerImageDigests(dockerd, "acme/docker-app:v1")).toEqual([
      `acme/docker-app@${forDocker.digest}`,
    ]);
    expect(await dockerImageId(dockerd, "acme/docker-app:v1")).toBe(forDocker.blobs[0]?.digest);
    expect(await dockerUnpackedFiles(dockerd, "etc/motd")).toContain("pull e2e: dockerd\n");
    const head = await logged("HEAD", "/v2/acme/docker-app/manifests/v1");
    expect(head.status).toBe(200);
    expect(head.ns).toBeUndefined();
    expect(head.registry).toBe("docker.io");
    expect((await logged("GET", `/v2/acme/docker-app/manifests/${forDocker.digest}`)).status).toBe(200);
    await expectBlobsLogged("acme/docker-app", forDocker);

    // A one-segment Docker Hub name: dockerd itself asks the mirror for library/<name>.
    const lib = await dockerPull(dockerd, "docker-lib:v1");
    expect(lib.code).toBe(0);
    expect(await dockerImageDigests(dockerd, "docker-lib:v1")).toEqual([
      `docker-lib@${forDockerLibrary.digest}`,
    ]);
    expect((await logged("GET", `/v2/library/docker-lib/manifests/${forDockerLibrary.digest}`)).status).toBe(
      200,
    );
  });
});
