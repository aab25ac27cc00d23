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

// A crash (uncaught exception) must not lose buffered lines either: pino's exit hook flushes the
// asynchronous destination synchronously. Stdout is a pipe read slowly here, so writes back up.
describe("asynchronous log destination: flushed on a fatal error", () => {
  it("writes every line logged before an uncaught exception", async () => {
    const LOG = resolve(import.meta.dirname, "../../dist/log.js");
    const script = [
      `import { asyncStdout, createLogger } from ${JSON.stringify(LOG)};`,
      'const log = createLogger("info", asyncStdout());',
      'for (let i = 0; i < 5000; i++) log.info({ i }, "line");',
      'setImmediate(() => { log.info({ i: 5000 }, "line"); throw new Error("fatal"); });',
    ].join("\n");
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    // Start reading only after a while, so the pipe fills and the process must wait to write.
    await new Promise((r) => setTimeout(r, 300));
    let out = "";
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) out += chunk.toString("utf8");
    expect(await exited).toBe(1);
    const indices = out
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { i: number }).i);
    expect(indices).toHaveLength(5001);
    expect(indices.at(-1)).toBe(5000);
  });
});
