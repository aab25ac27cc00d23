import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, tempDir, waitFor } from "../helpers/process.js";

const CLI = resolve(import.meta.dirname, "../../dist/cli.js");

// `serve` logs through an asynchronous destination (src/log.ts). Its stdout goes straight to a
// file here (as under systemd or a container runtime), so what the file holds once the process
// has exited is exactly what the process wrote: no line may be lost on SIGTERM.
describe("serve: logs are flushed on SIGTERM", () => {
  let dir: string;
  let child: ChildProcess;
  let url: string;
  let logFile: string;

  beforeAll(async () => {
    dir = await tempDir("serve-logs");
    const configFile = join(dir, "config.yaml");
    await mkdir(join(dir, "policies")); // serve refuses to start without its policy directory
    await writeFile(
      configFile,
      ["logLevel: info", "registries:", "  down.example:", "    upstream: http://127.0.0.1:1"].join("\n"),
    );
    const port = await freePort();
    logFile = join(dir, "trustgate.log");
    const fd = openSync(logFile, "a");
    child = spawn(process.execPath, [CLI, "serve", "--config", configFile, "--listen", `127.0.0.1:${port}`], {
      cwd: dir,
      stdio: ["ignore", fd, fd],
    });
    closeSync(fd);
    url = `http://127.0.0.1:${port}`;
    await waitFor(`trustgate on port ${port}`, async () => (await fetch(`${url}/v2/`)).status === 200);
  });

  afterAll(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("writes every access line and the stop line before exiting 0", async () => {
    // A burst, so lines queue behind an in-flight write and go out batched.
    const answers = await Promise.all(Array.from({ length: 200 }, () => fetch(`${url}/v2/`)));
    const ids = answers.map((r) => r.headers.get("x-request-id"));
    await Promise.all(answers.map((r) => r.arrayBuffer()));

    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);

    const lines = (await readFile(logFile, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { msg: string; reqId?: string; status?: number });
    const logged = new Set(lines.filter((l) => l.msg === "request").map((l) => l.reqId));
    for (const id of ids) expect(logged.has(id ?? "")).toBe(true);
    expect(lines.at(-1)?.msg).toBe("stopped");
  });
});

// A crash (uncaught exception) must not lose or splice buffered lines either: the exit hook of the
// asynchronous destination (src/log-destination.ts) waits for the write in flight, then writes the
// rest. Stdout is a pipe read only after 300 ms here, so the pipe fills and writes block (or, on a
// non-blocking descriptor, fail with EAGAIN) while a batch is in flight.
describe("asynchronous log destination: flushed whole on a fatal error", () => {
  const LOG = resolve(import.meta.dirname, "../../dist/log.js");

  async function crashAndRead(options: {
    crashAfterMs: number | "immediate";
    nonBlocking: boolean;
    pad: number;
  }) {
    const crash = 'log.info({ i: 5000 }, "line"); throw new Error("fatal");';
    const script = [
      // Opening process.stdout on a pipe makes libuv set O_NONBLOCK on the shared file description,
      // as any code that touches process.stdout (or a stderr dup'ed from it) does.
      options.nonBlocking ? "process.stdout;" : "",
      `import { asyncStdout, createLogger } from ${JSON.stringify(LOG)};`,
      'const log = createLogger("info", asyncStdout());',
      `const pad = "x".repeat(${options.pad});`,
      'for (let i = 0; i < 5000; i++) log.info({ i, pad }, "line");',
      options.crashAfterMs === "immediate"
        ? `setImmediate(() => { ${crash} });`
        : `setTimeout(() => { ${crash} }, ${options.crashAfterMs});`,
    ].join("\n");
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    await new Promise((r) => setTimeout(r, 300));
    let out = "";
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) out += chunk.toString("utf8");
    expect(await exited).toBe(1);
    return out
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { i: number }).i);
  }

  const every = Array.from({ length: 5001 }, (_, i) => i);

  // Without the fix: Node 22 spliced line 5000 into the middle of the batch in flight (the write
  // thread still blocked in write(2)); Node 20 did not, by timing alone (that batch was still queued).
  it("writes every line logged before an uncaught exception", async () => {
    expect(await crashAndRead({ crashAfterMs: "immediate", nonBlocking: false, pad: 0 })).toEqual(every);
  });

  // Without the fix: Node 20 lost the rest of the batch in flight (EAGAIN, a retry timer that never
  // fires at exit) and spliced the next line onto its half-written last one.
  it("keeps every line on a non-blocking stdout (EAGAIN while a batch is in flight)", async () => {
    expect(await crashAndRead({ crashAfterMs: 50, nonBlocking: true, pad: 500 })).toEqual(every);
  });
});
