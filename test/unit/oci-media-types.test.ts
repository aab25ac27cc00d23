import { describe, expect, it } from "vitest";
import { accepts, essence, MediaTypes, parseAccept } from "../../src/oci/media-types.js";

describe("Accept parsing", () => {
  it("parses lists in any order, with parameters and q-values", () => {
    const ranges = parseAccept(
      `${MediaTypes.dockerManifest}, ${MediaTypes.ociIndex};q=0.9 , */*; q=0.1, application/json;charset=utf-8`,
    );
    expect(ranges).toEqual([
      { type: MediaTypes.dockerManifest, q: 1 },
      { type: MediaTypes.ociIndex, q: 0.9 },
      { type: "*/*", q: 0.1 },
      { type: "application/json", q: 1 },
    ]);
  });

  it("drops malformed entries and tolerates absent headers", () => {
    expect(parseAccept("garbage, , /x, a/")).toEqual([]);
    expect(parseAccept(undefined)).toEqual([]);
  });

  it("matches exact types and wildcards, never q=0", () => {
    const containerd = parseAccept(`${MediaTypes.ociManifest}, */*`);
    expect(accepts(containerd, MediaTypes.ociIndex)).toBe(true);
    const strict = parseAccept(`${MediaTypes.dockerManifest}, application/*;q=0`);
    expect(accepts(strict, MediaTypes.dockerManifest)).toBe(true);
    expect(accepts(strict, MediaTypes.ociManifest)).toBe(false);
    expect(accepts(parseAccept("application/*"), MediaTypes.ociManifest)).toBe(true);
    expect(accepts([], MediaTypes.ociManifest)).toBe(true);
    expect(accepts(parseAccept(MediaTypes.ociManifest.toUpperCase()), MediaTypes.ociManifest)).toBe(true);
  });

  it("takes the essence of a content type", () => {
    expect(essence("Application/JSON; charset=utf-8")).toBe("application/json");
  });
});
