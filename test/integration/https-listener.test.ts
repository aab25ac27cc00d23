/**
 * The HTTPS listener (`tls:` in config.yaml; issue 12, REVIEW "Newcomer friction"), with the real
 * skopeo as the client: the proxy's CA in skopeo's cert dir (`ca.crt`), a client certificate there
 * (`client.cert` / `client.key`) when trustgate requires one, and a renewed certificate, rewritten
 * in place as cert-manager's files are, served by the running proxy without a restart.
 *
 * Certificates come from openssl (ECDSA P-256, SAN IP:127.0.0.1), made fresh for the file. The
 * upstream is docker-registry; `defaultPolicy: off` (trust is not what this file tests).
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ctrImageDigest, ctrPull, startContainerd } from "../helpers/containerd.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { startNotary } from "../helpers/notary.js";
import { freePort, type Peer, runCommand, startPeer, tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { signTag } from "../helpers/trust-e2e.js";
import { ensureBuilt } from "../helpers/trustgate.js";

const CLI = join(import.meta.dirname, "../../dist/cli.js");

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: "pipe" });
}

/** A self-signed CA `<name>.crt` / `<name>.key` in `dir`. */
function makeCa(dir: string, name: string): void {
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`], dir);
  openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      `${name}.key`,
      "-subj",
      `/CN=${name}`,
      "-days",
      "2",
      "-out",
      `${name}.crt`,
    ],
    dir,
  );
}

/** A leaf `<name>.crt` / `<name>.key` signed by CA `ca`, for `usage` (serverAuth or clientAuth). */
function issue(dir: string, ca: string, name: string, usage: "serverAuth" | "clientAuth"): void {
  const ext = `${name}.cnf`;
  const san = usage === "serverAuth" ? "subjectAltName=IP:127.0.0.1\n" : "";
  execFileSync("sh", ["-c", `cat > ${ext}`], {
    cwd: dir,
    input: `${san}extendedKeyUsage=${usage}\nbasicConstraints=critical,CA:FALSE\n`,
  });
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`], dir);
  openssl(["req", "-new", "-key", `${name}.key`, "-subj", `/CN=${name}`, "-out", `${name}.csr`], dir);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${ca}.crt`,
      "-CAkey",
      `${ca}.key`,
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      ext,
      "-out",
      `${name}.crt`,
    ],
    dir,
  );
}

/** The SHA-256 fingerprint of the certificate a TLS server at `port` presents now. */
function servedFingerprint(
  port: number,
  ca: Buffer,
  client?: { cert: Buffer; key: Buffer },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, ca, ...client }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.once("error", reject);
  });
}

interface Proxy extends Peer {
  port: number;
  dir: string;
  log(): Promise<string>;
}

/** `trustgate serve` with `configYaml`, ready once it logs that it listens (its /v2/ is HTTPS). */
async function startProxy(configYaml: string): Promise<Proxy> {
  await ensureBuilt();
  const dir = await tempDir("tg-https");
  const port = await freePort();
  await writeFile(join(dir, "config.yaml"), configYaml);
  execFileSync("mkdir", ["-p", join(dir, "policies")]);
  const logFile = join(dir, "trustgate.log");
  const peer = startPeer(
    "trustgate",
    process.execPath,
    [CLI, "serve", "--config", join(dir, "config.yaml"), "--listen", `127.0.0.1:${port}`],
    { cwd: dir, logFile },
  );
  const log = () => readFile(logFile, "utf8").catch(() => "");
  const deadline = Date.now() + 20_000;
  while (!(await log()).includes("trustgate listening")) {
    if (Date.now() > deadline) {
      await peer.stop();
      throw new Error(`trustgate did not start:\n${await log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ...peer, port, dir, log };
}

/** `skopeo inspect --raw` over verified TLS with `certDir` (ca.crt, and client.cert/key if any). */
async function skopeoInspect(ref: string, certDir: string) {
  const sandbox = await tempDir("skopeo-https");
  await writeFile(
    join(sandbox, "policy.json"),
    JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }),
  );
  await writeFile(join(sandbox, "registries.conf"), "unqualified-search-registries = []\n");
  await writeFile(join(sandbox, "auth.json"), "{}");
  return runCommand(
    "skopeo",
    [
      "--policy",
      join(sandbox, "policy.json"),
      "--registries-conf",
      join(sandbox, "registries.conf"),
      "--tmpdir",
      sandbox,
      "inspect",
      "--raw",
      "--tls-verify=true",
      "--cert-dir",
      certDir,
      "--authfile",
      join(sandbox, "auth.json"),
      `docker://${ref}`,
    ],
    { timeoutMs: 60_000 },
  );
}

