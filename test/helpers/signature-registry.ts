/**
 * The signature fixtures in a real registry: each case pushed byte-exactly into docker-registry
 * with the fixtures' own push.sh (curl + jq; it reads every manifest and blob back and compares
 * sha256), behind a small static OCI front that serves the cosign-legacy SUBJECT manifests from
 * their layouts (distribution 2.8 refuses them: their blobs are not in the source, fixtures
 * README) and relays every other request to the registry unchanged.
 */
import { rm, writeFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { type ContainerdPeer, startContainerd, writeHostsDir } from "./containerd.js";
import type { OciLayout } from "./oci-layout.js";
import { runCommand, tempDir } from "./process.js";
import { startTrustgate, type TrustgatePeer } from "./trustgate.js";
import type { TestTufRepository } from "./tuf-repo.js";

export const SIGNATURE_FIXTURES = resolve("test/fixtures/signatures");

/** push.sh <case> host:port repo; exit 3 = complete except the unpushable subject (legacy cases). */
export async function pushCase(caseName: string, registryHostPort: string, repo: string): Promise<void> {
  const tmp = await tempDir("push-sh");
  const res = await runCommand(
    "bash",
    [join(SIGNATURE_FIXTURES, "push.sh"), join(SIGNATURE_FIXTURES, caseName), registryHostPort, repo],
    {
      timeoutMs: 60_000,
      env: { ...process.env, TMPDIR: tmp },
    },
  );
  const legacy = caseName.startsWith("cosign-legacy/");
  if (!(res.code === 0 || (legacy && res.code === 3)))
    throw new Error(`push.sh ${caseName} -> exit ${res.code}\n${res.stdout}\n${res.stderr}`);
}

export interface StaticFront {
  url: string;
  host: string;
  close(): Promise<void>;
}

/** `subjects`: repository -> layout whose subject manifests (by digest and tag) are served from it. */
export async function startStaticFront(
  registryUrl: string,
  subjects: Record<string, OciLayout>,
): Promise<StaticFront> {
  const upstream = new URL(registryUrl);
  const server: Server = createServer((req, res) => {
    const m = /^\/v2\/(.+)\/manifests\/([^/?]+)$/.exec((req.url ?? "").split("?")[0] as string);
    const layout = m ? subjects[m[1] as string] : undefined;
    const ref = m ? decodeURIComponent(m[2] as string) : "";
    const served = layout && !ref.startsWith("sha256-") ? layout.manifest(ref) : undefined;
    if (served && (req.method === "GET" || req.method === "HEAD")) {
      res.writeHead(200, {
        "content-type": served.mediaType,
        "content-length": served.bytes.length,
        "docker-content-digest": served.digest,
      });
      res.end(req.method === "HEAD" ? undefined : served.bytes);
      return;
    }
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** What both signature e2e suites pull through: trustgate over TUF tag trust, and containerd. */
export interface SignedPullPeers {
  trustgate: TrustgatePeer;
  containerd: ContainerdPeer;
  /** containerd's hosts.toml directory naming trustgate as docker.io's mirror */
  hostsDir: string;
}

/**
 * Publish the TUF repository (its targets added by the caller), then start trustgate for
 * docker.io over `upstreamUrl` pinned to the repository's first root, with the policy directory
 * `policies`, and containerd with trustgate as mirror. Files go under `scratch`.
 */
export async function startSignedPullPeers(opts: {
  scratch: string;
  upstreamUrl: string;
  tuf: TestTufRepository;
  policies: string;
}): Promise<SignedPullPeers> {
  opts.tuf.publish();
  const trustedRoot = join(opts.scratch, "root.json");
  await writeFile(trustedRoot, opts.tuf.initialRoot);
  const trustgate = await startTrustgate({
    registries: {
      "docker.io": { upstream: opts.upstreamUrl, tuf: { metadataUrl: opts.tuf.metadataUrl, trustedRoot } },
    },
    extraConfig: { policies: opts.policies },
  });
  const hostsDir = await writeHostsDir(trustgate.url, { dir: join(opts.scratch, "hosts") });
  const containerd = await startContainerd();
  return { trustgate, containerd, hostsDir };
}

/** Stop what started (in reverse order of need) and, unless TRUSTGATE_KEEP_TEST_DIRS, remove the dirs. */
export async function stopSignedPullPeers(
  peers: Partial<SignedPullPeers>,
  others: ReadonlyArray<{ stop?(): Promise<void>; close?(): Promise<void> } | undefined>,
  dirs: ReadonlyArray<string | undefined>,
): Promise<void> {
  await peers.containerd?.stop();
  await peers.trustgate?.stop();
  for (const peer of others) await (peer?.stop?.() ?? peer?.close?.());
  if (process.env.TRUSTGATE_KEEP_TEST_DIRS) return;
  for (const dir of [...dirs, peers.trustgate?.dir]) if (dir) await rm(dir, { recursive: true, force: true });
}
