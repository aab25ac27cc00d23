/**
 * A verified static mirror of one GUN's Notary metadata (issue 14 point 3): fetch everything a
 * client needs with trustgate's own Notary client (update.ts over trusted-state.ts, the code the
 * proxy runs), verify it fully, and only then write it as notary-server serves it:
 *
 *   <out>/v2/<gun>/_trust/tuf/root.json, <N>.root.json          (root by name and by version)
 *   <out>/v2/<gun>/_trust/tuf/timestamp.json
 *   <out>/v2/<gun>/_trust/tuf/snapshot.json, snapshot.<sha256-hex>.json
 *   <out>/v2/<gun>/_trust/tuf/targets.json, targets.<hex>.json, targets/<role>.json, targets/<role>.<hex>.json
 *
 * The client (update.ts) reads root.json, N.root.json for a root walk, timestamp.json, then
 * snapshot and every targets role by checksum; the unversioned names are what notary-server also
 * serves (the `notary` CLI and others read them). So `notary: { url: file://<out> }` or any static
 * web server over <out> answers the proxy exactly as notary-server did.
 *
 * Nothing is written unless the whole repository verifies: root (pins, certificates, expiry),
 * timestamp, snapshot, targets and every delegation. A delegation that does not verify, which the
 * proxy would skip (T5), refuses the mirror: a mirror is a full copy or none. An earlier mirror in
 * <out> is the trusted previous state: a server that now serves older metadata is refused
 * (rollback), and a root rotated since is walked and its intermediate versions are written too.
 * A first mirror holds the latest root only (as root.json and N.root.json): older versions are
 * not fetched, since nothing here could verify them, so a proxy whose state trusts a root two or
 * more versions older cannot walk from it through this mirror and refuses (fail closed) until its
 * state is reset (`trustgate trust forget`) or pinned.
 * Files are written one by one atomically (write.ts), the timestamp last: a reader never sees a
 * timestamp naming a snapshot that is not there yet.
 */
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { TrustgateError } from "../errors.js";
import { TrustError } from "../trust/errors.js";
import type { MetadataFetcher } from "../trust/notary/fetcher.js";
import { FileMetadataFetcher } from "../trust/notary/file-fetcher.js";
import { requirePinnedRoot } from "../trust/notary/pinning.js";
import { DOCKER_ROLES } from "../trust/notary/source.js";
import { type TrustedRepo, updateRepository } from "../trust/notary/update.js";
import { writePublicFileAtomic } from "./write.js";

/** The mirror is refused for a reason other than a failed verification (which is a TrustError). */
export class MirrorError extends TrustgateError {
  constructor(message: string) {
    super("MIRROR_REFUSED", message);
  }
}

export interface MirrorOptions {
  gun: string;
  /** where the metadata comes from: notary-server (HttpMetadataFetcher) or another mirror */
  fetcher: MetadataFetcher;
  /** the directory to write; a mirror already there is the trusted previous state */
  outDir: string;
  /** root key IDs the root must be signed by (as a policy's trust.rootKeys); empty: trust on first use */
  pins?: readonly string[];
  /** the verification time (TUF §5.1); default now */
  now?: Date;
}

export interface MirrorResult {
  gun: string;
  /** the directory a `file://` URL or a web server should point at */
  outDir: string;
  /** paths written, relative to outDir, in the order written (timestamp last) */
  files: string[];
  rootVersion: number;
  /** targets roles mirrored */
  roles: string[];
  /** tags as Docker resolves them (targets/releases, then targets) */
  tags: number;
  /** the first expiry a pull through Docker's roles depends on: the mirror works until then */
  expires: { role: string; at: Date };
}

/** The directory holding one GUN's files in a mirror, as notary-server's URL paths. */
export function gunDir(outDir: string, gun: string): string {
  return join(outDir, "v2", gun, "_trust", "tuf");
}

