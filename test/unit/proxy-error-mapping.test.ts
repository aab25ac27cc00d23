import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { OciCode, OciError } from "../../src/oci/errors.js";
import { toOciError } from "../../src/proxy/error-mapping.js";
import { StateStorageError, TrustError } from "../../src/trust/errors.js";
import { writeFileAtomic } from "../../src/trust/state.js";
import { UpstreamError, type UpstreamResource } from "../../src/upstream/errors.js";

const status = (s: number, resource: UpstreamResource, ociCode?: string) =>
  new UpstreamError("UPSTREAM_STATUS", "ghcr.io", resource, "x", {
    status: s,
    ...(ociCode ? { ociCode } : {}),
  });

describe("typed errors to OCI errors", () => {
  it.each([
    [status(404, "manifest"), "MANIFEST_UNKNOWN", 404],
    [status(404, "blob"), "BLOB_UNKNOWN", 404],
    [status(404, "tags"), "NAME_UNKNOWN", 404],
    [status(404, "manifest", "NAME_UNKNOWN"), "NAME_UNKNOWN", 404],
    [status(404, "manifest", "SOMETHING_ELSE"), "MANIFEST_UNKNOWN", 404],
    [status(401, "manifest"), "DENIED", 403],
    [status(403, "blob"), "DENIED", 403],
    [status(429, "blob"), "TOOMANYREQUESTS", 429],
    [status(400, "manifest", "DIGEST_INVALID"), "DIGEST_INVALID", 400],
    [status(500, "manifest"), "UPSTREAM_ERROR", 502],
    [status(416, "blob"), "UNKNOWN", 416],
    [new UpstreamError("UPSTREAM_UNREACHABLE", "ghcr.io", "manifest", "x"), "UNAVAILABLE", 503],
    [new UpstreamError("UPSTREAM_TIMEOUT", "ghcr.io", "blob", "x"), "UNAVAILABLE", 504],
    [new UpstreamError("UPSTREAM_INVALID", "ghcr.io", "manifest", "x"), "UPSTREAM_ERROR", 502],
    [new UpstreamError("UPSTREAM_AUTH_FAILED", "ghcr.io", "token", "x"), "UPSTREAM_ERROR", 502],
  ] as const)("%s -> %s %i", (err, code, httpStatus) => {
    const oci = toOciError(err);
    expect(oci.code).toBe(code);
    expect(oci.status).toBe(httpStatus);
  });

  it("names the registry for upstream trouble", () => {
    expect(
      toOciError(new UpstreamError("UPSTREAM_UNREACHABLE", "ghcr.io", "manifest", "x")).message,
    ).toContain("ghcr.io");
    expect(toOciError(status(500, "blob")).message).toContain("ghcr.io");
  });

  it("refuses when trust cannot be established (fail closed)", () => {
    const oci = toOciError(
      new TrustError("TRUST_UNAVAILABLE", "docker.io/acme/app", undefined, "notary down"),
    );
    expect(oci.code).toBe("DENIED");
    expect(oci.status).toBe(403);
    expect(oci.reasonPhrase).toBeTruthy();
  });

  it("keeps OciErrors and hides everything else behind 500 UNKNOWN", () => {
    const own = new OciError(OciCode.NAME_INVALID);
    expect(toOciError(own)).toBe(own);
    const hidden = toOciError(new TypeError("cannot read properties of undefined (secret internals)"));
    expect(hidden.code).toBe("UNKNOWN");
    expect(hidden.status).toBe(500);
    expect(hidden.message).toBe("internal error");
  });

  it("U8: a state write the file system refuses is a typed error, answered 503 UNAVAILABLE without the path", async () => {
    const dir = await mkdtemp(join(tmpdir(), "trustgate-state-"));
    try {
      await writeFile(join(dir, "file"), "x");
      // The parent is a regular file: ENOTDIR/EEXIST, as EROFS or ENOSPC would be on a real disk.
      const err = await writeFileAtomic(join(dir, "file", "notary", "gun.json"), "{}").catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StateStorageError);
      expect((err as StateStorageError).errno).toMatch(/^(ENOTDIR|EEXIST)$/);
      const oci = toOciError(err);
      expect(oci.code).toBe("UNAVAILABLE");
      expect(oci.status).toBe(503);
      expect(oci.message).toBe("trust state could not be saved; try again later");
      expect(oci.message).not.toContain(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("refusals do not show clients where the trust servers are (issue 12 item 8)", () => {
  it("a trust failure's URL and address stay in the error, not in the rendered answer", async () => {
    const { renderOciError } = await import("../../src/oci/errors.js");
    const err = new TrustError(
      "TRUST_UNAVAILABLE",
      "docker.io/acme/app",
      "timestamp",
      "docker.io/acme/app: timestamp: GET https://notary.internal.example:4443/v2/docker.io/acme/app/_trust/tuf/timestamp.json: connect ECONNREFUSED 10.1.2.3:4443",
    );
    const oci = toOciError(err);
    // the error (what the log line is written from) keeps everything
    expect(oci.message).toContain("https://notary.internal.example:4443");
    const rendered = renderOciError(oci);
    expect(rendered.body).not.toContain("notary.internal.example");
    expect(rendered.body).not.toContain("10.1.2.3");
    expect(rendered.body).toContain(
      "docker.io/acme/app: timestamp: GET (trust server): connect ECONNREFUSED (trust server)",
    );
  });

  it("a TUF source's name (tuf <metadataUrl>) in a deny reason and reason phrase is hidden", async () => {
    const { renderOciError } = await import("../../src/oci/errors.js");
    const oci = new OciError(OciCode.DENIED, {
      message:
        "docker.io/acme/app:1.0: trust could not be established (EXPIRED): tuf http://[::1]:8080/meta/: timestamp metadata expired",
      reasonPhrase: "Forbidden (trustgate: tuf file:///srv/tuf/ expired)",
    });
    const rendered = renderOciError(oci);
    expect(rendered.body).not.toMatch(/http:|::1|8080/);
    expect(rendered.reasonPhrase).toBe("Forbidden (trustgate: tuf (trust server) expired)");
  });
});
