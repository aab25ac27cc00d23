/** `trustgate serve` refuses to start on an invalid policy directory: exit 2, `file:line: message`. */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand } from "../helpers/process.js";

const CLI = join(import.meta.dirname, "../../dist/cli.js");

describe("serve with invalid policies", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tg-serve-start-"));
    await mkdir(join(dir, "policies"));
    await writeFile(
      join(dir, "config.yaml"),
      "registries:\n  docker.io:\n    upstream: http://127.0.0.1:1\n",
    );
    await writeFile(join(dir, "policies", "acme.yaml"), 'match: ["docker.io/acme/**"]\nmode: enforced\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("exits 2 naming the file and line, without listening", async () => {
    const out = await runCommand(
      process.execPath,
      [CLI, "serve", "--config", join(dir, "config.yaml"), "--listen", "127.0.0.1:0"],
      { timeoutMs: 30_000 },
    );
    expect(out.code).toBe(2);
    expect(out.stderr).toContain(`${join(dir, "policies", "acme.yaml")}:2:`);
    expect(out.stdout).not.toContain("trustgate listening");
  });
});
