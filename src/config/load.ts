/**
 * Load and validate config.yaml. Every problem becomes a ConfigError whose message is
 * `<file>: <key path>: <what is wrong>` (the CLI prints it after "trustgate: " and exits 2).
 * Unknown keys are errors: a typo must not silently turn a setting off.
 * Relative paths resolve against the directory of the config file.
 */
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseDocument } from "yaml";
import { ConfigError } from "../errors.js";
import { canonicalRegistryName } from "../oci/docker-hub.js";
import { isValidRegistryHost } from "../oci/reference.js";
import { DEFAULT_POLICY_SETTINGS, SHIPPED_DEFAULT_POLICY } from "../policy/applied.js";
import {
  type AdminConfig,
  type BlobCacheConfig,
  type CertificateIdentity,
  type ClientsConfig,
  type Config,
  type ListenAddress,
  type NotaryConfig,
  type RegistryConfig,
  Secret,
  type ShutdownConfig,
  type TlsConfig,
  type TufConfig,
  type UpstreamTimeouts,
} from "./types.js";

export const DEFAULTS = {
  listen: "127.0.0.1:5000",
  stateDir: "./var/trustgate",
  policies: "./policies",
  defaultPolicy: SHIPPED_DEFAULT_POLICY,
  trustRefreshSeconds: 30,
  logLevel: "info",
  upstreamTimeouts: { connectMs: 10_000, headersMs: 30_000, bodyMs: 60_000, totalMs: 60_000 },
  manifestCacheBytes: 64 * 1024 * 1024,
  blobRedirect: false,
  /** verified Notary metadata held in memory (the heap costs about 6-8x this; REVIEW U5) */
  trustCacheBytes: 64 * 1024 * 1024,
  /** the state of a repository not pulled for this long is removed from stateDir; 0 keeps all */
  statePruneDays: 90,
  /** grace before the listener closes: only with an admin listener, whose /readyz is what turns 503 */
  shutdown: { graceSeconds: 5, drainSeconds: 30 },
} as const;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

type Obj = Record<string, unknown>;

/** Walks the parsed document, naming every key it complains about. */
class Reader {
  constructor(
    readonly file: string,
    readonly baseDir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  fail(key: string, problem: string): never {
    throw new ConfigError(`${this.file}: ${key || "(document)"}: ${problem}`);
  }

  object(value: unknown, key: string, allowed: readonly string[]): Obj {
    if (value === null || typeof value !== "object" || Array.isArray(value))
      this.fail(key, `must be a mapping, got ${describe(value)}`);
    const obj = value as Obj;
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k))
        this.fail(join(key, k), `unknown key (allowed: ${allowed.join(", ") || "none"})`);
    }
    return obj;
  }

  string(value: unknown, key: string): string {
    if (typeof value !== "string" || value.trim() === "")
      this.fail(key, `must be a non-empty string, got ${describe(value)}`);
    return value;
  }

  optionalString(value: unknown, key: string): string | undefined {
    return value === undefined || value === null ? undefined : this.string(value, key);
  }

  integer(value: unknown, key: string, min: number, max: number): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max)
      this.fail(key, `must be an integer from ${min} to ${max}, got ${describe(value)}`);
    return value;
  }

  boolean(value: unknown, key: string): boolean {
    if (typeof value !== "boolean") this.fail(key, `must be true or false, got ${describe(value)}`);
    return value;
  }

  oneOf<T extends string>(value: unknown, key: string, options: readonly T[]): T {
    if (typeof value !== "string" || !options.includes(value as T))
      this.fail(key, `must be one of ${options.join(", ")}, got ${describe(value)}`);
    return value as T;
  }

  path(value: unknown, key: string): string {
    return resolve(this.baseDir, this.string(value, key));
  }

  /** An http(s) URL; `allowFile` also takes file:// (air-gapped TUF metadata). */
  url(value: unknown, key: string, opts: { allowFile?: boolean } = {}): URL {
    const text = this.string(value, key);
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      this.fail(key, `not a URL: ${JSON.stringify(text)}`);
    }
    const fileOk = opts.allowFile === true && url.protocol === "file:";
    if (url.protocol !== "https:" && url.protocol !== "http:" && !fileOk)
      this.fail(
        key,
        `must be an http:// or https:// URL${opts.allowFile ? " (or file://)" : ""}, got ${JSON.stringify(text)}`,
      );
    if (url.username || url.password)
      this.fail(key, "must not carry credentials (use username / passwordEnv)");
    if (url.search || url.hash) this.fail(key, "must not have a query or fragment");
    // Normalise: no trailing slash, so callers append "/v2/...".
    url.pathname = url.pathname.replace(/\/+$/, "");
    return url;
  }
}

