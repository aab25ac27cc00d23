/**
 * The one resolve interface every trust source (Notary v1, TUF 1.0) implements.
 *
 * Trust says *what is signed*; policy (src/policy) says *whether that is enough*. A source
 * therefore never decides allow/deny: it returns every verified signature for a tag in the
 * roles the caller asked for, or throws a TrustError when the metadata cannot be verified.
 */

/** A verified target: the manifest a role signed for a tag. */
export interface SignedTarget {
  /** target name: the tag */
  name: string;
  /** OCI digest of the manifest, "sha256:<hex>" */
  digest: string;
  /** manifest length in bytes */
  size: number;
  /** the role whose verified metadata lists it, e.g. "targets/releases" or "targets" */
  role: string;
}

export interface TrustQuery {
  /** canonical registry name from config, e.g. "docker.io" */
  registry: string;
  /** repository path inside the registry, e.g. "library/alpine" */
  repository: string;
  /** roles whose signatures count, in order of precedence (Docker: targets/releases, then targets) */
  roles: readonly string[];
  /** pinned root key IDs; empty or absent means trust on first use */
  rootKeys?: readonly string[];
}

export interface TagSignatures {
  /** the tag asked for */
  tag: string;
  /** one entry per role in `query.roles` that signs the tag, in that order; empty when unsigned */
  signatures: SignedTarget[];
  /** which source answered ("notary" | "tuf") and where, for audit lines */
  source: string;
  /** the earliest `expires` among the metadata this answer depends on */
  expires: Date;
  /**
   * Until this instant (ms since the epoch, by the source's clock) the source would give the same
   * answer from the same verified metadata without a network request and without starting a
   * refresh, so a caller may reuse the answer (and what it decided from it) until then. Never
   * later than any expiry the answer depends on. Absent: do not reuse.
   */
  reuseUntil?: number;
}

export interface TrustSource {
  readonly kind: "notary" | "tuf";
  /** Verified signatures for one tag. Throws TrustError when trust cannot be established. */
  resolveTag(query: TrustQuery, tag: string): Promise<TagSignatures>;
  /** Every verified signed target in the requested roles (for tags/list, digest pulls, `trust list`). */
  listSigned(query: TrustQuery): Promise<SignedTarget[]>;
  /**
   * Every verified signature of `digest` in the query's roles: one entry per (role, target name)
   * that signs a manifest with that digest, in `query.roles` order; empty when none. The check
   * behind every pull by digest and every index root, so the policy can apply the same rule
   * (e.g. `requireAll`) as for a tag; sources answer it from an index, without scanning targets.
   */
  signedByDigest(query: TrustQuery, digest: string): Promise<SignedTarget[]>;
}
