/**
 * `trustgate containerd-hosts`: the files containerd reads (docs/hosts.md) say exactly "tags only
 * through trustgate, no fallback": server = trustgate plus its [host] table, one file per configured
 * registry and never `_default`, an optional pull-only cache listed first, CA and client pair on
 * trustgate's host, written atomically, and stale files of its own removed (others' kept).
 * That containerd really accepts these files is proven by test/integration/cri-pull.test.ts.
 */
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { serverFromConfig, writeHostsDir } from "../../src/commands/containerd-hosts.js";
import { GENERATED_MARKER, registryBaseUrl, renderHostsToml } from "../../src/containerd/hosts-toml.js";
import { ConfigError } from "../../src/errors.js";

const CLI = "dist/cli.js";
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The `[host."..."]` keys in file order (containerd tries hosts in the order of the file). */
function hostKeys(toml: string): string[] {
  return [...toml.matchAll(/^\[host\.("[^"]+")\]$/gm)].map((m) => JSON.parse(m[1] as string) as string);
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "trustgate-hosts-"));
});

async function configFile(extra = ""): Promise<string> {
  const file = join(dir, "config.yaml");
  await mkdir(join(dir, "policies"), { recursive: true });
  await writeFile(
    file,
    `listen: 127.0.0.1:5123
registries:
  docker.io:
    upstream: https://registry-1.docker.io
  ghcr.io:
    upstream: https://ghcr.io
  127.0.0.1:5000:
    upstream: http://127.0.0.1:5000
${extra}`,
  );
  return file;
}

describe("hosts.toml rendering", () => {
  it("server is trustgate and trustgate has its own [host] table with pull and resolve", () => {
    const toml = renderHostsToml("docker.io", { server: "http://127.0.0.1:5000" });
    expect(toml.startsWith(GENERATED_MARKER)).toBe(true);
    expect(toml).toMatch(/^server = "http:\/\/127\.0\.0\.1:5000"$/m);
    expect(hostKeys(toml)).toEqual(["http://127.0.0.1:5000"]);
    expect(toml).toContain('[host."http://127.0.0.1:5000"]\n  capabilities = ["pull", "resolve"]\n');
    // the origin appears nowhere: nothing to fall back to
    expect(toml).not.toContain("registry-1.docker.io");
    expect(toml).not.toMatch(/skip_verify/);
  });

  it("a pull cache comes first, pull only; trustgate stays server and the only resolver", () => {
    const toml = renderHostsToml("docker.io", {
      server: "https://trustgate.example:5000",
      pullCache: "http://cache.example:5000",
    });
    expect(hostKeys(toml)).toEqual(["http://cache.example:5000", "https://trustgate.example:5000"]);
    expect(toml).toContain('[host."http://cache.example:5000"]\n  capabilities = ["pull"]\n');
    expect(toml).toMatch(/^server = "https:\/\/trustgate\.example:5000"$/m);
    expect(toml.match(/"resolve"/g)).toHaveLength(1);
  });

  it("CA and client pair go on trustgate's host table, as hosts.md spells them", () => {
    const toml = renderHostsToml("ghcr.io", {
      server: "https://127.0.0.1:5443",
      pullCache: "https://cache.example",
      ca: "/etc/trustgate/tls/ca.crt",
      client: { cert: "/etc/trustgate/tls/node.crt", key: "/etc/trustgate/tls/node.key" },
    });
    const trustgateTable = toml.slice(toml.indexOf('[host."https://127.0.0.1:5443"]'));
    expect(trustgateTable).toContain('  ca = "/etc/trustgate/tls/ca.crt"\n');
    expect(trustgateTable).toContain(
      '  client = [["/etc/trustgate/tls/node.crt", "/etc/trustgate/tls/node.key"]]\n',
    );
    // the cache gets neither (they are trustgate's CA and trustgate's client identity)
    expect(toml.slice(0, toml.indexOf('[host."https://127.0.0.1:5443"]'))).not.toMatch(/ca =|client =/);
  });

  it("base URLs: http(s) origins only, no path, query or credentials", () => {
    expect(registryBaseUrl("http://cache:5000/", "--pull-cache")).toBe("http://cache:5000");
    for (const bad of ["cache:5000", "ftp://cache", "http://u:p@cache", "http://cache/v2/", "http://c/?x=1"])
      expect(() => registryBaseUrl(bad, "--pull-cache")).toThrow(/^--pull-cache: /);
  });

  it("trustgate's URL from listen and tls; a wildcard listen needs --server", () => {
    const listen = { host: "127.0.0.1", port: 5000 };
    expect(serverFromConfig({ file: "c.yaml", listen, tls: undefined })).toBe("http://127.0.0.1:5000");
    const tls = { certFile: "/c", keyFile: "/k" };
    expect(serverFromConfig({ file: "c.yaml", listen, tls })).toBe("https://127.0.0.1:5000");
    expect(serverFromConfig({ file: "c.yaml", listen: { host: "::1", port: 5000 }, tls: undefined })).toBe(
      "http://[::1]:5000",
    );
    expect(() =>
      serverFromConfig({ file: "c.yaml", listen: { host: "0.0.0.0", port: 5000 }, tls: undefined }),
    ).toThrow(ConfigError);
  });
});