/** Why a file could not be read, in words (the errno code stays for searching). */
function readProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOENT: "no such file",
    EACCES: "permission denied",
    EISDIR: "is a directory",
  };
  return code ? `${words[code] ?? "error"} (${code})` : String(err);
}

function join(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** "HOST:PORT" or "[v6]:PORT"; `what` names the key or flag for the message. */
export function parseListen(text: string, fail: (problem: string) => never): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || host === undefined || !Number.isInteger(port) || port > 65535)
    fail(`must be HOST:PORT (e.g. 127.0.0.1:5000), got ${JSON.stringify(text)}`);
  return { host, port };
}

async function readCa(r: Reader, value: unknown, key: string): Promise<{ file: string; pem: string }> {
  const file = r.path(value, key);
  let pem: string;
  try {
    pem = await readFile(file, "utf8");
  } catch (err) {
    r.fail(key, `cannot read ${file}: ${readProblem(err)}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) r.fail(key, `${file} holds no PEM certificate`);
  return { file, pem };
}

/** A list of `host[:port]` (lower-cased), or undefined when the key is absent. */
function readHostList(r: Reader, value: unknown, key: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) r.fail(key, `must be a list of host[:port], got ${describe(value)}`);
  return (value as unknown[]).map((entry, i) => {
    const text = r.string(entry, `${key}[${i}]`);
    if (!isValidRegistryHost(text))
      r.fail(`${key}[${i}]`, `must be host[:port], got ${JSON.stringify(text)}`);
    return text.toLowerCase();
  });
}

/** `username` + `passwordEnv` under `key` (both or neither); the password is read from the environment. */
function readCredentials(
  r: Reader,
  o: Record<string, unknown>,
  key: string,
): { username: string; password: Secret } | undefined {
  const username = r.optionalString(o.username, `${key}.username`);
  const passwordEnv = r.optionalString(o.passwordEnv, `${key}.passwordEnv`);
  if (username === undefined && passwordEnv === undefined) return undefined;
  if (username === undefined) r.fail(`${key}.username`, "is required when passwordEnv is set");
  if (passwordEnv === undefined) r.fail(`${key}.passwordEnv`, "is required when username is set");
  const password = r.env[passwordEnv];
  // Name the variable, never its value.
  if (password === undefined || password === "")
    r.fail(`${key}.passwordEnv`, `environment variable ${passwordEnv} is not set`);
  return { username, password: new Secret(password) };
}

async function readRegistry(r: Reader, name: string, value: unknown): Promise<RegistryConfig> {
  const key = `registries.${name}`;
  if (!isValidRegistryHost(name)) r.fail(key, "the registry name must be a host[:port] such as docker.io");
  // Requests name registries in lower case (containerd's ns, Docker's normalisation).
  if (name !== name.toLowerCase()) r.fail(key, "the registry name must be lower case");
  const o = r.object(value, key, [
    "upstream",
    "caFile",
    "username",
    "passwordEnv",
    "notary",
    "tuf",
    "redirectHosts",
    "tokenRealms",
  ]);
  // Docker Hub's aliases become docker.io, the name its policies and GUNs use (REVIEW T15).
  const reg: RegistryConfig = {
    name: canonicalRegistryName(name),
    upstream: r.url(o.upstream, `${key}.upstream`),
  };
  for (const list of ["redirectHosts", "tokenRealms"] as const) {
    const hosts = readHostList(r, o[list], `${key}.${list}`);
    if (hosts) reg[list] = hosts;
  }
  if (o.caFile !== undefined) {
    const ca = await readCa(r, o.caFile, `${key}.caFile`);
    reg.caFile = ca.file;
    reg.ca = ca.pem;
  }
  const credentials = readCredentials(r, o, key);
  if (credentials) reg.credentials = credentials;
  // notary and tuf together: a cut-over, where each policy's trust.sources says which count (issue 14)
  if (o.notary !== undefined) {
    const nk = `${key}.notary`;
    const n = r.object(o.notary, nk, ["url", "caFile", "username", "passwordEnv", "tokenRealms"]);
    // file://: a directory written by `trustgate notary mirror` (src/notary-mirror/)
    const notary: NotaryConfig = { url: r.url(n.url, `${nk}.url`, { allowFile: true }) };
    if (notary.url.protocol === "file:") {
      for (const k of ["caFile", "username", "passwordEnv", "tokenRealms"] as const)
        if (n[k] !== undefined) r.fail(`${nk}.${k}`, "does not apply to a file:// url (a local directory)");
    }
    if (n.caFile !== undefined) notary.caFile = (await readCa(r, n.caFile, `${nk}.caFile`)).file;
    const notaryCredentials = readCredentials(r, n, nk);
    if (notaryCredentials) notary.credentials = notaryCredentials;
    const realms = readHostList(r, n.tokenRealms, `${nk}.tokenRealms`);
    if (realms) notary.tokenRealms = realms;
    reg.notary = notary;
  }
  if (o.tuf !== undefined) {
    const tk = `${key}.tuf`;
    const t = r.object(o.tuf, tk, ["metadataUrl", "trustedRoot", "targetPath", "caFile"]);
    const tuf: TufConfig = {
      metadataUrl: r.url(t.metadataUrl, `${tk}.metadataUrl`, { allowFile: true }),
      trustedRoot: r.path(t.trustedRoot, `${tk}.trustedRoot`),
    };
    const targetPath = r.optionalString(t.targetPath, `${tk}.targetPath`);
    if (targetPath !== undefined) tuf.targetPath = targetPath;
    if (t.caFile !== undefined) tuf.caFile = (await readCa(r, t.caFile, `${tk}.caFile`)).file;
    reg.tuf = tuf;
  }
  return reg;
}

const TOP_LEVEL_KEYS = [
  "listen",
  "stateDir",
  "defaultRegistry",
  "registries",
  "policies",
  "defaultPolicy",
  "trustRefreshSeconds",
  "logLevel",
  "upstreamTimeouts",
  "manifestCacheBytes",
  "trustCacheBytes",
  "statePruneDays",
  "blobRedirect",
  "blobCache",
  "tls",
  "clients",
  "admin",
  "shutdown",
] as const;

/** Validate an already-read YAML text; `file` is used for messages and relative paths. */
export async function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Config> {
  const absFile = resolve(file);
  const r = new Reader(absFile, dirname(absFile), env);
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = yamlError.linePos?.[0];
    r.fail(
      line ? `line ${line.line}` : "(document)",
      `invalid YAML: ${(yamlError.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "")}`,
    );
  }
  const o = r.object(doc.toJS() ?? {}, "", TOP_LEVEL_KEYS);

  const listen = parseListen(
    o.listen === undefined ? DEFAULTS.listen : r.string(o.listen, "listen"),
    (problem) => r.fail("listen", problem),
  );

  const registries = new Map<string, RegistryConfig>();
  if (o.registries !== undefined && o.registries !== null) {
    const regs = r.object(o.registries, "registries", Object.keys(o.registries as Obj));
    const writtenAs = new Map<string, string>();
    for (const [name, value] of Object.entries(regs)) {
      const reg = await readRegistry(r, name, value);
      const earlier = writtenAs.get(reg.name);
      // Two keys for one registry: which upstream and trust source would apply is a guess.
      if (earlier !== undefined)
        r.fail(
          `registries.${name}`,
          `is ${reg.name}, as registries.${earlier} is: configure it once, as ${reg.name}`,
        );
      writtenAs.set(reg.name, name);
      registries.set(reg.name, reg);
    }
  }

  const defaultRegistryKey = r.optionalString(o.defaultRegistry, "defaultRegistry");
  const defaultRegistry =
    defaultRegistryKey === undefined ? undefined : canonicalRegistryName(defaultRegistryKey);
  if (defaultRegistry !== undefined && !registries.has(defaultRegistry))
    r.fail("defaultRegistry", `names ${JSON.stringify(defaultRegistryKey)}, which is not under registries`);

  const timeouts: UpstreamTimeouts = { ...DEFAULTS.upstreamTimeouts };
  if (o.upstreamTimeouts !== undefined) {
    const keys = ["connectMs", "headersMs", "bodyMs", "totalMs"] as const;
    const t = r.object(o.upstreamTimeouts, "upstreamTimeouts", keys);
    for (const k of keys) {
      if (t[k] !== undefined) timeouts[k] = r.integer(t[k], `upstreamTimeouts.${k}`, 1, 3_600_000);
    }
  }

  const blobRedirect =
    o.blobRedirect === undefined ? DEFAULTS.blobRedirect : r.boolean(o.blobRedirect, "blobRedirect");
  if (blobRedirect) {
    // A redirect sends the client to the upstream itself, which cannot work when only the
    // proxy holds the credentials for it.
    for (const reg of registries.values()) {
      if (reg.credentials)
        r.fail(
          "blobRedirect",
          `cannot be used with registries.${reg.name}.username (clients lack those credentials)`,
        );
    }
  }

  let blobCache: BlobCacheConfig | undefined;
  if (o.blobCache !== undefined && o.blobCache !== null) {
    const b = r.object(o.blobCache, "blobCache", ["dir", "maxBytes"]);
    if (b.dir === undefined) r.fail("blobCache.dir", "is required (a directory for cached blobs)");
    blobCache = {
      dir: r.path(b.dir, "blobCache.dir"),
      maxBytes:
        b.maxBytes === undefined
          ? DEFAULT_BLOB_CACHE_BYTES
          : r.integer(b.maxBytes, "blobCache.maxBytes", 1024 * 1024, 2 ** 50),
    };
    if (blobRedirect)
      r.fail("blobCache", "cannot be used with blobRedirect: redirected blobs never pass through trustgate");
  }

  let tls: TlsConfig | undefined;
  if (o.tls !== undefined && o.tls !== null) {
    // Only the paths here: the files are read, paired and watched by src/tls-listener.ts.
    const t = r.object(o.tls, "tls", ["certFile", "keyFile", "clientCaFile"]);
    if (t.certFile === undefined) r.fail("tls.certFile", "is required (the server certificate, PEM)");
    if (t.keyFile === undefined) r.fail("tls.keyFile", "is required (its private key, PEM)");
    tls = { certFile: r.path(t.certFile, "tls.certFile"), keyFile: r.path(t.keyFile, "tls.keyFile") };
    if (t.clientCaFile !== undefined) tls.clientCaFile = r.path(t.clientCaFile, "tls.clientCaFile");
  }

  const clients = readClients(r, o.clients, tls);
  const admin = readAdmin(r, o.admin, listen);
  const shutdown = readShutdown(r, o.shutdown, admin !== undefined);

  return {
    file: absFile,
    listen,
    stateDir: r.path(o.stateDir ?? DEFAULTS.stateDir, "stateDir"),
    defaultRegistry,
    registries,
    policies: r.path(o.policies ?? DEFAULTS.policies, "policies"),
    defaultPolicy:
      o.defaultPolicy === undefined
        ? DEFAULTS.defaultPolicy
        : r.oneOf(o.defaultPolicy, "defaultPolicy", DEFAULT_POLICY_SETTINGS),
    trustRefreshSeconds:
      o.trustRefreshSeconds === undefined
        ? DEFAULTS.trustRefreshSeconds
        : r.integer(o.trustRefreshSeconds, "trustRefreshSeconds", 1, 86_400),
    logLevel: o.logLevel === undefined ? DEFAULTS.logLevel : r.oneOf(o.logLevel, "logLevel", LOG_LEVELS),
    upstreamTimeouts: timeouts,
    manifestCacheBytes:
      o.manifestCacheBytes === undefined
        ? DEFAULTS.manifestCacheBytes
        : r.integer(o.manifestCacheBytes, "manifestCacheBytes", 0, 2 ** 40),
    trustCacheBytes:
      o.trustCacheBytes === undefined
        ? DEFAULTS.trustCacheBytes
        : r.integer(o.trustCacheBytes, "trustCacheBytes", 1024 * 1024, 2 ** 40),
    statePruneDays:
      o.statePruneDays === undefined
        ? DEFAULTS.statePruneDays
        : r.integer(o.statePruneDays, "statePruneDays", 0, 36_500),
    blobRedirect,
    blobCache,
    tls,
    clients,
    admin,
    shutdown,
  };
}

/**
 * `clients:` (issue 12 point 2). Only the path here: the file is read, checked and watched by
 * src/access/credential-file.ts. A certificate identity means something only where client
 * certificates are asked for and verified, which is `tls.clientCaFile`.
 */
function readClients(r: Reader, value: unknown, tls: TlsConfig | undefined): ClientsConfig | undefined {
  if (value === undefined || value === null) return undefined;
  const o = r.object(value, "clients", ["htpasswdFile", "certificateIdentities"]);
  const clients: ClientsConfig = { certificateIdentities: [] };
  if (o.htpasswdFile !== undefined) clients.htpasswdFile = r.path(o.htpasswdFile, "clients.htpasswdFile");
  if (o.certificateIdentities !== undefined) {
    const key = "clients.certificateIdentities";
    if (!Array.isArray(o.certificateIdentities))
      r.fail(
        key,
        `must be a list such as ["CN:builder", "DNS:node-1.example"], got ${describe(o.certificateIdentities)}`,
      );
    clients.certificateIdentities = (o.certificateIdentities as unknown[]).map((entry, i) =>
      parseCertificateIdentity(r, entry, `${key}[${i}]`),
    );
    if (clients.certificateIdentities.length > 0 && tls?.clientCaFile === undefined)
      r.fail(key, "needs tls.clientCaFile: client certificates are asked for and verified only with it");
  }
  if (clients.htpasswdFile === undefined && clients.certificateIdentities.length === 0)
    r.fail("clients", "set htpasswdFile and/or certificateIdentities (an empty clients: would admit nobody)");
  return clients;
}

function parseCertificateIdentity(r: Reader, value: unknown, key: string): CertificateIdentity {
  const text = r.string(value, key);
  const m = /^(CN|DNS|URI):(.+)$/.exec(text);
  if (!m?.[1] || !m[2] || m[2].trim() !== m[2])
    r.fail(key, `must be CN:<common name>, DNS:<name> or URI:<uri>, got ${JSON.stringify(text)}`);
  return { kind: m[1] as CertificateIdentity["kind"], value: m[1] === "DNS" ? m[2].toLowerCase() : m[2] };
}

function readAdmin(r: Reader, value: unknown, oci: ListenAddress): AdminConfig | undefined {
  if (value === undefined || value === null) return undefined;
  const a = r.object(value, "admin", ["listen"]);
  const listen = parseListen(r.string(a.listen, "admin.listen"), (problem) =>
    r.fail("admin.listen", problem),
  );
  if (listen.port !== 0 && listen.port === oci.port && listen.host === oci.host)
    r.fail("admin.listen", "must differ from listen: the admin endpoints stay off the OCI port");
  return { listen };
}

/**
 * Without an admin listener nothing can see /readyz turn 503, so the grace defaults to 0 there
 * (a stop then only drains); an explicit value is always kept.
 */
function readShutdown(r: Reader, value: unknown, hasAdmin: boolean): ShutdownConfig {
  const shutdown: ShutdownConfig = {
    graceSeconds: hasAdmin ? DEFAULTS.shutdown.graceSeconds : 0,
    drainSeconds: DEFAULTS.shutdown.drainSeconds,
  };
  if (value === undefined || value === null) return shutdown;
  const s = r.object(value, "shutdown", ["graceSeconds", "drainSeconds"]);
  if (s.graceSeconds !== undefined)
    shutdown.graceSeconds = r.integer(s.graceSeconds, "shutdown.graceSeconds", 0, 600);
  if (s.drainSeconds !== undefined)
    shutdown.drainSeconds = r.integer(s.drainSeconds, "shutdown.drainSeconds", 0, 3600);
  return shutdown;
}

/** blobCache.maxBytes when not given: 10 GiB. */
const DEFAULT_BLOB_CACHE_BYTES = 10 * 1024 * 1024 * 1024;

/** Read and validate a config file. */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ConfigError(`${resolve(file)}: (file): cannot read: ${readProblem(err)}`);
  }
  return parseConfig(text, file, env);
}
