/**
 * Reads Notary metadata from a directory laid out as notary-server serves it (a `file://` URL):
 * `<dir>/v2/<gun>/_trust/tuf/<file>`, the layout `trustgate notary mirror` writes
 * (src/notary-mirror/). The same contract as the HTTP fetcher (fetcher.ts): every read is capped
 * (checked on the file's size and again while reading, so a file growing under us cannot exhaust
 * memory), a missing file is TRUST_NOT_FOUND, any other failure TRUST_UNAVAILABLE (the proxy then
 * answers from what it already trusts until it expires, as when a server is down). What is read
 * is verified exactly as what a server sends: a directory is trusted no more than a server.
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { TrustError } from "../errors.js";
import {
  type HttpFetcherOptions,
  HttpMetadataFetcher,
  isValidGun,
  type MetadataFetcher,
  roleOfFile,
} from "./fetcher.js";

/** A file name under `_trust/tuf/` as the update workflow asks for it: role names, `/` between them. */
const ROLE_FILE = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;

export class FileMetadataFetcher implements MetadataFetcher {
  private readonly dir: string;

  constructor(url: string | URL) {
    const u = new URL(url);
    if (u.protocol !== "file:") throw new TypeError(`not a file:// URL: ${u.href}`);
    if (u.host !== "" && u.host !== "localhost")
      throw new TypeError(`a file:// URL names a local directory, not host '${u.host}': ${u.href}`);
    this.dir = fileURLToPath(u);
  }

  async fetch(gun: string, roleFile: string, maxBytes: number): Promise<Uint8Array> {
    const role = roleOfFile(roleFile);
    if (!isValidGun(gun)) throw new TrustError("TRUST_NOT_FOUND", gun, role, `${gun}: not a valid GUN`);
    // A delegation's name comes from signed metadata, but only our own check keeps `..` from
    // walking out of the directory (an HTTP server would normalise it away).
    if (!ROLE_FILE.test(roleFile) || roleFile.split("/").some((s) => s === "." || s === "..")) {
      throw new TrustError(
        "METADATA_INVALID",
        gun,
        role,
        `${gun}: ${role}: not a metadata file name: ${roleFile}`,
      );
    }
    const path = join(this.dir, "v2", gun, "_trust", "tuf", roleFile);
    const where = `${gun}: ${role}: read ${path}`;
    const tooLarge = () =>
      new TrustError("METADATA_INVALID", gun, role, `${where}: larger than the ${maxBytes}-byte cap`);
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(path, "r");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR")
        throw new TrustError("TRUST_NOT_FOUND", gun, role, `${where}: no such file`);
      throw new TrustError("TRUST_UNAVAILABLE", gun, role, `${where}: ${code ?? String(err)}`, {
        cause: err,
      });
    }
    try {
      const stat = await fh.stat();
      if (!stat.isFile())
        throw new TrustError("TRUST_UNAVAILABLE", gun, role, `${where}: not a regular file`);
      if (stat.size > maxBytes) throw tooLarge();
      // One byte more than the cap: a file that grew since stat() is caught, not truncated.
      const buf = Buffer.alloc(Math.min(stat.size, maxBytes) + 1);
      let total = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, total, buf.length - total, total);
        if (bytesRead === 0) break;
        total += bytesRead;
        if (total > maxBytes) throw tooLarge();
        if (total === buf.length) break;
      }
      return buf.subarray(0, total);
    } catch (err) {
      if (err instanceof TrustError) throw err;
      throw new TrustError("TRUST_UNAVAILABLE", gun, role, `${where}: ${(err as Error).message}`, {
        cause: err,
      });
    } finally {
      await fh.close();
    }
  }
}

/**
 * The fetcher for a notary `url`: a directory for `file://` (a mirror), notary-server's HTTP API
 * for http(s). Credentials and token realms mean nothing to a directory: refused, not ignored.
 */
export function openMetadataFetcher(options: HttpFetcherOptions): MetadataFetcher {
  if (new URL(options.url).protocol !== "file:") return new HttpMetadataFetcher(options);
  if (options.credentials || options.tokenRealms?.length || options.caFile) {
    throw new TypeError(
      `a file:// notary URL is a local directory: it takes no credentials, token realms or CA (${options.url})`,
    );
  }
  return new FileMetadataFetcher(options.url);
}
