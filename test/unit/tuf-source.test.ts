import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { StateStorageError, TrustError } from "../../src/trust/errors.js";
import { MAX_INDEX_ROLES, VerifiedRepository } from "../../src/trust/tuf/session.js";
import { repositoryStateDir, TufSource, type TufSourceOptions } from "../../src/trust/tuf/source.js";
import { TargetPathTemplate } from "../../src/trust/tuf/target-path.js";
import type { TrustQuery } from "../../src/trust/types.js";
import { expectNoUnhandledRejection, Hold } from "../helpers/background.js";
import { sha256Hex, TestKey, TestTufRepository } from "../helpers/tuf-repo.js";

const DAY_MS = 24 * 3600 * 1000;
const DOCKER_ROLES = ["targets/releases", "targets"];
const acmeApp: TrustQuery = { registry: "docker.io", repository: "acme/app", roles: DOCKER_ROLES };
const globexApp: TrustQuery = { registry: "docker.io", repository: "globex/app", roles: DOCKER_ROLES };

let repo: TestTufRepository;
let dir: string;
let sources: TufSource[];
let clock: number;

beforeEach(async () => {
  repo = await TestTufRepository.start();
  dir = await mkdtemp(join(tmpdir(), "trustgate-tuf-test-"));
  await writeFile(join(dir, "root.json"), repo.initialRoot);
  sources = [];
  clock = Date.now();
});

afterEach(async () => {
  for (const source of sources) await source.close();
  await repo.close();
  await rm(dir, { recursive: true, force: true });
});

async function openSource(extra: Partial<TufSourceOptions> = {}): Promise<TufSource> {
  const source = await TufSource.open({
    metadataUrl: repo.metadataUrl,
    trustedRoot: join(dir, "root.json"),
    stateDir: join(dir, "state"),
    refreshSeconds: 30,
    now: () => new Date(clock),
    fetchTimeoutMs: 2000,
    ...extra,
  });
  sources.push(source);
  return source;
}

async function trustError(promise: Promise<unknown>): Promise<TrustError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrustError);
  return err as TrustError;
}

function manifest(text: string): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, annotations: { text } }));
}

