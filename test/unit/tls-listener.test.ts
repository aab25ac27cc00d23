/**
 * ServingCertificate (src/tls-listener.ts) against a real node:https server on 127.0.0.1: a
 * Kubernetes Secret update (a new timestamped directory, `..data` renamed over) and a change no fs
 * event reports (the file is a symlink into another directory) are both served without a restart;
 * a half-rotated pair is never taken. Certificates come from node:crypto via openssl.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { type CertificateChange, ServingCertificate } from "../../src/tls-listener.js";

let certs: string;
const cleanup: (() => Promise<void> | void)[] = [];

function openssl(args: string[]): string {
  return execFileSync("openssl", args, { cwd: certs, stdio: "pipe" }).toString();
}

/** A self-signed server certificate `<name>.crt`/`.key` for IP:127.0.0.1; its SHA-256 fingerprint. */
function selfSigned(name: string): string {
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`]);
  openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    `${name}.key`,
    "-subj",
    `/CN=${name}`,
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-days",
    "2",
    "-out",
    `${name}.crt`,
  ]);
  return openssl(["x509", "-noout", "-fingerprint", "-sha256", "-in", `${name}.crt`])
    .trim()
    .replace(/^.*=/, "");
}

const fp: Record<string, string> = {};
beforeAll(async () => {
  certs = await mkdtemp(join(tmpdir(), "trustgate-tls-"));
  for (const n of ["a", "b", "c"]) fp[n] = selfSigned(n);
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** The fingerprint a server presents now (no verification: which certificate, not whether trusted). */
function served(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.once("error", reject);
  });
}

async function serve(certFile: string, keyFile: string, checkMs: number) {
  const cert = await ServingCertificate.load("/etc/trustgate/config.yaml", { certFile, keyFile });
  const server: Server = createServer(cert.serverOptions(), (_req, res) => res.end("ok"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const changes: CertificateChange[] = [];
  cert.follow(server, (c) => changes.push(c), checkMs);
  cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
  cleanup.push(() => cert.close());
  return { port: (server.address() as AddressInfo).port, changes };
}

async function until(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("ServingCertificate", () => {
  it("issue 12: a Kubernetes Secret update (new timestamped dir, ..data renamed over) is served", async () => {
    const dir = await mkdtemp(join(tmpdir(), "trustgate-secret-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const projectInto = async (ts: string, name: string) => {
      await mkdir(join(dir, ts));
      await writeFile(join(dir, ts, "tls.crt"), await readFile(join(certs, `${name}.crt`)));
      await writeFile(join(dir, ts, "tls.key"), await readFile(join(certs, `${name}.key`)));
    };
    await projectInto("..2026_12_01_a", "a");
    await symlink("..2026_12_01_a", join(dir, "..data"));
    await symlink("..data/tls.crt", join(dir, "tls.crt"));
    await symlink("..data/tls.key", join(dir, "tls.key"));
    // A long poll: the swap must be seen by the directory watch.
    const { port, changes } = await serve(join(dir, "tls.crt"), join(dir, "tls.key"), 60_000);
    expect(await served(port)).toBe(fp.a);

    await projectInto("..2026_12_01_b", "b");
    await symlink("..2026_12_01_b", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    await rm(join(dir, "..2026_12_01_a"), { recursive: true });
    await until(async () => (await served(port)) === fp.b);
    expect(changes).toEqual([expect.objectContaining({ ok: true, fingerprint256: fp.b })]);
  });

  it("issue 12: a change no fs event reports is picked up by the poll; a half-rotated pair is not taken", async () => {
    const dir = await mkdtemp(join(tmpdir(), "trustgate-tlsdir-"));
    const outside = await mkdtemp(join(tmpdir(), "trustgate-tlsfiles-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    cleanup.push(() => rm(outside, { recursive: true, force: true }));
    await writeFile(join(outside, "tls.crt"), await readFile(join(certs, "a.crt")));
    await writeFile(join(outside, "tls.key"), await readFile(join(certs, "a.key")));
    await symlink(join(outside, "tls.crt"), join(dir, "tls.crt"));
    await symlink(join(outside, "tls.key"), join(dir, "tls.key"));
    const { port, changes } = await serve(join(dir, "tls.crt"), join(dir, "tls.key"), 100);
    expect(await served(port)).toBe(fp.a);

    // Only the certificate so far: it does not pair with the key in place.
    await writeFile(join(outside, "tls.crt"), await readFile(join(certs, "c.crt")));
    await until(async () => changes.length > 0);
    expect(changes[0]).toEqual({
      ok: false,
      problem: `tls.keyFile: ${join(dir, "tls.key")} is not the key of the certificate in tls.certFile`,
    });
    expect(await served(port)).toBe(fp.a);
    await writeFile(join(outside, "tls.key"), await readFile(join(certs, "c.key")));
    await until(async () => (await served(port)) === fp.c);
    expect(changes.slice(1)).toEqual([expect.objectContaining({ ok: true, fingerprint256: fp.c })]);
    // Unchanged files are not news: no further reloads on later polls.
    await new Promise((r) => setTimeout(r, 300));
    expect(changes).toHaveLength(2);
  });

  it("issue 12: unusable files at start are a ConfigError naming the key", async () => {
    const err = await ServingCertificate.load("/etc/trustgate/config.yaml", {
      certFile: join(certs, "a.crt"),
      keyFile: join(certs, "missing.key"),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(
      `/etc/trustgate/config.yaml: tls.keyFile: cannot read ${join(certs, "missing.key")} (ENOENT)`,
    );
    const notCert = await ServingCertificate.load("/etc/trustgate/config.yaml", {
      certFile: join(certs, "a.key"),
      keyFile: join(certs, "a.key"),
    }).catch((e: unknown) => (e as Error).message);
    expect(notCert).toBe(
      `/etc/trustgate/config.yaml: tls.certFile: ${join(certs, "a.key")} holds no PEM certificate`,
    );
  });
});
