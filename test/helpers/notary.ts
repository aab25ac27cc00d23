/**
 * Real Notary peers for integration tests: a throwaway CA and server certificate (openssl,
 * subjectAltName=IP:127.0.0.1), notary-server on a free loopback port with memory storage,
 * optionally backed by notary-signer (ECDSA keys, as on Docker Hub), started and stopped by PID.
 * Plus drivers for the real `notary` CLI (passphrases through NOTARY_*_PASSPHRASE).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./process.js";

const run = promisify(execFile);

/** One free-port picker for every peer (process.ts); re-exported for the tests that import it from here. */
export { freePort };

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: "pipe" });
}

/** CA + a cert valid as server and client (notary-server's mTLS to notary-signer uses it both ways). */
export function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  writeFileSync(
    join(dir, "ext.cnf"),
    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n",
  );
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], dir);
  openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "ca.key",
      "-subj",
      "/CN=trustgate test CA",
      "-days",
      "2",
      "-out",
      "ca.crt",
    ],
    dir,
  );
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key"], dir);
  openssl(["req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr"], dir);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
      "-out",
      "server.crt",
    ],
    dir,
  );
  return { ca: join(dir, "ca.crt"), cert: join(dir, "server.crt"), key: join(dir, "server.key") };
}

async function waitForPort(
  port: number,
  proc: ChildProcess,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

function stopPid(proc: ChildProcess): Promise<void> {
  // A process ended by a signal has exitCode null and signalCode set: both mean "already gone"
  // (a second stop() must not signal a PID that may have been reused).
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
    proc.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    process.kill(proc.pid as number, "SIGTERM");
  });
}

export interface NotaryLab {
  dir: string;
  url: string;
  ca: string;
  /** PIDs of the processes this lab started (notary-signer first, when there is one) */
  pids: number[];
  /** a `notary` CLI client with its own trust dir */
  client(): NotaryClient;
  stop(): Promise<void>;
}

