/**
 * Make tiny but real OCI images in memory (a gzipped tar layer, a config, a manifest; or an
 * index over several platforms) and push them to a registry with the distribution API. The
 * digests returned are of the exact bytes pushed, so tests can assert byte identity after a pull.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export interface Blob {
  digest: string;
  bytes: Buffer;
}

export interface Image {
  manifest: Buffer;
  digest: string;
  size: number;
  mediaType: string;
  /** config and layer blobs (for an index: all the platform images' blobs) */
  blobs: Blob[];
  /** for an index: the per-platform images */
  platforms?: Image[];
}

/** One ustar header + content, padded to 512-byte blocks (POSIX.1-1988 ustar). */
function tarEntry(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512, 0);
  const put = (text: string, offset: number, length: number) => header.write(text, offset, length, "ascii");
  const octal = (n: number, length: number) => n.toString(8).padStart(length - 1, "0");
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(content.length, 12), 124, 12);
  put(octal(0, 12), 136, 12);
  put("        ", 148, 8); // checksum field counts as spaces while summing
  put("0", 156, 1);
  put("ustar\u000000", 257, 8);
  let sum = 0;
  for (const byte of header) sum += byte;
  put(`${octal(sum, 7)}\u0000`, 148, 8);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512, 0);
  return Buffer.concat([header, content, padding]);
}

/** A layer holding one file, /etc/motd, with `text`; `extraBytes` of padding makes a big layer. */
export function makeLayer(text: string, extraBytes = 0): { tar: Buffer; gz: Buffer } {
  const entries = [tarEntry("etc/motd", Buffer.from(`${text}\n`))];
  if (extraBytes > 0) entries.push(tarEntry("etc/padding", Buffer.alloc(extraBytes, 0x61)));
  const tar = Buffer.concat([...entries, Buffer.alloc(1024, 0)]);
  return { tar, gz: gzipSync(tar, { level: 1 }) };
}

export function makeImage(text: string, opts: { architecture?: string; extraBytes?: number } = {}): Image {
  const arch = opts.architecture ?? "amd64";
  const layer = makeLayer(text, opts.extraBytes);
  const config = Buffer.from(
    JSON.stringify({
      architecture: arch,
      os: "linux",
      config: { Cmd: ["cat", "/etc/motd"] },
      rootfs: { type: "layers", diff_ids: [sha256Digest(layer.tar)] },
    }),
  );
  const configBlob = { digest: sha256Digest(config), bytes: config };
  const layerBlob = { digest: sha256Digest(layer.gz), bytes: layer.gz };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configBlob.digest, size: config.length },
      layers: [{ mediaType: OCI_LAYER_GZIP, digest: layerBlob.digest, size: layer.gz.length }],
    }),
  );
  return {
    manifest,
    digest: sha256Digest(manifest),
    size: manifest.length,
    mediaType: OCI_MANIFEST,
    blobs: [configBlob, layerBlob],
  };
}

/** A multi-platform index over one image per architecture. */
export function makeIndex(text: string, architectures: string[]): Image {
  const platforms = architectures.map((architecture) =>
    makeImage(`${text} (${architecture})`, { architecture }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: platforms.map((p, i) => ({
        mediaType: OCI_MANIFEST,
        digest: p.digest,
        size: p.size,
        platform: { architecture: architectures[i], os: "linux" },
      })),
    }),
  );
  return {
    manifest,
    digest: sha256Digest(manifest),
    size: manifest.length,
    mediaType: OCI_INDEX,
    blobs: platforms.flatMap((p) => p.blobs),
    platforms,
  };
}

async function expectStatus(res: Response, want: number, what: string): Promise<void> {
  if (res.status !== want) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}

export async function pushBlob(registryUrl: string, repo: string, blob: Blob): Promise<void> {
  const head = await fetch(`${registryUrl}/v2/${repo}/blobs/${blob.digest}`, { method: "HEAD" });
  if (head.status === 200) return;
  const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  await expectStatus(start, 202, `start upload of ${blob.digest}`);
  const location = new URL(start.headers.get("location") ?? "", registryUrl);
  location.searchParams.set("digest", blob.digest);
  const put = await fetch(location, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: blob.bytes,
  });
  await expectStatus(put, 201, `upload of ${blob.digest}`);
}

export async function pushManifest(
  registryUrl: string,
  repo: string,
  reference: string,
  bytes: Buffer,
  mediaType: string,
): Promise<void> {
  const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": mediaType },
    body: bytes,
  });
  await expectStatus(res, 201, `push of ${repo}:${reference}`);
}

/** Push an image (or an index with its platform images) under `tag`. */
export async function pushImage(registryUrl: string, repo: string, tag: string, image: Image): Promise<void> {
  for (const blob of image.blobs) await pushBlob(registryUrl, repo, blob);
  for (const p of image.platforms ?? [])
    await pushManifest(registryUrl, repo, p.digest, p.manifest, p.mediaType);
  await pushManifest(registryUrl, repo, tag, image.manifest, image.mediaType);
}
