/**
 * Smoke test of dist/tuf-conformance-client.js: the tuf-conformance CLIENT-CLI.md protocol run
 * against the test repository (compiled first, as the suite runs the built file).
 */
import { execFile } from "node:child_process";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestKey, TestTufRepository } from "../helpers/tuf-repo.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const CLIENT = join(ROOT, "dist", "tuf-conformance-client.js");

let repo: TestTufRepository;
let dir: string;

async function client(...args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await run(process.execPath, [CLIENT, ...args], { timeout: 30_000 });
    return { code: 0, stderr };
  } catch (err) {
    const failed = err as { code?: number; stderr?: string };
    return { code: typeof failed.code === "number" ? failed.code : -1, stderr: failed.stderr ?? "" };
  }
}

beforeAll(async () => {
  await run("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, timeout: 120_000 });
  repo = await TestTufRepository.start();
  dir = await mkdtemp(join(tmpdir(), "trustgate-tuf-conformance-test-"));
});

afterAll(async () => {
  await repo?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("tuf-conformance-client", () => {
  it("runs init, refresh and download, storing metadata under unversioned names", async () => {
    const acmeKey = TestKey.generate();
    repo.delegate("targets", "acme", ["docker.io/acme/*"], [acmeKey]);
    const artifact = Buffer.from("signed manifest bytes");
    repo.addTarget("acme", "docker.io/acme/app:v1", artifact);
    repo.publish();
    const metadataDir = join(dir, "metadata");
    const targetDir = join(dir, "targets");
    await writeFile(join(dir, "initial_root.json"), repo.initialRoot);

    const init = await client("--metadata-dir", metadataDir, "init", join(dir, "initial_root.json"));
    expect(init.code).toBe(0);
    expect(repo.requests).toEqual([]);
    expect(await readFile(join(metadataDir, "root.json"))).toEqual(repo.initialRoot);

    const refresh = await client(
      "--metadata-dir",
      metadataDir,
      "--metadata-url",
      repo.metadataUrl,
      "refresh",
    );
    expect(refresh).toEqual({ code: 0, stderr: "" });
    expect((await readdir(metadataDir)).sort()).toEqual([
      "root.json",
      "snapshot.json",
      "targets.json",
      "timestamp.json",
    ]);
    expect(await readFile(join(metadataDir, "timestamp.json"))).toEqual(repo.files.get("timestamp.json"));

    await rm(targetDir, { recursive: true, force: true });
    await mkdir(targetDir);
    const download = () =>
      client(
        "--metadata-dir",
        metadataDir,
        "--metadata-url",
        repo.metadataUrl,
        "--target-name",
        "docker.io/acme/app:v1",
        "--target-base-url",
        repo.targetsUrl,
        "--target-dir",
        targetDir,
        "download",
      );
    expect((await download()).code).toBe(0);
    expect(await readFile(join(targetDir, encodeURIComponent("docker.io/acme/app:v1")))).toEqual(artifact);
    expect(await readdir(metadataDir)).toContain("acme.json");

    // Already downloaded with matching hashes: not fetched again.
    const targetRequests = () => repo.requests.filter((p) => p.startsWith("/targets/")).length;
    const before = targetRequests();
    expect((await download()).code).toBe(0);
    expect(targetRequests()).toBe(before);
  });

  it("T17: keeps delegated roles named ../x, .hidden and a/b in METADATA_DIR, under tuf-js's encoded names only", async () => {
    const roles = [
      { role: "../x", prefix: "dotdot", file: "..%2Fx.json" },
      { role: ".hidden", prefix: "hidden", file: ".hidden.json" },
      { role: "a/b", prefix: "ab", file: "a%2Fb.json" },
    ];
    for (const { role, prefix } of roles) {
      repo.delegate("targets", role, [`${prefix}/*`], [TestKey.generate()]);
      repo.addTarget(role, `${prefix}/artifact`, Buffer.from(`signed by ${role}`));
    }
    repo.publish();
    const base = join(dir, "unusual");
    const metadataDir = join(base, "metadata");
    const targetDir = join(base, "targets");
    await mkdir(targetDir, { recursive: true });
    await writeFile(join(base, "initial_root.json"), repo.initialRoot);
    expect((await client("--metadata-dir", metadataDir, "init", join(base, "initial_root.json"))).code).toBe(
      0,
    );
    for (const { prefix } of roles) {
      const download = await client(
        "--metadata-dir",
        metadataDir,
        "--metadata-url",
        repo.metadataUrl,
        "--target-name",
        `${prefix}/artifact`,
        "--target-base-url",
        repo.targetsUrl,
        "--target-dir",
        targetDir,
        "download",
      );
      expect(download).toEqual({ code: 0, stderr: "" });
    }
    const kept = await readdir(metadataDir);
    for (const { role, file } of roles) {
      expect(kept).toContain(file);
      const version = repo.roles.get(role)?.version;
      expect(await readFile(join(metadataDir, file))).toEqual(
        repo.files.get(`${version}.${encodeURIComponent(role)}.json`),
      );
    }
    // nothing escaped METADATA_DIR: no x.json beside it, no a/ below it
    expect(await readdir(base)).toEqual(["initial_root.json", "metadata", "targets"]);
    expect((await lstat(join(metadataDir, "a%2Fb.json"))).isFile()).toBe(true);
    expect(kept.filter((name) => !name.endsWith(".json"))).toEqual([]);
  });

  it("exits 1 on an unsigned target, tampered target bytes, and a rolled-back timestamp", async () => {
    const metadataDir = join(dir, "metadata-failures");
    const targetDir = join(dir, "targets-failures");
    await mkdir(targetDir, { recursive: true });
    await writeFile(join(dir, "initial_root.json"), repo.initialRoot);
    expect((await client("--metadata-dir", metadataDir, "init", join(dir, "initial_root.json"))).code).toBe(
      0,
    );
    const download = (name: string) =>
      client(
        "--metadata-dir",
        metadataDir,
        "--metadata-url",
        repo.metadataUrl,
        "--target-name",
        name,
        "--target-base-url",
        repo.targetsUrl,
        "--target-dir",
        targetDir,
        "download",
      );

    expect((await download("docker.io/acme/app:unsigned")).code).toBe(1);

    const entry = repo.addTarget("targets", "docker.io/acme/app:v2", Buffer.from("v2 bytes"));
    repo.publish();
    repo.targetFiles.set(`docker.io/acme/${entry.hashes.sha256}.app:v2`, Buffer.from("v2 bytes, tampered"));
    const tampered = await download("docker.io/acme/app:v2");
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).not.toMatch(/\n\s+at /); // one line, no stack trace
    expect(await readdir(targetDir)).toEqual([]);

    const old = repo.files.get("timestamp.json") as Buffer;
    repo.publish();
    expect(
      (await client("--metadata-dir", metadataDir, "--metadata-url", repo.metadataUrl, "refresh")).code,
    ).toBe(0);
    repo.files.set("timestamp.json", old);
    expect(
      (await client("--metadata-dir", metadataDir, "--metadata-url", repo.metadataUrl, "refresh")).code,
    ).toBe(1);

    expect((await client("--metadata-dir", metadataDir, "bogus")).code).toBe(1);
  });
});
