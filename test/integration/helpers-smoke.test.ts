import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeImage, makeIndex, pushImage, sha256Digest } from "../helpers/image.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";

// The peer launchers every integration test relies on: a real registry accepts our images and
// serves exactly the bytes pushed.
describe("test peers: docker-registry and image builder", () => {
  let registry: RegistryPeer;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it("serves a pushed manifest and blob byte for byte", async () => {
    const image = makeImage("hello");
    await pushImage(registry.url, "acme/hello", "v1", image);
    const res = await fetch(`${registry.url}/v2/acme/hello/manifests/v1`, {
      headers: { accept: image.mediaType },
    });
    const body = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get("docker-content-digest")).toBe(image.digest);
    expect(sha256Digest(body)).toBe(image.digest);
    const layer = image.blobs[1];
    if (!layer) throw new Error("image has no layer");
    const blob = Buffer.from(
      await (await fetch(`${registry.url}/v2/acme/hello/blobs/${layer.digest}`)).arrayBuffer(),
    );
    expect(blob.equals(layer.bytes)).toBe(true);
  });

  it("stores a multi-platform index and its platform manifests", async () => {
    const index = makeIndex("multi", ["amd64", "arm64"]);
    await pushImage(registry.url, "acme/multi", "v1", index);
    const res = await fetch(`${registry.url}/v2/acme/multi/manifests/${index.platforms?.[1]?.digest}`, {
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-content-digest")).toBe(index.platforms?.[1]?.digest);
  });
});
