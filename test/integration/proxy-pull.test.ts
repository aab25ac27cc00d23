import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Image,
  makeImage,
  makeIndex,
  OCI_INDEX,
  OCI_MANIFEST,
  pushImage,
  sha256Digest,
} from "../helpers/image.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

// Plain HTTP through the real proxy (the built CLI) in front of a real docker-registry:
// manifests and blobs must arrive byte for byte, with the headers clients rely on.
describe("proxy pull against a real docker-registry", () => {
  let registry: RegistryPeer;
  let proxy: TrustgatePeer;
  let image: Image;
  let index: Image;
  let big: Image;

  // dockerd's Accept list (shared/LAB.md); the order varies, so any order must work.
  const DOCKERD_ACCEPT = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
  ].join(", ");

  beforeAll(async () => {
    registry = await startRegistry();
    image = makeImage("hello");
    index = makeIndex("multi", ["amd64", "arm64"]);
    big = makeImage("big", { extraBytes: 3 * 1024 * 1024 });
    await pushImage(registry.url, "acme/hello", "v1", image);
    await pushImage(registry.url, "acme/multi", "v1", index);
    await pushImage(registry.url, "acme/big", "v1", big);
    await pushImage(registry.url, "library/alpine", "latest", image);
    // Two names for one upstream: the registry's own host (for ns= and prefix routing) and
    // docker.io (the default, with Docker Hub's library/ rule).
    proxy = await startTrustgateWithConfig(
      [
        "defaultRegistry: docker.io",
        "defaultPolicy: off", // pass-through behaviour: no trust check
        "logLevel: warn",
        "registries:",
        "  docker.io:",
        `    upstream: ${registry.url}`,
        `  "${registry.host}":`,
        `    upstream: ${registry.url}`,
      ].join("\n"),
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  async function bytes(res: Response): Promise<Buffer> {
    return Buffer.from(await res.arrayBuffer());
  }

  it("answers the API version check", async () => {
    const res = await fetch(`${proxy.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
    expect(await res.json()).toEqual({});
  });

  // The API version and request id are added where each answer is written (one writeHead call),
  // so every kind of answer is checked: ping, manifest, HEAD, blob (a stream), ranged blob, error.
  it("puts the API version and a fresh request id on every kind of answer", async () => {
    const blob = image.blobs[0];
    if (!blob) throw new Error("image without blobs");
    const asks: Array<[string, RequestInit, number]> = [
      ["/v2/", {}, 200],
      ["/v2/acme/hello/manifests/v1", { headers: { accept: DOCKERD_ACCEPT } }, 200],
      [
        `/v2/acme/hello/manifests/${image.digest}`,
        { method: "HEAD", headers: { accept: DOCKERD_ACCEPT } },
        200,
      ],
      [`/v2/acme/hello/blobs/${blob.digest}`, {}, 200],
      [`/v2/acme/hello/blobs/${blob.digest}`, { headers: { range: "bytes=0-9" } }, 206],
      ["/v2/acme/hello/manifests/no-such-tag", {}, 404],
      ["/v2/acme/hello/manifests/v1", { method: "DELETE" }, 405],
      ["/not-the-api", {}, 404],
    ];
    const ids = new Set<string>();
    for (const [path, init, status] of asks) {
      const res = await fetch(`${proxy.url}${path}`, init);
      await res.arrayBuffer();
      expect(res.status, path).toBe(status);
      expect(res.headers.get("docker-distribution-api-version"), path).toBe("registry/2.0");
      const id = res.headers.get("x-request-id") ?? "";
      expect(id, path).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      ids.add(id);
    }
    expect(ids.size).toBe(asks.length);
  });

  it("serves a manifest by tag byte for byte, via ns, prefix and default routing", async () => {
    for (const path of [
      `/v2/acme/hello/manifests/v1?ns=${encodeURIComponent(registry.host)}`,
      `/v2/${registry.host}/acme/hello/manifests/v1`,
      "/v2/acme/hello/manifests/v1",
    ]) {
      const res = await fetch(`${proxy.url}${path}`, { headers: { accept: DOCKERD_ACCEPT } });
      expect(res.status, path).toBe(200);
      expect((await bytes(res)).equals(image.manifest), path).toBe(true);
      expect(res.headers.get("docker-content-digest")).toBe(image.digest);
      expect(res.headers.get("content-type")).toBe(OCI_MANIFEST);
      expect(res.headers.get("content-length")).toBe(String(image.size));
    }
  });

  it("applies Docker Hub's library/ rule for one-segment names on docker.io", async () => {
    const res = await fetch(`${proxy.url}/v2/alpine/manifests/latest`, { headers: { accept: OCI_MANIFEST } });
    expect(res.status).toBe(200);
    expect(sha256Digest(await bytes(res))).toBe(image.digest);
  });

  it("answers HEAD with the same headers and no body", async () => {
    const res = await fetch(`${proxy.url}/v2/acme/hello/manifests/v1`, {
      method: "HEAD",
      headers: { accept: DOCKERD_ACCEPT },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("docker-content-digest")).toBe(image.digest);
    expect(res.headers.get("content-length")).toBe(String(image.size));
    expect(res.headers.get("content-type")).toBe(OCI_MANIFEST);
    expect((await bytes(res)).length).toBe(0);
  });

  it("serves an index by tag and its platform manifest by digest (containerd's Accept)", async () => {
    const res = await fetch(`${proxy.url}/v2/acme/multi/manifests/v1?ns=docker.io`, {
      headers: { accept: DOCKERD_ACCEPT },
    });
    expect(res.status).toBe(200);
    expect((await bytes(res)).equals(index.manifest)).toBe(true);
    expect(res.headers.get("content-type")).toBe(OCI_INDEX);
    const platform = index.platforms?.[1];
    if (!platform) throw new Error("index without platforms");
    const byDigest = await fetch(`${proxy.url}/v2/acme/multi/manifests/${platform.digest}?ns=docker.io`, {
      headers: { accept: `${OCI_MANIFEST}, */*` },
    });
    expect(byDigest.status).toBe(200);
    expect((await bytes(byDigest)).equals(platform.manifest)).toBe(true);
    expect(byDigest.headers.get("docker-content-digest")).toBe(platform.digest);
  });

  it("streams blobs byte for byte with Content-Length and Docker-Content-Digest; HEAD has no body", async () => {
    for (const blob of [...image.blobs, ...big.blobs]) {
      const repo = image.blobs.includes(blob) ? "acme/hello" : "acme/big";
      const res = await fetch(`${proxy.url}/v2/${repo}/blobs/${blob.digest}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-length")).toBe(String(blob.bytes.length));
      expect(res.headers.get("docker-content-digest")).toBe(blob.digest);
      expect((await bytes(res)).equals(blob.bytes)).toBe(true);
      const head = await fetch(`${proxy.url}/v2/${repo}/blobs/${blob.digest}`, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.headers.get("content-length")).toBe(String(blob.bytes.length));
      expect((await bytes(head)).length).toBe(0);
    }
  });

  it("passes a Range request through as 206 with Content-Range", async () => {
    const layer = big.blobs[1];
    if (!layer) throw new Error("no layer");
    const res = await fetch(`${proxy.url}/v2/acme/big/blobs/${layer.digest}`, {
      headers: { range: "bytes=100-1099" },
    });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe(`bytes 100-1099/${layer.bytes.length}`);
    expect((await bytes(res)).equals(layer.bytes.subarray(100, 1100))).toBe(true);
  });

  it("lists tags", async () => {
    const res = await fetch(`${proxy.url}/v2/acme/hello/tags/list`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: "acme/hello", tags: ["v1"] });
  });

  it("maps failures to OCI errors", async () => {
    const cases: [string, RequestInit, number, string][] = [
      ["/v2/acme/hello/manifests/nope", {}, 404, "MANIFEST_UNKNOWN"],
      [`/v2/acme/hello/blobs/sha256:${"0".repeat(64)}`, {}, 404, "BLOB_UNKNOWN"],
      ["/v2/acme/hello/manifests/v1?ns=ghcr.io", {}, 404, "NAME_UNKNOWN"],
      ["/v2/ghcr.io/acme/hello/manifests/v1", {}, 404, "NAME_UNKNOWN"],
      ["/v2/Acme/hello/manifests/v1", {}, 400, "NAME_INVALID"],
      ["/v2/acme/hello/blobs/sha256:abc", {}, 400, "DIGEST_INVALID"],
      ["/v2/acme/hello/manifests/sha256:xyz", {}, 400, "DIGEST_INVALID"],
      ["/v2/acme/hello/manifests/v1", { method: "PUT", body: "{}" }, 405, "UNSUPPORTED"],
      ["/v2/acme/hello/blobs/uploads/", { method: "POST" }, 405, "UNSUPPORTED"],
      [`/v2/acme/hello/manifests/${image.digest}`, { method: "DELETE" }, 405, "UNSUPPORTED"],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await fetch(`${proxy.url}${path}`, init);
      expect(res.status, path).toBe(status);
      const body = (await res.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]?.code, path).toBe(code);
      expect(body.errors[0]?.message).not.toMatch(/\n\s+at /);
    }
  });

  it("answers 503 naming the registry when the upstream is unreachable", async () => {
    const down = await startTrustgateWithConfig(
      [
        "defaultPolicy: off",
        "registries:",
        "  down.example:",
        "    upstream: http://127.0.0.1:1",
        "logLevel: silent",
      ].join("\n"),
    );
    try {
      const res = await fetch(`${down.url}/v2/down.example/acme/app/manifests/v1`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]?.code).toBe("UNAVAILABLE");
      expect(body.errors[0]?.message).toContain("down.example");
    } finally {
      await down.stop();
    }
  });
});
