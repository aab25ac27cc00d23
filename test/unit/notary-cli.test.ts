import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { run } from "../../src/commands/trust.js";
import { UsageError } from "../../src/errors.js";
import { FIXTURE_NOW, FIXTURES, loadRepoFiles, readExpected } from "../helpers/notary-fixtures.js";
import { type FixtureServer, serveNotaryFiles } from "../helpers/notary-http.js";

const DELEG = join(FIXTURES, "local-ed25519", "delegation");
const gun = readExpected(DELEG).gun;
let server: FixtureServer;
let out: string;
let err: string;
const dirs: string[] = [];

beforeAll(async () => {
  server = await serveNotaryFiles(gun, loadRepoFiles(DELEG));
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  // The CLI reads the wall clock; pin Date only (timers stay real for the HTTP client).
  vi.useFakeTimers({ toFake: ["Date"], now: FIXTURE_NOW });
  out = "";
  err = "";
  vi.spyOn(process.stdout, "write").mockImplementation((s) => {
    out += String(s);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((s) => {
    err += String(s);
    return true;
  });
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("trustgate trust list", () => {
  it("prints the table notary list prints", async () => {
    expect(await run(["list", gun, "--server", server.url])).toBe(0);
    expect(out).toBe(readFileSync(join(DELEG, "notary-list.txt"), "utf8"));
  });

  it("prints JSON resolved as Docker Content Trust resolves it", async () => {
    expect(await run(["list", gun, "--server", server.url, "--json"])).toBe(0);
    const doc = JSON.parse(out) as {
      gun: string;
      targets: { name: string; digest: string; size: number; role: string }[];
    };
    expect(doc.gun).toBe(gun);
    const expected = readExpected(DELEG);
    expect(Object.fromEntries(doc.targets.map(({ name, ...rest }) => [name, rest]))).toEqual(expected.signed);
  });

  it("exits 1 with one line naming the check, and lists nothing, when verification fails", async () => {
    const state = mkdtempSync(join(tmpdir(), "tg-cli-"));
    dirs.push(state);
    const pin = "0".repeat(64);
    expect(await run(["list", gun, "--server", server.url, "--state-dir", state, "--root-key", pin])).toBe(1);
    expect(out).toBe("");
    expect(err.trim().split("\n")).toHaveLength(1);
    expect(err).toContain("ROOT_PIN_MISMATCH");
    expect(err).toContain(pin);
  });

  it("accepts the canonical root key ID docker trust inspect shows as a pin", async () => {
    const inspect = JSON.parse(readFileSync(join(DELEG, "docker-trust-inspect.json"), "utf8"));
    const rootId = inspect[0].AdministrativeKeys[0].Keys[0].ID as string;
    expect(await run(["list", gun, "--server", server.url, "--root-key", rootId, "--json"])).toBe(0);
  });

  it("keeps trust in --state-dir and refuses a later rollback", async () => {
    const state = mkdtempSync(join(tmpdir(), "tg-cli-"));
    dirs.push(state);
    const dir = join(FIXTURES, "signer-ecdsa", "retag");
    const g = readExpected(dir).gun;
    const s2 = await serveNotaryFiles(g, loadRepoFiles(join(dir, "after")));
    try {
      expect(await run(["list", g, "--server", s2.url, "--state-dir", state])).toBe(0);
      s2.files = loadRepoFiles(join(dir, "before"));
      out = "";
      expect(await run(["list", g, "--server", s2.url, "--state-dir", state])).toBe(1);
      expect(err).toContain("ROLLBACK");
      expect(out).toBe("");
    } finally {
      await s2.close();
    }
  });

  it("exits 1 when the server is unreachable and nothing is trusted", async () => {
    expect(await run(["list", gun, "--server", "http://127.0.0.1:1"])).toBe(1);
    expect(err).toContain("TRUST_UNAVAILABLE");
  });

  it.each([
    [[]],
    [["list"]],
    [["list", gun]],
    [["list", gun, "--server", "ftp://x"]],
    [["list", "nogun", "--server", "http://x"]],
    [["list", gun, "--server", "http://x", "--bogus"]],
  ])("usage error for %j", async (argv) => {
    await expect(run(argv)).rejects.toBeInstanceOf(UsageError);
  });
});