/** Starts notary-server (and notary-signer when `ecdsaSigner`) in a temp dir on free ports. */
export async function startNotary(
  opts: {
    ecdsaSigner?: boolean;
    /** notary-server's `auth: {type: token, options}`: realm, issuer, rootcertbundle (a PEM file) */
    tokenAuth?: { realm: string; issuer: string; rootCertBundle: string; service?: string };
    /** Basic credentials (user:pass) the `notary` CLI sends to the realm, as NOTARY_AUTH */
    cliAuth?: string;
  } = {},
): Promise<NotaryLab> {
  const dir = mkdtempSync(join(tmpdir(), "tg-notary-lab-"));
  const certs = makeCerts(dir);
  const procs: ChildProcess[] = [];
  const stop = async () => {
    for (const p of procs.reverse()) await stopPid(p);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    let trustService: Record<string, unknown> = { type: "local" };
    if (opts.ecdsaSigner) {
      const grpcPort = await freePort();
      writeFileSync(
        join(dir, "signer.json"),
        JSON.stringify({
          server: {
            grpc_addr: `127.0.0.1:${grpcPort}`,
            tls_cert_file: certs.cert,
            tls_key_file: certs.key,
            client_ca_file: certs.ca,
          },
          storage: { backend: "memory" },
          logging: { level: "error" },
        }),
      );
      const signer = spawn("notary-signer", ["-config", join(dir, "signer.json")], {
        cwd: dir,
        stdio: "ignore",
      });
      procs.push(signer);
      await waitForPort(grpcPort, signer, "notary-signer");
      trustService = {
        type: "remote",
        hostname: "127.0.0.1",
        port: String(grpcPort),
        key_algorithm: "ecdsa",
        tls_ca_file: certs.ca,
        tls_client_cert: certs.cert,
        tls_client_key: certs.key,
      };
    }
    const port = await freePort();
    writeFileSync(
      join(dir, "server.json"),
      JSON.stringify({
        server: { http_addr: `127.0.0.1:${port}`, tls_key_file: certs.key, tls_cert_file: certs.cert },
        trust_service: trustService,
        storage: { backend: "memory" },
        logging: { level: "error" },
        ...(opts.tokenAuth
          ? {
              auth: {
                type: "token",
                options: {
                  realm: opts.tokenAuth.realm,
                  service: opts.tokenAuth.service ?? "notary-server",
                  issuer: opts.tokenAuth.issuer,
                  rootcertbundle: opts.tokenAuth.rootCertBundle,
                },
              },
            }
          : {}),
      }),
    );
    const server = spawn("notary-server", ["-config", join(dir, "server.json")], {
      cwd: dir,
      stdio: "ignore",
    });
    procs.push(server);
    await waitForPort(port, server, "notary-server");
    const url = `https://127.0.0.1:${port}`;
    let clients = 0;
    return {
      dir,
      url,
      ca: certs.ca,
      pids: procs.map((p) => p.pid).filter((pid): pid is number => pid !== undefined),
      client: () => new NotaryClient(join(dir, `client-${clients++}`), url, certs.ca, opts.cliAuth),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const PASSPHRASES = {
  NOTARY_ROOT_PASSPHRASE: "root-pass-for-tests",
  NOTARY_TARGETS_PASSPHRASE: "targets-pass-for-tests",
  NOTARY_SNAPSHOT_PASSPHRASE: "snapshot-pass-for-tests",
  NOTARY_DELEGATION_PASSPHRASE: "delegation-pass-for-tests",
};

/** The real `notary` CLI with a fresh trust dir. */
export class NotaryClient {
  readonly config: string;
  constructor(
    readonly trustDir: string,
    readonly url: string,
    ca: string,
    private readonly basicAuth?: string,
  ) {
    execFileSync("mkdir", ["-p", trustDir]);
    this.config = join(trustDir, "client.json");
    writeFileSync(this.config, JSON.stringify({ trust_dir: trustDir, remote_server: { url, root_ca: ca } }));
  }

  async notary(args: string[], input?: string): Promise<string> {
    const child = run("notary", ["-c", this.config, ...args], {
      env: {
        ...process.env,
        ...PASSPHRASES,
        ...(this.basicAuth ? { NOTARY_AUTH: Buffer.from(this.basicAuth).toString("base64") } : {}),
      },
      timeout: 30_000,
    });
    if (input !== undefined) {
      child.child.stdin?.end(input);
    }
    const { stdout } = await child;
    return stdout;
  }

  async init(gun: string): Promise<void> {
    await this.notary(["init", gun]);
    await this.notary(["publish", gun]);
  }
  async addhash(gun: string, tag: string, size: number, sha256Hex: string, role?: string): Promise<void> {
    await this.notary([
      "addhash",
      gun,
      tag,
      String(size),
      "--sha256",
      sha256Hex,
      ...(role ? ["-r", role] : []),
    ]);
  }
  async remove(gun: string, tag: string): Promise<void> {
    await this.notary(["remove", gun, tag]);
  }
  async publish(gun: string): Promise<void> {
    await this.notary(["publish", gun]);
  }
  /** `notary key rotate <gun> <role> [-r]` (root rotation asks to confirm) */
  async rotate(gun: string, role: string, serverManaged = false): Promise<void> {
    await this.notary(["key", "rotate", gun, role, ...(serverManaged ? ["-r"] : [])], "yes\n");
  }
  /** Adds a `role` delegation with a fresh x509 key (openssl) and imports its private key. */
  async addDelegation(gun: string, role: string): Promise<void> {
    const key = join(this.trustDir, "delegate.key");
    const crt = join(this.trustDir, "delegate.crt");
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], {
      stdio: "pipe",
    });
    execFileSync(
      "openssl",
      ["req", "-new", "-x509", "-key", key, "-subj", "/CN=releaser", "-days", "2", "-out", crt],
      {
        stdio: "pipe",
      },
    );
    await this.notary(["delegation", "add", gun, role, crt, "--all-paths"]);
    await this.publish(gun);
    await this.notary(["key", "import", key, "--role", role]);
  }
  /** `notary list` parsed: tag -> { digest hex, size, role } */
  async list(gun: string): Promise<Record<string, { digest: string; size: number; role: string }>> {
    const out = await this.notary(["list", gun]);
    const rows = out
      .split("\n")
      .slice(2)
      .filter((l) => l.trim() !== "");
    return Object.fromEntries(
      rows.map((l) => {
        const [name, digest, size, role] = l.trim().split(/\s+/);
        return [name as string, { digest: digest as string, size: Number(size), role: role as string }];
      }),
    );
  }
}
