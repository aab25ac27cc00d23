/**
 * `trustgate trust status --config FILE [--json]` (issue 12 item 7): what trustgate has recorded
 * in `<stateDir>/notary/`, per repository, read from the state files alone (no network, nothing
 * written: unlike `NotaryStateStore.load`, a file under the old name is not moved). Exit 0, also
 * for an empty state dir ("no trust state recorded"); 1 when a state file is unreadable (it is
 * listed with why; `serve` would refuse that GUN, fail closed); 2 usage or configuration errors.
 *
 * Notary only: TUF state (src/trust/tuf/persistence.ts) is anchored by the configured
 * `tuf.trustedRoot`, never trusted on first use, so it is not what an operator resets.
 *
 * The bytes shown were verified when they were saved (update.ts) and are verified again when
 * `serve` loads them; this command only reads their `signed` fields (version, expires, the root
 * role's key IDs) and does not re-verify signatures.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/types.js";
import { UsageError } from "../errors.js";
import { applyPolicy } from "../policy/applied.js";
import { loadPolicyDir } from "../policy/load-dir.js";
import { PolicyLoadError } from "../policy/types.js";
import { canonicalKeyId, loadPublicKey } from "../trust/notary/keys.js";
import type { PublicKeyJson } from "../trust/notary/models.js";
import { NotaryStateStore } from "../trust/notary/store.js";
import { parseCommandArgs } from "./args.js";

export const STATUS_USAGE = "trustgate trust status --config <file> [--json]   (Notary state only)";

export interface RoleStatus {
  role: string;
  version: number;
  /** `expires` exactly as signed */
  expires: string;
}

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

export async function status(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    { args: argv, options: { config: { type: "string" }, json: { type: "boolean" } } },
    `usage: ${STATUS_USAGE}`,
  );
  if (positionals.length > 0) throw new UsageError(`trust status takes no arguments\nusage: ${STATUS_USAGE}`);
  if (!values.config) throw new UsageError(`--config is required\nusage: ${STATUS_USAGE}`);
  const config = await loadConfig(values.config);
  const repos = await readState(config);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ stateDir: config.stateDir, repositories: repos }, null, 2)}\n`);
  } else if (repos.length === 0) {
    process.stdout.write(`no trust state recorded under ${join(config.stateDir, "notary")}\n`);
  } else {
    process.stdout.write(render(repos));
  }
  return repos.some((r) => r.error) ? 1 : 0;
}

async function readState(config: Config): Promise<RepoStatus[]> {
  const dir = join(config.stateDir, "notary");
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".json") && !n.startsWith(".")).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  // Pins come from the policies, as in `serve`; a policy dir that does not load is a config error.
  const loaded = await loadPolicyDir(config.policies);
  if (!loaded.set) throw new PolicyLoadError(loaded.problems);
  const set = loaded.set;
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
  return repos.sort((a, b) => a.gun.localeCompare(b.gun));
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
function render(repos: RepoStatus[]): string {
  const out: string[] = [];
  for (const r of repos) {
    if (r.error) {
      out.push(`${r.file}: ${r.error}`, "");
      continue;
    }
    out.push(`GUN:           ${r.gun}`);
    out.push(`registry:      ${r.registry} (trust source: ${r.source})`);
    out.push(
      `root trust:    ${r.rootTrust === "pinned" ? `pinned by policy ${r.policy}: ${(r.pins ?? []).join(", ")}` : "trust on first use (no policy pins trust.rootKeys)"}`,
    );
    out.push(
      `root keys:     ${r.rootKeys.map((k) => (k.canonical === k.id ? k.id : `${k.id} (canonical ${k.canonical})`)).join(", ")}`,
    );
    out.push(`last checked:  ${r.lastChecked} (start of the last successful trust check)`);
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
