/**
 * Who may use the OCI API (`clients:`; issue 12 point 2): a client certificate with a listed
 * identity (certificates.ts), or HTTP Basic credentials that match `clients.htpasswdFile`
 * (htpasswd.ts). Basic is what every pull client answers a 401 with: docker and containerd
 * (docker/remotes/docker/auth) and skopeo (containers/image docker_client.go) read
 * `WWW-Authenticate: Basic realm=...` and retry with `Authorization: Basic base64(user:password)`,
 * as they do for distribution's htpasswd auth.
 *
 * bcrypt is slow by design (cost 10: ~56 ms of a thread-pool thread), and a client sends the same
 * header on every request of a pull, so each verdict is remembered for `ttlMs` under the SHA-256
 * of the whole header (never the header itself): the warm path pays one hash, not a bcrypt.
 * Verdicts are forgotten whenever the file changes. Verifications are single-flight per header
 * and at most MAX_CONCURRENT run at once (libuv's pool has 4 threads, shared with file I/O and
 * DNS); past MAX_WAITING queued, a request is answered 429 rather than piling up.
 */
import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import { LRUCache } from "lru-cache";
import type { ClientsConfig } from "../config/types.js";
import { TrustgateError } from "../errors.js";
import { CertificateIdentities } from "./certificates.js";
import { type CredentialChange, CredentialFile } from "./credential-file.js";
import { verifyPassword } from "./htpasswd.js";

/** Who a request came from, as the access line says it (never a secret). */
export interface ClientIdentity {
  /** the user name, or the certificate identity that matched (`CN:builder`, `DNS:...`) */
  readonly name: string;
  readonly via: "password" | "token" | "certificate";
}

/** Why a request was not admitted; logged, never sent (the client gets the same 401 for all). */
export type AccessProblem =
  | "no listed client certificate"
  | "no credentials"
  | "not Basic credentials"
  | "malformed Basic credentials"
  | "unknown user"
  | "wrong password";

export type AccessResult =
  | { readonly ok: true; readonly identity: ClientIdentity }
  | { readonly ok: false; readonly problem: AccessProblem };

/** Too many credential checks queued at once: answered 429 (src/proxy/error-mapping.ts). */
export class TooManyCredentialChecks extends TrustgateError {
  constructor() {
    super("TOO_MANY_CREDENTIAL_CHECKS", "too many credential checks at once; retry shortly");
  }
}

/** The realm of the Basic challenge (RFC 7617); clients show it, nothing else depends on it. */
export const REALM = "trustgate";
export const CHALLENGE = `Basic realm="${REALM}"`;

const MAX_CONCURRENT = 2;
const MAX_WAITING = 64;
const DEFAULT_TTL_MS = 60_000;

export interface ClientAccessOptions {
  /** how long a verdict on one Authorization header is remembered (default 60 s) */
  ttlMs?: number;
}

export class ClientAccess {
  readonly #file: CredentialFile | undefined;
  readonly #certificates: CertificateIdentities;
  readonly #admitted: LRUCache<string, ClientIdentity>;
  /** refusals apart, so a flood of wrong headers cannot push out the clients that are admitted */
  readonly #refused: LRUCache<string, AccessProblem>;
  readonly #inFlight = new Map<string, Promise<AccessResult>>();
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  private constructor(file: CredentialFile | undefined, config: ClientsConfig, opts: ClientAccessOptions) {
    this.#file = file;
    this.#certificates = new CertificateIdentities(config.certificateIdentities);
    const ttl = opts.ttlMs ?? DEFAULT_TTL_MS;
    this.#admitted = new LRUCache({ max: 10_000, ttl });
    this.#refused = new LRUCache({ max: 1_000, ttl });
  }

  /** Read the credential file (a problem is a ConfigError naming `clients.htpasswdFile`). */
  static async open(
    configFile: string,
    config: ClientsConfig,
    opts: ClientAccessOptions = {},
  ): Promise<ClientAccess> {
    const file = config.htpasswdFile ? await CredentialFile.load(configFile, config.htpasswdFile) : undefined;
    return new ClientAccess(file, config, opts);
  }

  /** How many users the credential file admits now (for the start-up line). */
  get users(): number {
    return this.#file?.current.entries.size ?? 0;
  }

