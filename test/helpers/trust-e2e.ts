/**
 * Small pieces the trust end-to-end tests (and the demo) share: signing a pushed image with the
 * real `notary` CLI the way `docker trust sign` does (target name = tag, target = manifest bytes),
 * writing policy files atomically (as trustgate's policies README asks of editors), and reading
 * trustgate's audit records (src/proxy/enforce.ts: one per decision, on the access line).
 */
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AuditLine } from "../../src/proxy/enforce.js";
import type { Image } from "./image.js";
import type { NotaryClient } from "./notary.js";
import { waitFor } from "./process.js";
import type { LogLine, TrustgatePeer } from "./trustgate.js";

/** The hex part of `sha256:<hex>`, as `notary addhash --sha256` wants it. */
export function digestHex(digest: string): string {
  const hex = digest.replace(/^sha256:/, "");
  if (!/^[a-f0-9]{64}$/.test(hex)) throw new Error(`not a sha256 digest: ${digest}`);
  return hex;
}

/**
 * Sign `image` as `tag` of `gun` (e.g. `docker.io/acme/app`) and publish: `notary addhash <gun>
 * <tag> <size> --sha256 <hex> [-r role]` then `notary publish <gun>` (LAB.md, "Signing as Docker does").
 */
export async function signTag(
  client: NotaryClient,
  gun: string,
  tag: string,
  image: Pick<Image, "digest" | "size">,
  role?: string,
): Promise<void> {
  await client.addhash(gun, tag, image.size, digestHex(image.digest), role);
  await client.publish(gun);
}

/** Write `policies/<file>` atomically (temp file + rename), so a watcher never sees half a file. */
export async function writePolicy(dir: string, file: string, yaml: string): Promise<void> {
  const tmp = join(dir, `.${file}.tmp-${process.pid}`);
  await writeFile(tmp, yaml);
  await rename(tmp, join(dir, file));
}

/**
 * One audit record of trustgate (src/proxy/enforce.ts AuditLine): on the access line of a
 * manifest request ("request", audit: true), or a "trust decision" line of its own elsewhere.
 */
export type AuditRecord = AuditLine;

export function asAudit(line: LogLine): AuditRecord | undefined {
  if (line.audit !== true || typeof line.decision !== "string" || typeof line.image !== "string")
    return undefined;
  return line as unknown as AuditRecord;
}

/**
 * The first audit line for `image` and `tag` (or digest `reference`) logged after `since` lines,
 * waiting for it. `since` lets a test ask about the pull it just made, not an earlier one.
 */
export async function auditFor(
  trustgate: TrustgatePeer,
  image: string,
  ref: { tag: string } | { reference: string },
  since = 0,
  timeoutMs = 5_000,
): Promise<AuditRecord> {
  let found: AuditRecord | undefined;
  await waitFor(
    `an audit line for ${image} ${JSON.stringify(ref)}`,
    async () => {
      for (const line of (await trustgate.logs()).slice(since)) {
        const a = asAudit(line);
        if (!a || a.image !== image) continue;
        if ("tag" in ref ? a.tag === ref.tag : a.reference === ref.reference) {
          found = a;
          return true;
        }
      }
      return false;
    },
    timeoutMs,
  );
  return found as AuditRecord;
}

/** How many log lines trustgate has written so far (a mark for `auditFor(..., since)`). */
export async function logMark(trustgate: TrustgatePeer): Promise<number> {
  return (await trustgate.logs()).length;
}