/** Verify `gun` from `fetcher` and write the mirror; throws TrustError or MirrorError, writing nothing. */
export async function mirrorRepository(options: MirrorOptions): Promise<MirrorResult> {
  const { gun, fetcher, outDir } = options;
  const now = options.now ?? new Date();
  const pins = options.pins ?? [];
  const previous = await previousMirror(gun, outDir, now);
  // Every byte the client fetched, by the name it fetched it under (N.root.json of a root walk).
  const fetched = new Map<string, Uint8Array>();
  const repo = await updateRepository(previous, {
    gun,
    now,
    ...(pins.length > 0 ? { pins } : {}),
    source: async (file, _role, maxBytes) => {
      const bytes = await fetcher.fetch(gun, file, maxBytes);
      fetched.set(file, bytes);
      return bytes;
    },
  });
  // The update checks pins at bootstrap and at each rotation; with a previous mirror and the same
  // root it does not, so the pin is applied here too, as the proxy applies it on every query.
  if (pins.length > 0) requirePinnedRoot(gun, repo.root.env, pins, now);
  if (repo.broken.size > 0) {
    const why = [...repo.broken].map(([role, b]) => `${role} [${b.code}]: ${b.message}`).join("; ");
    throw new MirrorError(`${gun}: not mirrored: delegations that do not verify: ${why}`);
  }
  const files = layout(repo, fetched);
  const dir = gunDir(outDir, gun);
  const written: string[] = [];
  for (const [name, bytes] of files) {
    try {
      await writePublicFileAtomic(join(dir, name), bytes);
    } catch (err) {
      // The timestamp is written last: until it is, readers keep the previous mirror's state.
      throw new MirrorError(
        `${gun}: cannot write ${join(dir, name)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    written.push(join("v2", gun, "_trust", "tuf", name));
  }
  // Read back through the file:// fetcher the `notary:` source uses: the layout is what it asks for.
  await updateRepository(null, {
    gun,
    now,
    ...(pins.length > 0 ? { pins } : {}),
    source: (file, _role, maxBytes) => new FileMetadataFetcher(toFileUrl(outDir)).fetch(gun, file, maxBytes),
  });
  return {
    gun,
    outDir,
    files: written,
    rootVersion: repo.root.env.signed.version,
    roles: [...repo.roles.keys()].sort(),
    tags: countDockerTags(repo),
    expires: firstExpiry(repo),
  };
}

/** The files to write, in order: roots (walked versions first), targets roles, snapshot, timestamp. */
function layout(repo: TrustedRepo, fetched: ReadonlyMap<string, Uint8Array>): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  const walked = [...fetched.keys()]
    .filter((f) => /^\d+\.root\.json$/.test(f))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  for (const f of walked) out.push([f, fetched.get(f) as Uint8Array]);
  const root = repo.root.bytes;
  out.push([`${repo.root.env.signed.version}.root.json`, root], ["root.json", root]);
  // parents before children is not needed (the snapshot is written after all of them), but
  // keeps the order a reader of the log would expect
  const roles = [...repo.roles.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const role of roles) {
    out.push([`${role.name}.${sha256Hex(role.bytes)}.json`, role.bytes], [`${role.name}.json`, role.bytes]);
  }
  const snapshot = repo.snapshot.bytes;
  out.push([`snapshot.${sha256Hex(snapshot)}.json`, snapshot], ["snapshot.json", snapshot]);
  out.push(["timestamp.json", repo.timestamp.bytes]);
  return out;
}

/**
 * An earlier mirror of `gun` in `outDir`, re-verified (expired metadata accepted: it was verified
 * when written; the new update must still be fresh), or null when there is none.
 */
async function previousMirror(gun: string, outDir: string, now: Date): Promise<TrustedRepo | null> {
  const fetcher = new FileMetadataFetcher(toFileUrl(outDir));
  const existing = await stat(join(gunDir(outDir, gun), "root.json")).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return false;
      throw new MirrorError(`${gun}: cannot read ${outDir}: ${err.code ?? err.message}`);
    },
  );
  if (!existing) return null;
  try {
    return await updateRepository(null, {
      gun,
      now,
      reloading: true,
      source: (file, _role, maxBytes) => fetcher.fetch(gun, file, maxBytes),
    });
  } catch (err) {
    if (!(err instanceof TrustError)) throw err;
    throw new MirrorError(
      `${gun}: the mirror already in ${outDir} does not verify (${err.message}); remove ${gunDir(outDir, gun)} to start over`,
    );
  }
}

function toFileUrl(dir: string): URL {
  return pathToFileURL(resolve(dir));
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function countDockerTags(repo: TrustedRepo): number {
  const names = new Set<string>();
  for (const role of DOCKER_ROLES)
    for (const name of repo.roles.get(role)?.targets.keys() ?? []) names.add(name);
  return names.size;
}

function firstExpiry(repo: TrustedRepo): { role: string; at: Date } {
  const candidates: [string, number][] = [
    ["root", repo.root.expires],
    ["root certificates", repo.root.certsExpire],
    ["timestamp", repo.timestamp.expires],
    ["snapshot", repo.snapshot.expires],
  ];
  for (const role of DOCKER_ROLES) {
    const r = repo.roles.get(role);
    if (r) candidates.push([role, r.expires]);
  }
  const [role, at] = candidates.reduce((a, b) => (b[1] < a[1] ? b : a));
  return { role, at: new Date(at) };
}
