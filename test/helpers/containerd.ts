/**
 * A private containerd (its own root, state and socket in a temp dir) and `ctr` as the pull client.
 * containerd resolves through a hosts directory (containerd docs/hosts.md): with a `hosts.toml`
 * whose `server` is the mirror AND a `[host."<mirror>"]` table for it, every request goes to the
 * mirror with `?ns=<origin registry>` and there is no fallback to the origin. A file with only
 * `server` is rejected by containerd 1.6 ("invalid `host` tree") and it silently pulls from the
 * default upstream instead, so the pair is always written together here.
 *
 * Failed pulls resolve (never throw) with the exit code and stderr: containerd shows only the
 * status line of a refusal (`... 403 Forbidden`), never the OCI error body.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { waitUntilReady } from "./peer-ready.js";
import { type Peer, runCommand, startPeer, tempDir } from "./process.js";

export interface ContainerdPeer extends Peer {
  /** the gRPC socket, for `ctr -a` */
  socket: string;
  dir: string;
  /** the containerd namespace every helper call uses */
  namespace: string;
}

export interface CtrResult {
  code: number;
  stdout: string;
  stderr: string;
}

const NAMESPACE = "trustgate-test";

/**
 * Plugins that cannot work here or are not needed to pull and unpack: the CRI server (wants CNI),
 * snapshotters for absent filesystems, tracing. What stays: content, metadata, images, leases,
 * diff, overlayfs/native snapshotters, so `ctr images pull` fetches and unpacks for real.
 */
const DISABLED_PLUGINS = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
];

function tomlString(s: string): string {
  return JSON.stringify(s); // a TOML basic string is a JSON string for the characters we write
}