describe("TufSource", () => {
  it("resolves a tag signed by top-level targets to its digest, size and role", async () => {
    const bytes = manifest("app v1");
    repo.addTarget("targets", "docker.io/acme/app:v1", bytes);
    repo.publish();
    const source = await openSource();
    const answer = await source.resolveTag(acmeApp, "v1");
    expect(answer.signatures).toEqual([
      { name: "v1", digest: `sha256:${sha256Hex(bytes)}`, size: bytes.length, role: "targets" },
    ]);
    expect(answer.source).toBe(`tuf ${repo.metadataUrl}`);
    expect(answer.expires.getTime()).toBeGreaterThan(Date.now());
  });

  it("answers an unsigned tag with no signatures", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish();
    const source = await openSource();
    const answer = await source.resolveTag(acmeApp, "latest");
    expect(answer.signatures).toEqual([]);
  });

  it("honours delegation by path: acme's key cannot sign globex's images", async () => {
    const acmeKey = TestKey.generate();
    const globexKey = TestKey.generate();
    repo.delegate("targets", "acme", ["docker.io/acme/*"], [acmeKey]);
    repo.delegate("targets", "globex", ["docker.io/globex/*"], [globexKey]);
    const acmeBytes = manifest("acme v1");
    repo.addTarget("acme", "docker.io/acme/app:v1", acmeBytes);
    repo.addTarget("acme", "docker.io/globex/app:v1", manifest("forged by acme"));
    repo.publish();
    const source = await openSource();

    const acme = await source.resolveTag(acmeApp, "v1");
    expect(acme.signatures).toEqual([
      { name: "v1", digest: `sha256:${sha256Hex(acmeBytes)}`, size: acmeBytes.length, role: "acme" },
    ]);
    const globex = await source.resolveTag(globexApp, "v1");
    expect(globex.signatures).toEqual([]);

    // Once globex signs its own image, that is the answer, attributed to globex.
    const globexBytes = manifest("globex v1");
    repo.addTarget("globex", "docker.io/globex/app:v1", globexBytes);
    repo.publish();
    clock += 31_000;
    const signed = await source.resolveTag(globexApp, "v1");
    expect(signed.signatures).toEqual([
      { name: "v1", digest: `sha256:${sha256Hex(globexBytes)}`, size: globexBytes.length, role: "globex" },
    ]);
  });

  it("counts only the named roles when a query names TUF roles", async () => {
    const acmeKey = TestKey.generate();
    repo.delegate("targets", "acme", ["docker.io/acme/*"], [acmeKey]);
    repo.addTarget("acme", "docker.io/acme/app:v1", manifest("acme v1"));
    repo.addTarget("targets", "docker.io/acme/app:v2", manifest("top-level v2"));
    repo.publish();
    const source = await openSource();
    const onlyAcme = { ...acmeApp, roles: ["acme"] };
    expect((await source.resolveTag(onlyAcme, "v1")).signatures.map((s) => s.role)).toEqual(["acme"]);
    expect((await source.resolveTag(onlyAcme, "v2")).signatures).toEqual([]);
  });

  it("follows a root key rotation signed by the old and the new key", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish();
    const source = await openSource();
    await source.resolveTag(acmeApp, "v1");
    const newRootKey = TestKey.generate();
    repo.rotateRoot([newRootKey]);
    repo.publish();
    clock += 31_000;
    const answer = await source.resolveTag({ ...acmeApp, rootKeys: [newRootKey.keyId] }, "v1");
    expect(answer.signatures).toHaveLength(1);
    const persisted = JSON.parse(
      await readFile(
        join(repositoryStateDir(join(dir, "state"), repo.metadataUrl), "metadata", "root.json"),
        "utf8",
      ),
    );
    expect(persisted.signed.version).toBe(2);
  });

  it("refuses a root rotation signed only by the new key", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish();
    const newRootKey = TestKey.generate();
    repo.rotateRoot([newRootKey], { signers: [newRootKey] });
    repo.publish();
    const source = await openSource();
    expect((await trustError(source.resolveTag(acmeApp, "v1"))).code).toBe("SIGNATURE_INVALID");
  });

  it("refuses an expired root", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.rotateRoot([TestKey.generate()], { expires: new Date(Date.now() - DAY_MS) });
    repo.publish();
    const source = await openSource();
    expect((await trustError(source.resolveTag(acmeApp, "v1"))).code).toBe("EXPIRED");
  });

  it("refuses a frozen (expired) timestamp", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish({ timestampExpires: new Date(Date.now() - 60_000) });
    const source = await openSource();
    expect((await trustError(source.resolveTag(acmeApp, "v1"))).code).toBe("EXPIRED");
  });

  it("refuses an unsigned timestamp and unsigned targets", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish({ unsigned: ["timestamp"] });
    const source = await openSource();
    expect((await trustError(source.resolveTag(acmeApp, "v1"))).code).toBe("SIGNATURE_INVALID");

    await rm(join(dir, "state"), { recursive: true });
    repo.addTarget("targets", "docker.io/acme/app:v2", manifest("v2"));
    repo.publish({ unsigned: ["targets"] });
    const fresh = await openSource();
    // tuf-js 5 wraps targets failures in a RuntimeError without its cause: METADATA_INVALID.
    expect((await trustError(fresh.resolveTag(acmeApp, "v1"))).code).toBe("METADATA_INVALID");
  });

  it("refuses a rolled-back timestamp, also after a restart with the same state", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish();
    const oldTimestamp = repo.files.get("timestamp.json") as Buffer;
    repo.addTarget("targets", "docker.io/acme/app:v2", manifest("v2"));
    repo.publish();
    const first = await openSource();
    expect((await first.resolveTag(acmeApp, "v2")).signatures).toHaveLength(1);

    repo.files.set("timestamp.json", oldTimestamp);
    clock += 31_000;
    expect((await trustError(first.resolveTag(acmeApp, "v1"))).code).toBe("ROLLBACK");

    await first.close();
    const restarted = await openSource();
    expect((await trustError(restarted.resolveTag(acmeApp, "v1"))).code).toBe("ROLLBACK");
  });

  it("refuses a timestamp that rolls the snapshot version back", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish();
    repo.publish();
    const source = await openSource();
    await source.resolveTag(acmeApp, "v1");
    repo.publishTimestamp(repo.snapshotVersion - 1);
    clock += 31_000;
    expect((await trustError(source.resolveTag(acmeApp, "v1"))).code).toBe("ROLLBACK");
  });

  it("serves still-valid metadata while the repository is down, and refuses after expiry", async () => {
    const bytes = manifest("v1");
    repo.addTarget("targets", "docker.io/acme/app:v1", bytes);
    repo.publish({ timestampExpires: new Date(clock + 3600_000) });
    const source = await openSource();
    expect((await source.resolveTag(acmeApp, "v1")).signatures).toHaveLength(1);

    repo.down = true;
    clock += 31_000;
    const during = await source.resolveTag(acmeApp, "v1");
    expect(during.signatures[0]?.digest).toBe(`sha256:${sha256Hex(bytes)}`);

    // A restart while down still answers from what the earlier run verified and persisted.
    await source.close();
    const restarted = await openSource();
    expect((await restarted.resolveTag(acmeApp, "v1")).signatures).toHaveLength(1);

    clock += 3600_000;
    const expired = await trustError(restarted.resolveTag(acmeApp, "v1"));
    expect(expired.code).toBe("EXPIRED");
    expect(expired.role).toBe("timestamp");
  });

  it("U8: a state directory the disk refuses is StateStorageError (503), not a trust refusal, and recovers", async () => {
    const v1 = manifest("v1");
    repo.addTarget("targets", "docker.io/acme/app:v1", v1);
    repo.publish();
    const source = await openSource();
    expect((await source.resolveTag(acmeApp, "v1")).signatures).toHaveLength(1);

    // New metadata to persist, and a state directory replaced by a regular file: every write
    // under it fails with ENOTDIR, as a full or read-only disk fails with ENOSPC or EROFS.
    repo.addTarget("targets", "docker.io/acme/app:v2", manifest("v2"));
    repo.publish();
    await rename(join(dir, "state"), join(dir, "state.aside"));
    await writeFile(join(dir, "state"), "not a directory");
    clock += 31_000;
    const err = await source.resolveTag(acmeApp, "v2").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StateStorageError);
    expect(err).not.toBeInstanceOf(TrustError);
    expect((err as StateStorageError).errno).toMatch(/^E[A-Z]+$/);

    // The disk comes back with what it held: the next request establishes trust again.
    await rm(join(dir, "state"), { force: true });
    await rename(join(dir, "state.aside"), join(dir, "state"));
    clock += 31_000;
    const after = await source.resolveTag(acmeApp, "v2");
    expect(after.signatures).toHaveLength(1);
  });

  it("refuses when the repository was never reached", async () => {
    repo.down = true;
    const source = await openSource();
    expect((await trustError(source.resolveTag(acmeApp, "v1"))).code).toBe("TRUST_UNAVAILABLE");
  });

  it("refreshes at most once per window, once for 100 concurrent resolves", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish();
    const source = await openSource();
    const answers = await Promise.all(Array.from({ length: 100 }, () => source.resolveTag(acmeApp, "v1")));
    expect(answers.every((a) => a.signatures.length === 1)).toBe(true);
    expect(repo.count("timestamp.json")).toBe(1);

    const v2 = manifest("v1 re-signed");
    repo.addTarget("targets", "docker.io/acme/app:v1", v2);
    repo.publish();
    clock += 10_000;
    expect((await source.resolveTag(acmeApp, "v1")).signatures[0]?.digest).not.toBe(
      `sha256:${sha256Hex(v2)}`,
    );
    expect(repo.count("timestamp.json")).toBe(1);
    clock += 21_000;
    expect((await source.resolveTag(acmeApp, "v1")).signatures[0]?.digest).toBe(`sha256:${sha256Hex(v2)}`);
    expect(repo.count("timestamp.json")).toBe(2);
  });

  it("lists the signed tags of a repository across top-level targets and its delegation", async () => {
    const acmeKey = TestKey.generate();
    repo.delegate("targets", "acme", ["docker.io/acme/*"], [acmeKey]);
    repo.addTarget("acme", "docker.io/acme/app:v1", manifest("v1"));
    repo.addTarget("acme", "docker.io/acme/app:v2", manifest("v2"));
    repo.addTarget("acme", "docker.io/acme/other:v1", manifest("other"));
    repo.addTarget("targets", "docker.io/acme/app:stable", manifest("stable"));
    repo.addTarget("acme", "docker.io/globex/app:v9", manifest("forged"));
    repo.publish();
    const source = await openSource();
    const listed = await source.listSigned(acmeApp);
    expect(listed.map((t) => `${t.name}@${t.role}`).sort()).toEqual(["stable@targets", "v1@acme", "v2@acme"]);
    expect(await source.listSigned(globexApp)).toEqual([]);
  });

  it("reads an air-gapped repository from file://", async () => {
    const bytes = manifest("v1");
    repo.addTarget("targets", "docker.io/acme/app:v1", bytes);
    repo.publish();
    const mirror = join(dir, "mirror");
    await mkdir(mirror);
    for (const [name, content] of repo.files) await writeFile(join(mirror, name), content);
    const source = await openSource({ metadataUrl: `file://${mirror}/` });
    expect((await source.resolveTag(acmeApp, "v1")).signatures[0]?.digest).toBe(`sha256:${sha256Hex(bytes)}`);
  });
});

