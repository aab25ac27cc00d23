/**
 * `trustgate tuf <subcommand>`: run a TUF 1.0 repository of image tags as static files
 * (docs/tuf-for-oci.md). The repository logic is src/tuf-repo/; this module parses arguments,
 * reads keys and prints. Exit 0 done, 1 refused (wrong key, path outside a delegation, bad
 * repository, failed verification), 2 usage.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Metadata } from "@tufjs/models";
import { loadConfig } from "../config/load.js";
import type { RegistryConfig } from "../config/types.js";
import { UsageError } from "../errors.js";
import { ImageReferenceError, parseImageReference } from "../policy/index.js";
import { TrustError } from "../trust/errors.js";
import { openRepositoryClient } from "../trust/tuf/session.js";
import { TargetPathTemplate } from "../trust/tuf/target-path.js";
import {
  generateKeyPems,
  KeyError,
  type KeyType,
  loadPublicKey,
  loadSigningKey,
  type SigningKey,
} from "../tuf-repo/keys.js";
import { manifestForTag } from "../tuf-repo/registry-manifest.js";
import {
  checkRoleName,
  DEFAULT_EXPIRY_DAYS,
  expiresIn,
  newRoot,
  nextTargets,
  RepositoryError,
  TargetFile,
  TufRepository,
  withDelegation,
} from "../tuf-repo/repository.js";
import { stageRotation, TOP_LEVEL_ROLES, type TopLevelRole } from "../tuf-repo/rotate.js";
import { UpstreamError } from "../upstream/errors.js";
import { parseCommandArgs } from "./args.js";

export const USAGE = `usage: trustgate tuf <subcommand> ...
  keygen FILE [--type ed25519|ecdsa]                 FILE (encrypted private key) and FILE.pub
  init DIR --keys KEYDIR [--type ed25519|ecdsa] [--root-keys N] [--root-threshold N]
  delegate DIR ORG --paths PATTERN... --key PUB... [--threshold N] --targets-key KEY...
  revoke DIR ORG --targets-key KEY...
  sign IMAGE:TAG --repo DIR --role ORG --key KEY... (--digest sha256:HEX --size N [--media-type T]
       | [--upstream URL | --config FILE])   without --digest: read from the registry by tag
  unsign IMAGE:TAG --repo DIR --role ORG --key KEY...
  publish DIR --snapshot-key KEY... --timestamp-key KEY...
  refresh DIR --key TIMESTAMP_KEY... [--expires DAYS]   re-sign the timestamp (cron, before it expires)
  rotate ROLE --repo DIR --key NEWKEY... [--threshold N (default: the current one)] [--expires ROOT_DAYS]
       root: [--old-key OLDKEY...]   the new root is signed by the old root keys (their threshold)
             and the new ones (the new threshold), as clients require (TUF 5.3.4)
       targets|snapshot|timestamp: --root-key ROOTKEY...   the new root names the new key;
             targets is re-signed with it now, snapshot/timestamp at the next publish
       then: publish DIR (with the new snapshot/timestamp key when those rotated)
  verify DIR [--root ROOT_JSON] [--json]
common: [--expires DAYS] [--target-path TEMPLATE] [--passphrase-env NAME (default TRUSTGATE_TUF_PASSPHRASE)]
Private keys are PKCS#8 PEM encrypted with aes-256-cbc under the passphrase in that variable.
Serve DIR/metadata/ (e.g. https://trust.example.com/metadata/) and pin DIR/metadata/1.root.json.`;

const OPTIONS = {
  type: { type: "string" },
  keys: { type: "string" },
  "root-keys": { type: "string" },
  "root-threshold": { type: "string" },
  paths: { type: "string", multiple: true },
  key: { type: "string", multiple: true },
  threshold: { type: "string" },
  "targets-key": { type: "string", multiple: true },
  "snapshot-key": { type: "string", multiple: true },
  "timestamp-key": { type: "string", multiple: true },
  "old-key": { type: "string", multiple: true },
  "root-key": { type: "string", multiple: true },
  repo: { type: "string" },
  role: { type: "string" },
  digest: { type: "string" },
  size: { type: "string" },
  "media-type": { type: "string" },
  expires: { type: "string" },
  "snapshot-expires": { type: "string" },
  "timestamp-expires": { type: "string" },
  "target-path": { type: "string" },
  "passphrase-env": { type: "string" },
  root: { type: "string" },
  upstream: { type: "string" },
  config: { type: "string" },
  json: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parse>["values"];

function parse(argv: string[]) {
  return parseCommandArgs({ args: argv, allowPositionals: true, options: OPTIONS }, USAGE);
}

function positiveInt(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`${name} must be a positive integer, not '${text}'`);
  return n;
}

function passphrase(values: Values): string {
  const name = values["passphrase-env"] ?? "TRUSTGATE_TUF_PASSPHRASE";
  const value = process.env[name];
  if (!value) throw new UsageError(`the key passphrase is read from $${name}, which is not set`);
  return value;
}

async function signingKeys(
  files: string[] | undefined,
  option: string,
  values: Values,
): Promise<SigningKey[]> {
  if (!files || files.length === 0) throw new UsageError(`${option} is required\n${USAGE}`);
  const pass = passphrase(values);
  return Promise.all(files.map(async (file) => loadSigningKey(await readKeyFile(file), pass, file)));
}

async function readKeyFile(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new KeyError(`cannot read key file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

function keyType(values: Values): KeyType {
  const type = values.type ?? "ed25519";
  if (type !== "ed25519" && type !== "ecdsa")
    throw new UsageError(`--type must be ed25519 or ecdsa, not '${type}'`);
  return type;
}

async function writeKeyPair(file: string, type: KeyType, pass: string): Promise<void> {
  const { privatePem, publicPem } = generateKeyPems(type, pass);
  // wx: never overwrite a key, mode 0600 for the private half
  await writeFile(file, privatePem, { flag: "wx", mode: 0o600 });
  await writeFile(`${file}.pub`, publicPem, { flag: "wx" });
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [sub, ...args] = positionals;
  try {
    switch (sub) {
      case "keygen":
        return await keygen(args, values);
      case "init":
        return await init(args, values);
      case "delegate":
        return await delegate(args, values);
      case "revoke":
        return await revoke(args, values);
      case "sign":
      case "unsign":
        return await signOrUnsign(sub, args, values);
      case "publish":
        return await publish(args, values);
      case "refresh":
        return await refresh(args, values);
      case "rotate":
        return await rotate(args, values);
      case "verify":
        return await verify(args, values);
      default:
        throw new UsageError(sub === undefined ? USAGE : `unknown subcommand 'tuf ${sub}'\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof RepositoryError || err instanceof KeyError || err instanceof UpstreamError) {
      process.stderr.write(`trustgate: tuf ${sub}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof TrustError) {
      process.stderr.write(`trustgate: tuf ${sub}: verification failed [${err.code}]: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function one(args: string[], what: string): string {
  if (args.length !== 1 || args[0] === undefined) throw new UsageError(`expected ${what}\n${USAGE}`);
  return args[0];
}

async function keygen(args: string[], values: Values): Promise<number> {
  const file = one(args, "FILE");
  try {
    await writeKeyPair(file, keyType(values), passphrase(values));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST")
      throw new KeyError(`${file} exists: not overwritten`);
    throw err;
  }
  process.stdout.write(`wrote ${file} (encrypted private key) and ${file}.pub\n`);
  return 0;
}

async function init(args: string[], values: Values): Promise<number> {
  const dir = one(args, "DIR");
  if (!values.keys)
    throw new UsageError(`--keys KEYDIR is required (keep it out of what you serve)\n${USAGE}`);
  const repo = new TufRepository(dir);
  if (
    await repo.root().then(
      () => true,
      () => false,
    )
  )
    throw new RepositoryError(`${dir} already holds a repository`);
  const pass = passphrase(values);
  const type = keyType(values);
  const rootCount = positiveInt(values["root-keys"], "--root-keys", 1);
  const threshold = positiveInt(values["root-threshold"], "--root-threshold", 1);
  if (threshold > rootCount)
    throw new UsageError(`--root-threshold ${threshold} is more than --root-keys ${rootCount}`);
  const { mkdir } = await import("node:fs/promises");
  await mkdir(values.keys, { recursive: true, mode: 0o700 });
  const files: Record<string, string[]> = { root: [], targets: [], snapshot: [], timestamp: [] };
  for (const role of Object.keys(files)) {
    const count = role === "root" ? rootCount : 1;
    for (let i = 1; i <= count; i++) {
      const file = join(values.keys, count === 1 ? `${role}.pem` : `${role}-${i}.pem`);
      try {
        await writeKeyPair(file, type, pass);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST")
          throw new KeyError(`${file} exists: not overwritten`);
        throw err;
      }
      files[role]?.push(file);
    }
  }
  const load = (role: string) =>
    Promise.all((files[role] ?? []).map(async (f) => loadSigningKey(await readFile(f, "utf8"), pass, f)));
  const [root, targets, snapshot, timestamp] = (await Promise.all(
    ["root", "targets", "snapshot", "timestamp"].map(load),
  )) as [SigningKey[], SigningKey[], SigningKey[], SigningKey[]];
  const rootMetadata = new Metadata(
    newRoot(
      {
        root: root.map((k) => k.key),
        targets: targets.map((k) => k.key),
        snapshot: snapshot.map((k) => k.key),
        timestamp: timestamp.map((k) => k.key),
      },
      threshold,
      positiveInt(values.expires, "--expires", DEFAULT_EXPIRY_DAYS.root),
    ),
  );
  for (const key of root) rootMetadata.sign(key.signer, true);
  await repo.writeRoot(rootMetadata);
  await repo.stageTargets(
    "targets",
    (current, version) => nextTargets(current, version, DEFAULT_EXPIRY_DAYS.targets, {}),
    targets,
  );
  await repo.publish(snapshot, timestamp, {
    snapshotDays: DEFAULT_EXPIRY_DAYS.snapshot,
    timestampDays: DEFAULT_EXPIRY_DAYS.timestamp,
  });
  process.stdout.write(
    `initialised ${dir}: serve ${join(dir, "metadata")}/, pin ${join(dir, "metadata", "1.root.json")}; keys in ${values.keys}\n`,
  );
  return 0;
}

function repoAndOrg(args: string[]): { repo: TufRepository; org: string } {
  const [dir, org, ...rest] = args;
  if (dir === undefined || org === undefined || rest.length > 0)
    throw new UsageError(`expected DIR ORG\n${USAGE}`);
  checkRoleName(org);
  return { repo: new TufRepository(dir), org };
}

async function delegate(args: string[], values: Values): Promise<number> {
  const { repo, org } = repoAndOrg(args);
  const paths = values.paths ?? [];
  if (paths.length === 0) throw new UsageError(`--paths is required (e.g. 'docker.io/${org}/*')\n${USAGE}`);
  const pubs = values.key ?? [];
  if (pubs.length === 0)
    throw new UsageError(`--key PUB (the organisation's public key) is required\n${USAGE}`);
  const keys = await Promise.all(pubs.map(async (f) => loadPublicKey(await readKeyFile(f), f)));
  const threshold = positiveInt(values.threshold, "--threshold", 1);
  if (threshold > keys.length)
    throw new UsageError(`--threshold ${threshold} is more than the ${keys.length} keys given`);
  const targetsKeys = await signingKeys(values["targets-key"], "--targets-key", values);
  const days = positiveInt(values.expires, "--expires", DEFAULT_EXPIRY_DAYS.targets);
  await repo.stageTargets(
    "targets",
    (current, version) =>
      nextTargets(current, version, days, {
        delegations: withDelegation(current?.delegations, org, { keys, threshold, paths }),
      }),
    targetsKeys,
  );
  // the organisation's role file exists once it signs a tag: publish refuses a delegation to a
  // role with no metadata (clients walking into it would fail), so both go out together
  process.stdout.write(
    `delegated ${paths.join(" ")} to '${org}' (threshold ${threshold}); run 'trustgate tuf publish'\n`,
  );
  return 0;
}

async function revoke(args: string[], values: Values): Promise<number> {
  const { repo, org } = repoAndOrg(args);
  await repo.delegation(org);
  const targetsKeys = await signingKeys(values["targets-key"], "--targets-key", values);
  const days = positiveInt(values.expires, "--expires", DEFAULT_EXPIRY_DAYS.targets);
  await repo.stageTargets(
    "targets",
    (current, version) =>
      nextTargets(current, version, days, {
        delegations: withDelegation(current?.delegations, org, undefined),
      }),
    targetsKeys,
  );
  process.stdout.write(
    `revoked '${org}': its tags stop counting once published; run 'trustgate tuf publish'\n`,
  );
  return 0;
}

async function signOrUnsign(sub: "sign" | "unsign", args: string[], values: Values): Promise<number> {
  const input = one(args, "IMAGE:TAG");
  let ref: ReturnType<typeof parseImageReference>;
  try {
    ref = parseImageReference(input);
  } catch (err) {
    if (err instanceof ImageReferenceError) throw new UsageError(err.message);
    throw err;
  }
  if (ref.tag === undefined || ref.digest !== undefined)
    throw new UsageError(`'${input}' must name a tag (IMAGE:TAG)`);
  if (!values.repo) throw new UsageError(`--repo DIR is required\n${USAGE}`);
  if (!values.role) throw new UsageError(`--role ORG is required\n${USAGE}`);
  checkRoleName(values.role);
  const repo = new TufRepository(values.repo);
  const path = new TargetPathTemplate(values["target-path"]).render(ref, ref.tag);
  const { delegation } = await repo.delegation(values.role);
  // docs/tuf-for-oci.md section 3: a client ignores a target outside the role's paths; refuse to write one
  if (!delegation.isDelegatedPath(path)) {
    throw new RepositoryError(
      `${path} is outside the paths delegated to '${values.role}' (${(delegation.paths ?? []).join(" ")})`,
    );
  }
  const keys = await signingKeys(values.key, "--key", values);
  const days = positiveInt(values.expires, "--expires", DEFAULT_EXPIRY_DAYS.delegation);
  let target: TargetFile | undefined;
  if (sub === "sign") {
    let facts: { digest: string; size: number; custom: Record<string, unknown> };
    if (values.digest !== undefined || values.size !== undefined) {
      const digest = values.digest;
      if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
        throw new UsageError(`--digest sha256:<64 hex> goes with --size\n${USAGE}`);
      }
      const size = positiveInt(values.size, "--size", 0);
      if (size === 0)
        throw new UsageError(`--size N (the manifest's size in bytes) goes with --digest\n${USAGE}`);
      facts = { digest, size, custom: values["media-type"] ? { mediaType: values["media-type"] } : {} };
    } else {
      facts = await manifestForTag(await registryFor(ref.registry, values), ref.repository, ref.tag);
    }
    target = new TargetFile({
      path,
      length: facts.size,
      hashes: { sha256: facts.digest.slice("sha256:".length) },
      unrecognizedFields: Object.keys(facts.custom).length > 0 ? { custom: facts.custom as never } : {},
    });
  }
  await repo.stageTargets(
    values.role,
    (current, version) => {
      const targets = { ...(current?.targets ?? {}) };
      if (target) targets[path] = target;
      else if (!(path in targets)) throw new RepositoryError(`${path} is not signed in '${values.role}'`);
      else delete targets[path];
      return nextTargets(current, version, days, { targets });
    },
    keys,
  );
  process.stdout.write(
    `${sub === "sign" ? "signed" : "unsigned"} ${path} in '${values.role}'; run 'trustgate tuf publish'\n`,
  );
  return 0;
}

/**
 * The registry to read a tag from: its entry in --config (credentials, CA; the proxy's own view),
 * else --upstream URL, else https://<registry> (registry-1.docker.io for docker.io).
 */