export interface ContainerdOptions {
  /**
   * Run the CRI plugin (the kubelet's API) with its registry `config_path` at this hosts
   * directory, as a Kubernetes node does. Without it the CRI plugin is disabled.
   */
  criConfigPath?: string;
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<ContainerdPeer> {
  const dir = await tempDir("containerd");
  const socket = join(dir, "containerd.sock");
  const disabled = opts.criConfigPath
    ? DISABLED_PLUGINS.filter((p) => p !== "io.containerd.grpc.v1.cri")
    : DISABLED_PLUGINS;
  const cri = opts.criConfigPath
    ? [
        '[plugins."io.containerd.grpc.v1.cri"]',
        "  disable_apparmor = true",
        // the default stream port 10010 is shared by every containerd on the machine
        '  stream_server_port = "0"',
        '[plugins."io.containerd.grpc.v1.cri".registry]',
        `  config_path = ${tomlString(opts.criConfigPath)}`,
      ]
    : [];
  const config = [
    "version = 2",
    `root = ${tomlString(join(dir, "root"))}`,
    `state = ${tomlString(join(dir, "state"))}`,
    `disabled_plugins = [${disabled.map(tomlString).join(", ")}]`,
    "[grpc]",
    `  address = ${tomlString(socket)}`,
    "[ttrpc]",
    `  address = ${tomlString(`${socket}.ttrpc`)}`,
    "[debug]",
    '  address = ""',
    "[metrics]",
    '  address = ""',
    // the default is /opt/containerd, shared with the host's containerd
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${tomlString(join(dir, "opt"))}`,
    ...cri,
    "",
  ].join("\n");
  const configFile = join(dir, "config.toml");
  await writeFile(configFile, config);
  const peer = startPeer("containerd", "containerd", ["--config", configFile], {
    cwd: dir,
    logFile: join(dir, "containerd.log"),
  });
  const ctd: ContainerdPeer = {
    ...peer,
    socket,
    dir,
    namespace: NAMESPACE,
    async stop() {
      await peer.stop();
      if (!process.env.TRUSTGATE_KEEP_TEST_DIRS) await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitUntilReady(
      `containerd (answering on ${socket})`,
      peer.pid,
      async () => (await ctr(ctd, ["version"])).code === 0,
      20_000,
    );
  } catch (err) {
    await peer.stop();
    throw new Error(`containerd did not start (log: ${peer.logFile}): ${String(err)}`);
  }
  return ctd;
}

/** Run `ctr -a SOCK -n NS <args>`; never throws on a non-zero exit. */
export function ctr(containerd: ContainerdPeer, args: string[], timeoutMs = 60_000): Promise<CtrResult> {
  return runCommand("ctr", ["-a", containerd.socket, "-n", containerd.namespace, ...args], {
    timeoutMs,
  });
}

export interface HostsDirOptions {
  /** registries (as named in image references) whose pulls go to the mirror; default docker.io */
  registries?: string[];
  /** also write `_default/hosts.toml`, which catches every other registry */
  catchAll?: boolean;
  /** an existing directory to write into (default: a fresh temp dir) */
  dir?: string;
}

/** hosts.toml with `server` = the mirror plus its `[host]` table: the pair that has no fallback. */
export function hostsToml(mirrorUrl: string): string {
  return [
    `server = ${tomlString(mirrorUrl)}`,
    `[host.${tomlString(mirrorUrl)}]`,
    '  capabilities = ["pull", "resolve"]',
    "",
  ].join("\n");
}

/**
 * A `--hosts-dir` tree sending the given registries (and with `catchAll`, every registry) to
 * `mirrorUrl`. containerd then adds `?ns=<registry>` to each request. Returns the directory.
 */
export async function writeHostsDir(mirrorUrl: string, opts: HostsDirOptions = {}): Promise<string> {
  const dir = opts.dir ?? (await tempDir("hosts"));
  const names = [...(opts.registries ?? ["docker.io"]), ...(opts.catchAll ? ["_default"] : [])];
  for (const name of names) {
    await mkdir(join(dir, name), { recursive: true });
    await writeFile(join(dir, name, "hosts.toml"), hostsToml(mirrorUrl));
  }
  return dir;
}

export interface CtrPullOptions {
  /** the `--hosts-dir` tree (see writeHostsDir) */
  hostsDir: string;
  /** `--platform os/arch` to fetch one platform of an index */
  platform?: string;
  /** `--user user:password` */
  user?: string;
  timeoutMs?: number;
}

/**
 * `ctr images pull --hosts-dir DIR REF` (fetch and unpack). `ref` is fully qualified, e.g.
 * `docker.io/acme/app:v1` or `127.0.0.1:5000/acme/app:v1`.
 */
export function ctrPull(containerd: ContainerdPeer, ref: string, opts: CtrPullOptions): Promise<CtrResult> {
  const args = ["images", "pull", "--hosts-dir", opts.hostsDir];
  if (opts.platform) args.push("--platform", opts.platform);
  if (opts.user) args.push("--user", opts.user);
  args.push(ref);
  return ctr(containerd, args, opts.timeoutMs).then(withoutProgressRace);
}

/**
 * ctr 1.6's progress display races the end of a successful pull: it may log
 * `level=error msg="active check failed" error="context canceled"` or
 * `level=error msg="failed to get content info" error="context canceled"` after everything was
 * fetched (its status poll, cmd/ctr/commands/content/fetch.go, is cancelled with the pull's
 * context). Only on success, only those exact lines are dropped, so the tests' "stderr is empty"
 * still catches every real complaint.
 */
function withoutProgressRace(res: CtrResult): CtrResult {
  if (res.code !== 0) return res;
  const stderr = res.stderr
    .split("\n")
    .filter(
      (line) =>
        !/level=error msg="(active check failed|failed to get content info)" error="context canceled"$/.test(
          line,
        ),
    )
    .join("\n");
  return { ...res, stderr: stderr.trim() === "" ? "" : stderr };
}

/** The digest containerd stored for `ref` (the manifest or index it resolved), or undefined. */
export async function ctrImageDigest(containerd: ContainerdPeer, ref: string): Promise<string | undefined> {
  const res = await ctr(containerd, ["images", "ls"]);
  if (res.code !== 0) throw new Error(`ctr images ls failed: ${res.stderr}`);
  // Columns: REF TYPE DIGEST SIZE PLATFORMS LABELS (whitespace separated; refs contain no spaces).
  for (const line of res.stdout.split("\n").slice(1)) {
    const [name, , digest] = line.trim().split(/\s+/);
    if (name === ref) return digest;
  }
  return undefined;
}

/** `ctr images check`: whether every blob of `ref` (for the pulled platforms) is in the store. */
export async function ctrImageComplete(containerd: ContainerdPeer, ref: string): Promise<boolean> {
  const res = await ctr(containerd, ["images", "check", `name==${ref}`]);
  if (res.code !== 0) throw new Error(`ctr images check failed: ${res.stderr}`);
  const line = res.stdout.split("\n").find((l) => l.startsWith(`${ref} `));
  return line !== undefined && /\bcomplete \(/.test(line);
}

/** The bytes of a blob or manifest in containerd's content store, or undefined if absent. */
export async function ctrContentGet(containerd: ContainerdPeer, digest: string): Promise<Buffer | undefined> {
  // `ctr content get` writes the raw bytes (a gzip layer is not text): collect Buffers.
  const child = spawn(
    "ctr",
    ["-a", containerd.socket, "-n", containerd.namespace, "content", "get", digest],
    {
      stdio: ["ignore", "pipe", "ignore"],
    },
  );
  const chunks: Buffer[] = [];
  child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
  const [code] = (await once(child, "close")) as [number | null];
  return code === 0 ? Buffer.concat(chunks) : undefined;
}

/** Remove an image and let the garbage collector drop its content (to pull it again). */
export async function ctrRemoveImage(containerd: ContainerdPeer, ref: string): Promise<void> {
  await ctr(containerd, ["images", "rm", "--sync", ref]);
}

/**
 * Contents of `relPath` in every committed overlayfs snapshot (one directory per unpacked layer
 * under root/io.containerd.snapshotter.v1.overlayfs/snapshots/N/fs): proof a layer really unpacked.
 */
export async function ctrUnpackedFiles(containerd: ContainerdPeer, relPath: string): Promise<string[]> {
  const root = join(containerd.dir, "root", "io.containerd.snapshotter.v1.overlayfs", "snapshots");
  const snapshots = await readdir(root).catch(() => [] as string[]);
  const found: string[] = [];
  for (const id of snapshots) {
    const text = await readFile(join(root, id, "fs", relPath), "utf8").catch(() => undefined);
    if (text !== undefined) found.push(text);
  }
  return found;
}
