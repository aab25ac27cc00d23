/**
 * `npm run demo` (demo/run.ts) as a newcomer runs it: exit 0, the signed tag pulled with the signed
 * digest, the unsigned one refused with trustgate's reason, and every process it started gone
 * afterwards. Also interrupted mid-way (SIGINT, as Ctrl-C): it still stops everything it started.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { alive } from "../helpers/peer-ready.js";
import { runCommand, waitFor } from "../helpers/process.js";

const REPO_ROOT = join(import.meta.dirname, "..", "..");
const DEMO_JS = join(REPO_ROOT, ".build", "demo", "run.js");

/** Every PID the demo announced ("(pid 123)" or "(pid 123, 456)"). */
function announcedPids(output: string): number[] {
  const pids: number[] = [];
  for (const match of output.matchAll(/\(pid ([\d, ]+)\)/g))
    for (const pid of (match[1] ?? "").split(",")) pids.push(Number(pid.trim()));
  return [...new Set(pids)].filter((pid) => Number.isInteger(pid) && pid > 0);
}

describe("npm run demo", () => {
  it("builds, pulls the signed tag, shows the refusal of the unsigned one, and stops everything", async () => {
    const res = await runCommand("npm", ["run", "--silent", "demo"], { cwd: REPO_ROOT, timeoutMs: 120_000 });
    const out = res.stdout;
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(out).toMatch(/notary addhash docker\.io\/acme\/hello signed \d+ --sha256 [a-f0-9]{64}/);
    const signed = out.match(/acme\/hello:signed +-> (sha256:[a-f0-9]{64})/)?.[1];
    expect(signed).toBeDefined();
    expect(out).toContain(`[ok] pulled docker.io/acme/hello:signed with digest ${signed}`);
    expect(out).toContain(
      "[refused] skopeo says: denied: docker.io/acme/hello:unsigned is not signed in targets/releases or targets",
    );
    expect(out).toContain('decision=deny policy=acme reason="docker.io/acme/hello:unsigned is not signed');
    expect(out).toContain("All processes stopped. Bye.");
    const pids = announcedPids(out);
    expect(pids.length).toBeGreaterThanOrEqual(3); // registry, notary-server, trustgate
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it("interrupted with SIGINT after trustgate started, it stops everything it started", async () => {
    // .build/demo/run.js is compiled by the previous test's `npm run demo`; run alone, build it here.
    if (!existsSync(DEMO_JS)) {
      const build = await runCommand("npm", ["run", "--silent", "build"], { cwd: REPO_ROOT });
      const tools = await runCommand("npx", ["tsc", "-p", "tsconfig.tools.json"], { cwd: REPO_ROOT });
      expect(`${build.stdout}${build.stderr}${tools.stdout}${tools.stderr}`).toBe("");
    }
    const child = spawn(process.execPath, [DEMO_JS], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stderr.resume();
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      await waitFor(
        "the demo to start trustgate",
        async () => /trustgate listening on .*\(pid \d+\)/.test(out),
        60_000,
      );
      child.kill("SIGINT");
      const [code] = await exited;
      expect(code).toBe(130);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    expect(out).toContain("== Stopping everything the demo started");
    const pids = announcedPids(out);
    expect(pids.length).toBeGreaterThanOrEqual(3);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it("with notary-server missing, it names the Debian package and starts nothing", async () => {
    if (!existsSync(DEMO_JS)) {
      await runCommand("npm", ["run", "--silent", "build"], { cwd: REPO_ROOT });
      await runCommand("npx", ["tsc", "-p", "tsconfig.tools.json"], { cwd: REPO_ROOT });
    }
    // A PATH with every program the demo needs except notary-server, and a TMPDIR of its own.
    const root = mkdtempSync(join(tmpdir(), "demo-missing-"));
    const bin = join(root, "bin");
    const tmp = join(root, "tmp");
    mkdirSync(bin);
    mkdirSync(tmp);
    for (const command of ["docker-registry", "notary", "skopeo", "openssl"]) {
      const found = (process.env.PATH ?? "")
        .split(":")
        .map((dir) => join(dir, command))
        .find((path) => existsSync(path));
      if (found) symlinkSync(found, join(bin, command));
    }
    const res = await runCommand(process.execPath, [DEMO_JS], {
      cwd: REPO_ROOT,
      timeoutMs: 30_000,
      env: { ...process.env, PATH: bin, TMPDIR: tmp },
    });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("notary-server (Debian package notary)");
    expect(res.stderr).toMatch(/Install them with: apt-get install .*\bnotary\b/);
    expect(res.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(announcedPids(res.stdout)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });
});