async function registryFor(name: string, values: Values): Promise<RegistryConfig> {
  if (values.config) {
    const config = await loadConfig(values.config);
    const registry = config.registries.get(name);
    if (!registry) throw new UsageError(`registry ${name} is not configured in ${config.file}`);
    return registry;
  }
  const url = values.upstream ?? `https://${name === "docker.io" ? "registry-1.docker.io" : name}`;
  let upstream: URL;
  try {
    upstream = new URL(url);
    if (upstream.protocol !== "http:" && upstream.protocol !== "https:") throw new Error();
  } catch {
    throw new UsageError(`--upstream must be an http:// or https:// URL, not '${url}'`);
  }
  return { name, upstream };
}

async function publish(args: string[], values: Values): Promise<number> {
  const repo = new TufRepository(one(args, "DIR"));
  const snapshot = await signingKeys(values["snapshot-key"], "--snapshot-key", values);
  const timestamp = await signingKeys(values["timestamp-key"], "--timestamp-key", values);
  const { snapshotVersion, roles } = await repo.publish(snapshot, timestamp, {
    snapshotDays: positiveInt(values["snapshot-expires"], "--snapshot-expires", DEFAULT_EXPIRY_DAYS.snapshot),
    timestampDays: positiveInt(
      values["timestamp-expires"],
      "--timestamp-expires",
      DEFAULT_EXPIRY_DAYS.timestamp,
    ),
  });
  process.stdout.write(
    `published snapshot ${snapshotVersion}${roles.length ? ` (${roles.join(", ")})` : ""}\n`,
  );
  return 0;
}

