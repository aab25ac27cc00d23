/**
 * One TUF repository client: how trustgate constructs tuf-js Updaters, and the one place that
 * reads their verified state. Both the proxy's TufSource and the conformance CLI go through here.
 *
 * A tuf-js Updater runs the client workflow once (TUF spec 5.1-5.6: `refresh`) and then answers
 * `getTargetInfo` from what it verified, loading delegated roles lazily; its trusted set cannot be
 * refreshed in place ("Cannot update timestamp after snapshot"), so every refresh builds a new
 * Updater over the same metadata directory and the previous one keeps answering until it succeeds.
 */
import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Metadata, Root, Snapshot, TargetFile, Targets, Timestamp } from "@tufjs/models";
import { type Config, Updater } from "tuf-js";
import { TrustError } from "../errors.js";
import { toTrustError } from "./errors.js";
import { MetadataDirectories } from "./persistence.js";
import type { TargetScope } from "./target-path.js";
import { MetadataTransport, UpdaterFetcher } from "./transport.js";

/** Download caps (TUF spec 5.2 "the client MUST ... not download more than"). tuf-js's defaults. */
const UPDATER_CONFIG: Partial<Config> = {
  maxRootRotations: 256,
  maxDelegations: 32,
  rootMaxLength: 512_000,
  timestampMaxLength: 16_384,
  snapshotMaxLength: 2_000_000,
  targetsMaxLength: 5_000_000,
};
const MAX_DELEGATIONS = 32;
/**
 * Bounds of one image's digest index (resolveScope): the delegated roles it loads (tuf-js's
 * walk for one path stops at MAX_DELEGATIONS; the index covers every path of the image, so it
 * allows two walks' worth) and the target paths it resolves. Beyond either the index is refused
 * (METADATA_INVALID), not truncated: a silently partial index would refuse digests at random.
 */
export const MAX_INDEX_ROLES = 64;
export const MAX_INDEX_TARGETS = 100_000;

/**
 * The part of tuf-js's TrustedMetadataStore we read. tuf-js 5 keeps it in the private
 * `Updater.trustedSet` and its walk returns a TargetFile without the role that listed it; the
 * source must report that role and check expiry against its own clock, so we read (never write)
 * the verified metadata there. `trustedView` checks the shape so a tuf-js change fails closed.
 */
interface TrustedMetadataView {
  readonly root: Metadata<Root>;
  readonly timestamp: Metadata<Timestamp> | undefined;
  readonly snapshot: Metadata<Snapshot> | undefined;
  readonly targets: Metadata<Targets> | undefined;
  getRole(name: string): Metadata<Targets> | undefined;
}

function trustedView(updater: Updater, repository: string): TrustedMetadataView {
  const set = (updater as unknown as { trustedSet?: Partial<TrustedMetadataView> }).trustedSet;
  if (set === undefined || typeof set.getRole !== "function") {
    throw new TrustError(
      "METADATA_INVALID",
      repository,
      undefined,
      "tuf-js Updater internals changed: no trustedSet",
    );
  }
  return set as TrustedMetadataView;
}

/**
 * tuf-js's own loader of one delegated role (private `Updater.loadTargets`, client workflow
 * 5.6.1-5.6.6): the role verified against its delegator's keys and the snapshot's version and
 * hashes, its download capped by the snapshot's length or `targetsMaxLength`, kept in the trusted
 * set. The public walk loads only the roles one path reaches; the digest index needs every role
 * that may sign a path of an image, through the same checks. Shape-checked like `trustedView`.
 */
type RoleLoader = (role: string, parent: string) => Promise<Metadata<Targets> | undefined>;

function roleLoader(updater: Updater, repository: string): RoleLoader {
  const load = (updater as unknown as { loadTargets?: unknown }).loadTargets;
  if (typeof load !== "function") {
    throw new TrustError(
      "METADATA_INVALID",
      repository,
      undefined,
      "tuf-js Updater internals changed: no loadTargets",
    );
  }
  return (role, parent) => load.call(updater, role, parent) as Promise<Metadata<Targets> | undefined>;
}

