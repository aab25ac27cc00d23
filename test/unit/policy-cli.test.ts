import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from "vitest";
import { run } from "../../src/commands/policy.js";
import { UsageError } from "../../src/errors.js";

let stdout: MockInstance;
let stderr: MockInstance;
const out = () => stdout.mock.calls.map((c) => String(c[0])).join("");
beforeEach(() => {
  stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
  stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
});
afterEach(() => {
  stdout.mockRestore();
  stderr.mockRestore();
});

describe("trustgate policy lint", () => {
  it("exit 0 on the shipped policies", async () => {
    expect(await run(["lint", "policies"])).toBe(0);
    expect(out()).toBe("");
  });
  it("exit 1 with file:line: message lines on stdout", async () => {
    expect(await run(["lint", "test/fixtures/policies/invalid/tie-star"])).toBe(1);
    expect(out()).toMatch(
      /^test\/fixtures\/policies\/invalid\/tie-star\/b\.yaml:2: match pattern "docker\.io\/\*\/app" ties with/,
    );
  });
  it("usage errors are UsageError (exit 2)", async () => {
    await expect(run(["lint", "a", "b"])).rejects.toBeInstanceOf(UsageError);
    await expect(run(["frobnicate"])).rejects.toBeInstanceOf(UsageError);
  });
});

describe("trustgate policy explain", () => {
  it("canonicalises the name and shows the policy, the pattern and the demands", async () => {
    expect(await run(["explain", "alpine:3.20", "--policies", "policies"])).toBe(0);
    const text = out();
    expect(text).toContain('image:       docker.io/library/alpine:3.20  (from "alpine:3.20")');
    expect(text).toContain("policy:      official-images (policies/official-images.yaml)");
    expect(text).toContain('pattern "docker.io/library/*"');
    expect(text).toContain("trust:       source notary");
  });
  it("--json gives the same as data, with the refusal when nothing matches", async () => {
    expect(await run(["explain", "quay.io/x/y:1", "--policies", "policies", "--json"])).toBe(0);
    const json = JSON.parse(out());
    expect(json).toMatchObject({ image: "quay.io/x/y", tag: "1", policy: "defaultPolicy", mode: "refuse" });
    expect(json.why).toBe("no policy covers quay.io/x/y");
  });
  it("--config: the shipped config's policies, defaultPolicy and the registry's trust source", async () => {
    expect(await run(["explain", "alpine", "--config", "config.yaml"])).toBe(0);
    expect(out()).toContain("policy:      official-images");
    expect(out()).toContain("registry:    docker.io: trust source none (no trust source configured");
  });
  it("--config --json names the registry's trust source", async () => {
    expect(await run(["explain", "docker.io/acme/app:1", "--config", "config.yaml", "--json"])).toBe(0);
    expect(JSON.parse(out())).toMatchObject({
      policy: "acme",
      registryTrustSource: expect.stringMatching(/^none/),
    });
  });
  it("--config and --policies together are a usage error", async () => {
    await expect(
      run(["explain", "alpine", "--config", "config.yaml", "--policies", "policies"]),
    ).rejects.toBeInstanceOf(UsageError);
  });
  it("a TUF registry is anchored by tuf.trustedRoot, never shown as trust on first use", async () => {
    const dir = mkdtempSync(join(tmpdir(), "explain-tuf-"));
    try {
      mkdirSync(join(dir, "policies"));
      writeFileSync(join(dir, "root.json"), "{}");
      writeFileSync(
        join(dir, "policies", "acme.yaml"),
        'match: ["reg.test/acme/**"]\nmode: enforce\ntrust:\n  source: tuf\n',
      );
      writeFileSync(
        join(dir, "config.yaml"),
        [
          "registries:",
          "  reg.test:",
          "    upstream: http://127.0.0.1:1",
          "    tuf: { metadataUrl: http://127.0.0.1:2/metadata, trustedRoot: root.json }",
          "policies: ./policies",
          "",
        ].join("\n"),
      );
      expect(await run(["explain", "reg.test/acme/app:1", "--config", join(dir, "config.yaml")])).toBe(0);
      expect(out()).toContain(
        "root keys:   anchored by the configured tuf.trustedRoot (not trust on first use)",
      );
      expect(out()).not.toContain("not pinned (trust on first use)");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("a Notary policy without pins says trust on first use", async () => {
    expect(await run(["explain", "alpine:3.20", "--policies", "policies"])).toBe(0);
    expect(out()).toContain("root keys:   not pinned (trust on first use)");
  });
});
