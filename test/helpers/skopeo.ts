/**
 * The real `skopeo` (containers/image) as a pull client. skopeo talks to the proxy as a registry:
 * it GETs manifests by tag (never HEAD) and hashes the body, so what it stores is exactly what the
 * proxy answered. Every call runs with its own policy.json, registries.conf and auth file so the
 * host's /etc/containers and ~/.docker never matter.
 *
 * Failed pulls resolve (never throw) with the exit code and stderr: refusal tests assert on the
 * text skopeo shows (e.g. `denied: <message>` from an OCI DENIED error body).
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand, tempDir } from "./process.js";

export interface SkopeoResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SkopeoOptions {
  /** verify TLS of the source registry (default false: the test peers speak plain HTTP) */
  tlsVerify?: boolean;
  /** registries.conf content (default: no mirrors, no search registries) */
  registriesConf?: string;
  /** `user:password` for the source registry */
  creds?: string;
  /** choose this architecture from an index instead of the host's */
  overrideArch?: string;
  timeoutMs?: number;
}

interface Sandbox {
  /** global flags: isolated policy, registries.conf and temp dir */
  global: string[];
  /** an empty auth file, so ~/.docker/config.json and $XDG_RUNTIME_DIR never lend credentials */
  authFile: string;
  /** remove the sandbox once skopeo has exited */
  dispose(): Promise<void>;
}

async function skopeoSandbox(opts: SkopeoOptions): Promise<Sandbox> {
  const dir = await tempDir("skopeo");
  const policy = join(dir, "policy.json");
  const registries = join(dir, "registries.conf");
  const authFile = join(dir, "auth.json");
  // Signature policy is not what these tests exercise: trust is the proxy's job.
  await writeFile(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  await writeFile(registries, opts.registriesConf ?? "unqualified-search-registries = []\n");
  await writeFile(authFile, "{}");
  // --registries-conf is a hidden global flag of skopeo 1.9 (containers/image SystemContext).
  const global = ["--policy", policy, "--registries-conf", registries, "--tmpdir", dir];
  if (opts.overrideArch) global.push("--override-arch", opts.overrideArch);
  return { global, authFile, dispose: () => rm(dir, { recursive: true, force: true }) };
}

function dockerRef(ref: string): string {
  return ref.startsWith("docker://") ? ref : `docker://${ref}`;
}

export interface SkopeoInspectResult extends SkopeoResult {
  /** with `raw`: the manifest bytes exactly as answered */
  raw?: Buffer;
  /** without `raw`: skopeo's parsed summary (Digest, Layers, ...) */
  json?: { Digest?: string; Layers?: string[]; [key: string]: unknown };
}

/** `skopeo inspect [--raw] docker://REF`; `ref` is `host:port/repo:tag` or `docker://...`. */
export async function skopeoInspect(
  ref: string,
  opts: SkopeoOptions & { raw?: boolean } = {},
): Promise<SkopeoInspectResult> {
  const { global, authFile, dispose } = await skopeoSandbox(opts);
  const args = [...global, "inspect", `--tls-verify=${opts.tlsVerify ?? false}`, "--authfile", authFile];
  if (opts.creds) args.push("--creds", opts.creds);
  if (opts.raw) args.push("--raw");
  args.push(dockerRef(ref));
  // --raw prints the manifest exactly as answered, without a trailing newline; manifests are
  // UTF-8 JSON, so decoding and re-encoding stdout keeps the bytes.
  const res = await runCommand("skopeo", args, { timeoutMs: opts.timeoutMs ?? 60_000 }).finally(dispose);
  const out: SkopeoInspectResult = { ...res };
  if (res.code === 0) {
    if (opts.raw) out.raw = Buffer.from(res.stdout, "utf8");
    else out.json = JSON.parse(res.stdout) as SkopeoInspectResult["json"];
  }
  return out;
}

export interface OciDirCopy extends SkopeoResult {
  dir: string;
  /** the top-level manifest (or index, with `all`) skopeo stored, byte for byte */
  manifest?: Buffer;
  /** sha256 digest of `manifest`, as index.json names it */
  digest?: string;
  mediaType?: string;
  /** read a blob (or manifest) skopeo stored in the OCI layout; undefined if it is not there */
  readBlob(digest: string): Promise<Buffer | undefined>;
}

interface OciIndex {
  manifests?: { digest?: string; mediaType?: string }[];
}

/**
 * `skopeo copy docker://REF oci:DIR` into a fresh OCI layout, then read back what was stored.
 * `all` copies every platform of an index (`--all`); without it skopeo picks the host platform.
 */
export async function skopeoCopyToOciDir(
  ref: string,
  dir?: string,
  opts: SkopeoOptions & { all?: boolean } = {},
): Promise<OciDirCopy> {
  const { global, authFile, dispose } = await skopeoSandbox(opts);
  const dest = dir ?? join(await tempDir("oci"), "layout");
  await mkdir(dest, { recursive: true });
  const args = [...global, "copy", `--src-tls-verify=${opts.tlsVerify ?? false}`, "--src-authfile", authFile];
  if (opts.creds) args.push("--src-creds", opts.creds);
  if (opts.all) args.push("--all");
  args.push(dockerRef(ref), `oci:${dest}`);
  const res = await runCommand("skopeo", args, { timeoutMs: opts.timeoutMs ?? 60_000 }).finally(dispose);
  const readBlob = async (digest: string): Promise<Buffer | undefined> => {
    const [algorithm, hex] = digest.split(":");
    if (!algorithm || !hex || !/^[a-z0-9]+$/.test(algorithm) || !/^[a-f0-9]+$/.test(hex)) return undefined;
    return readFile(join(dest, "blobs", algorithm, hex)).catch(() => undefined);
  };
  const out: OciDirCopy = { ...res, dir: dest, readBlob };
  if (res.code === 0) {
    const index = JSON.parse(await readFile(join(dest, "index.json"), "utf8")) as OciIndex;
    const entry = index.manifests?.[0];
    if (entry?.digest) {
      out.digest = entry.digest;
      out.mediaType = entry.mediaType;
      out.manifest = await readBlob(entry.digest);
    }
  }
  return out;
}

/**
 * A registries.conf (containers-registries.conf(5), v2 format) for `prefix` (e.g. `docker.io`):
 * - `mirror`: a `[[registry.mirror]]` entry; skopeo falls back to the origin when the mirror fails
 *   and reports `Mirrors also failed: [... denied: <message>]`.
 * - `location`: replaces the registry itself; a refusal there is final (no fallback).
 * Both are marked insecure (plain HTTP test peers).
 */
export function registriesConf(prefix: string, where: { mirror: string } | { location: string }): string {
  const lines = [
    "unqualified-search-registries = []",
    "",
    "[[registry]]",
    `prefix = ${JSON.stringify(prefix)}`,
  ];
  if ("location" in where) {
    lines.push(`location = ${JSON.stringify(where.location)}`, "insecure = true");
  } else {
    lines.push(
      `location = ${JSON.stringify(prefix)}`,
      "",
      "[[registry.mirror]]",
      `location = ${JSON.stringify(where.mirror)}`,
      "insecure = true",
    );
  }
  return `${lines.join("\n")}\n`;
}
