/**
 * `migrate notary` (issue 14 point 4): every tag of one GUN, resolved exactly as the proxy
 * resolves it through its `notary:` source, signed as a TUF 1.0 target in an organisation's
 * delegation (docs/tuf-for-oci.md: target path `{registry}/{repository}:{tag}`, length = manifest
 * size, hashes.sha256 = manifest digest), published, then proved: the new repository is loaded as
 * the proxy's `tuf:` source loads it and, for every tag, the digest and size it answers must be
 * those the Notary source answered (and a tag Notary does not vouch for must stay unsigned).
 *
 * "As the proxy resolves it" is meant literally: the decision for each tag is the proxy's
 * TrustDecider over a NotarySource (the same policy application, role order, pins, requireAll and
 * exceptions), with --config's policies or, without, Docker's defaults (targets/releases then
 * targets). Only the tags that decision allows with a signed digest are migrated.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Gun } from "../notary-mirror/gun.js";
import type { DefaultPolicySetting } from "../policy/applied.js";
import type { PolicySet } from "../policy/index.js";
import { TrustDecider } from "../proxy/decide.js";
import type { MetadataFetcher } from "../trust/notary/fetcher.js";
import { DOCKER_ROLES, NotarySource } from "../trust/notary/source.js";
import { updateRepository } from "../trust/notary/update.js";
import { TrustSources } from "../trust/sources.js";
import { TufSource } from "../trust/tuf/source.js";
import { TargetPathTemplate } from "../trust/tuf/target-path.js";
import type { TrustQuery, TrustSource } from "../trust/types.js";
import type { SigningKey } from "../tuf-repo/keys.js";
import {
  DEFAULT_EXPIRY_DAYS,
  nextTargets,
  RepositoryError,
  TargetFile,
  TufRepository,
} from "../tuf-repo/repository.js";

/** OCI distribution spec: a tag. A Notary target name that is not one can never be pulled. */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export interface MigrateOptions {
  gun: Gun;
  /** the notary server (http(s)) or a mirror (file://), for messages and the Notary source */
  notaryUrl: string;
  fetcher: MetadataFetcher;
  /** --root-key: the root must be signed by these, on top of the policy's pins */
  pins: readonly string[];
  policies: PolicySet;
  defaultPolicy: DefaultPolicySetting;
  /** the TUF repository (trustgate tuf init) */
  repoDir: string;
  /** the organisation's delegation */
  role: string;
  keys: SigningKey[];
  snapshotKeys: SigningKey[];
  timestampKeys: SigningKey[];
  /** the registry name in target paths (default: the GUN's) */
  registry: string;
  targetPath?: string;
  expiresDays?: number;
  now?: () => Date;
}

export interface MigratedTag {
  tag: string;
  target: string;
  digest: string;
  size: number;
  /** the Notary role whose signature the proxy used */
  notaryRole: string;
}

export interface ParityRow {
  tag: string;
  /** through the Notary source: the digest the proxy would pull, or null when it refuses the tag */
  notary: { digest: string; size: number } | null;
  /** through the new TUF source (Docker's default roles: any role the delegations let sign it) */
  tuf: { digest: string; size: number; role: string } | null;
  ok: boolean;
}

export interface MigrateReport {
  gun: string;
  notary: string;
  repository: string;
  role: string;
  migrated: MigratedTag[];
  refused: { tag: string; reason: string }[];
  /** delegations the Notary source skipped as not verifying: tags only they sign are not listed */
  skippedRoles: { role: string; reason: string }[];
  /** snapshot version published, when anything was signed */
  published: number | undefined;
  parity: ParityRow[];
  /** every parity row agrees */
  ok: boolean;
}