async function refresh(args: string[], values: Values): Promise<number> {
  const repo = new TufRepository(one(args, "DIR"));
  const keys = await signingKeys(values.key, "--key", values);
  const days = positiveInt(values.expires, "--expires", DEFAULT_EXPIRY_DAYS.timestamp);
  const version = await repo.refresh(keys, days);
  process.stdout.write(`timestamp ${version} expires ${expiresIn(days)}\n`);
  return 0;
}

async function rotate(args: string[], values: Values): Promise<number> {
  const role = one(args, "ROLE (root, targets, snapshot or timestamp)");
  if (!(TOP_LEVEL_ROLES as readonly string[]).includes(role))
    throw new UsageError(
      `tuf rotate rotates a top-level role (root, targets, snapshot, timestamp), not '${role}': an organisation's key changes with 'tuf delegate'`,
    );
  if (!values.repo) throw new UsageError(`--repo DIR is required\n${USAGE}`);
  const newKeys = await signingKeys(values.key, "--key", values);
  const threshold =
    values.threshold === undefined ? undefined : positiveInt(values.threshold, "--threshold", 1);
  let rootSigners: SigningKey[];
  if (role === "root") {
    if (values["root-key"]) throw new UsageError("rotate root takes the current root keys as --old-key");
    rootSigners = values["old-key"] ? await signingKeys(values["old-key"], "--old-key", values) : [];
  } else {
    if (values["old-key"])
      throw new UsageError(`rotate ${role} takes the root keys that sign the new root as --root-key`);
    rootSigners = await signingKeys(values["root-key"], "--root-key", values);
  }
  const repo = new TufRepository(values.repo);
  const r = await stageRotation(repo, {
    role: role as TopLevelRole,
    newKeys,
    threshold,
    rootSigners,
    rootExpiresDays: positiveInt(values.expires, "--expires", DEFAULT_EXPIRY_DAYS.root),
    targetsExpiresDays: DEFAULT_EXPIRY_DAYS.targets,
  });
  const then =
    role === "snapshot" || role === "timestamp"
      ? `run 'trustgate tuf publish' with the new ${role} key (--${role}-key)`
      : "run 'trustgate tuf publish'";
  process.stdout.write(
    `staged root version ${r.toVersion} (from ${r.fromVersion}): ${role} keys ${r.added.map((id) => id.slice(0, 12)).join(", ") || "unchanged"}` +
      `${r.removed.length ? ` replace ${r.removed.map((id) => id.slice(0, 12)).join(", ")}` : ""}, threshold ${r.threshold}; ${then}\n`,
  );
  return 0;
}

