/**
 * TUF 1.0 trust source: a tag is signed when the TUF repository's verified delegation walk finds
 * the tag's target path, and the target's sha256/length are the manifest's digest/size.
 *
 * Freshness follows the Notary source, per repository (one TUF repository serves every image),
 * through the shared RefreshingCache (../refresh.ts): an online refresh (TUF client workflow
 * 5.3-5.6) is due `refreshSeconds` after the last one started, and all concurrent callers share
 * the one in flight. A query
 * - before the refresh-ahead point (3/4 of `refreshSeconds` after the last refresh) is answered
 *   from the last verified state;
 * - from the ahead point until the refresh is due is answered from it at once, and starts the
 *   refresh in the background (unless one is in flight, a verification failure is recorded, or
 *   the top-level metadata has expired), so under steady traffic no request waits for it;
 * - once the refresh is due waits for it (foreground).
 * A repository that cannot be reached does not stop answers while that state has not expired
 * (checked against the injected clock); a repository that serves bad metadata (rollback, bad
 * signature, expired, wrong hashes), to a background refresh too, does: the very next query
 * refreshes in the foreground and is refused, and every one after it until a refresh succeeds.
 * See README.md beside this file.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { LRUCache } from "lru-cache";
import { ConfigError } from "../../errors.js";
import type { Logger } from "../../log.js";
import { TrustError } from "../errors.js";
import { TrustHealth } from "../health.js";
import type { TrustObserver } from "../observer.js";
import { RefreshingCache } from "../refresh.js";
import type { SignedTarget, TagSignatures, TrustQuery, TrustSource } from "../types.js";
import { toTrustError } from "./errors.js";
import {
  type FoundTarget,
  openRepositoryClient,
  type RepositoryClient,
  type VerifiedRepository,
} from "./session.js";
import { TargetPathTemplate } from "./target-path.js";
import type { MetadataTransport } from "./transport.js";

export interface TufSourceOptions {
  /** metadata base URL: https://, http://, or file:// for air-gapped sites */
  metadataUrl: string;
  /** path of the initial root.json: the pin */
  trustedRoot: string;
  /** image -> target path template, default "{registry}/{repository}:{tag}" */
  targetPath?: string;
  /** trustgate's state directory; this repository's metadata lives in <stateDir>/tuf/<id>/ */
  stateDir: string;
  /**
   * seconds from the end of one online refresh until the next is due (default 30); from 3/4 of it
   * on, a query also starts the next one in the background. 0: every query refreshes first.
   */
  refreshSeconds?: number;
  /** clock for freshness and expiry decisions (default: wall clock) */
  now?: () => Date;
  /** per-download budget in milliseconds (default 10000) */
  fetchTimeoutMs?: number;
  /** extra CA (PEM file) for an https:// metadataUrl */
  caFile?: string;
  /** the registry this source serves: the label of its metrics and log lines */
  registry?: string;
  /** trust trouble, once per change of state (../health.ts) */
  logger?: Logger;
  /** refreshes and the earliest expiry held, for /metrics */
  observer?: TrustObserver;
}

/** Docker's roles: what a query asks for when its policy names no TUF role of its own. */
const DOCKER_DEFAULT_ROLES = ["targets/releases", "targets"];
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * What `query.roles` means for TUF. In TUF the repository's own delegations (signed by the
 * top-level targets key, itself pinned by root) decide which role may sign which path, and the
 * walk returns the most trusted role for the path. So:
 * - empty, or Docker's defaults (["targets/releases", "targets"]): any role the walk reaches counts;
 * - anything else: the role that signed the target must be one of `roles` (e.g. ["acme"]).
 */
export function roleCounts(roles: readonly string[], signer: string): boolean {
  if (roles.length === 0) return true;
  const isDockerDefault =
    roles.length === DOCKER_DEFAULT_ROLES.length && roles.every((r, i) => r === DOCKER_DEFAULT_ROLES[i]);
  return isDockerDefault || roles.includes(signer);
}

/** The per-repository directory: sha256 of the metadata URL, shortened. */
export function repositoryStateDir(stateDir: string, metadataUrl: string): string {
  return join(stateDir, "tuf", createHash("sha256").update(metadataUrl).digest("hex").slice(0, 16));
}