export async function migrateNotary(options: MigrateOptions): Promise<MigrateReport> {
  const { gun, fetcher } = options;
  const now = options.now ?? (() => new Date());
  const scratch = await mkdtemp(join(tmpdir(), "trustgate-migrate-"));
  // Refreshes would only re-fetch the same data mid-run: one verification for the whole migration.
  const notary = new NotarySource({
    url: options.notaryUrl,
    stateDir: join(scratch, "notary"),
    fetcher,
    refreshSeconds: 3600,
    pruneAfterDays: 0,
    now,
  });
  let tuf: TufSource | undefined;
  try {
    // Every target name in every verified role: the proxy is asked about each, so a tag signed
    // only where Docker does not look (another delegation) is reported as refused, not left out.
    const repo = await updateRepository(null, {
      gun: gun.gun,
      now: now(),
      ...(options.pins.length > 0 ? { pins: options.pins } : {}),
      source: (file, _role, maxBytes) => fetcher.fetch(gun.gun, file, maxBytes),
    });
    const names = new Set<string>();
    for (const role of repo.roles.values()) for (const name of role.targets.keys()) names.add(name);
    const skippedRoles = [...repo.broken].map(([role, b]) => ({ role, reason: `[${b.code}] ${b.message}` }));

    const decider = new TrustDecider({
      policies: { current: options.policies },
      defaultPolicy: options.defaultPolicy,
      sources: TrustSources.fromMap(new Map([[gun.registry, pinned(notary, options.pins)]])),
    });
    const tufRepo = new TufRepository(options.repoDir);
    const { delegation } = await tufRepo.delegation(options.role);
    const template = new TargetPathTemplate(options.targetPath);
    const image = { registry: options.registry, repository: gun.repository };

    const migrated: MigratedTag[] = [];
    const refused: { tag: string; reason: string }[] = [];
    const notaryAnswer = new Map<string, { digest: string; size: number } | null>();
    for (const tag of [...names].sort()) {
      if (!TAG.test(tag)) {
        refused.push({ tag, reason: `'${tag}' is not an OCI tag: no pull can name it` });
        continue;
      }
      const { decision } = await decider.decideTag(gun.registry, gun.repository, tag);
      const signed =
        decision.decision === "allow" &&
        !decision.wouldDeny &&
        decision.digest !== undefined &&
        decision.size !== undefined
          ? { digest: decision.digest, size: decision.size }
          : null;
      notaryAnswer.set(tag, signed);
      if (!signed) {
        const reason =
          decision.decision === "allow"
            ? `${decision.reason} (no signed digest: nothing to migrate)`
            : decision.reason;
        refused.push({ tag, reason });
        continue;
      }
      const target = template.render(image, tag);
      // docs/tuf-for-oci.md section 3: a client ignores a target outside the role's paths
      if (!delegation.isDelegatedPath(target)) {
        refused.push({
          tag,
          reason: `${target} is outside the paths delegated to '${options.role}' (${(delegation.paths ?? []).join(" ")})`,
        });
        continue;
      }
      migrated.push({ tag, target, ...signed, notaryRole: decision.role ?? "" });
    }

    let published: number | undefined;
    if (migrated.length > 0) {
      const days = options.expiresDays ?? DEFAULT_EXPIRY_DAYS.delegation;
      // One new version of the organisation's role with every tag; refused at once (nothing
      // written) when the keys do not meet the delegation's threshold (repository.ts).
      await tufRepo.stageTargets(
        options.role,
        (current, version) => {
          const targets = { ...(current?.targets ?? {}) };
          for (const m of migrated) {
            targets[m.target] = new TargetFile({
              path: m.target,
              length: m.size,
              hashes: { sha256: m.digest.slice("sha256:".length) },
            });
          }
          return nextTargets(current, version, days, { targets });
        },
        options.keys,
      );
      ({ snapshotVersion: published } = await tufRepo.publish(options.snapshotKeys, options.timestampKeys, {
        snapshotDays: DEFAULT_EXPIRY_DAYS.snapshot,
        timestampDays: DEFAULT_EXPIRY_DAYS.timestamp,
      }));
    }

    // Parity, through the proxy's TUF source over the repository as it is served (file://),
    // pinned to its first root as a proxy is configured (tuf.trustedRoot).
    tuf = await TufSource.open({
      metadataUrl: `${pathToFileURL(tufRepo.metadataDir).href}/`,
      trustedRoot: join(tufRepo.metadataDir, "1.root.json"),
      ...(options.targetPath ? { targetPath: options.targetPath } : {}),
      stateDir: join(scratch, "tuf"),
      refreshSeconds: 0,
      now,
    });
    const query: TrustQuery = { registry: options.registry, repository: gun.repository, roles: DOCKER_ROLES };
    const parity: ParityRow[] = [];
    for (const [tag, expected] of notaryAnswer) {
      const answer = await tuf.resolveTag(query, tag);
      const found = answer.signatures[0];
      const got = found ? { digest: found.digest, size: found.size, role: found.role } : null;
      const ok =
        expected === null
          ? got === null
          : got !== null && got.digest === expected.digest && got.size === expected.size;
      parity.push({ tag, notary: expected, tuf: got, ok });
    }
    return {
      gun: gun.gun,
      notary: options.notaryUrl,
      repository: options.repoDir,
      role: options.role,
      migrated,
      refused,
      skippedRoles,
      published,
      parity,
      ok: parity.every((p) => p.ok),
    };
  } finally {
    await tuf?.close();
    await notary.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The Notary source with --root-key applied to every query, besides the policy's own pins: the
 * root must satisfy both (the source checks a query's pins against its trusted root each time).
 */
function pinned(source: NotarySource, pins: readonly string[]): TrustSource {
  if (pins.length === 0) return source;
  const check = (q: TrustQuery) => source.listSigned({ ...q, rootKeys: pins });
  return {
    kind: source.kind,
    resolveTag: async (q, tag) => {
      await check(q);
      return source.resolveTag(q, tag);
    },
    listSigned: async (q) => {
      await check(q);
      return source.listSigned(q);
    },
    signedByDigest: async (q, digest) => {
      await check(q);
      return source.signedByDigest(q, digest);
    },
  };
}

export { RepositoryError };