describe("writing the hosts directory", () => {
  it("one file per registry, never _default, no temp file left behind", async () => {
    const out = join(dir, "certs.d");
    const res = await writeHostsDir(out, ["docker.io", "ghcr.io", "127.0.0.1:5000"], {
      server: "http://127.0.0.1:5123",
    });
    expect(res.written).toHaveLength(3);
    expect((await readdir(out)).sort()).toEqual(["127.0.0.1:5000", "docker.io", "ghcr.io"]);
    for (const name of await readdir(out)) expect(await readdir(join(out, name))).toEqual(["hosts.toml"]);
    const ghcr = await readFile(join(out, "ghcr.io", "hosts.toml"), "utf8");
    expect(ghcr).toContain("# ghcr.io: ");
    expect(ghcr).toMatch(/^server = "http:\/\/127\.0\.0\.1:5123"$/m);
  });

  it("removes its own file of a registry no longer configured, keeps everyone else's", async () => {
    const out = join(dir, "certs.d");
    await writeHostsDir(out, ["docker.io", "quay.io"], { server: "http://127.0.0.1:5123" });
    await mkdir(join(out, "registry.k8s.io"));
    const foreign = 'server = "https://registry.k8s.io"\n';
    await writeFile(join(out, "registry.k8s.io", "hosts.toml"), foreign);
    await mkdir(join(out, "_default"));
    await writeFile(join(out, "_default", "hosts.toml"), foreign);

    const res = await writeHostsDir(out, ["docker.io"], { server: "http://127.0.0.1:5123" });
    expect(res.removed).toEqual([join(out, "quay.io", "hosts.toml")]);
    expect((await readdir(out)).sort()).toEqual(["_default", "docker.io", "registry.k8s.io"]);
    expect(await readFile(join(out, "registry.k8s.io", "hosts.toml"), "utf8")).toBe(foreign);
  });

  it("refuses a registry name containerd would read as _default", async () => {
    await expect(writeHostsDir(join(dir, "x"), ["_default"], { server: "http://h:1" })).rejects.toThrow(
      ConfigError,
    );
  });
});

describe("trustgate containerd-hosts (the built CLI)", () => {
  it("writes the configured registries from config.yaml, with --pull-cache and --ca", async () => {
    const config = await configFile();
    const out = join(dir, "certs.d");
    const r = cli(
      "containerd-hosts",
      "--config",
      config,
      "--out",
      out,
      "--pull-cache",
      "http://127.0.0.1:6000",
      "--ca",
      "/etc/trustgate/ca.crt",
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual([
      `wrote ${join(out, "docker.io", "hosts.toml")}`,
      `wrote ${join(out, "ghcr.io", "hosts.toml")}`,
      `wrote ${join(out, "127.0.0.1:5000", "hosts.toml")}`,
    ]);
    const toml = await readFile(join(out, "127.0.0.1:5000", "hosts.toml"), "utf8");
    expect(hostKeys(toml)).toEqual(["http://127.0.0.1:6000", "http://127.0.0.1:5123"]);
    expect(toml).toContain('ca = "/etc/trustgate/ca.crt"');
  });

  it("a wildcard listen without --server is a configuration error naming listen, exit 2", async () => {
    const config = await configFile();
    await writeFile(config, (await readFile(config, "utf8")).replace("127.0.0.1:5123", "0.0.0.0:5123"));
    const r = cli("containerd-hosts", "--config", config, "--out", join(dir, "o"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^trustgate: .*config\.yaml: listen: 0\.0\.0\.0:5123 .*--server\n$/);
    const ok = cli(
      "containerd-hosts",
      "--config",
      config,
      "--out",
      join(dir, "o"),
      "--server",
      "http://10.0.0.1:5000",
    );
    expect(ok.code).toBe(0);
  });

  it("--client-cert without --client-key is a usage error, exit 2", async () => {
    const config = await configFile();
    const r = cli("containerd-hosts", "--config", config, "--out", join(dir, "o"), "--client-cert", "/c");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^trustgate: --client-cert and --client-key go together\n/);
  });
});
