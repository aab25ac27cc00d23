/**
 * The credential file of `clients.htpasswdFile`: one `user:hash` a line, as Apache's
 * `htpasswd -B` writes it and distribution's htpasswd auth reads it
 * (registry/auth/htpasswd/htpasswd.go: lines trimmed, blank lines and lines starting with `#`
 * skipped, the user is everything before the first `:`).
 *
 * Two kinds of hash are accepted:
 * - bcrypt (`$2y$`, `$2b$`, `$2a$`): for passwords people choose; what distribution accepts and
 *   the only kind it accepts.
 * - `sha256:<64 hex>`: the SHA-256 of a generated token (`openssl rand -hex 32`), for machines.
 *   A token with 256 bits of entropy needs no slow hash, and checking it costs a microsecond;
 *   never use it for a password a person chose (a fast hash of a guessable secret is guessable).
 *
 * Refused, with the line named: Apache's `{SHA}` (unsalted SHA-1), `$apr1$` (MD5), crypt(3)
 * hashes and plain text. They are weak, and distribution refuses them too, so a file that works
 * here also works for a registry:2 behind it.
 *
 * Pure: parsing and checking one password. Reading and watching the file is credential-file.ts.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import bcrypt from "bcrypt";

export type Credential =
  | { readonly kind: "bcrypt"; readonly hash: string; readonly cost: number }
  | { readonly kind: "sha256"; readonly digest: Buffer };

/** One problem in the file: the line (1-based) and what is wrong, never the hash itself. */
export interface CredentialProblem {
  line: number;
  message: string;
}

export interface ParsedCredentials {
  entries: ReadonlyMap<string, Credential>;
  problems: CredentialProblem[];
}

/**
 * The highest bcrypt cost accepted. Each distinct credential costs one bcrypt compare per cache
 * period (gate.ts); 2^14 rounds already take about a second of CPU here (cost 12: 241 ms,
 * measured with the `bcrypt` package), so a higher cost would mostly make trustgate easy to stall.
 */
export const MAX_BCRYPT_COST = 14;

/** bcrypt's modular crypt format: `$2?$NN$` + 22 characters of salt + 31 of hash. */
const BCRYPT = /^\$2([aby])\$(\d{2})\$[./A-Za-z0-9]{53}$/;
const SHA256_TOKEN = /^sha256:([0-9a-f]{64})$/;

function refusedKind(hash: string): string | undefined {
  if (hash.startsWith("{SHA}")) return "{SHA} (unsalted SHA-1)";
  if (hash.startsWith("$apr1$")) return "$apr1$ (Apache MD5)";
  if (/^\$[156]\$/.test(hash)) return `${hash.slice(0, 3)} (crypt)`;
  return undefined;
}

const ACCEPTED = "use bcrypt (htpasswd -B) or sha256:<hex> of a generated token";

export function parseCredentials(text: string): ParsedCredentials {
  const entries = new Map<string, Credential>();
  const problems: CredentialProblem[] = [];
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    const t = raw.trim();
    if (t === "" || t.startsWith("#")) continue;
    const colon = t.indexOf(":");
    if (colon <= 0) {
      problems.push({ line, message: colon === 0 ? "no user name before ':'" : "not user:hash" });
      continue;
    }
    const user = t.slice(0, colon);
    const hash = t.slice(colon + 1);
    if (entries.has(user)) {
      // distribution keeps the later line silently; which one was meant is a guess, so say so.
      problems.push({ line, message: `user ${JSON.stringify(user)} is listed twice` });
      continue;
    }
    const credential = parseHash(hash);
    if (typeof credential === "string") {
      problems.push({ line, message: `user ${JSON.stringify(user)}: ${credential}` });
      continue;
    }
    entries.set(user, credential);
  }
  return { entries, problems };
}

/** A Credential, or why the hash is not accepted. */
function parseHash(hash: string): Credential | string {
  const bc = BCRYPT.exec(hash);
  if (bc) {
    const cost = Number(bc[2]);
    if (cost < 4 || cost > MAX_BCRYPT_COST) return `bcrypt cost ${cost} is outside 4..${MAX_BCRYPT_COST}`;
    // $2y$ (crypt_blowfish) and $2a$ hash as $2b$ does (the 2b fix is for passwords of 256+
    // bytes, past bcrypt's 72): node's bcrypt answers false for a $2y$ hash, so ask it as $2b$.
    return { kind: "bcrypt", hash: `$2b$${hash.slice(4)}`, cost };
  }
  const token = SHA256_TOKEN.exec(hash);
  if (token?.[1]) return { kind: "sha256", digest: Buffer.from(token[1], "hex") };
  const refused = refusedKind(hash);
  if (refused) return `${refused} is not accepted: ${ACCEPTED}`;
  if (hash.startsWith("sha256:")) return "a sha256: token hash must be 64 lower-case hex digits";
  return `not a hash trustgate accepts: ${ACCEPTED}`;
}

/**
 * Does `password` match `credential`? bcrypt runs on libuv's thread pool (the `bcrypt` package),
 * so the event loop keeps serving while it works; the token digest is compared in constant time.
 */
export async function verifyPassword(credential: Credential, password: string): Promise<boolean> {
  if (credential.kind === "sha256") {
    const digest = createHash("sha256").update(password, "utf8").digest();
    return timingSafeEqual(digest, credential.digest);
  }
  return bcrypt.compare(password, credential.hash);
}

/**
 * A bcrypt hash of a random password at `cost`: compared against when the user is unknown, so a
 * wrong user name takes as long as a wrong password (no user enumeration by timing).
 */
export async function decoyCredential(cost: number): Promise<Credential> {
  const hash = await bcrypt.hash(randomBytes(18).toString("base64"), cost);
  return { kind: "bcrypt", hash, cost };
}
