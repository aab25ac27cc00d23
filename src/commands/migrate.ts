/**
 * `trustgate migrate notary GUN (--server URL | --mirror DIR) --to DIR --role ORG --key KEY...
 *   --snapshot-key KEY... --timestamp-key KEY... [--root-key ID]... [--config FILE] [--registry HOST] [--json]`
 *
 * Moves a GUN's Docker Content Trust tags into a TUF 1.0 repository made with `trustgate tuf`
 * (src/migrate/migrate.ts) and proves the move. Exit 0 when every tag's parity holds (tags
 * refused by the Notary side are reported, not failures), 1 a parity mismatch, a verification
 * failure or a refused repository operation, 2 usage.
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { UsageError } from "../errors.js";
import { policyView } from "../migrate/config-view.js";
import { type MigrateReport, migrateNotary } from "../migrate/migrate.js";
import { parseGun } from "../notary-mirror/gun.js";
import { isValidRegistryHost } from "../oci/reference.js";
import { TrustError } from "../trust/errors.js";
import type { MetadataFetcher } from "../trust/notary/fetcher.js";
import { openMetadataFetcher } from "../trust/notary/file-fetcher.js";
import { KeyError, loadSigningKey, type SigningKey } from "../tuf-repo/keys.js";
import { checkRoleName, RepositoryError } from "../tuf-repo/repository.js";
import { parseCommandArgs } from "./args.js";

export const USAGE = `usage: trustgate migrate notary GUN (--server URL | --mirror DIR) --to DIR --role ORG --key KEY...
         --snapshot-key KEY... --timestamp-key KEY... [--root-key ID]... [--config FILE]
         [--registry HOST] [--ca FILE] [--target-path TEMPLATE] [--expires DAYS] [--passphrase-env NAME] [--json]
  GUN             <registry>/<repository> as signed with Docker Content Trust (docker.io/acme/app)
  --server URL    the notary server; --mirror DIR a mirror written by 'trustgate notary mirror'
  --to DIR        the TUF repository (trustgate tuf init), ORG delegated in it (trustgate tuf delegate)
  --key KEY       ORG's private key(s); --snapshot-key/--timestamp-key publish the result
  --root-key ID   the Notary root must be signed by this root key (repeatable), on top of the policy's
  --config FILE   the proxy's config.yaml: its policies decide each tag (roles, pins, requireAll);
                  without it, Docker's rule: targets/releases, then targets
  --registry HOST the registry name in TUF target paths (default: the GUN's), {registry}/{repository}:{tag}
Each tag the proxy would pull through Notary is signed into ORG with the digest and size it resolves
to, then published; the new repository is read back as the proxy's tuf: source would read it and
every tag must resolve to the same digest and size (a tag Notary does not vouch for, to nothing).
Private keys are read with the passphrase in $TRUSTGATE_TUF_PASSPHRASE (or --passphrase-env).`;

const OPTIONS = {
  server: { type: "string" },
  mirror: { type: "string" },
  ca: { type: "string" },
  to: { type: "string" },
  role: { type: "string" },
  key: { type: "string", multiple: true },
  "snapshot-key": { type: "string", multiple: true },
  "timestamp-key": { type: "string", multiple: true },
  "root-key": { type: "string", multiple: true },
  config: { type: "string" },
  registry: { type: "string" },
  "target-path": { type: "string" },
  expires: { type: "string" },
  "passphrase-env": { type: "string" },
  json: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parse>["values"];

function parse(argv: string[]) {
  return parseCommandArgs({ args: argv, allowPositionals: true, options: OPTIONS }, USAGE);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [sub, gunText, ...extra] = positionals;
  if (sub !== "notary")
    throw new UsageError(sub === undefined ? USAGE : `unknown subcommand 'migrate ${sub}'\n${USAGE}`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}\n${USAGE}`);
  const gun = parseGun(gunText);
  if (!values.to) throw new UsageError(`--to DIR (the TUF repository) is required\n${USAGE}`);
  if (!values.role) throw new UsageError(`--role ORG is required\n${USAGE}`);
  const registry = values.registry ?? gun.registry;
  if (!isValidRegistryHost(registry) || registry !== registry.toLowerCase())
    throw new UsageError(`--registry must be a lower-case host[:port], not '${registry}'`);
  const expiresDays = values.expires === undefined ? undefined : positiveInt(values.expires, "--expires");
  const { url, fetcher } = source(values);
  try {
    checkRoleName(values.role);
    const view = await policyView(values.config, gun.registry);
    const [keys, snapshotKeys, timestampKeys] = await Promise.all([
      signingKeys(values.key, "--key", values),
      signingKeys(values["snapshot-key"], "--snapshot-key", values),
      signingKeys(values["timestamp-key"], "--timestamp-key", values),
    ]);
    const report = await migrateNotary({
      gun,
      notaryUrl: url,
      fetcher,
      pins: values["root-key"] ?? [],
      policies: view.policies,
      defaultPolicy: view.defaultPolicy,
      repoDir: resolve(values.to),
      role: values.role,
      keys,
      snapshotKeys,
      timestampKeys,
      registry,
      ...(values["target-path"] ? { targetPath: values["target-path"] } : {}),
      ...(expiresDays !== undefined ? { expiresDays } : {}),
    });
    process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : text(report));
    return report.ok ? 0 : 1;
  } catch (err) {
    if (err instanceof RepositoryError || err instanceof KeyError) {
      process.stderr.write(`trustgate: migrate notary: ${err.message}\n`);
      return 1;
    }
    if (err instanceof TrustError) {
      process.stderr.write(`trustgate: migrate notary: verification failed [${err.code}]: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await fetcher.close?.();
  }
}

/** The NotarySource closes its fetcher, and so does run()'s finally: the second close does nothing. */
function closingOnce(fetcher: MetadataFetcher): MetadataFetcher {
  let closed: Promise<void> | undefined;
  return {
    fetch: (gun, file, maxBytes) => fetcher.fetch(gun, file, maxBytes),
    close: () => {
      closed ??= fetcher.close?.() ?? Promise.resolve();
      return closed;
    },
  };
}

