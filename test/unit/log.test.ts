import { describe, expect, it } from "vitest";
import { createLogger, fixedFieldsLogger } from "../../src/log.js";

function capture() {
  const lines: Record<string, unknown>[] = [];
  return { lines, stream: { write: (s: string) => void lines.push(JSON.parse(s)) } };
}

describe("logger", () => {
  it("redacts secrets by key on ordinary lines", () => {
    const { lines, stream } = capture();
    const log = createLogger("info", stream);
    log.warn({ headers: { authorization: "Bearer abc" }, password: "p", cause: "x" }, "upstream trouble");
    expect(lines[0]).toMatchObject({
      headers: { authorization: "[redacted]" },
      password: "[redacted]",
      cause: "x",
      msg: "upstream trouble",
    });
  });

  it("writes the access line unchanged, with the same base fields and an ISO timestamp", () => {
    const { lines, stream } = capture();
    const log = createLogger("info", stream);
    const fields = { reqId: "r1", method: "GET", path: "/v2/a/manifests/v1", status: 200, bytes: 12 };
    fixedFieldsLogger(log).info(fields, "request");
    const line = lines[0] as Record<string, unknown>;
    expect(line).toMatchObject({ ...fields, service: "trustgate", level: 30, msg: "request" });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });

  it("keeps redacting on the main logger after an access logger was made", () => {
    const { lines, stream } = capture();
    const log = createLogger("info", stream);
    fixedFieldsLogger(log);
    log.info({ token: "t" }, "x");
    expect(lines[0]?.token).toBe("[redacted]");
  });
});
