/**
 * `trustgate trust status --config FILE [--json]` (issue 12 item 7): what trustgate has recorded
 * in its state directory, read from the state files alone (no network, nothing written: unlike
 * `NotaryStateStore.load`, a file under the old name is not moved):
 *  - per Notary repository (GUN), `<stateDir>/notary/`: root keys, each role's version and
 *    expiry, the last successful check, pinned by a policy's trust.rootKeys or trusted on first use;
 *  - per registry with a TUF source, `<stateDir>/tuf/<id>/metadata/` (src/trust/tuf/state-listing.ts):
 *    the same, plus every delegated role seen; TUF is always pinned by the configured
 *    `tuf.trustedRoot`, never trusted on first use, and the listing says whether the chain on disk
 *    grew from that root.
 * Exit 0, also for an empty state dir ("no trust state recorded"); 1 when a state file is
 * unreadable (it is listed with why; `serve` would refuse that GUN, fail closed); 2 usage or
 * configuration errors.
 *
 * `collectTrustStatus` is also what the admin listener's `GET /trust` answers (serve.ts passes the
 * policies in force), so the CLI's `--json` and the endpoint have one shape.
 *
 * The bytes shown were verified when they were saved (notary/update.ts, tuf/persistence.ts) and
 * are verified again when `serve` loads them; this command only reads their `signed` fields
 * (version, expires, the root role's key IDs) and does not re-verify signatures.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/types.js";
import { UsageError } from "../errors.js";
import { applyPolicy } from "../policy/applied.js";
import { loadPolicyDir } from "../policy/load-dir.js";
import type { PolicySet } from "../policy/policy-set.js";
import { PolicyLoadError } from "../policy/types.js";
import { canonicalKeyId, loadPublicKey } from "../trust/notary/keys.js";
import type { PublicKeyJson } from "../trust/notary/models.js";
import { NotaryStateStore } from "../trust/notary/store.js";
import { tufMetadataUrl } from "../trust/sources.js";
import { listTufStateDirs, readTufState, tufMetadataDir } from "../trust/tuf/state-listing.js";
import { parseCommandArgs } from "./args.js";

export const STATUS_USAGE = "trustgate trust status --config <file> [--json]";

export interface RoleStatus {
  role: string;
  version: number;
  /** `expires` exactly as signed */
  expires: string;
}

/** One Notary repository (GUN). */
export interface RepoStatus {
  gun: string;
  registry: string;
  /** "notary"; "not configured" when the registry is not under `registries` (state of an old config) */
  source: string;
  /** the root role's key IDs as listed in root.json, each with the canonical ID of its public key */
  rootKeys: { id: string; canonical: string }[];
  roles: RoleStatus[];
  /**
   * The state file's mtime: when the last successful trust check of this GUN started (markUsed,
   * on every check that ended trusted, also one answered from stored metadata while the server
   * was unreachable), or when the state was last written. It is what `pruneAfterDays` reads.
   */
  lastChecked: string;
  /** "pinned" when the policy applying to the GUN lists trust.rootKeys, else "trust on first use" */
  rootTrust: "pinned" | "trust on first use";
  /** the winning policy's name and its pins, when pinned */
  policy?: string;
  pins?: string[];
  file: string;
  /** set when the file cannot be read: nothing else is then known */
  error?: string;
}

/** One TUF repository, per registry whose `tuf:` block names it (or found on disk unconfigured). */
export interface TufRepoStatus {
  /** the registry it serves; "?" for a directory no configured registry uses */
  registry: string;
  /** "tuf"; "not configured" for a directory no registry's tuf.metadataUrl names now */
  source: "tuf" | "not configured";
  /** the metadata URL, without any user or password in it */
  metadataUrl?: string;
  /** TUF key IDs (the sha256 of the canonical key, TUF spec 4.2): canonical is the ID itself */
  rootKeys: { id: string; canonical: string }[];
  /** root, timestamp, snapshot, targets, then every delegated role the walks reached */
  roles: RoleStatus[];
  /** start of the last online refresh that verified; null: none recorded yet */
  lastChecked: string | null;
  /** always "pinned": the chain is anchored at the configured tuf.trustedRoot */
  rootTrust: "pinned";
  pinnedBy: "tuf.trustedRoot";
  trustedRoot?: string;
  /**
   * "configured trustedRoot": the chain grew from it; "another root": serve re-anchors at the
   * configured trustedRoot on its next start (src/trust/tuf/persistence.ts); "unknown": not configured
   */
  anchor: "configured trustedRoot" | "another root" | "unknown";
  dir: string;
  error?: string;
}

export interface TrustStatusReport {
  stateDir: string;
  repositories: (RepoStatus | TufRepoStatus)[];
}

