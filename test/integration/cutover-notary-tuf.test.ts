/**
 * Issue 14 point 5 with real peers: one registry configured with BOTH a real notary-server
 * (`notary:`) and a TUF 1.0 repository made with `trustgate tuf`, served over HTTP (`tuf:`); the
 * policy counts `trust.sources: [tuf, notary]` with `notaryUntil`. A tag signed only in Notary
 * is served via notary before the date and refused after it (a second proxy whose clock is 30
 * days on, libfaketime); a tag signed in TUF is served via tuf; every audit line names the source.
 */

import { copyFile, mkdir, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnBuiltCli } from "../helpers/built-cli.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";
import { tempDir } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoInspect } from "../helpers/skopeo.js";
import { staticServer } from "../helpers/static-server.js";
import { auditFor, logMark, signTag, writePolicy } from "../helpers/trust-e2e.js";
import { startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";
import { tufArgs } from "../helpers/tuf-args.js";

const ENV = { TRUSTGATE_TUF_PASSPHRASE: "cut-over e2e" };
const DAY = 86_400_000;
// Notary counts for 20 more days: the clocked proxy (+30 days) is past it
const UNTIL = new Date(Date.now() + 20 * DAY).toISOString().slice(0, 10);
const POLICY = `name: acme
match: ["docker.io/acme/**"]
mode: enforce
trust:
  sources: [tuf, notary]
  notaryUntil: ${UNTIL}
`;

const tuf = (...args: string[]) => spawnBuiltCli(ENV, "tuf", ...args);

describe("issue 14: notary and tuf for one registry during the cut-over", () => {
  let registry: RegistryPeer;
  let notary: NotaryLab;
  let web: { server: Server; url: string };
  let now: TrustgatePeer;
  let later: TrustgatePeer;
  let scratch: string;
  const inNotary = makeImage("cut-over e2e: signed only in Notary");
  const inTuf = makeImage("cut-over e2e: signed in TUF");

  beforeAll(async () => {
    scratch = await tempDir("cutover-e2e");
    [registry, notary] = await Promise.all([startRegistry(), startNotary()]);
    await copyFile(notary.ca, join(scratch, "notary-ca.crt"));
    await pushImage(registry.url, "acme/app", "old", inNotary);
    await pushImage(registry.url, "acme/app", "new", inTuf);
    const signer = notary.client();
    await signer.init("docker.io/acme/app");
    await signTag(signer, "docker.io/acme/app", "old", inNotary);

    const repo = join(scratch, "repo");
    const keys = join(scratch, "keys");
    for (const step of [
      await tuf("init", repo, "--keys", keys),
      await tuf("keygen", join(keys, "acme.pem")),
      await tuf(
        ...tufArgs.delegate(
          repo,
          "acme",
          "docker.io/acme/*",
          join(keys, "acme.pem.pub"),
          join(keys, "targets.pem"),
        ),
      ),
      await tuf(
        ...tufArgs.sign(
          "docker.io/acme/app:new",
          repo,
          "acme",
          join(keys, "acme.pem"),
          inTuf.digest,
          String(inTuf.manifest.length),
        ),
      ),
      // valid on the clocked proxy too: the date, not an expiry, must be why Notary stops counting
      await tuf(
        "publish",
        repo,
        "--snapshot-key",
        join(keys, "snapshot.pem"),
        "--timestamp-key",
        join(keys, "timestamp.pem"),
        "--snapshot-expires",
        "60",
        "--timestamp-expires",
        "60",
      ),
    ]) {
      expect(step.stderr).toBe("");
      expect(step.code).toBe(0);
    }
    web = await staticServer(repo);
    const policies = join(scratch, "policies");
    await mkdir(policies);
    await writePolicy(policies, "acme.yaml", POLICY);
    const options = {
      registries: {
        "docker.io": {
          upstream: registry.url,
          notary: { url: notary.url, caFile: join(scratch, "notary-ca.crt") },
          tuf: { metadataUrl: `${web.url}/metadata/`, trustedRoot: join(repo, "metadata", "1.root.json") },
        },
      },
      extraConfig: { policies },
    };
    [now, later] = await Promise.all([
      startTrustgate(options),
      startTrustgate({ ...options, clockOffset: "+30d" }),
    ]);
  });

  afterAll(async () => {
    await now?.stop();
    await later?.stop();
    await notary?.stop();
    await registry?.stop();
    web?.server.closeAllConnections();
    web?.server.close();
    if (!process.env.TRUSTGATE_KEEP_TEST_DIRS)
      for (const dir of [scratch, now?.dir, later?.dir, registry?.dir])
        if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("before notaryUntil: a tag signed only in Notary is served via notary", async () => {
    const mark = await logMark(now);
    const r = await skopeoInspect(`${now.host}/acme/app:old`);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const audit = await auditFor(now, "docker.io/acme/app", { tag: "old" }, mark);
    expect(audit).toMatchObject({ decision: "allow", digest: inNotary.digest });
    expect(String(audit?.source)).toMatch(/^notary https:\/\/127\.0\.0\.1:\d+\/? docker\.io\/acme\/app$/);
  });

  it("trustgate resolve names the source that decides", async () => {
    const { runCommand } = await import("../helpers/process.js");
    for (const [tag, source] of [
      ["old", /^notary /],
      ["new", /^tuf /],
    ] as const) {
      const r = await runCommand(process.execPath, [
        "dist/cli.js",
        "resolve",
        `docker.io/acme/app:${tag}`,
        "--config",
        now.configFile,
        "--json",
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).source).toMatch(source);
    }
  });

  it("a tag signed in TUF is served via tuf, before and after the date", async () => {
    for (const peer of [now, later]) {
      const mark = await logMark(peer);
      const r = await skopeoInspect(`${peer.host}/acme/app:new`);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const audit = await auditFor(peer, "docker.io/acme/app", { tag: "new" }, mark);
      expect(audit).toMatchObject({ decision: "allow", digest: inTuf.digest });
      expect(String(audit?.source)).toMatch(/^tuf /);
    }
  });

  it("after notaryUntil: the Notary-only tag is refused, the reason naming the date", async () => {
    const mark = await logMark(later);
    const r = await skopeoInspect(`${later.host}/acme/app:old`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Notary signatures no longer count since ${UNTIL}`);
    const audit = await auditFor(later, "docker.io/acme/app", { tag: "old" }, mark);
    expect(audit).toMatchObject({ decision: "deny" });
    expect(String(audit?.reason)).toBe(
      `tuf: docker.io/acme/app:old is not signed in targets/releases or targets; notary: Notary signatures no longer count since ${UNTIL} (policy acme: trust.notaryUntil)`,
    );
    expect(String(audit?.source)).toMatch(/^tuf .*, notary \(no longer counts\)$/);
  });

  it("pulls by digest follow the same order and date (what dockerd and containerd send after a HEAD)", async () => {
    const before = await skopeoInspect(`${now.host}/acme/app@${inNotary.digest}`);
    expect(before.stderr).toBe("");
    expect(before.code).toBe(0);
    const after = await skopeoInspect(`${later.host}/acme/app@${inNotary.digest}`);
    expect(after.code).not.toBe(0);
    expect(after.stderr).toContain(`Notary signatures no longer count since ${UNTIL}`);
    expect((await skopeoInspect(`${later.host}/acme/app@${inTuf.digest}`)).code).toBe(0);
  });
});
