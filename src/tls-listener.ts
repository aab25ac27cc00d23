/**
 * The serving certificate of the HTTPS listener (`tls:` in config.yaml), kept current without a
 * restart.
 *
 * cert-manager renews a certificate by rewriting the Secret, which the kubelet projects into the
 * pod by swapping a `..data` symlink (the same atomic writer as ConfigMaps); other tools rewrite
 * the files in place, one after the other. Either way the files are re-read: on an fs event in
 * their directories (fast), and on a poll every `checkMs` (the events may never come: a deleted
 * and recreated directory, a network filesystem). New bytes are checked as a set (the
 * certificate parses, the key is its key, the client CAs parse) before `server.setSecureContext`
 * takes them for new connections; a set caught half-written (a new certificate beside the old
 * key) is not taken, the previous certificate keeps serving, and the next change is tried again.
 * Connections already open keep the context they started with, as Node's TLS server does.
 *
 * Client certificates (`clientCaFile`): `requestCert` + `rejectUnauthorized`, so a client
 * without a certificate chaining to those CAs fails the handshake and never reaches the API.
 */
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Server as HttpsServer } from "node:https";
import type { TlsConfig } from "./config/types.js";
import { ConfigError } from "./errors.js";
import { type Following, followFiles } from "./file-follow.js";

/** The bytes the listener serves with, already checked to belong together. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
}

/** What the listener should be created with (node:https options). */
export interface TlsServerOptions {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requestCert: boolean;
  rejectUnauthorized: boolean;
}

/** What a log line says about a certificate (public facts only). */
export interface CertificateSummary {
  readonly subject: string;
  readonly validTo: string;
  readonly fingerprint256: string;
}

export type CertificateChange =
  | ({ readonly ok: true } & CertificateSummary)
  | { readonly ok: false; readonly problem: string };

/** Thrown by readTlsMaterial: the message is `tls.<key>: <problem>`. */
class TlsFileProblem extends Error {}

/** Read and check the three files; throws TlsFileProblem naming the key at fault. */
async function readTlsMaterial(files: TlsConfig): Promise<TlsMaterial> {
  const read = async (key: string, path: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new TlsFileProblem(`tls.${key}: cannot read ${path} (${(err as NodeJS.ErrnoException).code})`);
    }
  };
  const [cert, key, ca] = await Promise.all([
    read("certFile", files.certFile),
    read("keyFile", files.keyFile),
    files.clientCaFile === undefined ? undefined : read("clientCaFile", files.clientCaFile),
  ]);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new TlsFileProblem(`tls.certFile: ${files.certFile} holds no PEM certificate`);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    // Never the key's bytes or OpenSSL's text about them in a message.
    throw new TlsFileProblem(`tls.keyFile: ${files.keyFile} holds no usable PEM private key`);
  }
  if (!leaf.checkPrivateKey(privateKey))
    throw new TlsFileProblem(
      `tls.keyFile: ${files.keyFile} is not the key of the certificate in tls.certFile`,
    );
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch {
      throw new TlsFileProblem(`tls.clientCaFile: ${files.clientCaFile} holds no PEM certificate`);
    }
  }
  return { cert, key, ca };
}

function summarize(material: TlsMaterial): CertificateSummary {
  const leaf = new X509Certificate(material.cert);
  return { subject: leaf.subject, validTo: leaf.validTo, fingerprint256: leaf.fingerprint256 };
}

function digestOf(material: TlsMaterial | Buffer[]): string {
  const parts = Array.isArray(material)
    ? material
    : [material.cert, material.key, material.ca ?? Buffer.alloc(0)];
  const h = createHash("sha256");
  for (const p of parts) h.update(createHash("sha256").update(p).digest());
  return h.digest("hex");
}

export class ServingCertificate {
  readonly #files: TlsConfig;
  #current: TlsMaterial;
  /** digest of the bytes last seen (taken or refused): a refused set is reported once */
  #seen: string;
  #following: Following | undefined;
  #checking = false;

  private constructor(files: TlsConfig, material: TlsMaterial) {
    this.#files = files;
    this.#current = material;
    this.#seen = digestOf(material);
  }

  /** Read the files at start; a problem is a ConfigError naming the key (exit 2). */
  static async load(configFile: string, files: TlsConfig): Promise<ServingCertificate> {
    try {
      return new ServingCertificate(files, await readTlsMaterial(files));
    } catch (err) {
      if (err instanceof TlsFileProblem) throw new ConfigError(`${configFile}: ${err.message}`);
      throw err;
    }
  }

  /** The certificate in force, for the start-up log line. */
  describe(): CertificateSummary {
    return summarize(this.#current);
  }

  serverOptions(): TlsServerOptions {
    const mutual = this.#current.ca !== undefined;
    return {
      cert: this.#current.cert,
      key: this.#current.key,
      ...(this.#current.ca ? { ca: this.#current.ca } : {}),
      requestCert: mutual,
      rejectUnauthorized: mutual,
    };
  }

  /**
   * Keep `server` on the current files: re-read on fs events in their directories and every
   * `checkMs`; `onChange` hears every new certificate taken, and every new set refused.
   */
  follow(server: HttpsServer, onChange: (change: CertificateChange) => void, checkMs = 5000): void {
    const check = () => void this.#check(server, onChange);
    const files = [this.#files.certFile, this.#files.keyFile, this.#files.clientCaFile];
    this.#following = followFiles(
      files.filter((f): f is string => f !== undefined),
      check,
      checkMs,
    );
  }

  close(): void {
    this.#following?.close();
    this.#following = undefined;
  }

  async #check(server: HttpsServer, onChange: (change: CertificateChange) => void): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const files = this.#files;
      const raw = await Promise.all(
        [files.certFile, files.keyFile, files.clientCaFile].map((f) =>
          f === undefined ? Buffer.alloc(0) : readFile(f).catch(() => undefined),
        ),
      );
      // A file missing for a moment (between a delete and a write) is not news yet.
      if (raw.some((b) => b === undefined)) return;
      const digest = digestOf(raw as Buffer[]);
      if (digest === this.#seen) return;
      this.#seen = digest;
      let next: TlsMaterial;
      try {
        next = await readTlsMaterial(files);
      } catch (err) {
        onChange({ ok: false, problem: err instanceof TlsFileProblem ? err.message : String(err) });
        return;
      }
      // The files may have moved on between the two reads: remember what was actually taken.
      this.#seen = digestOf(next);
      server.setSecureContext({ cert: next.cert, key: next.key, ...(next.ca ? { ca: next.ca } : {}) });
      this.#current = next;
      onChange({ ok: true, ...summarize(next) });
    } catch (err) {
      onChange({ ok: false, problem: err instanceof Error ? err.message : String(err) });
    } finally {
      this.#checking = false;
    }
  }
}