  /** Keep the credential file current; `onChange` hears every new content, taken or refused. */
  follow(onChange: (change: CredentialChange) => void, checkMs?: number): void {
    this.#file?.follow((change) => {
      if (change.ok) this.#forget();
      onChange(change);
    }, checkMs);
  }

  /** Re-read the credential file now (tests). */
  async recheck(): Promise<CredentialChange | undefined> {
    let seen: CredentialChange | undefined;
    await this.#file?.check((change) => {
      seen = change;
      if (change.ok) this.#forget();
    });
    return seen;
  }

  close(): void {
    this.#file?.close();
  }

  /**
   * The identity when it is known without waiting: a listed client certificate, or a header whose
   * verdict is remembered. undefined means "ask authenticate()" (the warm path then routes).
   */
  admitSync(authorization: string | undefined, socket: Socket | undefined): ClientIdentity | undefined {
    const cert = this.#certificates.of(socket);
    if (cert !== undefined) return { name: cert, via: "certificate" };
    if (authorization === undefined || this.#file === undefined) return undefined;
    return this.#admitted.get(keyOf(authorization));
  }

  async authenticate(authorization: string | undefined, socket: Socket | undefined): Promise<AccessResult> {
    const cert = this.#certificates.of(socket);
    if (cert !== undefined) return { ok: true, identity: { name: cert, via: "certificate" } };
    // Certificates only: whatever the header says, only a listed certificate is admitted.
    if (this.#file === undefined) return { ok: false, problem: "no listed client certificate" };
    if (authorization === undefined || authorization === "") return { ok: false, problem: "no credentials" };
    const key = keyOf(authorization);
    const admitted = this.#admitted.get(key);
    if (admitted) return { ok: true, identity: admitted };
    const refused = this.#refused.get(key);
    if (refused) return { ok: false, problem: refused };
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#verify(key, authorization).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }

  async #verify(key: string, authorization: string): Promise<AccessResult> {
    const file = this.#file as CredentialFile;
    const generation = file.generation;
    const basic = parseBasic(authorization);
    let result: AccessResult;
    if (typeof basic === "string") {
      result = { ok: false, problem: basic };
    } else {
      const set = file.current;
      const credential = set.entries.get(basic.user);
      if (credential === undefined) {
        // As long as a wrong password would take (htpasswd.ts decoyCredential).
        const decoy = set.decoy;
        if (decoy) await this.#limited(() => verifyPassword(decoy, basic.password));
        result = { ok: false, problem: "unknown user" };
      } else {
        const ok =
          credential.kind === "sha256"
            ? await verifyPassword(credential, basic.password)
            : await this.#limited(() => verifyPassword(credential, basic.password));
        result = ok
          ? {
              ok: true,
              identity: { name: basic.user, via: credential.kind === "sha256" ? "token" : "password" },
            }
          : { ok: false, problem: "wrong password" };
      }
    }
    // A verdict reached under a credential file that has since changed is not remembered.
    if (file.generation === generation) {
      if (result.ok) this.#admitted.set(key, result.identity);
      else this.#refused.set(key, result.problem);
    }
    return result;
  }

  async #limited<T>(work: () => Promise<T>): Promise<T> {
    if (this.#running >= MAX_CONCURRENT) {
      if (this.#waiting.length >= MAX_WAITING) throw new TooManyCredentialChecks();
      // The slot is handed over by the check that ends (below), so none is taken twice.
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else this.#running++;
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }

  #forget(): void {
    this.#admitted.clear();
    this.#refused.clear();
  }
}

/** The cache key of one Authorization header: its SHA-256, so no secret sits in memory as a key. */
function keyOf(authorization: string): string {
  return createHash("sha256").update(authorization).digest("base64");
}

/** RFC 7617: `Basic base64(user-id ":" password)`; the user-id holds no colon. */
export function parseBasic(authorization: string): { user: string; password: string } | AccessProblem {
  const m = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(authorization);
  if (!m?.[1])
    return /^basic\b/i.test(authorization) ? "malformed Basic credentials" : "not Basic credentials";
  const text = Buffer.from(m[1], "base64").toString("utf8");
  const colon = text.indexOf(":");
  if (colon <= 0) return "malformed Basic credentials";
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}
