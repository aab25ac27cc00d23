/**
 * Client access (issue 12 point 2): the credential file as Apache's htpasswd writes it
 * (test/fixtures/htpasswd, provenance there), Basic parsing, the verdict cache and its limits,
 * certificate identities, and the app's 401 challenge and access line.
 */
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import bcrypt from "bcrypt";
import { describe, expect, it } from "vitest";
import { matchCertificate, subjectAltNames } from "../../src/access/certificates.js";
import { ClientAccess, parseBasic } from "../../src/access/gate.js";
import { MAX_BCRYPT_COST, parseCredentials, verifyPassword } from "../../src/access/htpasswd.js";
import { ConfigError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import type { ManifestResolver } from "../../src/proxy/manifests.js";
import type { TagLister } from "../../src/proxy/tags.js";
import { createApp } from "../../src/server.js";
import { tempDir } from "../helpers/process.js";

const FIXTURES = join(import.meta.dirname, "../fixtures/htpasswd");
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const tokenHash = (token: string) => `sha256:${createHash("sha256").update(token).digest("hex")}`;

describe("the credential file (htpasswd)", () => {
  it("reads what Apache's htpasswd -B writes ($2y$), and the passwords verify", async () => {
    const parsed = parseCredentials(await readFile(join(FIXTURES, "users.htpasswd"), "utf8"));
    expect(parsed.problems).toEqual([]);
    expect([...parsed.entries.keys()]).toEqual(["alice", "bob"]);
    const alice = parsed.entries.get("alice");
    const bob = parsed.entries.get("bob");
    expect(alice).toMatchObject({ kind: "bcrypt", cost: 5 });
    expect(bob).toMatchObject({ kind: "bcrypt", cost: 10 });
    if (!alice || !bob) throw new Error("missing");
    // node's bcrypt says false to the $2y$ prefix as written: the parser must have mapped it.
    expect(await verifyPassword(alice, "correct horse")).toBe(true);
    expect(await verifyPassword(alice, "correct horsE")).toBe(false);
    expect(await verifyPassword(bob, "battery staple")).toBe(true);
    expect(await verifyPassword(bob, "correct horse")).toBe(false);
  });

  it("skips blank and # lines as distribution does; takes sha256 token hashes, compared exactly", async () => {
    const parsed = parseCredentials(
      ["# CI robots", "", `  ci:${tokenHash("tok-1")}  `, `$2b-user:${bcrypt.hashSync("pw", 4)}`].join("\n"),
    );
    expect(parsed.problems).toEqual([]);
    const ci = parsed.entries.get("ci");
    if (!ci) throw new Error("missing");
    expect(await verifyPassword(ci, "tok-1")).toBe(true);
    expect(await verifyPassword(ci, "tok-2")).toBe(false);
    expect(await verifyPassword(ci, "")).toBe(false);
    expect(parsed.entries.get("$2b-user")?.kind).toBe("bcrypt");
  });

  it("refuses {SHA}, $apr1$, crypt, plain text, a bad token, a duplicate user, and says which line", async () => {
    const sha1 = await readFile(join(FIXTURES, "refused-sha1.htpasswd"), "utf8");
    const apr1 = await readFile(join(FIXTURES, "refused-apr1.htpasswd"), "utf8");
    expect(parseCredentials(sha1).problems).toEqual([
      {
        line: 1,
        message:
          'user "carol": {SHA} (unsalted SHA-1) is not accepted: use bcrypt (htpasswd -B) or sha256:<hex> of a generated token',
      },
    ]);
    expect(parseCredentials(apr1).problems[0]?.message).toContain("$apr1$ (Apache MD5) is not accepted");
    const text = [
      "ok:sha256:" + "a".repeat(64),
      "nocolon",
      ":nouser",
      "plain:hunter2",
      "crypt:$6$salt$abcdef",
      "short:sha256:abcd",
      "ok:sha256:" + "b".repeat(64),
      `dear:$2y$${MAX_BCRYPT_COST + 1}$${"a".repeat(53)}`,
    ].join("\n");
    const problems = parseCredentials(text).problems;
    expect(problems.map((p) => p.line)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(problems.map((p) => p.message)).toEqual([
      "not user:hash",
      "no user name before ':'",
      'user "plain": not a hash trustgate accepts: use bcrypt (htpasswd -B) or sha256:<hex> of a generated token',
      'user "crypt": $6$ (crypt) is not accepted: use bcrypt (htpasswd -B) or sha256:<hex> of a generated token',
      'user "short": a sha256: token hash must be 64 lower-case hex digits',
      'user "ok" is listed twice',
      `user "dear": bcrypt cost ${MAX_BCRYPT_COST + 1} is outside 4..${MAX_BCRYPT_COST}`,
    ]);
    // Never the hash itself in a message.
    expect(JSON.stringify(problems)).not.toContain("hunter2");
  });
});

describe("Basic credentials (RFC 7617)", () => {
  it("splits at the first colon; other schemes and broken encodings are named apart", () => {
    expect(parseBasic(basic("alice", "pa:ss"))).toEqual({ user: "alice", password: "pa:ss" });
    expect(parseBasic(`basic  ${Buffer.from("bob:").toString("base64")}`)).toEqual({
      user: "bob",
      password: "",
    });
    expect(parseBasic("Bearer abc")).toBe("not Basic credentials");
    expect(parseBasic("Basic !!!")).toBe("malformed Basic credentials");
    expect(parseBasic(`Basic ${Buffer.from("nocolon").toString("base64")}`)).toBe(
      "malformed Basic credentials",
    );
    expect(parseBasic(`Basic ${Buffer.from(":pw").toString("base64")}`)).toBe("malformed Basic credentials");
  });
});

async function accessWith(lines: string[], opts: { ttlMs?: number } = {}) {
  const dir = await tempDir("tg-clients");
  const file = join(dir, "clients.htpasswd");
  await writeFile(file, `${lines.join("\n")}\n`);
  const access = await ClientAccess.open(
    join(dir, "config.yaml"),
    { htpasswdFile: file, certificateIdentities: [] },
    opts,
  );
  return { access, file, dir };
}

describe("ClientAccess", () => {
  it("admits a right password, refuses a wrong one or an unknown user, and remembers each verdict", async () => {
    const { access } = await accessWith([`alice:${bcrypt.hashSync("s3cret", 10)}`, `ci:${tokenHash("tok")}`]);
    const header = basic("alice", "s3cret");
    expect(access.admitSync(header, undefined)).toBeUndefined(); // not verified yet
    const t0 = performance.now();
    expect(await access.authenticate(header, undefined)).toEqual({
      ok: true,
      identity: { name: "alice", via: "password" },
    });
    const cold = performance.now() - t0;
    // The warm path: no bcrypt again (a cost-10 compare takes tens of ms here).
    const t1 = performance.now();
    expect(await access.authenticate(header, undefined)).toMatchObject({ ok: true });
    const warm = performance.now() - t1;
    expect(warm).toBeLessThan(cold / 10);
    expect(access.admitSync(header, undefined)).toEqual({ name: "alice", via: "password" });

    expect(await access.authenticate(basic("alice", "S3cret"), undefined)).toEqual({
      ok: false,
      problem: "wrong password",
    });
    expect(access.admitSync(basic("alice", "S3cret"), undefined)).toBeUndefined();
    // An unknown user costs a bcrypt compare too (the decoy): no enumeration by timing.
    const t2 = performance.now();
    expect(await access.authenticate(basic("mallory", "s3cret"), undefined)).toEqual({
      ok: false,
      problem: "unknown user",
    });
    expect(performance.now() - t2).toBeGreaterThan(cold / 4);
    expect(await access.authenticate(undefined, undefined)).toEqual({ ok: false, problem: "no credentials" });
    expect(await access.authenticate("Bearer x", undefined)).toEqual({
      ok: false,
      problem: "not Basic credentials",
    });
    expect(await access.authenticate(basic("ci", "tok"), undefined)).toEqual({
      ok: true,
      identity: { name: "ci", via: "token" },
    });
    access.close();
  });

  it("verifies concurrent requests with the same header once (single flight)", async () => {
    const hash = bcrypt.hashSync("pw", 10);
    const { access } = await accessWith([`alice:${hash}`]);
    const compare = bcrypt.compare;
    let compares = 0;
    // Count compares through the module the gate uses (ESM default export object).
    (bcrypt as { compare: typeof compare }).compare = ((...args: Parameters<typeof compare>) => {
      compares++;
      return compare(...args);
    }) as typeof compare;
    try {
      const results = await Promise.all(
        Array.from({ length: 20 }, () => access.authenticate(basic("alice", "pw"), undefined)),
      );
      expect(results.every((r) => r.ok)).toBe(true);
      expect(compares).toBe(1);
    } finally {
      (bcrypt as { compare: typeof compare }).compare = compare;
      access.close();
    }
  });

  it("answers TooManyCredentialChecks past 64 queued verifications instead of piling up", async () => {
    const { access } = await accessWith([`alice:${bcrypt.hashSync("pw", 10)}`]);
    const settled = await Promise.allSettled(
      Array.from({ length: 70 }, (_, i) => access.authenticate(basic("alice", `wrong-${i}`), undefined)),
    );
    const rejected = settled.filter((s) => s.status === "rejected");
    // 2 running + 64 waiting; the rest are refused at once.
    expect(rejected.length).toBe(4);
    expect(String((rejected[0] as PromiseRejectedResult).reason)).toContain("too many credential checks");
    expect(settled.filter((s) => s.status === "fulfilled").length).toBe(66);
    access.close();
  }, 30_000);

  it("forgets remembered verdicts when the file changes; a broken file keeps the previous users", async () => {
    const { access, file, dir } = await accessWith([`alice:${tokenHash("a")}`, `bob:${tokenHash("b")}`]);
    expect(await access.authenticate(basic("bob", "b"), undefined)).toMatchObject({ ok: true });
    expect(access.admitSync(basic("bob", "b"), undefined)).toBeDefined();
    // Rewritten as an operator (or a Secret update) does: a new file renamed over the old one.
    await writeFile(join(dir, "next"), `alice:${tokenHash("a")}\n`);
    await rename(join(dir, "next"), file);
    expect(await access.recheck()).toEqual({ ok: true, users: 1 });
    expect(access.admitSync(basic("bob", "b"), undefined)).toBeUndefined();
    expect(await access.authenticate(basic("bob", "b"), undefined)).toEqual({
      ok: false,
      problem: "unknown user",
    });
    await writeFile(file, "alice:{SHA}x\n");
    const refused = await access.recheck();
    expect(refused).toEqual({
      ok: false,
      problem: `clients.htpasswdFile: ${file}:1: user "alice": {SHA} (unsalted SHA-1) is not accepted: use bcrypt (htpasswd -B) or sha256:<hex> of a generated token`,
    });
    expect(await access.authenticate(basic("alice", "a"), undefined)).toMatchObject({ ok: true });
    expect(await access.recheck()).toBeUndefined(); // same bytes: reported once
    access.close();
  });

  it("a problem in the file at start is a ConfigError naming the key, the file and the line", async () => {
    const dir = await tempDir("tg-clients");
    const file = join(dir, "users");
    await writeFile(file, "# ok\nalice:$apr1$x$y\nbob:plain\n");
    const open = ClientAccess.open(join(dir, "config.yaml"), {
      htpasswdFile: file,
      certificateIdentities: [],
    });
    await expect(open).rejects.toThrow(ConfigError);
    await expect(open).rejects.toThrow(
      `${join(dir, "config.yaml")}: clients.htpasswdFile: ${file}:2: user "alice": $apr1$ (Apache MD5) is not accepted: use bcrypt (htpasswd -B) or sha256:<hex> of a generated token (and 1 more)`,
    );
    await expect(
      ClientAccess.open(join(dir, "config.yaml"), {
        htpasswdFile: join(dir, "none"),
        certificateIdentities: [],
      }),
    ).rejects.toThrow(`clients.htpasswdFile: cannot read ${join(dir, "none")} (ENOENT)`);
  });
});

describe("certificate identities", () => {
  it("reads Node's subjectAltName, quoted values included (no forged second entry)", () => {
    expect(subjectAltNames("DNS:a.example, URI:spiffe://acme/ci, IP Address:127.0.0.1")).toEqual([
      { kind: "DNS", value: "a.example" },
      { kind: "URI", value: "spiffe://acme/ci" },
      { kind: "IP Address", value: "127.0.0.1" },
    ]);
    expect(subjectAltNames('URI:"spiffe://x/a, DNS:evil.example", DNS:b')).toEqual([
      { kind: "URI", value: "spiffe://x/a, DNS:evil.example" },
      { kind: "DNS", value: "b" },
    ]);
    expect(subjectAltNames(undefined)).toEqual([]);
  });

  it("matches a listed CN, DNS name or URI exactly, on a certificate openssl made", async () => {
    const dir = await tempDir("tg-client-cert");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-days",
        "1",
        "-subj",
        "/CN=builder",
        "-addext",
        "subjectAltName=DNS:Node-1.example,URI:spiffe://acme/ci,DNS:*.wild.example",
      ],
      { cwd: dir, stdio: "pipe" },
    );
    const x = new X509Certificate(await readFile(join(dir, "c.pem")));
    const cert = { subject: { CN: "builder" }, subjectaltname: x.subjectAltName ?? "" } as never;
    expect(matchCertificate(cert, [{ kind: "CN", value: "builder" }])).toBe("CN:builder");
    expect(matchCertificate(cert, [{ kind: "DNS", value: "node-1.example" }])).toBe("DNS:node-1.example");
    expect(matchCertificate(cert, [{ kind: "URI", value: "spiffe://acme/ci" }])).toBe("URI:spiffe://acme/ci");
    expect(matchCertificate(cert, [{ kind: "URI", value: "spiffe://acme/c" }])).toBeUndefined();
    expect(matchCertificate(cert, [{ kind: "DNS", value: "a.wild.example" }])).toBeUndefined(); // no wildcards
    expect(matchCertificate(cert, [{ kind: "CN", value: "Builder" }])).toBeUndefined();
    // Two CNs: neither counts.
    expect(
      matchCertificate({ subject: { CN: ["builder", "x"] } } as never, [{ kind: "CN", value: "builder" }]),
    ).toBeUndefined();
  });
});