describe("TufSource and a changed tuf.trustedRoot (T16)", () => {
  /** the metadata URL stays the same while the repository behind it changes */
  let upstream: string;
  let front: Server;
  let frontUrl: string;
  beforeEach(async () => {
    upstream = repo.baseUrl;
    front = createServer((req, res) => {
      fetch(`${upstream}${req.url ?? "/"}`)
        .then(async (up) => {
          const body = Buffer.from(await up.arrayBuffer());
          res.writeHead(up.status, { "content-length": body.length }).end(body);
        })
        .catch(() => req.socket.destroy());
    });
    front.listen(0, "127.0.0.1");
    await once(front, "listening");
    frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}/metadata/`;
  });
  afterEach(async () => {
    front.closeAllConnections();
    front.close();
    await once(front, "close");
  });

  it("T16: after a compromise the operator pins a new root: the durable chain of the old one is dropped", async () => {
    const old = manifest("v1 under the old root");
    repo.addTarget("targets", "docker.io/acme/app:v1", old);
    repo.publish();
    repo.publish();
    const before = await openSource({ metadataUrl: frontUrl });
    expect((await before.resolveTag(acmeApp, "v1")).signatures[0]?.digest).toBe(`sha256:${sha256Hex(old)}`);
    await before.close();

    // the repository starts over with new keys at the same URL; the operator pins its root
    const recovered = await TestTufRepository.start();
    try {
      const fresh = manifest("v1 under the new root");
      recovered.addTarget("targets", "docker.io/acme/app:v1", fresh);
      recovered.publish();
      upstream = recovered.baseUrl;
      await writeFile(join(dir, "root.json"), recovered.initialRoot);
      const after = await openSource({ metadataUrl: frontUrl });
      const answer = await after.resolveTag(
        { ...acmeApp, rootKeys: [recovered.rootKeys[0]?.keyId ?? ""] },
        "v1",
      );
      expect(answer.signatures[0]?.digest).toBe(`sha256:${sha256Hex(fresh)}`);
      const durable = join(repositoryStateDir(join(dir, "state"), frontUrl), "metadata");
      expect(await readFile(join(durable, "timestamp.json"))).toEqual(recovered.files.get("timestamp.json"));
    } finally {
      await recovered.close();
    }
  });

  it("T16: an unchanged pin keeps the durable chain: a rotated root is not walked again, rollback protection holds", async () => {
    repo.addTarget("targets", "docker.io/acme/app:v1", manifest("v1"));
    repo.publish();
    const first = await openSource({ metadataUrl: frontUrl });
    await first.resolveTag(acmeApp, "v1");
    repo.rotateRoot([TestKey.generate()]);
    repo.publish();
    const oldTimestamp = repo.files.get("timestamp.json") as Buffer;
    repo.publish();
    clock += 31_000;
    await first.resolveTag(acmeApp, "v1");
    await first.close();

    repo.requests.length = 0;
    const restarted = await openSource({ metadataUrl: frontUrl });
    await restarted.resolveTag(acmeApp, "v1");
    expect(repo.requests[0]).toBe("/metadata/3.root.json"); // it started from root 2, not the pin
    await restarted.close();

    // re-pinning to the current root (root 2) keeps the state too: the old timestamp is a rollback
    await writeFile(join(dir, "root.json"), repo.files.get("2.root.json") as Buffer);
    repo.files.set("timestamp.json", oldTimestamp);
    const repinned = await openSource({ metadataUrl: frontUrl });
    expect((await trustError(repinned.resolveTag(acmeApp, "v1"))).code).toBe("ROLLBACK");
  });
});

describe("TargetPathTemplate.scope (T6: which delegations the digest index loads)", () => {
  it("T6: a delegation may cover docker.io/acme/app's tags unless a literal part of its pattern rules it out", () => {
    const scope = new TargetPathTemplate().scope({ registry: "docker.io", repository: "acme/app" });
    const covers = (pattern: string) => scope.mayDelegate([pattern]);
    for (const pattern of [
      "docker.io/acme/*",
      "docker.io/acme/app:v1*",
      "docker.io/acme/app:*-rc",
      "docker.io/acme/app:*.sig",
      "docker.io/acme/app:v1.2",
      "docker.io/acme/a*",
      "docker.io/*/app:*",
      "*/*/*",
      "docker.io/acme/[ab]pp:*",
      "docker.io/acme/{app,web}:*",
    ]) {
      expect(covers(pattern), pattern).toBe(true);
    }
    for (const pattern of [
      "docker.io/globex/*",
      "docker.io/acme/other:*",
      "docker.io/acme/app",
      "docker.io/acme/app:v1/*",
      "docker.io/*",
      "ghcr.io/acme/*",
      "docker.io/acme/app:bad tag",
    ]) {
      expect(covers(pattern), pattern).toBe(false);
    }
    expect(scope.matches("docker.io/acme/app:v1")).toBe(true);
    expect(scope.matches("docker.io/acme/app2:v1")).toBe(false);
  });
});

describe("TufSource digest index (T6)", () => {
  const digestOf = (bytes: Buffer) => `sha256:${sha256Hex(bytes)}`;

  it("T6: a tag under a narrow delegation (paths docker.io/acme/app:v1*) is found by tag, then by digest", async () => {
    const narrowKey = TestKey.generate();
    const globexKey = TestKey.generate();
    repo.delegate("targets", "acme-v1", ["docker.io/acme/app:v1*"], [narrowKey]);
    repo.delegate("targets", "globex", ["docker.io/globex/*"], [globexKey]);
    const v1 = manifest("acme app v1.2");
    repo.addTarget("acme-v1", "docker.io/acme/app:v1.2", v1);
    // outside acme-v1's paths: never acme's tag v2, by tag or by digest
    const forged = manifest("acme-v1 signs v2");
    repo.addTarget("acme-v1", "docker.io/acme/app:v2", forged);
    const globexOnly = manifest("globex's");
    repo.addTarget("globex", "docker.io/globex/app:v1", globexOnly);
    repo.publish();
    const source = await openSource();

    // HEAD by tag (resolveTag), then the GET by the digest it answered (signedByDigest)
    const head = await source.resolveTag(acmeApp, "v1.2");
    expect(head.signatures).toEqual([
      { name: "v1.2", digest: digestOf(v1), size: v1.length, role: "acme-v1" },
    ]);
    expect(await source.signedByDigest(acmeApp, head.signatures[0]?.digest ?? "")).toEqual(head.signatures);
    expect(await source.signedByDigest({ ...acmeApp, roles: ["acme-v1"] }, digestOf(v1))).toEqual(
      head.signatures,
    );
    expect(await source.signedByDigest({ ...acmeApp, roles: ["other"] }, digestOf(v1))).toEqual([]);
    expect(await source.listSigned(acmeApp)).toEqual(head.signatures);

    expect((await source.resolveTag(acmeApp, "v2")).signatures).toEqual([]);
    expect(await source.signedByDigest(acmeApp, digestOf(forged))).toEqual([]);
    // another image's target is not one of acme/app's digests
    expect(await source.signedByDigest(acmeApp, digestOf(globexOnly))).toEqual([]);
    expect((await source.signedByDigest(globexApp, digestOf(globexOnly))).map((t) => t.role)).toEqual([
      "globex",
    ]);

    // the next verified state (a refresh) has its own index
    const v13 = manifest("acme app v1.3");
    repo.addTarget("acme-v1", "docker.io/acme/app:v1.3", v13);
    repo.publish();
    expect(await source.signedByDigest(acmeApp, digestOf(v13))).toEqual([]);
    clock += 31_000;
    expect((await source.signedByDigest(acmeApp, digestOf(v13))).map((t) => `${t.name}@${t.role}`)).toEqual([
      "v1.3@acme-v1",
    ]);
  });

  it("T6: only the role the preorder walk resolves a path to counts (earlier, terminating and top-level shadowing)", async () => {
    const key = () => [TestKey.generate()];
    repo.delegate("targets", "acme", ["docker.io/acme/*"], key());
    repo.delegate("targets", "rc-gate", ["docker.io/acme/app:rc*"], key(), true);
    repo.delegate("targets", "later", ["docker.io/acme/app:v*"], key());
    repo.delegate("targets", "rc-team", ["docker.io/acme/app:rc*"], key());
    repo.delegate("later", "later-child", ["docker.io/acme/app:v3*"], key());
    const stable = manifest("top-level stable");
    const stableShadowed = manifest("acme's stable, shadowed by top-level targets");
    repo.addTarget("targets", "docker.io/acme/app:stable", stable);
    repo.addTarget("acme", "docker.io/acme/app:stable", stableShadowed);
    const v2 = manifest("acme's v2");
    const v2Shadowed = manifest("later's v2, shadowed by the earlier delegation acme");
    repo.addTarget("acme", "docker.io/acme/app:v2", v2);
    repo.addTarget("later", "docker.io/acme/app:v2", v2Shadowed);
    const rc1 = manifest("rc-team's rc1, behind the terminating rc-gate");
    repo.addTarget("rc-team", "docker.io/acme/app:rc1", rc1);
    const v3 = manifest("later-child's v3, two levels down");
    repo.addTarget("later-child", "docker.io/acme/app:v3", v3);
    const same = manifest("v4 and latest: one manifest, two tags");
    repo.addTarget("later", "docker.io/acme/app:v4", same);
    repo.addTarget("acme", "docker.io/acme/app:latest", same);
    repo.publish();
    const source = await openSource();

    const byDigest = async (bytes: Buffer) =>
      (await source.signedByDigest(acmeApp, digestOf(bytes))).map((t) => `${t.name}@${t.role}`);
    expect(await byDigest(stable)).toEqual(["stable@targets"]);
    expect(await byDigest(stableShadowed)).toEqual([]);
    expect(await byDigest(v2)).toEqual(["v2@acme"]);
    expect(await byDigest(v2Shadowed)).toEqual([]);
    expect(await byDigest(rc1)).toEqual([]);
    expect(await byDigest(v3)).toEqual(["v3@later-child"]);
    // one per (role, tag); with the query's roles, in their order
    expect(await byDigest(same)).toEqual(["latest@acme", "v4@later"]);
    expect(
      (await source.signedByDigest({ ...acmeApp, roles: ["later", "acme"] }, digestOf(same))).map(
        (t) => `${t.name}@${t.role}`,
      ),
    ).toEqual(["v4@later", "latest@acme"]);

    // the index agrees with the tag lookup (tuf-js's own walk) for every tag, listed or not
    const listed = await source.listSigned(acmeApp);
    expect(listed.map((t) => `${t.name}@${t.role}`)).toEqual([
      "latest@acme",
      "stable@targets",
      "v2@acme",
      "v3@later-child",
      "v4@later",
    ]);
    for (const tag of ["stable", "v2", "rc1", "v3", "v4", "latest"]) {
      const byTag = (await source.resolveTag(acmeApp, tag)).signatures;
      expect(listed.filter((t) => t.name === tag)).toEqual(byTag);
    }
  });

  it("T6: 3,000 tags, 100 digest misses: the index is built once (10 concurrent misses share it) and each miss is a lookup", async () => {
    const acmeKey = TestKey.generate();
    repo.delegate("targets", "acme", ["docker.io/acme/*"], [acmeKey]);
    for (let i = 0; i < 3000; i++) repo.addTarget("acme", `docker.io/acme/app:v${i}`, manifest(`v${i}`));
    repo.publish();
    const source = await openSource();
    await source.resolveTag(acmeApp, "v0"); // the refresh and acme's load are not what is measured
    const builds = vi.spyOn(VerifiedRepository.prototype, "resolveScope");
    const misses = Array.from({ length: 100 }, (_, i) => `sha256:${sha256Hex(Buffer.from(`unsigned ${i}`))}`);
    try {
      const started = performance.now();
      const concurrent = await Promise.all(misses.slice(0, 10).map((d) => source.signedByDigest(acmeApp, d)));
      const built = performance.now();
      for (const digest of misses.slice(10)) expect(await source.signedByDigest(acmeApp, digest)).toEqual([]);
      const lookups = performance.now() - built;
      const elapsed = performance.now() - started;
      expect(concurrent.every((answer) => answer.length === 0)).toBe(true);
      expect(builds).toHaveBeenCalledTimes(1);
      // before: every miss re-walked every tag, serially: 59 ms per miss, 5.9 s for these 100
      // (88 ms per miss on the shared test machine). Now one build, then a map lookup per miss.
      expect(lookups).toBeLessThan(200);
      expect(elapsed).toBeLessThan(3000);
      console.log(
        `T6: 3,000 tags, 100 digest misses in ${elapsed.toFixed(0)} ms (the 90 after the build: ${lookups.toFixed(0)} ms)`,
      );
      const hit = manifest("v2999");
      expect((await source.signedByDigest(acmeApp, digestOf(hit))).map((t) => t.name)).toEqual(["v2999"]);
      expect(builds).toHaveBeenCalledTimes(1);
    } finally {
      builds.mockRestore();
    }
  });

  it(`T6: the index is bounded: more than ${MAX_INDEX_ROLES} roles that may sign one image refuse digest lookups, not tags`, async () => {
    for (let i = 0; i <= MAX_INDEX_ROLES; i++) {
      repo.delegate("targets", `team-${i}`, [`docker.io/acme/app:t${i}*`], [TestKey.generate()]);
    }
    const bytes = manifest("t0");
    repo.addTarget("team-0", "docker.io/acme/app:t0", bytes);
    // roles for other images are not walked, so they do not count toward the bound
    repo.delegate("targets", "globex", ["docker.io/globex/*"], [TestKey.generate()]);
    repo.publish();
    const source = await openSource();
    expect((await source.resolveTag(acmeApp, "t0")).signatures.map((t) => t.role)).toEqual(["team-0"]);
    const refused = await trustError(source.signedByDigest(acmeApp, digestOf(bytes)));
    expect(refused.code).toBe("METADATA_INVALID");
    expect(refused.message).toContain(`more than ${MAX_INDEX_ROLES} delegated roles`);
    expect(await source.listSigned(globexApp)).toEqual([]);
    // at most the bound was loaded (team-0 by the tag lookup, then the index's)
    const loaded = repo.requests.filter((p) => /^\/metadata\/\d+\.team-\d+\.json$/.test(p));
    expect(loaded.length).toBeLessThanOrEqual(MAX_INDEX_ROLES);
  });
});

/**
 * An HTTP front for the test repository that holds every request while `hold()` is on, so a
 * refresh stays in flight as long as a test needs. A request the repository drops (down) is
 * dropped here too.
 */
class Gate extends Hold {
  /** request paths, in order, at the moment they arrive (before any hold) */
  readonly asked: string[] = [];
  private constructor(private readonly server: Server) {
    super();
  }

  static async start(upstream: string): Promise<Gate> {
    const server = createServer();
    const gate = new Gate(server);
    server.on("request", (req, res) => {
      gate.asked.push(req.url ?? "/");
      gate.pass(() => {
        fetch(`${upstream}${req.url ?? "/"}`)
          .then(async (up) => {
            const body = Buffer.from(await up.arrayBuffer());
            res.writeHead(up.status, { "content-length": body.length }).end(body);
          })
          .catch(() => req.socket.destroy());
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return gate;
  }

  get metadataUrl(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/metadata/`;
  }
  /** refreshes started: each begins by asking for the next root version (N.root.json) */
  get refreshes(): number {
    return this.asked.filter((p) => /^\/metadata\/\d+\.root\.json$/.test(p)).length;
  }
  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, "close");
  }
}