export interface FoundTarget {
  path: string;
  target: TargetFile;
  /** the delegated role whose verified metadata lists the target ("targets" for top-level) */
  role: string;
  /** earliest `expires` among the roles the walk consulted to reach it */
  expires: Date;
}

export interface RepositoryClientOptions {
  /** the repository's metadata base URL, e.g. https://trust.example.com/metadata/ */
  metadataUrl: string;
  dirs: MetadataDirectories;
  transport: MetadataTransport;
  /** label for errors and audit lines: "tuf <metadataUrl>" */
  repository: string;
}

export interface OpenRepositoryOptions {
  metadataUrl: string;
  /** where verified metadata is kept (unversioned names: root.json, timestamp.json, ...) */
  durableDir: string;
  /** tuf-js's scratch metadata directory; wiped on open */
  workDir: string;
  /** the pin, written to durableDir/root.json if there is none yet */
  initialRoot?: Uint8Array;
  timeoutMs: number;
  caPem?: string | undefined;
}

/** The one way trustgate builds a TUF client: the proxy's TufSource and the conformance CLI. */
export async function openRepositoryClient(
  options: OpenRepositoryOptions,
): Promise<{ client: RepositoryClient; transport: MetadataTransport }> {
  const dirs = await MetadataDirectories.open(options.durableDir, options.workDir, options.initialRoot);
  const transport = new MetadataTransport({ timeoutMs: options.timeoutMs, caPem: options.caPem });
  const repository = `tuf ${options.metadataUrl}`;
  return {
    client: new RepositoryClient({ metadataUrl: options.metadataUrl, dirs, transport, repository }),
    transport,
  };
}

export class RepositoryClient {
  constructor(private readonly options: RepositoryClientOptions) {}

  /** Run the client workflow online (TUF spec 5.3-5.6) and return the freshly verified state. */
  async refresh(): Promise<VerifiedRepository> {
    return this.load(false);
  }

  /** Record a successful online refresh that started at `at` (trust status shows it). */
  markChecked(at: Date): Promise<void> {
    return this.options.dirs.markChecked(at);
  }

  /**
   * Load what was verified and persisted before, without the network: for a start while the
   * repository is down. tuf-js's `forceCache` loads local timestamp/snapshot/targets and checks
   * their expiry; the offline fetcher makes any attempt to go remote fail.
   */
  async loadOffline(): Promise<VerifiedRepository> {
    return this.load(true);
  }

  private async load(offline: boolean): Promise<VerifiedRepository> {
    const { dirs, metadataUrl, transport, repository } = this.options;
    const fetcher = new UpdaterFetcher(transport, offline);
    let updater: Updater;
    try {
      updater = new Updater({
        metadataDir: dirs.workDir,
        metadataBaseUrl: metadataUrl,
        fetcher,
        forceCache: offline,
        config: UPDATER_CONFIG,
      });
      await updater.refresh();
    } catch (err) {
      throw toTrustError(err, repository, fetcher, offline ? "load of local metadata" : "refresh");
    } finally {
      // Whatever tuf-js verified and wrote before a failure (e.g. a rotated root) is kept too.
      if (fetcher.successfulDownloads > 0) await dirs.promote();
    }
    return new VerifiedRepository(updater, fetcher, this.options);
  }
}

