/**
 * trustgate's `trust list` against a real notary-server with data signed by the real `notary`
 * CLI: the answer must agree with `notary list` (tags, digests, sizes, roles) on every tag.
 * Both server flavours: built-in trust service (ed25519 timestamp keys) and notary-signer (ECDSA).
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotaryStateStore } from "../../src/trust/notary/store.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";

const exec = promisify(execFile);
const ROOT = new URL("../../", import.meta.url).pathname;
const CLI = join(ROOT, "dist", "cli.js");

beforeAll(() => {
  execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, stdio: "pipe" });
});

interface Listed {
  gun: string;
  targets: { name: string; digest: string; size: number; role: string }[];
}

async function trustList(lab: NotaryLab, gun: string, stateDir: string, extra: string[] = []) {
  try {
    const { stdout } = await exec(
      process.execPath,
      [
        CLI,
        "trust",
        "list",
        gun,
        "--server",
        lab.url,
        "--ca",
        lab.ca,
        "--state-dir",
        stateDir,
        "--json",
        ...extra,
      ],
      { timeout: 20_000 },
    );
    return { code: 0, out: JSON.parse(stdout) as Listed, err: "" };
  } catch (e) {
    const err = e as { code: number; stderr: string };
    return { code: err.code, out: undefined, err: err.stderr };
  }
}

const asRecord = (l: Listed | undefined) =>
  Object.fromEntries(
    (l?.targets ?? []).map((t) => [
      t.name,
      { digest: t.digest.replace(/^sha256:/, ""), size: t.size, role: t.role },
    ]),
  );

const hex = (c: string) => c.repeat(64);

describe.each([
  ["notary-server (local trust service, ed25519)", false],
  ["notary-server + notary-signer (ECDSA)", true],
])("%s", (_name, ecdsaSigner) => {
  let lab: NotaryLab;
  let state: string;
  beforeAll(async () => {
    lab = await startNotary({ ecdsaSigner });
    state = mkdtempSync(join(tmpdir(), "tg-live-state-"));
  });
  afterAll(async () => {
    await lab?.stop();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  it("agrees with notary list through signing, delegation, rotation, removal and retagging", async () => {
    const gun = "127.0.0.1:5000/acme/live";
    const c = lab.client();
    await c.init(gun);
    await c.addhash(gun, "v1", 401, hex("a"));
    await c.addhash(gun, "stable", 401, hex("a"));
    await c.addhash(gun, "gone", 10, hex("e"));
    await c.publish(gun);
    let mine = await trustList(lab, gun, state);
    expect(mine.code).toBe(0);
    expect(asRecord(mine.out)).toEqual(await c.list(gun));
    expect(Object.keys(asRecord(mine.out)).sort()).toEqual(["gone", "stable", "v1"]);

    // Docker's way: snapshot key to the server, a targets/releases delegation, root rotation.
    await c.rotate(gun, "snapshot", true);
    await c.addDelegation(gun, "targets/releases");
    await c.addhash(gun, "rel", 402, hex("b"), "targets/releases");
    await c.addhash(gun, "v1", 403, hex("c")); // retag
    await c.remove(gun, "gone");
    await c.publish(gun);
    await c.rotate(gun, "root");
    await c.rotate(gun, "targets");
    await c.publish(gun);

    mine = await trustList(lab, gun, state); // same state dir: the rotations must be followed
    expect(mine.err).toBe("");
    const theirs = await c.list(gun);
    expect(asRecord(mine.out)).toEqual(theirs);
    expect(theirs.rel?.role).toBe("targets/releases");
    expect(theirs.v1?.digest).toBe(hex("c"));
    expect(theirs.gone).toBeUndefined();
    // The rotations really happened, and the client followed them from its state dir.
    const stored = JSON.parse(readFileSync(new NotaryStateStore(state).pathFor(gun), "utf8"));
    const root = JSON.parse(Buffer.from(stored.files.root, "base64").toString()).signed;
    expect(root.version).toBeGreaterThanOrEqual(3);
    expect(Object.keys(stored.files).sort()).toEqual([
      "root",
      "snapshot",
      "targets",
      "targets/releases",
      "timestamp",
    ]);
  });

  it("refuses with exit 1 when pinned to a root key the GUN does not use", async () => {
    const gun = "127.0.0.1:5000/acme/pinned";
    const c = lab.client();
    await c.init(gun);
    await c.addhash(gun, "v1", 1, hex("d"));
    await c.publish(gun);
    const r = await trustList(lab, gun, mkdtempSync(join(tmpdir(), "tg-live-pin-")), [
      "--root-key",
      hex("0"),
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("ROOT_PIN_MISMATCH");
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });
});