/** Settles with `p`, or throws if it takes longer than `ms` (e.g. it waits for a held request). */
async function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe("TufSource refresh-ahead (refreshSeconds 40: ahead point 30 s after a refresh)", () => {
  const PATH = "docker.io/acme/app:v1";
  let gate: Gate;
  let t0: number;
  const digestOf = (bytes: Buffer) => `sha256:${sha256Hex(bytes)}`;

  beforeEach(async () => {
    gate = await Gate.start(repo.baseUrl);
    t0 = clock;
  });
  afterEach(async () => {
    // sources (closed by the outer afterEach) must not wait on a held request
    gate.release();
    await gate.close();
  });

  const gated = () => openSource({ metadataUrl: gate.metadataUrl, refreshSeconds: 40 });

  it("before the ahead point no fetch; from it on answers at once and refreshes once in the background", async () => {
    const v1 = manifest("v1");
    repo.addTarget("targets", PATH, v1);
    repo.publish();
    const source = await gated();
    expect((await source.resolveTag(acmeApp, "v1")).signatures[0]?.digest).toBe(digestOf(v1));
    expect(gate.refreshes).toBe(1);
    const resigned = manifest("v1 re-signed");
    repo.addTarget("targets", PATH, resigned);
    repo.publish();

    clock = t0 + 29_999;
    expect((await source.resolveTag(acmeApp, "v1")).signatures[0]?.digest).toBe(digestOf(v1));
    expect(gate.refreshes).toBe(1);

    gate.hold();
    clock = t0 + 30_000;
    // answered while the refresh is held at the gate: none of them waited for it
    const answers = await within(
      2000,
      Promise.all(Array.from({ length: 50 }, () => source.resolveTag(acmeApp, "v1"))),
    );
    expect(answers.every((a) => a.signatures[0]?.digest === digestOf(v1))).toBe(true);
    // one background refresh for 50 queries, its first request held at the gate
    await vi.waitFor(() => expect(gate.held).toBe(1));
    await new Promise((r) => setTimeout(r, 100)); // room for any second refresh to show up
    expect(gate.refreshes).toBe(2);
    expect(gate.held).toBe(1);
    clock = t0 + 39_999;
    expect((await within(2000, source.resolveTag(acmeApp, "v1"))).signatures[0]?.digest).toBe(digestOf(v1));
    expect(gate.refreshes).toBe(2);

    gate.release();
    await source.idle();
    expect((await source.resolveTag(acmeApp, "v1")).signatures[0]?.digest).toBe(digestOf(resigned));
    expect(gate.refreshes).toBe(2);
  });

  it("at refreshSeconds or later the query waits for the refresh (foreground), shared by concurrent callers", async () => {
    repo.addTarget("targets", PATH, manifest("v1"));
    repo.publish();
    const source = await gated();
    await source.resolveTag(acmeApp, "v1");
    const resigned = manifest("v1 re-signed");
    repo.addTarget("targets", PATH, resigned);
    repo.publish();
    gate.hold();
    clock = t0 + 40_000;
    const pending = Promise.all(Array.from({ length: 10 }, () => source.resolveTag(acmeApp, "v1")));
    await expect(within(300, pending)).rejects.toThrow("still waiting");
    expect(gate.refreshes).toBe(2);
    expect(gate.held).toBe(1);
    gate.release();
    expect((await pending).every((a) => a.signatures[0]?.digest === digestOf(resigned))).toBe(true);
    expect(gate.refreshes).toBe(2);
  });

  it.each([
    ["a rolled-back timestamp", "ROLLBACK"],
    ["an unsigned timestamp", "SIGNATURE_INVALID"],
  ])("a background refresh that meets %s makes the very next query fail closed", async (attack, code) => {
    const v1 = manifest("v1");
    repo.addTarget("targets", PATH, v1);
    repo.publish();
    const oldTimestamp = repo.files.get("timestamp.json") as Buffer;
    repo.publish();
    const source = await openSource({ refreshSeconds: 40 });
    await source.resolveTag(acmeApp, "v1");
    if (attack === "a rolled-back timestamp") repo.files.set("timestamp.json", oldTimestamp);
    else repo.publish({ unsigned: ["timestamp"] });

    await expectNoUnhandledRejection(async () => {
      clock = t0 + 30_000;
      expect((await source.resolveTag(acmeApp, "v1")).signatures[0]?.digest).toBe(digestOf(v1));
      await source.idle();
    });
    expect(repo.count("timestamp.json")).toBe(2);
    // the very next query, well inside 40 s of the last good refresh: refused, not answered
    expect((await trustError(source.resolveTag(acmeApp, "v1"))).code).toBe(code);
    expect((await trustError(source.listSigned(acmeApp))).code).toBe(code);
  });

  it("a background refresh that finds the repository unreachable keeps answers coming until expiry", async () => {
    const v1 = manifest("v1");
    repo.addTarget("targets", PATH, v1);
    repo.publish({ timestampExpires: new Date(clock + 3600_000) });
    const source = await openSource({ refreshSeconds: 40 });
    const first = await source.resolveTag(acmeApp, "v1");
    repo.down = true;
    await expectNoUnhandledRejection(async () => {
      clock = t0 + 30_000;
      expect((await source.resolveTag(acmeApp, "v1")).signatures).toEqual(first.signatures);
      await source.idle();
    });
    expect(repo.count("timestamp.json")).toBe(1); // the second refresh never got that far
    expect((await source.resolveTag(acmeApp, "v1")).signatures).toEqual(first.signatures);
    const expires = first.expires.getTime(); // the timestamp's
    clock = expires - 1;
    expect((await source.resolveTag(acmeApp, "v1")).signatures).toEqual(first.signatures);
    clock = expires;
    const expired = await trustError(source.resolveTag(acmeApp, "v1"));
    expect(expired.code).toBe("EXPIRED");
    expect(expired.role).toBe("timestamp");
  });

  it("reuseUntil is the refresh-ahead point, or an expiry on the answer's path when that comes first", async () => {
    const acmeKey = TestKey.generate();
    repo.delegate("targets", "acme", ["docker.io/acme/*"], [acmeKey]);
    repo.addTarget("targets", PATH, manifest("v1"));
    repo.addTarget("acme", "docker.io/acme/app:v2", manifest("v2"));
    const acmeRole = repo.roles.get("acme");
    if (acmeRole) acmeRole.expires = new Date(t0 + 50_000);
    repo.publish({ timestampExpires: new Date(t0 + 3600_000) });
    const source = await openSource({ refreshSeconds: 40 });
    const v1 = await source.resolveTag(acmeApp, "v1");
    expect(v1.reuseUntil).toBe(t0 + 30_000);
    // unsigned: the top-level metadata only
    expect((await source.resolveTag(acmeApp, "nope")).reuseUntil).toBe(t0 + 30_000);
    clock = t0 + 30_000;
    // the answer at the ahead point still rests on the old refresh: nothing left to reuse
    expect((await source.resolveTag(acmeApp, "v1")).reuseUntil).toBe(t0 + 30_000);
    await source.idle();
    expect((await source.resolveTag(acmeApp, "v1")).reuseUntil).toBe(t0 + 60_000);
    // signed by acme, whose metadata expires (to the second) before that ahead point
    const acmeExpires = Math.floor((t0 + 50_000) / 1000) * 1000;
    const v2 = await source.resolveTag(acmeApp, "v2");
    expect(v2.signatures[0]?.role).toBe("acme");
    expect(v2.reuseUntil).toBe(acmeExpires);
    expect(v2.expires.getTime()).toBe(acmeExpires);

    // a top-level expiry (the timestamp) before the ahead point
    clock = Math.floor((t0 + 3600_000) / 1000) * 1000 - 10_000;
    await source.idle();
    const late = await source.resolveTag(acmeApp, "v1");
    expect(late.reuseUntil).toBe(clock + 10_000);
  });

  it("reuseUntil is <= now with refreshSeconds 0", async () => {
    repo.addTarget("targets", PATH, manifest("v1"));
    repo.publish();
    const source = await openSource({ refreshSeconds: 0 });
    expect((await source.resolveTag(acmeApp, "v1")).reuseUntil).toBe(clock);
    clock += 5;
    expect((await source.resolveTag(acmeApp, "v1")).reuseUntil).toBeLessThanOrEqual(clock);
    // every query refreshes in the foreground, and nothing more starts behind it
    await source.idle();
    expect(repo.count("timestamp.json")).toBe(2);
  });
});