/** The verified state of one successful refresh. */
export class VerifiedRepository {
  private readonly view: TrustedMetadataView;
  /** walks are serialised: tuf-js would otherwise fetch a lazily loaded role twice */
  private walking: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly updater: Updater,
    private readonly fetcher: UpdaterFetcher,
    private readonly options: RepositoryClientOptions,
  ) {
    this.view = trustedView(updater, options.repository);
  }

  /** earliest `expires` of root, timestamp, snapshot and top-level targets */
  get topLevelExpires(): { role: string; expires: Date } {
    const roles: Array<[string, { signed: { expires: string } } | undefined]> = [
      ["root", this.view.root],
      ["timestamp", this.view.timestamp],
      ["snapshot", this.view.snapshot],
      ["targets", this.view.targets],
    ];
    let earliest: { role: string; expires: Date } | undefined;
    for (const [role, metadata] of roles) {
      if (metadata === undefined) {
        throw new TrustError(
          "METADATA_INVALID",
          this.options.repository,
          role,
          `no trusted ${role} metadata`,
        );
      }
      const expires = new Date(metadata.signed.expires);
      if (earliest === undefined || expires < earliest.expires) earliest = { role, expires };
    }
    return earliest as { role: string; expires: Date };
  }

  /** key IDs of the trusted root's root role */
  get rootKeyIds(): readonly string[] {
    return this.view.root.signed.roles.root?.keyIDs ?? [];
  }

  /** Target info for `path` and the role that signed it, or undefined when no role lists it. */
  findTarget(path: string): Promise<FoundTarget | undefined> {
    return this.serialised(() => this.walk(path));
  }

  /**
   * Every target path of `scope` that some verified role lists, resolved exactly as findTarget
   * resolves it: by tuf-js's preorder walk (TUF spec 5.6.7), so a path listed by a role that an
   * earlier or terminating delegation shadows is attributed to the role the walk stops at, or is
   * left out when that role does not list it. Loads (through tuf-js) every delegated role that
   * may cover the scope first, at most MAX_INDEX_ROLES, then resolves at most MAX_INDEX_TARGETS
   * paths over the roles now in memory (no download). One walk at a time, like findTarget.
   */
  resolveScope(scope: TargetScope): Promise<FoundTarget[]> {
    return this.serialised(async () => {
      const roles = await this.loadScopeRoles(scope);
      const paths = new Set<string>();
      for (const role of roles) {
        for (const path of Object.keys(this.view.getRole(role)?.signed.targets ?? {})) {
          if (!scope.matches(path)) continue;
          paths.add(path);
          if (paths.size > MAX_INDEX_TARGETS) {
            throw new TrustError(
              "METADATA_INVALID",
              this.options.repository,
              role,
              `more than ${MAX_INDEX_TARGETS} target paths for one image: the digest index is capped`,
            );
          }
        }
      }
      const found: FoundTarget[] = [];
      for (const path of paths) {
        const target = await this.walk(path);
        if (target !== undefined) found.push(target);
      }
      return found;
    });
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const run = this.walking.then(work);
    this.walking = run.catch(() => undefined);
    return run;
  }

  /**
   * The verified roles that may sign a path of `scope`, in preorder from top-level targets: a
   * child is followed when its delegation may cover the scope (path patterns, TargetScope), or
   * delegates by path hash (any path may hash to its prefixes), or is a succinct hash bin.
   * Whether it actually covers a given path is left to that path's walk.
   */
  private async loadScopeRoles(scope: TargetScope): Promise<string[]> {
    const load = roleLoader(this.updater, this.options.repository);
    const before = this.fetcher.successfulDownloads;
    const loaded: string[] = [];
    const seen = new Set<string>();
    const stack: Array<{ role: string; parent: string }> = [{ role: "targets", parent: "root" }];
    const tooMany = (role: string) =>
      new TrustError(
        "METADATA_INVALID",
        this.options.repository,
        role,
        `more than ${MAX_INDEX_ROLES} delegated roles may sign one image's tags: the digest index is capped`,
      );
    try {
      while (stack.length > 0) {
        const { role, parent } = stack.pop() as { role: string; parent: string };
        if (seen.has(role)) continue;
        if (seen.size >= MAX_INDEX_ROLES) throw tooMany(role);
        seen.add(role);
        const metadata = this.view.getRole(role) ?? (await load(role, parent));
        if (metadata === undefined) continue;
        loaded.push(role);
        const delegations = metadata.signed.delegations;
        const children: string[] = [];
        for (const child of Object.values(delegations?.roles ?? {})) {
          const covers =
            child.paths !== undefined
              ? scope.mayDelegate(child.paths)
              : (child.pathHashPrefixes?.length ?? 0) > 0;
          if (covers) children.push(child.name);
        }
        const bins = delegations?.succinctRoles;
        if (bins !== undefined) {
          if (bins.numberOfBins > MAX_INDEX_ROLES) throw tooMany(role);
          children.push(...bins.getRoles());
        }
        stack.push(...children.reverse().map((child) => ({ role: child, parent: role })));
      }
    } catch (err) {
      throw toTrustError(
        err,
        this.options.repository,
        this.fetcher,
        "load of delegated roles for the digest index",
      );
    } finally {
      if (this.fetcher.successfulDownloads !== before) await this.options.dirs.promote();
    }
    return loaded;
  }

  /**
   * Download a target to `filePath` after verifying its length and hashes (TUF spec 5.7.3; the
   * conformance CLI only: the proxy never downloads targets). A file already there with matching
   * hashes is kept. tuf-js copies into place with copyFileSync, so it writes a temp name beside
   * the final one and we rename: the final path holds the old file or the whole verified one.
   */
  async downloadTarget(
    target: TargetFile,
    filePath: string,
    targetBaseUrl: string,
  ): Promise<"cached" | "downloaded"> {
    if ((await this.updater.findCachedTarget(target, filePath)) !== undefined) return "cached";
    const temp = join(dirname(filePath), `.${basename(filePath)}.${randomBytes(6).toString("hex")}.tmp`);
    try {
      await this.updater.downloadTarget(target, temp, targetBaseUrl);
      await rename(temp, filePath);
    } catch (err) {
      await rm(temp, { force: true });
      throw toTrustError(err, this.options.repository, this.fetcher, `download of ${target.path}`);
    }
    return "downloaded";
  }

  private async walk(path: string): Promise<FoundTarget | undefined> {
    const before = this.fetcher.successfulDownloads;
    let target: TargetFile | undefined;
    try {
      // tuf-js's preorder depth-first walk (TUF spec 5.6.7) loads and verifies every role it visits.
      target = await this.updater.getTargetInfo(path);
    } catch (err) {
      throw toTrustError(err, this.options.repository, this.fetcher, `lookup of ${path}`);
    } finally {
      if (this.fetcher.successfulDownloads !== before) await this.options.dirs.promote();
    }
    if (target === undefined) return undefined;
    // Repeat the same walk over the roles tuf-js just verified to learn which one listed the
    // target; the object identity check proves both walks reached the same entry.
    const { found, visited } = this.walkOrder(path);
    if (found === undefined || found.target !== target) {
      throw new TrustError(
        "METADATA_INVALID",
        this.options.repository,
        undefined,
        `could not attribute ${path} to a role: the delegation walk disagrees with tuf-js's`,
      );
    }
    let expires = this.topLevelExpires.expires;
    for (const role of [...visited, found.role]) {
      const roleExpires = new Date(this.view.getRole(role)?.signed.expires ?? 0);
      if (roleExpires < expires) expires = roleExpires;
    }
    return { path, target, role: found.role, expires };
  }

  /**
   * The walk of TUF spec 5.6.7 over already-verified roles only (no loading): preorder,
   * depth-first, children in delegation order, visited roles skipped, a terminating delegation
   * ends the search, at most MAX_DELEGATIONS roles. Mirrors tuf-js's Updater.preorderDepthFirstWalk.
   */
  private walkOrder(path: string): {
    found: { role: string; target: TargetFile } | undefined;
    visited: string[];
  } {
    const stack = ["targets"];
    const visited = new Set<string>();
    while (visited.size <= MAX_DELEGATIONS && stack.length > 0) {
      const role = stack.pop() as string;
      if (visited.has(role)) continue;
      const metadata = this.view.getRole(role);
      if (metadata === undefined) break; // tuf-js stopped before this role: nothing further was verified
      const target = metadata.signed.targets[path];
      if (target !== undefined) return { found: { role, target }, visited: [...visited] };
      visited.add(role);
      const children: string[] = [];
      for (const { role: child, terminating } of metadata.signed.delegations?.rolesForTarget(path) ?? []) {
        children.push(child);
        if (terminating) {
          stack.length = 0;
          break;
        }
      }
      stack.push(...children.reverse());
    }
    return { found: undefined, visited: [...visited] };
  }
}
