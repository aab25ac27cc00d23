/**
 * Serves a directory of Notary metadata the way notary-server does: `<role>.json`,
 * checksum-addressed `<role>.<sha256-hex>.json`, and versioned `<N>.root.json`.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { TrustError } from "../../src/trust/errors.js";
import type { MetadataFetcher } from "../../src/trust/notary/fetcher.js";

export const FIXTURES = new URL("../fixtures/notary/", import.meta.url).pathname;
/** inside every fixture's validity (created 2026-11-24, timestamps expire 2026-12-08) */
export const FIXTURE_NOW = new Date("2026-11-25T12:00:00Z");

const METADATA = new Set(["root", "timestamp", "snapshot", "targets"]);

/** file name as served -> bytes, for one fixture directory */
export function loadRepoFiles(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        if (name === "targets") walk(p);
        continue;
      }
      if (!name.endsWith(".json") || name === "expected.json" || name.startsWith("docker-trust")) continue;
      const rel = relative(dir, p);
      const bytes = readFileSync(p);
      files.set(rel, bytes);
      const role = rel.replace(/\.json$/, "");
      if (METADATA.has(role) || role.startsWith("targets/")) {
        files.set(`${role}.${createHash("sha256").update(bytes).digest("hex")}.json`, bytes);
      }
    }
  };
  walk(dir);
  return files;
}

/** An in-process MetadataFetcher over a map of files; `files` may be swapped between calls. */
export class MapFetcher implements MetadataFetcher {
  readonly requests: string[] = [];
  /** throw TRUST_UNAVAILABLE for every request (server down) */
  offline = false;
  constructor(public files: Map<string, Uint8Array>) {}
  async fetch(gun: string, roleFile: string, maxBytes: number): Promise<Uint8Array> {
    this.requests.push(roleFile);
    if (this.offline) throw new TrustError("TRUST_UNAVAILABLE", gun, roleFile, `${gun}: connection refused`);
    const b = this.files.get(roleFile);
    if (!b) throw new TrustError("TRUST_NOT_FOUND", gun, roleFile, `${gun}: ${roleFile}: HTTP 404`);
    if (b.length > maxBytes) {
      throw new TrustError(
        "METADATA_INVALID",
        gun,
        roleFile,
        `${gun}: ${roleFile}: larger than the ${maxBytes}-byte cap`,
      );
    }
    return b;
  }
}

export interface Expected {
  gun: string;
  signed: Record<string, { digest: string; size: number; role: string }>;
  refused: Record<string, string>;
}

export function readExpected(scenarioDir: string): Expected {
  return JSON.parse(readFileSync(join(scenarioDir, "expected.json"), "utf8")) as Expected;
}

/** registry / repository split of a GUN `host:port/ns/repo` */
export function queryFor(gun: string, roles: readonly string[] = ["targets/releases", "targets"]) {
  const slash = gun.indexOf("/");
  return { registry: gun.slice(0, slash), repository: gun.slice(slash + 1), roles };
}
