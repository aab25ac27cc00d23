/**
 * A real CNCF distribution registry (Debian's `docker-registry`, 2.8) on a free loopback port,
 * with its storage in a temp dir. Optionally a pull-through cache (`proxy.remoteurl`) or a
 * registry that demands bearer tokens (the test supplies the token issuer's certificate).
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freePort, type Peer, portOpen, startPeer, tempDir, waitFor } from "./process.js";

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

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryPeer> {
  const dir = await tempDir("registry");
  const port = await freePort();
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
  const configFile = join(dir, "registry.yml");
  await writeFile(configFile, `${lines.join("\n")}\n`);
  const peer = startPeer("docker-registry", "docker-registry", ["serve", configFile], {
    cwd: dir,
    logFile: join(dir, "registry.log"),
  });
  try {
    await waitFor(`docker-registry on port ${port}`, () => portOpen(port));
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return { ...peer, url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, dir };
}