/** Load DIR/metadata as a client would (tuf-js Updater over file://, trustgate's own session). */
async function verify(args: string[], values: Values): Promise<number> {
  const dir = resolve(one(args, "DIR"));
  const rootFile = values.root ?? join(dir, "metadata", "1.root.json");
  let initialRoot: Buffer;
  try {
    initialRoot = await readFile(rootFile);
  } catch {
    throw new RepositoryError(`cannot read the root to trust: ${rootFile}`);
  }
  const scratch = await mkdtemp(join(tmpdir(), "trustgate-tuf-verify-"));
  const { client, transport } = await openRepositoryClient({
    metadataUrl: `${pathToFileURL(join(dir, "metadata")).href}/`,
    durableDir: join(scratch, "metadata"),
    workDir: join(scratch, "work"),
    initialRoot,
    timeoutMs: 10_000,
  });
  try {
    const verified = await client.refresh();
    // every path any reachable role lists, attributed by the same walk the proxy uses
    const found = await verified.resolveScope({ matches: () => true, mayDelegate: () => true });
    const rows = found
      .map((f) => ({
        target: f.path,
        digest: `sha256:${f.target.hashes.sha256}`,
        size: f.target.length,
        role: f.role,
      }))
      .sort((a, b) => a.target.localeCompare(b.target));
    if (values.json) process.stdout.write(`${JSON.stringify({ repository: dir, targets: rows })}\n`);
    else {
      const expiry = verified.topLevelExpires;
      process.stdout.write(
        `verified ${dir} (${rows.length} targets; earliest expiry ${expiry.role} ${expiry.expires.toISOString()})\n`,
      );
      for (const r of rows) process.stdout.write(`${r.target}\t${r.digest}\t${r.size}\t${r.role}\n`);
    }
    return 0;
  } finally {
    await transport.close();
    await rm(scratch, { recursive: true, force: true });
  }
}
