/** NotarySource behaviour around the verification: caching, refresh, single flight, persistence, HTTP fetcher limits. */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TrustError } from "../../src/trust/errors.js";
import { canonicalJson, parseStrictJson } from "../../src/trust/notary/canonical.js";
import { HttpMetadataFetcher, type MetadataFetcher, roleOfFile } from "../../src/trust/notary/fetcher.js";
import { parseExpires } from "../../src/trust/notary/models.js";
import { NotarySource } from "../../src/trust/notary/source.js";
import {
  FIXTURE_NOW,
  FIXTURES,
  loadRepoFiles,
  MapFetcher,
  queryFor,
  readExpected,
} from "../helpers/notary-fixtures.js";
import { serveNotaryFiles } from "../helpers/notary-http.js";

const BASIC = join(FIXTURES, "signer-ecdsa", "basic");
const { gun } = readExpected(BASIC);
const query = queryFor(gun);
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "tg-src-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A state dir in which a first NotarySource has verified and persisted the basic fixture. */
async function stateDirTrustingBasic(): Promise<{ state: string; f: MapFetcher }> {
  const state = tmp();
  const f = new MapFetcher(loadRepoFiles(BASIC));
  await new NotarySource({ url: "http://x", stateDir: state, fetcher: f, now: () => FIXTURE_NOW }).listSigned(
    query,
  );
  return { state, f };
}

describe("NotarySource", () => {
  it("concurrent callers share one update (single flight)", async () => {
    const f = new MapFetcher(loadRepoFiles(BASIC));
    const src = new NotarySource({ url: "http://x", stateDir: tmp(), fetcher: f, now: () => FIXTURE_NOW });
    const answers = await Promise.all(Array.from({ length: 20 }, () => src.resolveTag(query, "v1")));
    expect(new Set(answers.map((a) => a.signatures[0]?.digest)).size).toBe(1);
    expect(f.requests.filter((r) => r === "timestamp.json")).toHaveLength(1);
  });

  it("re-fetches the timestamp at most every refreshSeconds", async () => {
    const f = new MapFetcher(loadRepoFiles(BASIC));
    let now = FIXTURE_NOW;
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: f,
      now: () => now,
      refreshSeconds: 30,
    });
    await src.listSigned(query);
    now = new Date(FIXTURE_NOW.getTime() + 29_000);
    await src.listSigned(query);
    expect(f.requests.filter((r) => r === "timestamp.json")).toHaveLength(1);
    now = new Date(FIXTURE_NOW.getTime() + 31_000);
    await src.listSigned(query);
    expect(f.requests.filter((r) => r === "timestamp.json")).toHaveLength(2);
    // unchanged snapshot/targets are not downloaded again
    expect(f.requests.filter((r) => r.startsWith("targets"))).toHaveLength(1);
  });

  it("persists atomically and answers from the state dir after a restart while the server is down", async () => {
    const { state, f } = await stateDirTrustingBasic();
    expect(readdirSync(join(state, "notary"))).toEqual([`${encodeURIComponent(gun)}.json`]);
    f.offline = true;
    const again = new NotarySource({ url: "http://x", stateDir: state, fetcher: f, now: () => FIXTURE_NOW });
    expect((await again.resolveTag(query, "v1")).signatures).toHaveLength(1);
  });

  it("bounds the GUNs kept in memory; an evicted GUN is re-read from the state dir, so a rollback is still refused", async () => {
    const retag = join(FIXTURES, "signer-ecdsa", "retag");
    const retagQuery = queryFor(readExpected(retag).gun);
    const retagFiles = new MapFetcher(loadRepoFiles(join(retag, "after")));
    const basicFiles = new MapFetcher(loadRepoFiles(BASIC));
    const byGun: MetadataFetcher = {
      fetch: (g, file, max) => (g === gun ? basicFiles : retagFiles).fetch(g, file, max),
    };
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: byGun,
      now: () => FIXTURE_NOW,
      maxGuns: 1,
    });
    await src.listSigned(retagQuery);
    await src.listSigned(query); // evicts the retag GUN from memory
    // the server now serves the older metadata: only the persisted state can tell
    retagFiles.files = loadRepoFiles(join(retag, "before"));
    const err = await src.listSigned(retagQuery).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustError);
    expect((err as TrustError).code).toBe("ROLLBACK");
  });

  it("applies a root pin on every query, also to a root first trusted without one (TOFU)", async () => {
    const f = new MapFetcher(loadRepoFiles(BASIC));
    const src = new NotarySource({ url: "http://x", stateDir: tmp(), fetcher: f, now: () => FIXTURE_NOW });
    await src.listSigned(query); // trust on first use, no pin
    const root = JSON.parse(readFileSync(join(BASIC, "root.json"), "utf8")) as {
      signed: { roles: { root: { keyids: string[] } } };
    };
    const serverRootId = root.signed.roles.root.keyids[0] as string;
    const wrongPin = "ab".repeat(32);
    const err = await src.resolveTag({ ...query, rootKeys: [wrongPin] }, "v1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustError);
    expect((err as TrustError).code).toBe("ROOT_PIN_MISMATCH");
    expect((err as TrustError).message).toContain(wrongPin);
    expect((err as TrustError).message).toContain(serverRootId);
    // the right pin (cert key ID) is accepted from the same trusted state, without a new fetch
    const before = f.requests.length;
    expect((await src.resolveTag({ ...query, rootKeys: [serverRootId] }, "v1")).signatures).toHaveLength(1);
    expect(f.requests.length).toBe(before);
  });

  it("a corrupt state file is an error, not a silent fresh start", async () => {
    const { state, f } = await stateDirTrustingBasic();
    const file = join(state, "notary", `${encodeURIComponent(gun)}.json`);
    writeFileSync(file, readFileSync(file, "utf8").slice(0, 50));
    const err = await new NotarySource({
      url: "http://x",
      stateDir: state,
      fetcher: f,
      now: () => FIXTURE_NOW,
    })
      .listSigned(query)
      .catch((e: unknown) => e);
    expect((err as TrustError).code).toBe("METADATA_INVALID");
  });

  it("TagSignatures.expires is the earliest expiry the answer depends on (the timestamp)", async () => {
    const src = new NotarySource({
      url: "http://x",
      stateDir: tmp(),
      fetcher: new MapFetcher(loadRepoFiles(BASIC)),
      now: () => FIXTURE_NOW,
    });
    const ts = JSON.parse(readFileSync(join(BASIC, "timestamp.json"), "utf8")).signed.expires as string;
    expect((await src.resolveTag(query, "v1")).expires.getTime()).toBe(parseExpires(gun, "timestamp", ts));
  });
});

