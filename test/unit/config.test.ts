import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS, loadConfig, parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/errors.js";
import { selectTarget } from "../../src/proxy/route.js";

const FILE = "/etc/trustgate/config.yaml";
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trustgate-config-"));
  await writeFile(join(dir, "ca.pem"), PEM);
  await writeFile(join(dir, "root.json"), "{}");
});

async function errorOf(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    await parseConfig(yaml, join(dir, "config.yaml"), env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("config loading", () => {
  it("fills defaults and resolves paths against the config's directory", async () => {
    const c = await parseConfig(
      "registries:\n  docker.io:\n    upstream: https://registry-1.docker.io/\n",
      FILE,
      {},
    );
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 5000 });
    expect(c.stateDir).toBe("/etc/trustgate/var/trustgate");
    expect(c.policies).toBe("/etc/trustgate/policies");
    expect(c.defaultPolicy).toBe("refuse");
    expect(c.trustRefreshSeconds).toBe(30);
    expect(c.logLevel).toBe("info");
    expect(c.upstreamTimeouts).toEqual(DEFAULTS.upstreamTimeouts);
    expect(c.manifestCacheBytes).toBe(DEFAULTS.manifestCacheBytes);
    expect(c.trustCacheBytes).toBe(64 * 1024 * 1024);
    expect(c.statePruneDays).toBe(90);
    expect(c.blobRedirect).toBe(false);
    expect(c.blobCache).toBeUndefined();
    expect(c.defaultRegistry).toBeUndefined();
    expect(c.registries.get("docker.io")?.upstream.href).toBe("https://registry-1.docker.io/");
  });

  it("reads every key", async () => {
    const c = await parseConfig(
      `
listen: "[::1]:6000"
stateDir: state
defaultRegistry: docker.io
policies: /abs/policies
defaultPolicy: audit
trustRefreshSeconds: 5
logLevel: debug
upstreamTimeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 3000, totalMs: 4000 }
manifestCacheBytes: 1024
trustCacheBytes: 2097152
statePruneDays: 0
blobRedirect: false
blobCache: { dir: cache/blobs, maxBytes: 2097152 }
registries:
  docker.io:
    upstream: https://registry-1.docker.io
    caFile: ca.pem
    username: robot
    passwordEnv: HUB_TOKEN
    notary: { url: "https://notary.docker.io", caFile: ca.pem }
    redirectHosts: [cdn.internal.example, "10.0.0.5:9000"]
    tokenRealms: [Auth.Docker.io]
  "127.0.0.1:5000":
    upstream: http://127.0.0.1:5000
    tuf: { metadataUrl: "http://127.0.0.1:8080/metadata", trustedRoot: root.json, targetPath: "{repository}/{tag}" }
`,
      join(dir, "config.yaml"),
      { HUB_TOKEN: "s3cret" },
    );
    expect(c.listen).toEqual({ host: "::1", port: 6000 });
    expect(c.stateDir).toBe(join(dir, "state"));
    expect(c.policies).toBe("/abs/policies");
    expect(c.upstreamTimeouts).toEqual({ connectMs: 1000, headersMs: 2000, bodyMs: 3000, totalMs: 4000 });
    expect(c.blobCache).toEqual({ dir: join(dir, "cache/blobs"), maxBytes: 2097152 });
    expect(c.trustCacheBytes).toBe(2097152);
    expect(c.statePruneDays).toBe(0);
    const hub = c.registries.get("docker.io");
    expect(hub?.caFile).toBe(join(dir, "ca.pem"));
    expect(hub?.ca).toBe(PEM);
    expect(hub?.credentials?.username).toBe("robot");
    expect(hub?.credentials?.password.reveal()).toBe("s3cret");
    expect(hub?.notary?.url.href).toBe("https://notary.docker.io/");
    expect(hub?.notary?.caFile).toBe(join(dir, "ca.pem"));
    expect(hub?.redirectHosts).toEqual(["cdn.internal.example", "10.0.0.5:9000"]);
    expect(hub?.tokenRealms).toEqual(["auth.docker.io"]);
    const local = c.registries.get("127.0.0.1:5000");
    expect(local?.tuf?.trustedRoot).toBe(join(dir, "root.json"));
    expect(local?.tuf?.targetPath).toBe("{repository}/{tag}");
  });

  it("takes a file:// TUF metadataUrl for air-gapped sites", async () => {
    const c = await parseConfig(
      "registries:\n  r.io:\n    upstream: https://r.io\n    tuf: { metadataUrl: 'file:///srv/tuf/metadata/', trustedRoot: root.json }\n",
      join(dir, "config.yaml"),
    );
    expect(c.registries.get("r.io")?.tuf?.metadataUrl.href).toBe("file:///srv/tuf/metadata");
  });

  it("takes notary and tuf together for one registry (a cut-over; policies choose with trust.sources)", async () => {
    const c = await parseConfig(
      "registries:\n  r.io:\n    upstream: https://x\n    notary: { url: 'https://n' }\n    tuf: { metadataUrl: 'https://t', trustedRoot: root.json }\n",
      join(dir, "config.yaml"),
    );
    expect(c.registries.get("r.io")?.notary?.url.href).toBe("https://n/");
    expect(c.registries.get("r.io")?.tuf?.metadataUrl.href).toBe("https://t/");
  });

  it("never shows the password in JSON or inspection", async () => {
    const c = await parseConfig(
      "registries:\n  r.io:\n    upstream: https://r.io\n    username: u\n    passwordEnv: P\n",
      FILE,
      { P: "hunter2-secret" },
    );
    const reg = c.registries.get("r.io");
    expect(JSON.stringify(reg)).not.toContain("hunter2");
    const { inspect } = await import("node:util");
    expect(inspect(reg, { depth: 5 })).not.toContain("hunter2");
  });

  it.each([
    ["bogus: 1", "bogus: unknown key"],
    [
      "registries:\n  Docker.IO:\n    upstream: https://x",
      "registries.Docker.IO: the registry name must be lower case",
    ],
    ["listen: nowhere", "listen: must be HOST:PORT"],
    ["listen: 1.2.3.4:99999", "listen: must be HOST:PORT"],
    ["defaultPolicy: maybe", "defaultPolicy: must be one of refuse, enforce, audit, off"],
    ["defaultPolicy: deny", "defaultPolicy: must be one of refuse, enforce, audit, off"],
    ["trustRefreshSeconds: 0", "trustRefreshSeconds: must be an integer"],
    ["trustRefreshSeconds: '30'", "trustRefreshSeconds: must be an integer"],
    ["logLevel: loud", "logLevel: must be one of"],
    ["manifestCacheBytes: -1", "manifestCacheBytes: must be an integer"],
    ["blobRedirect: yes please", "blobRedirect: must be true or false"],
    ["blobCache: { maxBytes: 2097152 }", "blobCache.dir: is required"],
    ["blobCache: { dir: c, maxBytes: 1000 }", "blobCache.maxBytes: must be an integer"],
    ["blobCache: { dir: c, size: 5 }", "blobCache.size: unknown key"],
    ["blobRedirect: true\nblobCache: { dir: c }", "blobCache: cannot be used with blobRedirect"],
    ["upstreamTimeouts: { connectMs: 0 }", "upstreamTimeouts.connectMs: must be an integer"],
    ["upstreamTimeouts: { readMs: 5 }", "upstreamTimeouts.readMs: unknown key"],
    ["upstreamTimeouts: { totalMs: 0 }", "upstreamTimeouts.totalMs: must be an integer"],
    [
      "registries:\n  r.io:\n    upstream: https://r.io\n    redirectHosts: cdn.example",
      "registries.r.io.redirectHosts: must be a list of host[:port]",
    ],
    [
      "registries:\n  r.io:\n    upstream: https://r.io\n    tokenRealms: ['https://auth.example/token']",
      "registries.r.io.tokenRealms[0]: must be host[:port]",
    ],
    ["defaultRegistry: docker.io", 'defaultRegistry: names "docker.io", which is not under registries'],
    ["registries: []", "registries: must be a mapping"],
    ["registries:\n  docker.io: {}", "registries.docker.io.upstream: must be a non-empty string"],
    [
      "registries:\n  docker.io:\n    upstream: ftp://x",
      "registries.docker.io.upstream: must be an http:// or https:// URL",
    ],
    [
      "registries:\n  docker.io:\n    upstream: https://u:p@x",
      "registries.docker.io.upstream: must not carry credentials",
    ],
    ["registries:\n  docker.io:\n    upstream: not a url", "registries.docker.io.upstream: not a URL"],
    [
      "registries:\n  docker.io:\n    upstream: https://x\n    mirror: y",
      "registries.docker.io.mirror: unknown key",
    ],
    [
      "registries:\n  'http://x':\n    upstream: https://x",
      "registries.http://x: the registry name must be a host",
    ],
    [
      "registries:\n  r.io:\n    upstream: https://x\n    caFile: missing.pem",
      "registries.r.io.caFile: cannot read",
    ],
    ["registries:\n  r.io:\n    upstream: https://x\n    caFile: root.json", "registries.r.io.caFile: "],
    [
      "registries:\n  r.io:\n    upstream: https://x\n    username: u",
      "registries.r.io.passwordEnv: is required",
    ],
    [
      "registries:\n  r.io:\n    upstream: https://x\n    passwordEnv: P",
      "registries.r.io.username: is required",
    ],
    [
      "registries:\n  r.io:\n    upstream: https://x\n    username: u\n    passwordEnv: NOT_SET_ANYWHERE",
      "registries.r.io.passwordEnv: environment variable NOT_SET_ANYWHERE is not set",
    ],
    [
      "registries:\n  r.io:\n    upstream: https://x\n    notary: { url: 'https://n', key: 1 }",
      "registries.r.io.notary.key: unknown key",
    ],
    [
      "registries:\n  r.io:\n    upstream: https://x\n    notary: {}",
      "registries.r.io.notary.url: must be a non-empty string",
    ],
    [
      "registries:\n  r.io:\n    upstream: https://x\n    tuf: { metadataUrl: 'https://t' }",
      "registries.r.io.tuf.trustedRoot: must be",
    ],
    [
      "registries:\n  r.io:\n    upstream: file:///srv/registry",
      "registries.r.io.upstream: must be an http:// or https:// URL",
    ],
    [
      "blobRedirect: true\nregistries:\n  r.io:\n    upstream: https://x\n    username: u\n    passwordEnv: P",
      "blobRedirect: cannot be used with registries.r.io.username",
    ],
    ["listen: [1", "line 1: invalid YAML"],
    ["a: 1\na: 2", "invalid YAML"],
    ["- 1", "(document): must be a mapping"],
  ])("%j -> names the key", async (yaml, expected) => {
    const message = await errorOf(yaml, { P: "x" });
    expect(message.startsWith(`${join(dir, "config.yaml")}: `)).toBe(true);
    expect(message).toContain(expected);
  });

  it("names the file when it cannot be read", async () => {
    await expect(loadConfig(join(dir, "absent.yaml"))).rejects.toThrow(
      /absent\.yaml: \(file\): cannot read: no such file \(ENOENT\)/,
    );
  });

  it("loads the repository's default config.yaml", async () => {
    const c = await loadConfig(join(import.meta.dirname, "../../config.yaml"), {});
    expect(c.defaultRegistry).toBe("docker.io");
    expect(c.registries.has("docker.io")).toBe(true);
  });

  it("T15: Docker Hub's aliases as registry keys are docker.io, so docker.io policies and GUNs apply", async () => {
    for (const alias of ["index.docker.io", "registry-1.docker.io"]) {
      const c = await parseConfig(
        `defaultRegistry: ${alias}\nregistries:\n  ${alias}:\n    upstream: https://registry-1.docker.io\n    notary: { url: "https://notary.docker.io" }\n`,
        FILE,
        {},
      );
      expect([...c.registries.keys()]).toEqual(["docker.io"]);
      expect(c.registries.get("docker.io")?.name).toBe("docker.io"); // the GUN prefix
      expect(c.defaultRegistry).toBe("docker.io");
      // containerd's ns=docker.io, and the image name a docker.io/... policy is matched against
      const t = selectTarget(c, "alpine", "docker.io");
      expect(`${t.registry.name}/${t.repository}`).toBe("docker.io/library/alpine");
    }
    // registry.hub.docker.com is not normalised by distribution/reference: a registry of its own
    const other = await parseConfig(
      "registries:\n  registry.hub.docker.com:\n    upstream: https://x.test\n",
      FILE,
      {},
    );
    expect([...other.registries.keys()]).toEqual(["registry.hub.docker.com"]);
  });

  it("T15: a config naming Docker Hub twice (an alias and docker.io) is refused", async () => {
    expect(
      await errorOf(
        "registries:\n  docker.io:\n    upstream: https://a.test\n  registry-1.docker.io:\n    upstream: https://b.test\n",
      ),
    ).toBe(
      `${join(dir, "config.yaml")}: registries.registry-1.docker.io: is docker.io, as registries.docker.io is: configure it once, as docker.io`,
    );
    expect(
      await errorOf(
        "registries:\n  index.docker.io:\n    upstream: https://a.test\n  docker.io:\n    upstream: https://b.test\n",
      ),
    ).toContain("registries.docker.io: is docker.io, as registries.index.docker.io is");
  });

  it("issue 12: tls takes certFile, keyFile and an optional clientCaFile, resolved beside the config", async () => {
    const c = await parseConfig(
      "tls: { certFile: tls/tls.crt, keyFile: /abs/tls.key, clientCaFile: ca.pem }\n",
      FILE,
      {},
    );
    expect(c.tls).toEqual({
      certFile: "/etc/trustgate/tls/tls.crt",
      keyFile: "/abs/tls.key",
      clientCaFile: "/etc/trustgate/ca.pem",
    });
    expect((await parseConfig("{}\n", FILE, {})).tls).toBeUndefined();
    expect(await errorOf("tls: { certFile: a.crt }\n")).toBe(
      `${join(dir, "config.yaml")}: tls.keyFile: is required (its private key, PEM)`,
    );
    expect(await errorOf("tls: { certFile: a.crt, keyFile: a.key, ca: x }\n")).toContain(
      "tls.ca: unknown key (allowed: certFile, keyFile, clientCaFile)",
    );
  });
});

