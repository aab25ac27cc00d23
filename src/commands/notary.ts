/**
 * `trustgate notary mirror GUN (--server URL | --config FILE) [--ca FILE] [--root-key ID]... --out DIR [--json]`
 *
 * Copies a Notary repository's trust data after verifying it with trustgate's own Notary client
 * (src/notary-mirror/), laid out as notary-server serves it, for `notary: { url: file://DIR }` or
 * any static web server. Exit 0 written, 1 verification failed or refused (nothing written), 2 usage.
 */
import { resolve } from "node:path";
import { UsageError } from "../errors.js";
import { pinsFor, policyView } from "../migrate/config-view.js";
import { parseGun } from "../notary-mirror/gun.js";
import { MirrorError, mirrorRepository } from "../notary-mirror/mirror.js";
import { TrustError } from "../trust/errors.js";
import type { MetadataFetcher } from "../trust/notary/fetcher.js";
import { openMetadataFetcher } from "../trust/notary/file-fetcher.js";
import { parseCommandArgs } from "./args.js";

export const USAGE = `usage: trustgate notary mirror GUN (--server URL | --config FILE) --out DIR [--ca FILE] [--root-key ID]... [--json]
  GUN           <registry>/<repository>, as signed with Docker Content Trust (docker.io/acme/app)
  --server URL  the notary server (https://notary.example.com), or file:// of another mirror
  --config FILE the proxy's config.yaml: the registry's notary settings (URL, CA, credentials)
                when --server is absent, and the root pins of the policy that applies to GUN
  --root-key ID the root must be signed by this root key (cert or canonical key ID; repeatable);
                overrides the policy's pins
  --out DIR     written as DIR/v2/<gun>/_trust/tuf/... (notary-server's paths), timestamp last;
                an earlier mirror there is the trusted previous state (no rollback)
Everything is verified (root, timestamp, snapshot, targets, every delegation) before anything is
written. The mirror is valid until its first expiry (usually the timestamp's): run again before.
Serve it with  registries.<registry>.notary.url: file://DIR  or any static web server over DIR.`;

const OPTIONS = {
  server: { type: "string" },
  config: { type: "string" },
  ca: { type: "string" },
  "root-key": { type: "string", multiple: true },
  out: { type: "string" },
  json: { type: "boolean" },
} as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    { args: argv, allowPositionals: true, options: OPTIONS },
    USAGE,
  );
  const [sub, gunText, ...extra] = positionals;
  if (sub !== "mirror")
    throw new UsageError(sub === undefined ? USAGE : `unknown subcommand 'notary ${sub}'\n${USAGE}`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}\n${USAGE}`);
  const { gun, registry } = parseGun(gunText);
  if (!values.out) throw new UsageError(`--out DIR is required\n${USAGE}`);
  const view = await policyView(values.config, registry);
  const fetcher = fetcherFor(values, view.notary);
  const cliPins = values["root-key"] ?? [];
  const pins = cliPins.length > 0 ? cliPins : pinsFor(view, gun);
  try {
    const result = await mirrorRepository({ gun, fetcher, outDir: resolve(values.out), pins });
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({ ...result, expires: { ...result.expires, at: result.expires.at.toISOString() } })}\n`,
      );
    } else {
      process.stdout.write(
        `mirrored ${gun} (root version ${result.rootVersion}; ${result.roles.join(", ")}; ${result.tags} tags) into ${result.outDir}: ${result.files.length} files\n` +
          `valid until ${result.expires.at.toISOString()} (${result.expires.role} expires): mirror again before then\n` +
          `serve it: registries.${registry}.notary.url: file://${result.outDir} (or a static web server over it)\n`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof TrustError) {
      process.stderr.write(
        `trustgate: notary mirror: verification failed [${err.code}]: ${err.message}; nothing written\n`,
      );
      return 1;
    }
    if (err instanceof MirrorError) {
      process.stderr.write(`trustgate: notary mirror: ${err.message}; nothing written\n`);
      return 1;
    }
    throw err;
  } finally {
    await fetcher.close?.();
  }
}

/** --server (with --ca), else the notary block of --config. */
function fetcherFor(
  values: { server?: string; ca?: string; config?: string },
  notary: Awaited<ReturnType<typeof policyView>>["notary"],
): MetadataFetcher {
  if (values.server !== undefined) {
    let url: URL;
    try {
      url = new URL(values.server);
    } catch {
      throw new UsageError(`--server must be an http://, https:// or file:// URL, not '${values.server}'`);
    }
    if (!["http:", "https:", "file:"].includes(url.protocol))
      throw new UsageError(`--server must be an http://, https:// or file:// URL, not '${values.server}'`);
    try {
      return openMetadataFetcher({
        url: url.href,
        ...(values.ca ? { caFile: values.ca } : {}),
        settings: {
          credentials: "--config (the registry's notary.username/passwordEnv)",
          tokenRealms: "--config",
        },
      });
    } catch (err) {
      throw new UsageError(`cannot use --server/--ca: ${(err as Error).message}`);
    }
  }
  if (values.config === undefined)
    throw new UsageError(`--server URL or --config FILE is required\n${USAGE}`);
  if (!notary) throw new UsageError(`the registry has no notary: block in ${values.config}: give --server`);
  if (values.ca)
    throw new UsageError("--ca goes with --server; with --config the registry's notary.caFile is used");
  return openMetadataFetcher({
    url: notary.url.href,
    ...(notary.caFile ? { caFile: notary.caFile } : {}),
    ...(notary.credentials ? { credentials: notary.credentials } : {}),
    ...(notary.tokenRealms ? { tokenRealms: notary.tokenRealms } : {}),
  });
}