describe("HttpMetadataFetcher", () => {
  it("serves fixtures over real HTTP end to end", async () => {
    const server = await serveNotaryFiles(gun, loadRepoFiles(BASIC));
    const src = new NotarySource({ url: server.url, stateDir: tmp(), now: () => FIXTURE_NOW });
    try {
      expect(await src.listSigned(query)).toHaveLength(Object.keys(readExpected(BASIC).signed).length);
      // snapshot and targets are fetched by checksum
      expect(server.requests.some((p) => /\/snapshot\.[0-9a-f]{64}\.json$/.test(p))).toBe(true);
      expect(server.requests.some((p) => /\/targets\.[0-9a-f]{64}\.json$/.test(p))).toBe(true);
    } finally {
      await src.close();
      await server.close();
    }
  });

  it.each([true, false])(
    "enforces the size cap while reading (content-length sent: %s)",
    async (withLength) => {
      const body = Buffer.alloc(200_000, 0x20);
      const server = createServer((_req, res) => {
        res.writeHead(200, withLength ? { "content-length": body.length } : {});
        res.end(body);
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const f = new HttpMetadataFetcher({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      });
      try {
        const err = await f.fetch(gun, "timestamp.json", 1024).catch((e: unknown) => e);
        expect((err as TrustError).code).toBe("METADATA_INVALID");
        expect((err as TrustError).role).toBe("timestamp");
      } finally {
        await f.close();
        server.closeAllConnections();
        server.close();
      }
    },
  );

  it("times out a server that never answers", async () => {
    const server = createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const f = new HttpMetadataFetcher({
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      timeoutMs: 200,
    });
    try {
      const err = await f.fetch(gun, "root.json", 1024).catch((e: unknown) => e);
      expect((err as TrustError).code).toBe("TRUST_UNAVAILABLE");
    } finally {
      await f.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it("names roles from file names", () => {
    expect(roleOfFile("3.root.json")).toBe("root");
    expect(roleOfFile(`targets/releases.${"a".repeat(64)}.json`)).toBe("targets/releases");
  });
});

describe("canonical JSON and expires", () => {
  it("sorts keys by bytes, escapes only backslash and quote, keeps other characters raw", () => {
    expect(canonicalJson({ b: 1, a: ['x\n"\\<é'], c: null, d: true }).toString()).toBe(
      '{"a":["x\n\\"\\\\<é"],"b":1,"c":null,"d":true}',
    );
  });
  it.each(["1.0", "1e2", "-0.5", "12345678901234567890"])("refuses the number %s", (n) => {
    expect(() => parseStrictJson(Buffer.from(`{"a":${n}}`))).toThrow();
  });
  it("keeps numbers inside strings alone", () => {
    expect(parseStrictJson(Buffer.from('{"a":"1.5e3","b":-2}'))).toEqual({ a: "1.5e3", b: -2 });
  });
  it("reads RFC 3339 with nanoseconds and offsets", () => {
    expect(parseExpires("g", "r", "2025-08-07T20:55:22.677722315-07:00")).toBe(
      Date.parse("2025-08-08T03:55:22.677Z"),
    );
    expect(parseExpires("g", "r", "2026-12-08T21:50:43Z")).toBe(Date.parse("2026-12-08T21:50:43Z"));
    expect(() => parseExpires("g", "r", "2026-12-08 21:50:43")).toThrow(TrustError);
  });
});