describe("issue 12: admin listener and shutdown keys", () => {
  const parse = (yaml: string) => parseConfig(yaml, join(dir, "config.yaml"), {});

  it("I12.4: admin is absent unless configured; the stop has no grace without it", async () => {
    const c = await parse("listen: 127.0.0.1:5000\n");
    expect(c.admin).toBeUndefined();
    expect(c.shutdown).toEqual({ graceSeconds: 0, drainSeconds: DEFAULTS.shutdown.drainSeconds });
  });

  it("I12.4: admin.listen is read; with it the grace defaults to 5 s; shutdown keys override", async () => {
    const c = await parse("admin: { listen: '127.0.0.1:9090' }\n");
    expect(c.admin).toEqual({ listen: { host: "127.0.0.1", port: 9090 } });
    expect(c.shutdown).toEqual({ graceSeconds: 5, drainSeconds: 30 });
    const d = await parse(
      "admin: { listen: '[::1]:9090' }\nshutdown: { graceSeconds: 0, drainSeconds: 2 }\n",
    );
    expect(d.admin?.listen).toEqual({ host: "::1", port: 9090 });
    expect(d.shutdown).toEqual({ graceSeconds: 0, drainSeconds: 2 });
  });

  it.each([
    ["admin: { listen: nowhere }", "admin.listen: must be HOST:PORT"],
    ["admin: {}", "admin.listen: must be a non-empty string"],
    ["admin: { listen: '127.0.0.1:9090', tls: true }", "admin.tls: unknown key"],
    ["listen: 127.0.0.1:5000\nadmin: { listen: '127.0.0.1:5000' }", "admin.listen: must differ from listen"],
    ["shutdown: { graceSeconds: -1 }", "shutdown.graceSeconds: must be an integer from 0 to 600"],
    ["shutdown: { drainSeconds: 1.5 }", "shutdown.drainSeconds: must be an integer from 0 to 3600"],
    ["shutdown: { drain: 3 }", "shutdown.drain: unknown key"],
  ])("I12.4: %j -> names the key", async (yaml, expected) => {
    expect(await errorOf(yaml)).toContain(expected);
  });
});