export async function status(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    { args: argv, options: { config: { type: "string" }, json: { type: "boolean" } } },
    `usage: ${STATUS_USAGE}`,
  );
  if (positionals.length > 0) throw new UsageError(`trust status takes no arguments\nusage: ${STATUS_USAGE}`);
  if (!values.config) throw new UsageError(`--config is required\nusage: ${STATUS_USAGE}`);
  const config = await loadConfig(values.config);
  // Pins come from the policies, as in `serve`; a policy dir that does not load is a config error.
  const loaded = await loadPolicyDir(config.policies);
  if (!loaded.set) throw new PolicyLoadError(loaded.problems);
  const report = await collectTrustStatus(config, loaded.set);
  const repos = report.repositories;
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else if (repos.length === 0) {
    process.stdout.write(
      `no trust state recorded under ${join(config.stateDir, "notary")} or ${join(config.stateDir, "tuf")}\n`,
    );
  } else {
    process.stdout.write(render(repos));
  }
  return repos.some((r) => r.error) ? 1 : 0;
}

/**
 * Everything recorded under `config.stateDir`: Notary GUNs, then TUF repositories, sorted by
 * GUN or registry. `policies`: the set whose trust.rootKeys say which GUNs are pinned.
 */
export async function collectTrustStatus(config: Config, policies: PolicySet): Promise<TrustStatusReport> {
  const repos = [...(await readNotaryState(config, policies)), ...(await readTufStates(config))];
  const key = (r: RepoStatus | TufRepoStatus) => ("gun" in r ? r.gun : r.registry);
  return { stateDir: config.stateDir, repositories: repos.sort((a, b) => key(a).localeCompare(key(b))) };
}

async function readNotaryState(config: Config, set: PolicySet): Promise<RepoStatus[]> {
  const dir = join(config.stateDir, "notary");
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".json") && !n.startsWith(".")).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const repos: RepoStatus[] = [];
  for (const name of names) {
    const file = join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) continue;
    const lastChecked = info.mtime.toISOString();
    let doc: { format?: unknown; gun?: unknown; files?: Record<string, string> };
    let repo: Omit<RepoStatus, "rootTrust" | "file" | "lastChecked">;
    try {
      doc = JSON.parse(await readFile(file, "utf8"));
      if (
        (doc.format !== 1 && doc.format !== 2) ||
        typeof doc.gun !== "string" ||
        typeof doc.files !== "object"
      )
        throw new Error("not a trustgate Notary state file (format 1 or 2)");
      // serve reads a GUN's state only under these two names (store.ts): any other file is not its state
      const store = new NotaryStateStore(config.stateDir);
      if (file !== store.pathFor(doc.gun) && file !== store.legacyPathFor(doc.gun))
        throw new Error(`holds ${doc.gun}, but is not named for it: trustgate never reads it`);
      repo = describeRepo(doc.gun, doc.files ?? {}, config);
    } catch (err) {
      repos.push({
        gun: "?",
        registry: "?",
        source: "notary",
        rootKeys: [],
        roles: [],
        lastChecked,
        rootTrust: "trust on first use",
        file,
        error: `cannot be used: ${(err as Error).message}`,
      });
      continue;
    }
    const applied = applyPolicy(set, repo.gun, config.defaultPolicy);
    const pins = applied.kind === "policy" ? applied.policy.trust.rootKeys : [];
    repos.push({
      ...repo,
      lastChecked,
      ...(pins.length > 0 && applied.kind === "policy"
        ? { rootTrust: "pinned", policy: applied.policy.name, pins: [...pins] }
        : { rootTrust: "trust on first use" }),
      file,
    } as RepoStatus);
  }
  return repos;
}

/** Each TUF registry's durable metadata, then directories on disk that no registry names now. */
async function readTufStates(config: Config): Promise<TufRepoStatus[]> {
  const out: TufRepoStatus[] = [];
  const used = new Set<string>();
  for (const registry of config.registries.values()) {
    if (!registry.tuf) continue;
    const url = tufMetadataUrl(registry.tuf);
    const dir = tufMetadataDir(config.stateDir, url);
    used.add(dir);
    const pin = await readFile(registry.tuf.trustedRoot).catch(() => undefined);
    const entry = await describeTuf(dir, pin, {
      registry: registry.name,
      source: "tuf",
      metadataUrl: withoutCredentials(url),
      trustedRoot: registry.tuf.trustedRoot,
    });
    if (entry) out.push(entry);
  }
  for (const dir of await listTufStateDirs(config.stateDir)) {
    if (used.has(dir)) continue;
    const entry = await describeTuf(dir, undefined, { registry: "?", source: "not configured" });
    if (entry) out.push(entry);
  }
  return out;
}

async function describeTuf(
  dir: string,
  pin: Uint8Array | undefined,
  about: Pick<TufRepoStatus, "registry" | "source" | "metadataUrl" | "trustedRoot">,
): Promise<TufRepoStatus | undefined> {
  const base = {
    ...about,
    rootTrust: "pinned" as const,
    pinnedBy: "tuf.trustedRoot" as const,
    dir,
  };
  try {
    const state = await readTufState(dir, pin);
    if (state === undefined) return undefined; // serve has not opened this repository yet
    return {
      ...base,
      rootKeys: state.rootKeyIds.map((id) => ({ id, canonical: id })),
      roles: state.roles,
      lastChecked: state.lastChecked ?? null,
      anchor:
        state.anchor === "configured"
          ? "configured trustedRoot"
          : state.anchor === "other"
            ? "another root"
            : "unknown",
    };
  } catch (err) {
    return {
      ...base,
      rootKeys: [],
      roles: [],
      lastChecked: null,
      anchor: "unknown",
      error: `cannot be used: ${(err as Error).message}`,
    };
  }
}