describe("the app with clients:", () => {
  const refuseEverything: ManifestResolver = {
    resolve: () => {
      throw new Error("not reached in these tests");
    },
  } as never;
  const noTags: TagLister = { list: () => Promise.reject(new Error("not reached")) } as never;

  async function appWith(lines: string[]) {
    const { access } = await accessWith(lines);
    const lines_: Record<string, unknown>[] = [];
    const logger = createLogger("info", {
      write: (s: string) => {
        lines_.push(JSON.parse(s) as Record<string, unknown>);
      },
    } as never);
    const app = createApp({
      config: { registries: new Map(), defaultRegistry: undefined, blobRedirect: false },
      clients: new Map(),
      manifests: refuseEverything,
      tags: noTags,
      logger,
      access,
    });
    return { app, access, logged: lines_ };
  }

  it("answers /v2/ 401 UNAUTHORIZED with the Basic challenge, then 200 with credentials", async () => {
    const { app, access, logged } = await appWith([`alice:${tokenHash("tok-secret")}`]);
    for (const path of [
      "/v2/",
      "/v2",
      "/v2/acme/app/manifests/v1",
      "/v2/acme/app/blobs/sha256:" + "0".repeat(64),
    ]) {
      const res = await app.request(path);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe('Basic realm="trustgate"');
      expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0");
      const body = (await res.json()) as { errors: { code: string }[] };
      expect(body.errors[0]?.code).toBe("UNAUTHORIZED");
    }
    const wrong = await app.request("/v2/", { headers: { authorization: basic("alice", "nope") } });
    expect(wrong.status).toBe(401);
    const ok = await app.request("/v2/", { headers: { authorization: basic("alice", "tok-secret") } });
    expect(ok.status).toBe(200);
    // Writes stay refused for an admitted client (read-only proxy), after the client check.
    const put = await app.request("/v2/acme/app/manifests/v1", {
      method: "PUT",
      headers: { authorization: basic("alice", "tok-secret") },
    });
    expect(put.status).toBe(405);

    const requests = logged.filter((l) => l.msg === "request");
    expect(requests.map((l) => [l.status, l.client, l.clientAuth, l.clientRefused])).toEqual([
      [401, undefined, undefined, "no credentials"],
      [401, undefined, undefined, "no credentials"],
      [401, undefined, undefined, "no credentials"],
      [401, undefined, undefined, "no credentials"],
      [401, undefined, undefined, "wrong password"],
      [200, "alice", "token", undefined],
      [405, "alice", "token", undefined],
    ]);
    const all = JSON.stringify(logged);
    expect(all).not.toContain("tok-secret");
    expect(all).not.toContain(Buffer.from("alice:tok-secret").toString("base64"));
    expect(all).not.toContain("nope");
    access.close();
  });
});
