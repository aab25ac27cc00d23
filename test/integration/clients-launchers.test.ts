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
  DockerdUnavailable,
  dockerImageDigests,
  dockerImageId,
  dockerPull,
  dockerUnpackedFiles,
  startDockerd,
} from "../helpers/dockerd.js";
import { type Image, makeImage, makeIndex, pushImage, sha256Digest } from "../helpers/image.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../helpers/skopeo.js";

// The pull-client launchers themselves, against a real registry with no proxy in between: each
// client stores exactly the bytes pushed, really unpacks the layer image.ts writes, and reports
// a failed pull as an exit code and stderr (which the refusal tests of issue 4 rely on).
describe("real pull clients against docker-registry", () => {
  let registry: RegistryPeer;
  let containerd: ContainerdPeer;
  let dockerd: DockerdPeer | undefined;
  let dockerdUnavailable = "";
  const image: Image = makeImage("launchers: hello");
  const index: Image = makeIndex("launchers: multi", ["amd64", "arm64"]);

  beforeAll(async () => {
    registry = await startRegistry();
    await pushImage(registry.url, "acme/hello", "v1", image);
    await pushImage(registry.url, "acme/multi", "v1", index);
    containerd = await startContainerd();
    try {
      // The registry serves /v2/acme/hello, which is what a Docker Hub mirror is asked for docker.io/acme/hello.
      dockerd = await startDockerd({ registryMirrors: [registry.url], insecureRegistries: [registry.host] });
    } catch (err) {
      if (!(err instanceof DockerdUnavailable)) throw err;
      dockerdUnavailable = err.reason;
    }
  });
  afterAll(async () => {
    await dockerd?.stop();
    await containerd?.stop();
    await registry?.stop();
  });

  it("skopeo copy stores the pushed manifest and blobs byte for byte", async () => {
    const copy = await skopeoCopyToOciDir(`${registry.host}/acme/hello:v1`);
    expect(copy.stderr).toBe("");
    expect(copy.code).toBe(0);
    expect(copy.digest).toBe(image.digest);
    expect(copy.manifest?.equals(image.manifest)).toBe(true);
    for (const blob of image.blobs) expect((await copy.readBlob(blob.digest))?.equals(blob.bytes)).toBe(true);
  });

  it("skopeo inspect --raw answers the manifest bytes; a missing tag is an exit code and stderr", async () => {
    const raw = await skopeoInspect(`${registry.host}/acme/hello:v1`, { raw: true });
    expect(raw.code).toBe(0);
    expect(raw.raw?.equals(image.manifest)).toBe(true);
    const summary = await skopeoInspect(`docker://${registry.host}/acme/hello:v1`);
    expect(summary.json?.Digest).toBe(image.digest);
    const missing = await skopeoInspect(`${registry.host}/acme/hello:nope`);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/manifest unknown/i);
  });

  it("ctr pull through a hosts.toml mirror stores the pushed digest and bytes and unpacks the layer", async () => {
    const hostsDir = await writeHostsDir(registry.url);
    const ref = "docker.io/acme/hello:v1";
    const pull = await ctrPull(containerd, ref, { hostsDir });
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(image.digest);
    expect(await ctrImageComplete(containerd, ref)).toBe(true);
    expect((await ctrContentGet(containerd, image.digest))?.equals(image.manifest)).toBe(true);
    for (const blob of image.blobs)
      expect((await ctrContentGet(containerd, blob.digest))?.equals(blob.bytes)).toBe(true);
    expect(await ctrUnpackedFiles(containerd, "etc/motd")).toContain("launchers: hello\n");
  });

  it("ctr pull --platform fetches one platform of an index; _default catches any registry", async () => {
    const hostsDir = await writeHostsDir(registry.url, { registries: [], catchAll: true });
    const ref = "ghcr.io/acme/multi:v1";
    const pull = await ctrPull(containerd, ref, { hostsDir, platform: "linux/arm64" });
    expect(pull.code).toBe(0);
    expect(await ctrImageDigest(containerd, ref)).toBe(index.digest);
    const [amd64, arm64] = index.platforms ?? [];
    if (!amd64 || !arm64) throw new Error("index has no platforms");
    expect((await ctrContentGet(containerd, arm64.digest))?.equals(arm64.manifest)).toBe(true);
    expect(await ctrContentGet(containerd, amd64.digest)).toBeUndefined();
    expect(sha256Digest((await ctrContentGet(containerd, index.digest)) ?? Buffer.alloc(0))).toBe(
      index.digest,
    );
  });

  it("ctr pull of a missing tag is an exit code and stderr, not a throw", async () => {
    const hostsDir = await writeHostsDir(registry.url);
    const pull = await ctrPull(containerd, "docker.io/acme/hello:nope", { hostsDir });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toMatch(/not found/);
  });

  it("dockerd with registry-mirrors pulls docker.io/acme/hello from the mirror and unpacks it", async (ctx) => {
    if (!dockerd) {
      console.warn(`skipping dockerd test: ${dockerdUnavailable}`);
      return ctx.skip(`dockerd unavailable: ${dockerdUnavailable}`);
    }
    const pull = await dockerPull(dockerd, "acme/hello:v1");
    expect(pull.code).toBe(0);
    expect(pull.stdout).toContain(`Digest: ${image.digest}`);
    expect(await dockerImageDigests(dockerd, "acme/hello:v1")).toEqual([`acme/hello@${image.digest}`]);
    expect(await dockerImageId(dockerd, "acme/hello:v1")).toBe(image.blobs[0]?.digest);
    expect(await dockerUnpackedFiles(dockerd, "etc/motd")).toContain("launchers: hello\n");
    // A tag the mirror does not have: dockerd falls back to registry-1.docker.io (unreachable here).
    const missing = await dockerPull(dockerd, "acme/hello:nope");
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).not.toBe("");
  });
});
