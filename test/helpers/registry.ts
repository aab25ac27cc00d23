/**
 * A real CNCF distribution registry (Debian's `docker-registry`, 2.8) on a free loopback port,
 * with its storage in a temp dir. Optionally a pull-through cache (`proxy.remoteurl`) or a
 * registry that demands bearer tokens (the test supplies the token issuer's certificate).
 */
import { writeFile } from "node:fs/promises";
import { get } from "node:http";
import { join } from "node:path";
import { freePort, type Peer, startPeer, tempDir } from "./process.js";

export interface RegistryPeer extends Peer {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, the registry's name in image references and GUNs */
  host: string;
  dir: string;
}

export interface RegistryOptions {
  /** make it a pull-through cache of this upstream */
  proxyRemoteUrl?: string;
  /** demand bearer tokens: realm, service, issuer, and the PEM bundle that verifies token signatures */
  tokenAuth?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** serve this storage directory (e.g. one filled by an earlier registry without auth) */
  storageDir?: string;
}

/** Tries at most this many ports: a freed port can be taken by another process before we bind it. */
const START_ATTEMPTS = 3;
const READY_TIMEOUT_MS = 20_000;

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryPeer> {
  const dir = await tempDir("registry");
  let lastProblem = "";
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const port = await freePort();
    const configFile = join(dir, "registry.yml");
    await writeFile(configFile, registryConfig(opts, dir, port));
    const peer = startPeer("docker-registry", "docker-registry", ["serve", configFile], {
      cwd: dir,
      logFile: join(dir, "registry.log"),
    });
    const ready = await waitUntilServing(peer, port);
    if (ready === true) return { ...peer, url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, dir };
    await peer.stop();
    lastProblem = `port ${port}: ${ready}`;
    // only a registry that exited (its port taken) is worth another port; a timeout is not
    if (!ready.startsWith("exited")) break;
  }
  throw new Error(`docker-registry did not start (${lastProblem}; log: ${join(dir, "registry.log")})`);
}

function registryConfig(opts: RegistryOptions, dir: string, port: number): string {
  const lines = [
    "version: 0.1",
    "log:",
    "  level: warn",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${opts.storageDir ?? join(dir, "data")}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: 127.0.0.1:${port}`,
  ];
  if (opts.proxyRemoteUrl) lines.push("proxy:", `  remoteurl: ${opts.proxyRemoteUrl}`);
  if (opts.tokenAuth) {
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${opts.tokenAuth.realm}`,
      `    service: ${opts.tokenAuth.service}`,
      `    issuer: ${opts.tokenAuth.issuer}`,
      `    rootcertbundle: ${opts.tokenAuth.rootCertBundle}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/**
 * true once OUR registry answers /v2/ (an open port alone may be another process that took the
 * freed port: its answers then broke the first push with "other side closed"); else why not.
 */
async function waitUntilServing(peer: Peer, port: number): Promise<true | string> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!peer.running()) return "exited (see its log)";
    if (await answersAsRegistry(port)) return peer.running() ? true : "exited (see its log)";
    await new Promise((r) => setTimeout(r, 50));
  }
  return `no registry answer on /v2/ within ${READY_TIMEOUT_MS / 1000} s`;
}

/** GET /v2/ on a connection of its own: distribution answers 200 or 401 with its API version header. */
function answersAsRegistry(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get({ host: "127.0.0.1", port, path: "/v2/", agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.headers["docker-distribution-api-version"] === "registry/2.0");
    });
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve(false));
  });
}