export class TufSource implements TrustSource {
  readonly kind = "tuf" as const;
  /** "tuf <metadataUrl>": the `source` of every answer, for audit lines */
  readonly name: string;
  private readonly now: () => Date;
  /** the one repository's verified state, its freshness and its refresh in flight, under key "" */
  private readonly state: RefreshingCache<"", VerifiedRepository>;

  private constructor(
    private readonly client: RepositoryClient,
    private readonly transport: MetadataTransport,
    private readonly template: TargetPathTemplate,
    options: TufSourceOptions,
  ) {
    this.name = `tuf ${options.metadataUrl}`;
    this.now = options.now ?? (() => new Date());
    const ref = { registry: options.registry ?? new URL(options.metadataUrl).host, kind: "tuf" as const };
    const health = new TrustHealth({
      source: ref,
      now: () => this.now().getTime(),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.observer ? { observer: options.observer } : {}),
    });
    this.state = new RefreshingCache<"", VerifiedRepository>({
      refreshMs: (options.refreshSeconds ?? 30) * 1000,
      now: () => this.now().getTime(),
      refresh: () => this.refresh(),
      expiresAt: (repo) => topLevelExpiry(repo).expiresMs,
      isUnavailable: (err) => err instanceof TrustError && err.code === "TRUST_UNAVAILABLE",
      // Started while the repository is down: what an earlier run verified and persisted still
      // counts until it expires.
      restore: () => this.client.loadOffline(),
      // TUF spec 5.4.4 / 5.5.6 / 5.6.5 (freeze attack): never answer from expired metadata, even
      // when the repository is down and this is the newest we have.
      expiredError: (_, repo) => {
        const { role, expires } = topLevelExpiry(repo);
        return new TrustError(
          "EXPIRED",
          this.name,
          role,
          `${this.name}: ${role} metadata expired at ${expires.toISOString()} and no newer metadata could be verified`,
        );
      },
      max: 1,
      // the one repository's key is "": its log lines name it by its metadata URL
      observe: (_key, outcome) => health.record(this.name, outcome),
    });
    options.observer?.watchExpiry(ref, () => {
      for (const [, repo] of this.state.values())
        return (topLevelExpiry(repo).expiresMs - this.now().getTime()) / 1000;
      return undefined;
    });
  }

  /** Validate the options and prepare the state directory. No network. Throws ConfigError. */
  static async open(options: TufSourceOptions): Promise<TufSource> {
    const url = parseMetadataUrl(options.metadataUrl);
    const template = new TargetPathTemplate(options.targetPath);
    const refreshSeconds = options.refreshSeconds ?? 30;
    if (!(refreshSeconds >= 0)) throw new ConfigError("tuf.refreshSeconds must be a number >= 0");
    const initialRoot = await readConfigFile(options.trustedRoot, "tuf.trustedRoot");
    const caPem =
      options.caFile === undefined
        ? undefined
        : (await readConfigFile(options.caFile, "tuf.caFile")).toString("utf8");
    const base = repositoryStateDir(options.stateDir, url);
    const { client, transport } = await openRepositoryClient({
      metadataUrl: url,
      durableDir: join(base, "metadata"),
      workDir: join(base, "work"),
      initialRoot,
      timeoutMs: options.fetchTimeoutMs ?? 10_000,
      caPem,
    });
    return new TufSource(client, transport, template, { ...options, metadataUrl: url });
  }

  async resolveTag(query: TrustQuery, tag: string): Promise<TagSignatures> {
    const { repo, reuseUntil } = await this.verifiedRepository(query);
    const found = await repo.findTarget(this.template.render(query, tag));
    if (found === undefined) {
      // An unsigned answer depends on the top-level metadata only (nothing on a delegation path
      // is checked for it), which reuseUntil already stops at.
      return { tag, signatures: [], source: this.name, expires: topLevelExpiry(repo).expires, reuseUntil };
    }
    this.checkNotExpired(found);
    const signatures = roleCounts(query.roles, found.role) ? [this.toSignedTarget(tag, found)] : [];
    return {
      tag,
      signatures,
      source: this.name,
      expires: found.expires,
      // found.expires: the top-level metadata and every role on the delegation path to the target
      reuseUntil: Math.min(reuseUntil, found.expires.getTime()),
    };
  }

  /**
   * Every signed tag of `query`'s repository (sorted by tag), in every verified role that may
   * sign it, narrow delegations included (`docker.io/acme/app:v1*`): from the digest index.
   */
  async listSigned(query: TrustQuery): Promise<SignedTarget[]> {
    const { repo } = await this.verifiedRepository(query);
    const index = await this.digestIndex(repo, query);
    const listed: SignedTarget[] = [];
    for (const entry of index.entries) {
      if (!roleCounts(query.roles, entry.found.role)) continue;
      this.checkNotExpired(entry.found);
      listed.push(this.toSignedTarget(entry.tag, entry.found));
    }
    return listed;
  }

  /**
   * Every tag whose target is `digest`, one SignedTarget per (role, tag), in `query.roles` order
   * (roles the query does not name after, by tag): a map lookup in the digest index. So the pull
   * by digest that containerd and dockerd make after a HEAD by tag finds the same role the tag
   * lookup found, however narrow its delegation.
   */
  async signedByDigest(query: TrustQuery, digest: string): Promise<SignedTarget[]> {
    const { repo } = await this.verifiedRepository(query);
    const index = await this.digestIndex(repo, query);
    const signed: SignedTarget[] = [];
    for (const entry of index.byDigest.get(digest) ?? []) {
      if (!roleCounts(query.roles, entry.found.role)) continue;
      this.checkNotExpired(entry.found);
      signed.push(this.toSignedTarget(entry.tag, entry.found));
    }
    const rank = (role: string) => {
      const at = query.roles.indexOf(role);
      return at === -1 ? query.roles.length : at;
    };
    return signed.sort((a, b) => rank(a.role) - rank(b.role));
  }

  /**
   * The image's digest index over `repo` (one verified state): built once, by the first query
   * that needs it, shared by every concurrent one (single flight), dropped with the state on the
   * next refresh. A failed build is forgotten, so the next query tries again.
   */
  private digestIndex(repo: VerifiedRepository, image: TrustQuery): Promise<DigestIndex> {
    let perImage = digestIndexes.get(repo);
    if (perImage === undefined) {
      perImage = new LRUCache({ max: MAX_INDEXED_IMAGES });
      digestIndexes.set(repo, perImage);
    }
    const key = `${image.registry}/${image.repository}`;
    let index = perImage.get(key);
    if (index === undefined) {
      const building = this.buildDigestIndex(repo, image);
      index = building;
      perImage.set(key, building);
      const cache = perImage;
      building.catch(() => {
        if (cache.get(key) === building) cache.delete(key);
      });
    }
    return index;
  }

  private async buildDigestIndex(repo: VerifiedRepository, image: TrustQuery): Promise<DigestIndex> {
    const matcher = this.template.tagMatcher(image);
    const entries: IndexEntry[] = [];
    for (const found of await repo.resolveScope(this.template.scope(image))) {
      const tag = matcher.exec(found.path)?.[1];
      if (tag !== undefined) entries.push({ tag, found });
    }
    entries.sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
    const byDigest = new Map<string, IndexEntry[]>();
    for (const entry of entries) {
      // A target without a usable sha256 cannot match a digest; listSigned reports it.
      const sha256 = entry.found.target.hashes.sha256?.toLowerCase();
      if (sha256 === undefined || !SHA256_HEX.test(sha256)) continue;
      const digest = `sha256:${sha256}`;
      const same = byDigest.get(digest);
      if (same) same.push(entry);
      else byDigest.set(digest, [entry]);
    }
    return { entries, byDigest };
  }

  /**
   * Resolves when the refresh in flight at the call (a background one included) has ended and
   * its outcome is recorded; never rejects. close() waits for it; tests use it to see a
   * background refresh land.
   */
  async idle(): Promise<void> {
    await this.state.idle();
  }

  async close(): Promise<void> {
    await this.idle();
    await this.transport.close();
  }

  /**
   * The verified repository state to answer from, refreshed first if due, and the instant until
   * which an answer from it may be reused: the refresh-ahead point (from there on a query starts
   * a refresh), never past the top-level expiry. With refreshSeconds 0 that is <= now.
   */
  private async verifiedRepository(
    query: TrustQuery,
  ): Promise<{ repo: VerifiedRepository; reuseUntil: number }> {
    const { value: repo, reuseUntil } = await this.state.get("", undefined);
    this.checkRootPin(repo, query);
    return { repo, reuseUntil };
  }

  /**
   * One online refresh; RefreshingCache records its outcome. A verified one stamps its start
   * time in the state directory (the last successful check of `trust status`), as the Notary
   * source's markUsed does.
   */
  private async refresh(): Promise<VerifiedRepository> {
    const started = this.now();
    let repo: VerifiedRepository;
    try {
      repo = await this.client.refresh();
    } catch (err) {
      throw toTrustError(err, this.name, undefined, "refresh");
    }
    await this.client.markChecked(started);
    return repo;
  }

  /** TrustQuery.rootKeys, if given, must include a key of the trusted root's root role. */
  private checkRootPin(repo: VerifiedRepository, query: TrustQuery): void {
    const pinned = query.rootKeys ?? [];
    if (pinned.length === 0) return;
    const rootKeyIds = repo.rootKeyIds;
    if (!pinned.some((id) => rootKeyIds.includes(id))) {
      throw new TrustError(
        "ROOT_PIN_MISMATCH",
        this.name,
        "root",
        `${this.name}: the trusted root's keys (${rootKeyIds.join(", ")}) include no pinned root key`,
      );
    }
  }

  private checkNotExpired(found: FoundTarget): void {
    if (this.now() >= found.expires) {
      throw new TrustError(
        "EXPIRED",
        this.name,
        found.role,
        `${this.name}: metadata on the delegation path to ${found.role} expired at ${found.expires.toISOString()}`,
      );
    }
  }

  private toSignedTarget(tag: string, found: FoundTarget): SignedTarget {
    const sha256 = found.target.hashes.sha256?.toLowerCase();
    const size = found.target.length;
    if (sha256 === undefined || !SHA256_HEX.test(sha256) || !Number.isSafeInteger(size) || size < 0) {
      throw new TrustError(
        "METADATA_INVALID",
        this.name,
        found.role,
        `${this.name}: target ${found.path} in role ${found.role} has no usable sha256 hash and length`,
      );
    }
    return { name: tag, digest: `sha256:${sha256}`, size, role: found.role };
  }
}