async function until(cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("HTTPS listener", () => {
  let registry: RegistryPeer;
  let certs: string;
  const proxies: Proxy[] = [];
  const image = makeImage("served over https");
  /** skopeo cert dirs: the server CA only; + a client certificate; + one from another CA */
  let caOnly: string;
  let withClient: string;
  let withStranger: string;

  const configFor = (tls: string[]) =>
    [
      "defaultPolicy: off",
      `defaultRegistry: "${registry.host}"`,
      "registries:",
      `  "${registry.host}":`,
      `    upstream: ${registry.url}`,
      "tls:",
      ...tls.map((l) => `  ${l}`),
    ].join("\n");

  beforeAll(async () => {
    registry = await startRegistry();
    await pushImage(registry.url, "acme/app", "v1", image);
    certs = await tempDir("tg-https-certs");
    makeCa(certs, "server-ca");
    issue(certs, "server-ca", "server-a", "serverAuth");
    issue(certs, "server-ca", "server-b", "serverAuth");
    makeCa(certs, "client-ca");
    issue(certs, "client-ca", "client", "clientAuth");
    makeCa(certs, "other-ca");
    issue(certs, "other-ca", "stranger", "clientAuth");
    const ca = await readFile(join(certs, "server-ca.crt"));
    caOnly = await tempDir("certdir-ca");
    await writeFile(join(caOnly, "ca.crt"), ca);
    withClient = await tempDir("certdir-client");
    await writeFile(join(withClient, "ca.crt"), ca);
    await writeFile(join(withClient, "client.cert"), await readFile(join(certs, "client.crt")));
    await writeFile(join(withClient, "client.key"), await readFile(join(certs, "client.key")));
    withStranger = await tempDir("certdir-stranger");
    await writeFile(join(withStranger, "ca.crt"), ca);
    await writeFile(join(withStranger, "client.cert"), await readFile(join(certs, "stranger.crt")));
    await writeFile(join(withStranger, "client.key"), await readFile(join(certs, "stranger.key")));
  }, 60_000);
  afterAll(async () => {
    for (const p of proxies) await p.stop();
    await registry?.stop();
  });

  it("issue 12: serves the OCI API over TLS to skopeo, and takes a renewed certificate without a restart", async () => {
    const served = await tempDir("tg-https-served");
    const certFile = join(served, "tls.crt");
    const keyFile = join(served, "tls.key");
    await writeFile(certFile, await readFile(join(certs, "server-a.crt")));
    await writeFile(keyFile, await readFile(join(certs, "server-a.key")));
    const proxy = await startProxy(configFor([`certFile: ${certFile}`, `keyFile: ${keyFile}`]));
    proxies.push(proxy);
    const ref = `127.0.0.1:${proxy.port}/acme/app:v1`;

    const first = await skopeoInspect(ref, caOnly);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(image.manifest.toString("utf8"));
    // A plain-HTTP client gets no API answer from a TLS port.
    await expect(fetch(`http://127.0.0.1:${proxy.port}/v2/`)).rejects.toThrow();

    const ca = await readFile(join(certs, "server-ca.crt"));
    const fingerprintOf = async (name: string) =>
      execFileSync("openssl", [
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        join(certs, `${name}.crt`),
      ])
        .toString()
        .trim()
        .replace(/^.*=/, "");
    expect(await servedFingerprint(proxy.port, ca)).toBe(await fingerprintOf("server-a"));

    // Renewal as an in-place rewrite: the certificate first, the key a moment later. In between
    // the pair does not match: the old certificate must keep serving.
    await writeFile(certFile, await readFile(join(certs, "server-b.crt")));
    await new Promise((r) => setTimeout(r, 400));
    expect(await servedFingerprint(proxy.port, ca)).toBe(await fingerprintOf("server-a"));
    await writeFile(keyFile, await readFile(join(certs, "server-b.key")));
    const renewed = await fingerprintOf("server-b");
    await until(async () => (await servedFingerprint(proxy.port, ca)) === renewed, 15_000);

    const again = await skopeoInspect(ref, caOnly);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(image.manifest.toString("utf8"));
    const log = await proxy.log();
    expect(log).toContain("TLS files changed but are not a usable set (yet)");
    expect(log).toContain("TLS certificate reloaded");
    expect(log).not.toContain("BEGIN"); // no PEM, never the key, in the log
  }, 90_000);

  it("issue 12: with tls.clientCaFile, requires a client certificate from that CA (mTLS): skopeo and ctr", async () => {
    const proxy = await startProxy(
      configFor([
        `certFile: ${join(certs, "server-a.crt")}`,
        `keyFile: ${join(certs, "server-a.key")}`,
        `clientCaFile: ${join(certs, "client-ca.crt")}`,
      ]),
    );
    proxies.push(proxy);
    const ref = `127.0.0.1:${proxy.port}/acme/app:v1`;

    const presented = await skopeoInspect(ref, withClient);
    expect(presented.stderr).toBe("");
    expect(presented.code).toBe(0);
    expect(presented.stdout).toBe(image.manifest.toString("utf8"));

    const none = await skopeoInspect(ref, caOnly);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/certificate|tls|handshake/i);
    const stranger = await skopeoInspect(ref, withStranger);
    expect(stranger.code).not.toBe(0);
    expect(stranger.stdout).toBe("");

    // containerd (ctr, the kubelet's pull path): hosts.toml names the proxy's CA and the client
    // pair for the proxy's [host] table (containerd's hosts.toml `ca` and `client` keys).
    const containerd = await startContainerd();
    try {
      const hostsDir = await tempDir("hosts-https");
      const mirror = `https://127.0.0.1:${proxy.port}`;
      const pull = async (client: string[]) => {
        await mkdir(join(hostsDir, registry.host), { recursive: true });
        await writeFile(
          join(hostsDir, registry.host, "hosts.toml"),
          [
            `server = ${JSON.stringify(mirror)}`,
            `[host.${JSON.stringify(mirror)}]`,
            '  capabilities = ["pull", "resolve"]',
            `  ca = ${JSON.stringify(join(certs, "server-ca.crt"))}`,
            ...client,
            "",
          ].join("\n"),
        );
        return ctrPull(containerd, `${registry.host}/acme/app:v1`, { hostsDir });
      };
      const refused = await pull([]);
      expect(refused.code).not.toBe(0);
      const pulled = await pull([
        `  client = [[${JSON.stringify(join(certs, "client.crt"))}, ${JSON.stringify(join(certs, "client.key"))}]]`,
      ]);
      expect(pulled.stderr).toBe("");
      expect(pulled.code).toBe(0);
      expect(await ctrImageDigest(containerd, `${registry.host}/acme/app:v1`)).toBe(image.digest);
    } finally {
      await containerd.stop();
    }
  }, 120_000);

  it("issue 12: clients.certificateIdentities over mTLS: a listed identity pulls a signed tag (skopeo, ctr); no certificate or an unlisted identity is refused", async () => {
    // Enforced trust this time: a real notary-server, the tag signed with the notary CLI.
    const notary = await startNotary();
    const containerd = await startContainerd();
    try {
      const gun = `${registry.host}/acme/app`;
      const signer = notary.client();
      await signer.init(gun);
      await signTag(signer, gun, "v1", image);
      const unsignedImage = makeImage("over https, never signed");
      await pushImage(registry.url, "acme/app", "unsigned", unsignedImage);
      // A second identity from the same client CA: it chains, but is not listed.
      issue(certs, "client-ca", "intruder", "clientAuth");
      const withIntruder = await tempDir("certdir-intruder");
      await writeFile(join(withIntruder, "ca.crt"), await readFile(join(certs, "server-ca.crt")));
      await writeFile(join(withIntruder, "client.cert"), await readFile(join(certs, "intruder.crt")));
      await writeFile(join(withIntruder, "client.key"), await readFile(join(certs, "intruder.key")));
      const policies = await tempDir("tg-https-policies");
      await writeFile(
        join(policies, "acme.yaml"),
        `match: ["${registry.host}/acme/**"]\nmode: enforce\ntrust:\n  roles: [targets/releases, targets]\n`,
      );
      const proxy = await startProxy(
        [
          `policies: ${policies}`,
          `defaultRegistry: "${registry.host}"`,
          "registries:",
          `  "${registry.host}":`,
          `    upstream: ${registry.url}`,
          `    notary: { url: "${notary.url}", caFile: "${notary.ca}" }`,
          "tls:",
          `  certFile: ${join(certs, "server-a.crt")}`,
          `  keyFile: ${join(certs, "server-a.key")}`,
          `  clientCaFile: ${join(certs, "client-ca.crt")}`,
          "clients:",
          '  certificateIdentities: ["CN:client"]',
        ].join("\n"),
      );
      proxies.push(proxy);
      const ref = `127.0.0.1:${proxy.port}/acme/app:v1`;

      // skopeo with certs.d-style client.cert/client.key
      const allowed = await skopeoInspect(ref, withClient);
      expect(allowed.stderr).toBe("");
      expect(allowed.code).toBe(0);
      expect(allowed.stdout).toBe(image.manifest.toString("utf8"));
      // the identity is admitted, the trust policy still decides: an unsigned tag is refused
      const unsignedPull = await skopeoInspect(`127.0.0.1:${proxy.port}/acme/app:unsigned`, withClient);
      expect(unsignedPull.code).not.toBe(0);
      expect(unsignedPull.stderr).toMatch(/denied|403/i);
      const intruder = await skopeoInspect(ref, withIntruder);
      expect(intruder.code).not.toBe(0);
      expect(intruder.stderr).toMatch(/401|unauthorized|authentication required/i);
      expect(intruder.stdout).toBe("");
      const none = await skopeoInspect(ref, caOnly);
      expect(none.code).not.toBe(0);
      expect(none.stderr).toMatch(/certificate|tls|handshake/i);

      // ctr: hosts.toml `client = [[cert, key]]` in the proxy's [host] table
      const hostsDir = await tempDir("hosts-identity");
      const mirror = `https://127.0.0.1:${proxy.port}`;
      const ctrRef = `${registry.host}/acme/app:v1`;
      const pull = async (client: string[]) => {
        await mkdir(join(hostsDir, registry.host), { recursive: true });
        await writeFile(
          join(hostsDir, registry.host, "hosts.toml"),
          [
            `server = ${JSON.stringify(mirror)}`,
            `[host.${JSON.stringify(mirror)}]`,
            '  capabilities = ["pull", "resolve"]',
            `  ca = ${JSON.stringify(join(certs, "server-ca.crt"))}`,
            ...client,
            "",
          ].join("\n"),
        );
        return ctrPull(containerd, ctrRef, { hostsDir });
      };
      const pair = (name: string) =>
        `  client = [[${JSON.stringify(join(certs, `${name}.crt`))}, ${JSON.stringify(join(certs, `${name}.key`))}]]`;
      const ctrNone = await pull([]);
      expect(ctrNone.code).not.toBe(0);
      const ctrIntruder = await pull([pair("intruder")]);
      expect(ctrIntruder.code).not.toBe(0);
      expect(ctrIntruder.stderr).toMatch(/401 Unauthorized/);
      expect(await ctrImageDigest(containerd, ctrRef)).toBeUndefined();
      const ctrAllowed = await pull([pair("client")]);
      expect(ctrAllowed.stderr).toBe("");
      expect(ctrAllowed.code).toBe(0);
      expect(await ctrImageDigest(containerd, ctrRef)).toBe(image.digest);

      const lines = (await proxy.log())
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const manifestLines = lines.filter(
        (l) => l.msg === "request" && String(l.path).includes("/manifests/"),
      );
      // admitted by certificate, and the decision on the same line
      expect(
        manifestLines.some(
          (l) =>
            l.client === "CN:client" &&
            l.clientAuth === "certificate" &&
            l.status === 200 &&
            l.decision === "allow",
        ),
      ).toBe(true);
      expect(
        manifestLines.some((l) => l.status === 401 && l.clientRefused === "no listed client certificate"),
      ).toBe(true);
      expect(
        manifestLines.some((l) => l.client === "CN:client" && l.status === 403 && l.decision === "deny"),
      ).toBe(true);
    } finally {
      await containerd.stop();
      await notary.stop();
    }
  }, 180_000);

  it("issue 12: refuses to start on a key that is not the certificate's (exit 2, key named)", async () => {
    const dir = await tempDir("tg-https-bad");
    await writeFile(
      join(dir, "config.yaml"),
      configFor([`certFile: ${join(certs, "server-a.crt")}`, `keyFile: ${join(certs, "server-b.key")}`]),
    );
    const out = await runCommand(
      process.execPath,
      [CLI, "serve", "--config", join(dir, "config.yaml"), "--listen", "127.0.0.1:0"],
      {
        timeoutMs: 30_000,
      },
    );
    expect(out.code).toBe(2);
    expect(out.stderr.trim()).toBe(
      `trustgate: ${join(dir, "config.yaml")}: tls.keyFile: ${join(certs, "server-b.key")} is not the key of the certificate in tls.certFile`,
    );
  });
});
