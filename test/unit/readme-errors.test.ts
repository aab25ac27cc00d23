import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { registeredCodes } from "../../src/oci/errors.js";

// The README's error table is the contract clients and operators read: it must list exactly the
// codes the registry in src/oci/errors.ts registers, each with its default HTTP status.
describe("README error table", () => {
  async function documented(): Promise<Map<string, number>> {
    const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
    const start = readme.indexOf("<!-- errors:start -->");
    const end = readme.indexOf("<!-- errors:end -->");
    expect(start, "errors:start marker").toBeGreaterThan(-1);
    expect(end, "errors:end marker").toBeGreaterThan(start);
    const rows = new Map<string, number>();
    for (const line of readme.slice(start, end).split("\n")) {
      const m = /^\|\s*`([A-Z_]+)`\s*\|\s*(\d{3})\s*\|/.exec(line);
      if (m?.[1] && m[2]) rows.set(m[1], Number(m[2]));
    }
    return rows;
  }

  it("documents every registered code with its status", async () => {
    const table = await documented();
    for (const [code, d] of registeredCodes()) expect(table.get(code), code).toBe(d.status);
  });

  it("documents no code that is not registered", async () => {
    const registered = registeredCodes();
    for (const code of (await documented()).keys()) expect(registered.has(code), code).toBe(true);
  });
});
