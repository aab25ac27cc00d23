/**
 * A registry-token issuer for tests, on loopback: distribution's token format (the one
 * docker-registry and notary-server verify): an ES256 JWT with a raw r||s signature (JWS,
 * RFC 7518 3.4; not DER), header `kid` = the libtrust key ID of the signing key, claims iss, sub,
 * aud (a string: notary-server 0.7 refuses an array), exp and `access` granting what the scope asks.
 * It checks Basic credentials and counts every request, so tests can prove token reuse.
 */
import { execFileSync } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, type KeyObject, randomUUID, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

/** RFC 4648 base32, no padding. */
function base32(bytes: Buffer): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** docker/libtrust's key ID: SHA-256 of the DER SPKI, first 240 bits, base32, 4-char groups. */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: "spki", format: "der" });
  const id = base32(createHash("sha256").update(der).digest().subarray(0, 30));
  return id.match(/.{4}/g)?.join(":") ?? "";
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");

export interface TokenRequest {
  scope: string | null;
  service: string | null;
  authorization: string | undefined;
  status: number;
}

export interface TokenIssuer {
  /** the realm URL (http://127.0.0.1:PORT/token) */
  realm: string;
  /** host:port of the realm */
  host: string;
  issuer: string;
  /** PEM file of the signing certificate: notary-server's `rootcertbundle` */
  certFile: string;
  requests: TokenRequest[];
  /** lifetime of the tokens issued from now on (seconds) */
  ttlSeconds: number;
  close(): Promise<void>;
}

/** Starts an issuer in `dir` accepting `username:password`; tokens live `ttlSeconds`. */
export async function startTokenIssuer(opts: {
  dir: string;
  username: string;
  password: string;
  audience: string;
  ttlSeconds?: number;
}): Promise<TokenIssuer> {
  const keyFile = join(opts.dir, "issuer.key");
  const certFile = join(opts.dir, "issuer.crt");
  execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile], {
    stdio: "pipe",
  });
  execFileSync(
    "openssl",
    ["req", "-new", "-x509", "-key", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=token issuer"],
    { stdio: "pipe" },
  );
  const privateKey = createPrivateKey(readFileSync(keyFile));
  const kid = libtrustKeyId(createPublicKey(privateKey));
  const issuer = "trustgate-test-issuer";
  const expected = `Basic ${Buffer.from(`${opts.username}:${opts.password}`).toString("base64")}`;
  const requests: TokenRequest[] = [];
  let out: TokenIssuer | undefined;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const scope = url.searchParams.get("scope");
    const entry: TokenRequest = {
      scope,
      service: url.searchParams.get("service"),
      authorization: req.headers.authorization,
      status: 200,
    };
    requests.push(entry);
    if (req.headers.authorization !== expected) {
      entry.status = 401;
      res.writeHead(401, { "content-type": "application/json" });
      return res.end('{"details":"invalid username or password"}');
    }
    // scope = repository:<name>:<actions>; the name may hold ':' (a GUN with a port).
    const access = scope
      ? [
          {
            type: "repository",
            name: scope.slice(scope.indexOf(":") + 1, scope.lastIndexOf(":")),
            actions: scope.slice(scope.lastIndexOf(":") + 1).split(","),
          },
        ]
      : [];
    const ttl = out?.ttlSeconds ?? 300;
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: "JWT", alg: "ES256", kid }));
    const claims = b64url(
      JSON.stringify({
        iss: issuer,
        sub: opts.username,
        aud: opts.audience,
        exp: now + ttl,
        nbf: now - 10,
        iat: now,
        jti: randomUUID(),
        access,
      }),
    );
    const signature = sign("sha256", Buffer.from(`${header}.${claims}`), {
      key: privateKey,
      dsaEncoding: "ieee-p1363",
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        token: `${header}.${claims}.${b64url(signature)}`,
        expires_in: ttl,
        issued_at: new Date().toISOString(),
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  out = {
    ttlSeconds: opts.ttlSeconds ?? 300,
    realm: `http://${host}/token`,
    host,
    issuer,
    certFile,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  return out;
}
