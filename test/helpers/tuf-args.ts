/**
 * The arguments of the `trustgate tuf` steps the TUF tests repeat, for either runner: in this
 * process (tuf-cli.ts) or the built CLI (built-cli.ts spawnBuiltCli).
 */
export const tufArgs = {
  /** delegate `org` the `paths` pattern, signed by the targets key */
  delegate: (
    repo: string,
    org: string,
    paths: string,
    orgPublicKey: string,
    targetsKey: string,
  ): string[] => [
    "delegate",
    repo,
    org,
    "--paths",
    paths,
    "--key",
    orgPublicKey,
    "--targets-key",
    targetsKey,
  ],
  /** sign `reference` as `digest` and `size` into `role` */
  sign: (
    reference: string,
    repo: string,
    role: string,
    key: string,
    digest: string,
    size: string | number,
  ): string[] => [
    "sign",
    reference,
    "--repo",
    repo,
    "--role",
    role,
    "--key",
    key,
    "--digest",
    digest,
    "--size",
    String(size),
  ],
  /** publish what is staged with the snapshot and timestamp keys */
  publish: (repo: string, snapshotKey: string, timestampKey: string): string[] => [
    "publish",
    repo,
    "--snapshot-key",
    snapshotKey,
    "--timestamp-key",
    timestampKey,
  ],
};