/** A URL as shown: user and password dropped (never in a listing or on the admin listener). */
function withoutCredentials(raw: string): string {
  const url = new URL(raw);
  url.username = "";
  url.password = "";
  return url.toString();
}

function describeRepo(gun: string, files: Record<string, string>, config: Config) {
  const signed = (role: string): Record<string, unknown> => {
    const b64 = files[role];
    if (typeof b64 !== "string") throw new Error(`lacks ${role}`);
    const env = JSON.parse(Buffer.from(b64, "base64").toString("utf8")) as {
      signed?: Record<string, unknown>;
    };
    if (typeof env.signed !== "object" || env.signed === null) throw new Error(`${role} has no signed part`);
    return env.signed;
  };
  const roleStatus = (role: string): RoleStatus => {
    const s = signed(role);
    if (!Number.isSafeInteger(s.version) || typeof s.expires !== "string")
      throw new Error(`${role} lacks version or expires`);
    return { role, version: s.version as number, expires: s.expires };
  };
  // Top-level roles first in Notary's order, then the delegations by name.
  const top = ["root", "targets", "snapshot", "timestamp"];
  const delegated = Object.keys(files)
    .filter((r) => !top.includes(r))
    .sort();
  const roles = [...top.filter((r) => Object.hasOwn(files, r)), ...delegated].map(roleStatus);
  const root = signed("root") as {
    keys?: Record<string, PublicKeyJson>;
    roles?: { root?: { keyids?: string[] } };
  };
  const rootKeys = (root.roles?.root?.keyids ?? []).map((id) => {
    const key = root.keys?.[id];
    let canonical = id;
    try {
      if (key) canonical = canonicalKeyId(loadPublicKey(key), id);
    } catch {
      // a key that does not load never verified; show the declared ID only
    }
    return { id, canonical };
  });
  const registry = gun.slice(0, gun.indexOf("/"));
  const entry = config.registries.get(registry);
  const source = !entry
    ? "not configured"
    : entry.notary
      ? "notary"
      : entry.tuf
        ? "tuf (configured now; state is Notary)"
        : "none";
  return { gun, registry, source, rootKeys, roles };
}

/** One block per repository: a field per line, roles as a `notary`-like table. */
function render(repos: (RepoStatus | TufRepoStatus)[]): string {
  const out: string[] = [];
  for (const r of repos) {
    if (r.error) {
      out.push(`${"gun" in r ? r.file : r.dir}: ${r.error}`, "");
      continue;
    }
    if ("gun" in r) {
      out.push(`GUN:           ${r.gun}`);
      out.push(`registry:      ${r.registry} (trust source: ${r.source})`);
      out.push(
        `root trust:    ${r.rootTrust === "pinned" ? `pinned by policy ${r.policy}: ${(r.pins ?? []).join(", ")}` : "trust on first use (no policy pins trust.rootKeys)"}`,
      );
      out.push(
        `root keys:     ${r.rootKeys.map((k) => (k.canonical === k.id ? k.id : `${k.id} (canonical ${k.canonical})`)).join(", ")}`,
      );
      out.push(`last checked:  ${r.lastChecked} (start of the last successful trust check)`);
    } else {
      out.push(`TUF repository: ${r.metadataUrl ?? r.dir}`);
      out.push(
        `registry:      ${r.registry} (trust source: ${r.source === "tuf" ? "tuf" : "tuf, not configured now"})`,
      );
      out.push(
        `root trust:    pinned by tuf.trustedRoot${r.trustedRoot ? ` ${r.trustedRoot}` : ""}${
          r.anchor === "configured trustedRoot"
            ? " (the chain on disk grew from it)"
            : r.anchor === "another root"
              ? " (the chain on disk grew from another root: serve re-anchors at this one on start)"
              : ""
        }`,
      );
      out.push(`root keys:     ${r.rootKeys.map((k) => k.id).join(", ")}`);
      out.push(
        `last checked:  ${r.lastChecked === null ? "none recorded (no online refresh has verified yet)" : `${r.lastChecked} (start of the last successful refresh)`}`,
      );
    }
    const rows = [
      ["ROLE", "VERSION", "EXPIRES"],
      ...r.roles.map((x) => [x.role, String(x.version), x.expires]),
    ];
    const widths = [0, 1].map((i) => Math.max(...rows.map((row) => (row[i] ?? "").length)) + 4);
    for (const row of rows)
      out.push(`  ${row.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c)).join("")}`);
    out.push("");
  }
  return `${out.join("\n")}`;
}
