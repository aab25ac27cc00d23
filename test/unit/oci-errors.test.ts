import { describe, expect, it } from "vitest";
import { OciCode, OciError, registeredCodes, renderOciError } from "../../src/oci/errors.js";

describe("OCI error table and renderer", () => {
  it("registers every distribution-spec pull code with its status", () => {
    const table = registeredCodes();
    const expected: Record<string, number> = {
      BLOB_UNKNOWN: 404,
      DIGEST_INVALID: 400,
      MANIFEST_UNKNOWN: 404,
      MANIFEST_INVALID: 400,
      NAME_INVALID: 400,
      NAME_UNKNOWN: 404,
      SIZE_INVALID: 400,
      UNAUTHORIZED: 401,
      DENIED: 403,
      UNSUPPORTED: 405,
      TOOMANYREQUESTS: 429,
    };
    for (const [code, status] of Object.entries(expected)) expect(table.get(code)?.status, code).toBe(status);
    // every exported code is registered, and only those
    expect([...table.keys()].sort()).toEqual(Object.values(OciCode).sort());
  });

  it("renders the envelope with code, message and detail", () => {
    const r = renderOciError(
      new OciError(OciCode.DENIED, {
        message: "docker.io/acme/app:latest is not signed",
        detail: { tag: "latest" },
      }),
    );
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toEqual({
      errors: [
        { code: "DENIED", message: "docker.io/acme/app:latest is not signed", detail: { tag: "latest" } },
      ],
    });
    expect(r.headers["content-type"]).toMatch(/^application\/json/);
    expect(r.headers["content-length"]).toBe(String(Buffer.byteLength(r.body)));
  });

  it("uses the default message and omits absent detail", () => {
    const r = renderOciError(new OciError(OciCode.MANIFEST_UNKNOWN));
    expect(JSON.parse(r.body)).toEqual({
      errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown" }],
    });
  });

  it("carries a custom reason phrase, stripped of control characters", () => {
    const r = renderOciError(
      new OciError(OciCode.DENIED, { reasonPhrase: "Forbidden: unsigned\r\nX-Evil: 1" }),
    );
    expect(r.reasonPhrase).toBe("Forbidden: unsigned  X-Evil: 1");
    expect(r.status).toBe(403);
  });

  it("allows a status override", () => {
    expect(new OciError(OciCode.UNAVAILABLE, { status: 504 }).status).toBe(504);
  });
});