/** A tag of one image and what the delegation walk resolved its target path to. */
interface IndexEntry {
  tag: string;
  found: FoundTarget;
}

/** One image's signed tags in one verified state: sorted by tag, and by digest. */
interface DigestIndex {
  entries: IndexEntry[];
  byDigest: Map<string, IndexEntry[]>;
}

/**
 * Images with a digest index per verified state: a bound on memory when queries name many
 * images within one refresh window (each index is itself bounded by MAX_INDEX_TARGETS).
 */
const MAX_INDEXED_IMAGES = 1024;

/** Per verified state (replaced on every refresh, so never stale): each image's digest index. */
const digestIndexes = new WeakMap<VerifiedRepository, LRUCache<string, Promise<DigestIndex>>>();

/**
 * Per verified state (replaced on every refresh, so never stale): the earliest expiry of root,
 * timestamp, snapshot and top-level targets, computed once, so the answer path compares numbers.
 */
const topLevelExpiryOf = new WeakMap<
  VerifiedRepository,
  { role: string; expires: Date; expiresMs: number }
>();

function topLevelExpiry(repo: VerifiedRepository): { role: string; expires: Date; expiresMs: number } {
  let top = topLevelExpiryOf.get(repo);
  if (top === undefined) {
    const { role, expires } = repo.topLevelExpires;
    top = { role, expires, expiresMs: expires.getTime() };
    topLevelExpiryOf.set(repo, top);
  }
  return top;
}

function parseMetadataUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`tuf.metadataUrl: "${raw}" is not a URL`);
  }
  if (!["https:", "http:", "file:"].includes(url.protocol)) {
    throw new ConfigError(`tuf.metadataUrl: "${raw}" must be https://, http:// or file://`);
  }
  return url.toString();
}

async function readConfigFile(path: string, key: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}