function source(values: Values): { url: string; fetcher: MetadataFetcher } {
  const { url, fetcher } = openSource(values);
  return { url, fetcher: closingOnce(fetcher) };
}

function openSource(values: Values): { url: string; fetcher: MetadataFetcher } {
  if ((values.server === undefined) === (values.mirror === undefined))
    throw new UsageError(`give one of --server URL or --mirror DIR\n${USAGE}`);
  if (values.mirror !== undefined) {
    if (values.ca) throw new UsageError("--ca goes with --server");
    const url = pathToFileURL(resolve(values.mirror)).href;
    return { url, fetcher: openMetadataFetcher({ url }) };
  }
  const server = values.server as string;
  let url: URL;
  try {
    url = new URL(server);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error();
  } catch {
    throw new UsageError(
      `--server must be an http:// or https:// URL, not '${server}' (a mirror: --mirror DIR)`,
    );
  }
  try {
    return {
      url: url.href,
      fetcher: openMetadataFetcher({ url: url.href, ...(values.ca ? { caFile: values.ca } : {}) }),
    };
  } catch (err) {
    throw new UsageError(`cannot use --server/--ca: ${(err as Error).message}`);
  }
}

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`${name} must be a positive integer, not '${text}'`);
  return n;
}

async function signingKeys(
  files: string[] | undefined,
  option: string,
  values: Values,
): Promise<SigningKey[]> {
  if (!files || files.length === 0) throw new UsageError(`${option} is required\n${USAGE}`);
  const name = values["passphrase-env"] ?? "TRUSTGATE_TUF_PASSPHRASE";
  const passphrase = process.env[name];
  if (!passphrase) throw new UsageError(`the key passphrase is read from $${name}, which is not set`);
  return Promise.all(
    files.map(async (file) => {
      let pem: string;
      try {
        pem = await readFile(file, "utf8");
      } catch (err) {
        throw new KeyError(`cannot read key file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
      return loadSigningKey(pem, passphrase, file);
    }),
  );
}

function text(r: MigrateReport): string {
  const lines = [`migrate ${r.gun} from ${r.notary} into ${r.repository} as '${r.role}'`];
  lines.push(
    `migrated ${r.migrated.length} tag(s)${r.published !== undefined ? ` (published snapshot ${r.published})` : ""}:`,
  );
  for (const m of r.migrated)
    lines.push(`  ${m.tag}\t${m.target}\t${m.digest}\t${m.size}\t(notary ${m.notaryRole})`);
  lines.push(`refused ${r.refused.length} tag(s):`);
  for (const x of r.refused) lines.push(`  ${x.tag}\t${x.reason}`);
  for (const s of r.skippedRoles) lines.push(`skipped Notary role ${s.role}: ${s.reason}`);
  lines.push(
    `parity ${r.ok ? "ok" : "MISMATCH"} (${r.parity.filter((p) => p.ok).length}/${r.parity.length}):`,
  );
  for (const p of r.parity) {
    const show = (x: { digest: string; size: number } | null) => (x ? `${x.digest} ${x.size}` : "unsigned");
    lines.push(
      `  ${p.ok ? "ok" : "MISMATCH"}\t${p.tag}\tnotary ${show(p.notary)}\ttuf ${show(p.tuf)}${p.tuf ? ` (${p.tuf.role})` : ""}`,
    );
  }
  return `${lines.join("\n")}\n`;
}
