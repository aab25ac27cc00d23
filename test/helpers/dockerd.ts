/**
 * A private Docker daemon (its own data-root, exec-root, pidfile and unix socket in a temp dir, no
 * networking, the vfs storage driver) and the `docker` CLI as the pull client.
 *
 * With `registry-mirrors`, dockerd sends only Docker Hub pulls (`docker.io/...`) to the mirror,
 * with no hint of the origin: `GET /v2/`, `HEAD .../manifests/<tag>`, `GET .../manifests/<digest
 * from the HEAD's Docker-Content-Digest>`, then blobs. On ANY mirror error it falls back to
 * registry-1.docker.io and reports the origin's error, not the mirror's (so tests of refusals
 * through a mirror must assert on what the mirror logged, not on the CLI's text).
 *
 * Failed pulls resolve (never throw) with the exit code and stderr.
 */
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { alive, waitUntilReady } from "./peer-ready.js";
import { type Peer, runCommand, startPeer, tempDir, waitFor } from "./process.js";

export interface DockerdPeer extends Peer {
  /** unix:///.../docker.sock, for `docker -H` */
  host: string;
  dir: string;
}

export interface DockerdOptions {
  /** daemon.json `registry-mirrors` (e.g. ["http://127.0.0.1:PORT"]) */
  registryMirrors?: string[];
  /** daemon.json `insecure-registries` (host:port; plain HTTP allowed) */
  insecureRegistries?: string[];
  startTimeoutMs?: number;
}

export interface DockerResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** dockerd could not start here; `reason` says why, for the test's skip message. */
export class DockerdUnavailable extends Error {
  constructor(readonly reason: string) {
    super(`dockerd unavailable: ${reason}`);
    this.name = "DockerdUnavailable";
  }
}

async function tail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * Start dockerd; throws DockerdUnavailable (with the reason and the end of its log) when it is not
 * installed or does not come up, so a test can skip with that reason printed.
 */
/**
 * dockerd, or the reason it cannot start on this machine: the test then skips only its dockerd
 * cases and prints that reason. Any other failure still fails the test.
 */
export async function startDockerdIfAvailable(
  opts: DockerdOptions,
): Promise<{ dockerd: DockerdPeer | undefined; unavailable: string }> {
  try {
    return { dockerd: await startDockerd(opts), unavailable: "" };
  } catch (err) {
    if (!(err instanceof DockerdUnavailable)) throw err;
    return { dockerd: undefined, unavailable: err.reason };
  }
}

export async function startDockerd(opts: DockerdOptions = {}): Promise<DockerdPeer> {
  const which = await runCommand("sh", ["-c", "command -v dockerd && command -v docker"]);
  if (which.code !== 0) throw new DockerdUnavailable("dockerd or the docker CLI is not installed");
  const dir = await tempDir("dockerd");
  const socket = join(dir, "docker.sock");
  const daemonJson = join(dir, "daemon.json");
  await writeFile(
    daemonJson,
    JSON.stringify({
      "registry-mirrors": opts.registryMirrors ?? [],
      "insecure-registries": opts.insecureRegistries ?? [],
    }),
  );
  // No iptables, no bridge, vfs: nothing on the host is touched and no kernel feature is needed
  // beyond what pulling and unpacking into plain directories takes.
  const args = [
    "--config-file",
    daemonJson,
    "--data-root",
    join(dir, "data"),
    "--exec-root",
    join(dir, "exec"),
    "--pidfile",
    join(dir, "docker.pid"),
    "-H",
    `unix://${socket}`,
    "--iptables=false",
    "--ip6tables=false",
    "--bridge=none",
    "--storage-driver=vfs",
  ];
  const peer = startPeer("dockerd", "dockerd", args, { cwd: dir, logFile: join(dir, "dockerd.log") });
  const dockerd: DockerdPeer = {
    ...peer,
    host: `unix://${socket}`,
    dir,
    async stop() {
      // dockerd starts its own containerd; it stops it on SIGTERM, but if dockerd had to be
      // killed that child would outlive it, so it is signalled by its recorded PID too.
      const childPid = Number(
        await readFile(join(dir, "exec", "containerd", "containerd.pid"), "utf8").catch(() => ""),
      );
      await peer.stop();
      if (Number.isInteger(childPid) && childPid > 0) {
        try {
          process.kill(childPid, 0);
          process.kill(childPid, "SIGTERM");
          await waitFor("dockerd's containerd to exit", async () => !alive(childPid), 10_000);
        } catch {
          // already gone
        }
      }
      if (!process.env.TRUSTGATE_KEEP_TEST_DIRS) await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitUntilReady(
      "dockerd (answering on its socket)",
      peer.pid,
      async () => (await docker(dockerd, ["version", "--format", "{{.Server.Version}}"])).code === 0,
      opts.startTimeoutMs ?? 30_000,
      100,
    );
  } catch (err) {
    const log = await tail(peer.logFile);
    await dockerd.stop();
    throw new DockerdUnavailable(`${err instanceof Error ? err.message : String(err)}\n${log}`);
  }
  return dockerd;
}

/** Run `docker -H unix://SOCK <args>` with an empty client config (no credentials, no contexts). */
export async function docker(
  dockerd: DockerdPeer,
  args: string[],
  timeoutMs = 60_000,
): Promise<DockerResult> {
  return runCommand("docker", ["-H", dockerd.host, ...args], {
    timeoutMs,
    env: { ...process.env, DOCKER_CONFIG: join(dockerd.dir, "client-config"), DOCKER_CONTENT_TRUST: "0" },
  });
}

/** `docker pull IMAGE` (e.g. `acme/app:v1`, which with registry-mirrors goes to the mirror). */
export function dockerPull(dockerd: DockerdPeer, image: string, timeoutMs?: number): Promise<DockerResult> {
  return docker(dockerd, ["pull", image], timeoutMs);
}

/** RepoDigests of a pulled image (e.g. `acme/app@sha256:...`); empty if the image is absent. */
export async function dockerImageDigests(dockerd: DockerdPeer, image: string): Promise<string[]> {
  const res = await docker(dockerd, ["image", "inspect", "--format", "{{json .RepoDigests}}", image]);
  if (res.code !== 0) return [];
  return JSON.parse(res.stdout) as string[];
}

/** The image ID (the config blob's digest) of a pulled image, or undefined. */
export async function dockerImageId(dockerd: DockerdPeer, image: string): Promise<string | undefined> {
  const res = await docker(dockerd, ["image", "inspect", "--format", "{{.Id}}", image]);
  return res.code === 0 ? res.stdout.trim() : undefined;
}

/** Remove an image so the next pull fetches it again. */
export async function dockerRemoveImage(dockerd: DockerdPeer, image: string): Promise<void> {
  await docker(dockerd, ["image", "rm", "--force", image]);
}

/**
 * Contents of `relPath` in every unpacked layer dockerd holds (vfs keeps each layer as a plain
 * directory under data-root/vfs/dir): proof that a pulled layer really unpacked.
 */
export async function dockerUnpackedFiles(dockerd: DockerdPeer, relPath: string): Promise<string[]> {
  const root = join(dockerd.dir, "data", "vfs", "dir");
  const layers = await readdir(root).catch(() => [] as string[]);
  const found: string[] = [];
  for (const layer of layers) {
    const text = await readFile(join(root, layer, relPath), "utf8").catch(() => undefined);
    if (text !== undefined) found.push(text);
  }
  return found;
}
