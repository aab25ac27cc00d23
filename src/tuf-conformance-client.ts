#!/usr/bin/env node
/**
 * The client-under-test CLI of the TUF conformance suite (theupdateframework/tuf-conformance,
 * CLIENT-CLI.md), on the same code path as the proxy's TUF trust source (src/trust/tuf/session.ts:
 * same Updater construction, fetcher and crash-safe persistence):
 *
 *   --metadata-dir DIR init ROOT_FILE
 *   --metadata-dir DIR --metadata-url URL refresh
 *   --metadata-dir DIR --metadata-url URL --target-name PATH --target-base-url URL --target-dir DIR download
 *
 * Exit 0 when the command succeeded fully, 1 on any failure (the protocol has no other codes).
 * METADATA_DIR holds verified metadata under unversioned names (root.json, timestamp.json, ...);
 * targets are stored in TARGET_DIR under their URL-encoded target path.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeFileAtomic } from "./trust/state.js";
import { openRepositoryClient } from "./trust/tuf/session.js";

const FETCH_TIMEOUT_MS = 30_000;

class CliUsageError extends Error {}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new CliUsageError(`${flag} is required`);
  return value;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      "metadata-dir": { type: "string" },
      "metadata-url": { type: "string" },
      "target-name": { type: "string" },
      "target-base-url": { type: "string" },
      "target-dir": { type: "string" },
    },
  });
  const [command, ...rest] = positionals;
  const metadataDir = required(values["metadata-dir"], "--metadata-dir");

  if (command === "init") {
    // "may involve simply copying the trusted root into METADATA_DIR: no checks are expected";
    // no request is made. The root is verified (self-signed) on the first refresh.
    const [rootFile] = rest;
    await writeFileAtomic(join(metadataDir, "root.json"), await readFile(required(rootFile, "ROOT_FILE")));
    return;
  }
  if (command !== "refresh" && command !== "download")
    throw new CliUsageError(`unknown command ${command ?? "(none)"}`);

  const metadataUrl = required(values["metadata-url"], "--metadata-url");
  const workDir = await mkdtemp(join(tmpdir(), "trustgate-tuf-conformance-"));
  const { client, transport } = await openRepositoryClient({
    metadataUrl,
    durableDir: metadataDir,
    workDir,
    timeoutMs: FETCH_TIMEOUT_MS,
  });
  try {
    const repo = await client.refresh();
    if (command === "download") {
      const targetName = required(values["target-name"], "--target-name");
      const targetBaseUrl = required(values["target-base-url"], "--target-base-url");
      const targetDir = required(values["target-dir"], "--target-dir");
      const found = await repo.findTarget(targetName);
      if (found === undefined) throw new Error(`target ${targetName} is not signed by any role`);
      await repo.downloadTarget(found.target, join(targetDir, encodeURIComponent(targetName)), targetBaseUrl);
    }
  } finally {
    await transport.close();
    await rm(workDir, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  () => {
    process.exitCode = 0;
  },
  (err: unknown) => {
    // One line, never a stack trace; every failure is exit 1 by the protocol.
    process.stderr.write(`tuf-conformance-client: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
