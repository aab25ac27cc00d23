/**
 * `trustgate trust forget <gun> --config FILE`: removes what trustgate recorded for a Notary
 * repository trusted on first use (its state file under `<stateDir>/notary/`), so the next pull
 * records the repository's root again (docs/operations.md, "Resetting trust recorded on first
 * use"). Exit 0 removed, 1 nothing recorded for that GUN, 2 usage or configuration error. No network.
 *
 * `trustgate trust list <gun> --server <url> [--ca <file>] [--state-dir <dir>] [--root-key <id>]... [--json]`
 *
 * trustgate's `notary list`: verifies a GUN's Notary metadata and prints every signed tag as
 * Docker Content Trust resolves it (per tag the first of targets/releases, targets that signs it).
 * Exit 0 when everything verified, 1 with a one-line reason when it did not (nothing is listed
 * then), 2 for usage errors. Without --state-dir the trust is kept in a throwaway directory.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../config/load.js";
import { UsageError } from "../errors.js";
import { TrustError } from "../trust/errors.js";
import { DOCKER_ROLES, NotarySource } from "../trust/notary/source.js";
import { NotaryStateStore } from "../trust/notary/store.js";
import type { SignedTarget } from "../trust/types.js";
import { parseCommandArgs } from "./args.js";

const LIST_USAGE =
  "trustgate trust list <gun> --server <url> [--ca <file>] [--state-dir <dir>] [--root-key <keyid>]... [--json]";
const FORGET_USAGE = "trustgate trust forget <gun> --config <file>";
export const USAGE = `usage: ${LIST_USAGE}\n       ${FORGET_USAGE}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    {
      args: argv,
      allowPositionals: true,
      options: {
        server: { type: "string" },
        ca: { type: "string" },
        "state-dir": { type: "string" },
        "root-key": { type: "string", multiple: true },
        json: { type: "boolean" },
        config: { type: "string" },
      },
    },
    USAGE,
  );
  const [sub, gun, ...extra] = positionals;
  if ((sub !== "list" && sub !== "forget") || gun === undefined || extra.length > 0)
    throw new UsageError(USAGE);
  if (sub === "forget") {
    const { server, ca, json, ...rest } = values;
    if (server || ca || json || rest["state-dir"] || rest["root-key"])
      throw new UsageError(`trust forget takes only --config\nusage: ${FORGET_USAGE}`);
    return forget(gun, values.config);
  }
  if (values.config) throw new UsageError(`trust list does not take --config\nusage: ${LIST_USAGE}`);
  if (!values.server) throw new UsageError(`--server is required\n${USAGE}`);
  const slash = gun.indexOf("/");
  if (slash <= 0 || slash === gun.length - 1)
    throw new UsageError(`'${gun}' is not a GUN (<registry>/<repository>)`);
  try {
    const u = new URL(values.server);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
  } catch {
    throw new UsageError(`--server must be an http:// or https:// URL, not '${values.server}'`);
  }

  const throwaway = values["state-dir"] ? undefined : await mkdtemp(join(tmpdir(), "trustgate-trust-"));
  let source: NotarySource | undefined;
  try {
    try {
      source = new NotarySource({
        url: values.server,
        stateDir: values["state-dir"] ?? (throwaway as string),
        ...(values.ca ? { caFile: values.ca } : {}),
      });
    } catch (err) {
      throw new UsageError(`cannot use --server/--ca: ${(err as Error).message}`);
    }
    const rootKeys = values["root-key"] ?? [];
    const targets = await source.listSigned({
      registry: gun.slice(0, slash),
      repository: gun.slice(slash + 1),
      roles: DOCKER_ROLES,
      ...(rootKeys.length > 0 ? { rootKeys } : {}),
    });
    process.stdout.write(values.json ? `${JSON.stringify({ gun, targets })}\n` : table(targets));
    return 0;
  } catch (err) {
    if (err instanceof TrustError) {
      process.stderr.write(`trustgate: trust verification failed [${err.code}]: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await source?.close();
    if (throwaway) await rm(throwaway, { recursive: true, force: true });
  }
}

async function forget(gun: string, configFile: string | undefined): Promise<number> {
  if (!configFile) throw new UsageError(`--config is required\nusage: ${FORGET_USAGE}`);
  const slash = gun.indexOf("/");
  if (slash <= 0 || slash === gun.length - 1)
    throw new UsageError(`'${gun}' is not a GUN (<registry>/<repository>)`);
  const config = await loadConfig(configFile);
  const registry = gun.slice(0, slash);
  const entry = config.registries.get(registry);
  if (!entry) throw new UsageError(`registry ${registry} is not configured in ${config.file}`);
  if (!entry.notary) {
    // TUF state is one per repository, anchored by tuf.trustedRoot: nothing is trusted on first use.
    throw new UsageError(
      `registry ${registry} has no notary: block in ${config.file}; only Notary state is trusted on first use (a TUF root is the configured tuf.trustedRoot)`,
    );
  }
  const store = new NotaryStateStore(config.stateDir);
  const removed = await store.forget(gun);
  if (removed.length === 0) {
    process.stderr.write(
      `trustgate: no trust state recorded for ${gun} under ${config.stateDir}/notary: nothing to forget\n`,
    );
    return 1;
  }
  process.stdout.write(
    `forgot ${gun} (removed ${removed.join(", ")}): the next pull trusts the root the server has now, unless a policy pins trust.rootKeys\n`,
  );
  return 0;
}

/** `notary list`'s layout: columns padded to the widest cell plus four spaces. */
function table(targets: SignedTarget[]): string {
  const rows = [
    ["NAME", "DIGEST", "SIZE (BYTES)", "ROLE"],
    ["----", "------", "------------", "----"],
    ...targets.map((t) => [t.name, t.digest.replace(/^sha256:/, ""), String(t.size), t.role]),
  ];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => (r[i] ?? "").length)) + 4);
  return `${rows.map((r) => r.map((cell, i) => (i < 3 ? cell.padEnd(widths[i] ?? 0) : cell)).join("")).join("\n")}\n`;
}
