/** The validated configuration every module receives (see load.ts for the file format). */
import type { DefaultPolicySetting } from "../policy/applied.js";

/** A secret that never reaches a log or a JSON dump by accident: read it with reveal(). */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return "[redacted]";
  }
  toString(): string {
    return "[redacted]";
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "[redacted]";
  }
}

export interface ListenAddress {
  host: string;
  port: number;
}

export interface NotaryConfig {
  url: URL;
  /** absolute path of an extra CA (PEM) for the trust server */
  caFile?: string;
  /** Basic credentials for the notary server's token realm (token auth); absent: anonymous tokens */
  credentials?: { username: string; password: Secret };
  /** `host[:port]` token realms other than the notary server's origin that may get the credentials */
  tokenRealms?: string[];
}

export interface TufConfig {
  metadataUrl: URL;
  /** absolute path of the trusted root.json shipped out of band */
  trustedRoot: string;
  targetPath?: string;
  caFile?: string;
}

export interface RegistryConfig {
  /** canonical registry name (the key under `registries`), e.g. "docker.io"; GUN prefix for trust */
  name: string;
  /** base URL of the upstream (http or https), without a trailing slash */
  upstream: URL;
  /** absolute path of an extra CA (PEM) for the upstream */
  caFile?: string;
  /** that CA's PEM text, read at load time */
  ca?: string;
  credentials?: { username: string; password: Secret };
  notary?: NotaryConfig;
  tuf?: TufConfig;
  /**
   * `host[:port]` entries (no port: 443 and 80) the upstream may redirect to although they resolve
   * to a loopback, private or link-local address (src/upstream/destination.ts); the upstream's own
   * origin is always allowed
   */
  redirectHosts?: string[];
  /** `host[:port]` token realms other than the upstream's own origin that may get the credentials */
  tokenRealms?: string[];
}

export interface UpstreamTimeouts {
  connectMs: number;
  /** until the response headers arrive */
  headersMs: number;
  /** the longest pause between two body chunks, and the longest a blob relay may stall on its client */
  bodyMs: number;
  /** the whole of one manifest, tag list or token fetch (redirects and retries included), and a blob's headers */
  totalMs: number;
}

export interface Config {
  /** absolute path of the file this came from (for messages) */
  file: string;
  listen: ListenAddress;
  stateDir: string;
  defaultRegistry: string | undefined;
  registries: ReadonlyMap<string, RegistryConfig>;
  policies: string;
  /** rules for images no policy file matches (policy engine enum; shipped: refuse) */
  defaultPolicy: DefaultPolicySetting;
  trustRefreshSeconds: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  upstreamTimeouts: UpstreamTimeouts;
  manifestCacheBytes: number;
  /** bound on the verified Notary metadata held in memory, in bytes */
  trustCacheBytes: number;
  /** days after its last pull a repository's trust state is removed from stateDir (0: never) */
  statePruneDays: number;
  blobRedirect: boolean;
  /** the verified blob cache on disk (proxy/blob-cache.ts); absent: blobs are relayed every time */
  blobCache: BlobCacheConfig | undefined;
  /** serve the OCI API over TLS (src/tls-listener.ts); absent: plain HTTP */
  tls: TlsConfig | undefined;
  /** who may use the OCI API (src/access, src/proxy/client-access.ts); absent: anyone who can connect */
  clients: ClientsConfig | undefined;
  /** the admin listener (/healthz, /readyz, /metrics; src/admin); absent: none is started */
  admin: AdminConfig | undefined;
  shutdown: ShutdownConfig;
}

/** Absolute paths; the files are read at start and re-read when they change (renewal). */
export interface TlsConfig {
  /** PEM: the server certificate, then any intermediates */
  certFile: string;
  /** PEM: its private key */
  keyFile: string;
  /** PEM: CAs a client certificate must chain to; set, a client without one is refused (mTLS) */
  clientCaFile?: string;
}

/** `clients:`: every OCI request must come from one of these (issue 12 point 2). */
export interface ClientsConfig {
  /** absolute path of the credential file (htpasswd lines: bcrypt, or sha256 of a token); re-read on change */
  htpasswdFile?: string;
  /** client certificate identities admitted without a password (needs tls.clientCaFile) */
  certificateIdentities: CertificateIdentity[];
}

/**
 * One admitted client certificate, named as `openssl x509 -text` names it: the subject's common
 * name (`CN:builder`), or a subjectAltName entry (`DNS:node-1.example`, `URI:spiffe://acme/ci`).
 */
export interface CertificateIdentity {
  kind: "CN" | "DNS" | "URI";
  value: string;
}

export interface AdminConfig {
  /** its own address, off the OCI port, so probes and scrapes never share the pull clients' listener */
  listen: ListenAddress;
}

/** What `serve` does on SIGTERM/SIGINT (commands/serve.ts). */
export interface ShutdownConfig {
  /** /readyz answers 503 while the OCI listener still accepts, so load balancers stop sending */
  graceSeconds: number;
  /** then the listener closes; in-flight pulls get this long before their connections are cut */
  drainSeconds: number;
}

export interface BlobCacheConfig {
  /** absolute directory, trustgate's own */
  dir: string;
  maxBytes: number;
}
