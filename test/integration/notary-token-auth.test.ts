/**
 * The Notary fetcher against a REAL notary-server with `auth: {type: token}` (Docker Hub's and
 * Harbor's setup): trust data published by the real `notary` CLI (NOTARY_AUTH, Basic to the realm),
 * a token issuer on loopback (test/helpers/token-issuer.ts), a real docker-registry upstream, and
 * the built trustgate in between. Proves: a pull by tag resolves through the token-protected
 * server, a wrong password is refused with a clear reason and no secret in the log, tokens are
 * reused across trust refreshes, and a realm on an unlisted host never gets the credentials.
 */
import { randomUUID } from "node:crypto";
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeImage, pushImage } from "../helpers/image.js";
import { type NotaryLab, startNotary } from "../helpers/notary.js";
import { tempDir, waitFor } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { type CountingRelay, startCountingRelay } from "../helpers/relay.js";
import { startTokenIssuer, type TokenIssuer } from "../helpers/token-issuer.js";
import { startTrustgateWithConfig, type TrustgatePeer } from "../helpers/trustgate.js";

const ACCEPT =
  "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Notary fetcher against notary-server with token auth", () => {
  const password = `pw-${randomUUID()}`;
  const wrong = `wrong-${randomUUID()}`;
  let issuer: TokenIssuer;
  let notary: NotaryLab;
  let registry: RegistryPeer;
  let notaryCa: string;
  // trustgate reaches notary-server through a counting TCP relay (TLS passes unchanged): the
  // bytes it sends prove each refresh really went to the server
  let relay: CountingRelay;
  let R: string;
  const proxies: TrustgatePeer[] = [];
  const signed = makeImage("signed behind token auth");

  const start = async (pw: string, realms: string[], env = "TG_NOTARY_PASSWORD") => {
    const p = await startTrustgateWithConfig(
      [
        "logLevel: debug",
        "trustRefreshSeconds: 1",
        "defaultPolicy: enforce",
        "registries:",
        `  "${R}":`,
        `    upstream: ${registry.url}`,
        "    notary:",
        `      url: "https://${relay.host}"`,
        `      caFile: "${notaryCa}"`,
        "      username: signer",
        `      passwordEnv: ${env}`,
        ...(realms.length ? [`      tokenRealms: [${realms.map((r) => `"${r}"`).join(", ")}]`] : []),
      ].join("\n"),
      { env: { [env]: pw } },
    );
    proxies.push(p);
    return p;
  };
  const pull = (p: TrustgatePeer, tag = "v1") =>
    fetch(`${p.url}/v2/${R}/acme/app/manifests/${tag}`, { headers: { accept: ACCEPT } });
  const logAfter = async (p: TrustgatePeer, res: Response) => {
    await res.arrayBuffer().catch(() => undefined);
    const id = res.headers.get("x-request-id") ?? "none";
    await waitFor("the access line", async () => (await readFile(p.logFile, "utf8")).includes(id));
    return readFile(p.logFile, "utf8");
  };

  beforeAll(async () => {
    const dir = await tempDir("notary-token");
    issuer = await startTokenIssuer({ dir, username: "signer", password, audience: "notary-server" });
    notaryCa = join(dir, "notary-ca.crt");
    [registry, notary] = await Promise.all([
      startRegistry(),
      startNotary({
        tokenAuth: { realm: issuer.realm, issuer: issuer.issuer, rootCertBundle: issuer.certFile },
        cliAuth: `signer:${password}`,
      }),
    ]);
    await copyFile(notary.ca, notaryCa);
    relay = await startCountingRelay(Number(new URL(notary.url).port));
    R = registry.host;
    await pushImage(registry.url, "acme/app", "v1", signed);
    const cli = notary.client();
    const gun = `${R}/acme/app`;
    await cli.init(gun);
    await cli.addhash(gun, "v1", signed.size, signed.digest.replace(/^sha256:/, ""));
    await cli.publish(gun);
  }, 180_000);

  afterAll(async () => {
    for (const p of proxies) await p.stop();
    await registry?.stop();
    await relay?.close();
    await notary?.stop();
    await issuer?.close();
  });

  it("notary-server really demands a token (and the CLI got one to publish)", async () => {
    const { Agent, fetch: uf } = await import("undici");
    const res = await uf(`${notary.url}/v2/${R}/acme/app/_trust/tuf/root.json`, {
      dispatcher: new Agent({ connect: { ca: await readFile(notaryCa) } }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain(`realm="${issuer.realm}"`);
    expect(issuer.requests.some((r) => r.status === 200 && r.scope?.includes("push"))).toBe(true);
  });

  it("a pull by tag resolves through the token-protected notary-server", async () => {
    const before = issuer.requests.length;
    const p = await start(password, [issuer.host]);
    const res = await pull(p);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(signed.manifest)).toBe(true);
    expect(res.headers.get("docker-content-digest")).toBe(signed.digest);
    const mine = issuer.requests.slice(before);
    // one token for the whole first fetch (root, timestamp, snapshot, targets share the scope)
    expect(mine).toHaveLength(1);
    expect(mine.every((r) => r.status === 200 && r.scope === `repository:${R}/acme/app:pull`)).toBe(true);
    expect(mine[0]?.service).toBe("notary-server");
  });

  it("reuses the token over several trust refreshes", async () => {
    const p = proxies[0] as TrustgatePeer;
    const before = issuer.requests.length;
    const sentBefore = relay.bytesIn;
    for (let i = 0; i < 4; i++) {
      await sleep(1200); // > trustRefreshSeconds: each pull refetches timestamp.json
      const res = await pull(p);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    // the refreshes did reach notary-server (TLS requests through the relay) ...
    expect(relay.bytesIn - sentBefore).toBeGreaterThan(4 * 200);
    // ... with the cached token: the issuer saw no request
    expect(issuer.requests.length - before).toBe(0);
  });

  it("fetches a new token once the cached one has expired, and the pull still resolves", async () => {
    issuer.ttlSeconds = 2;
    try {
      const p = await start(password, [issuer.host]);
      const before = issuer.requests.length;
      const first = await pull(p);
      expect(first.status).toBe(200);
      await first.arrayBuffer();
      const afterFirst = issuer.requests.length;
      expect(afterFirst - before).toBeGreaterThanOrEqual(1);
      await sleep(3500); // past the token's exp, and past trustRefreshSeconds
      const second = await pull(p);
      expect(second.status).toBe(200);
      expect(Buffer.from(await second.arrayBuffer()).equals(signed.manifest)).toBe(true);
      expect(issuer.requests.length).toBeGreaterThan(afterFirst);
      expect(issuer.requests.slice(before).every((r) => r.status === 200)).toBe(true);
    } finally {
      issuer.ttlSeconds = 300;
    }
  });

  it("a wrong password is refused with a clear reason, and no secret is logged", async () => {
    const p = await start(wrong, [issuer.host]);
    const res = await pull(p);
    expect(res.status).toBe(403);
    const body = (await res.clone().json()) as { errors: { message: string }[] };
    const log = await logAfter(p, res);
    expect(body.errors[0]?.message).toBe(
      `${R}/acme/app:v1: trust could not be established (TRUST_UNAVAILABLE): the token service refused the credentials (HTTP 401) for ${R}/acme/app: check registries.(trust server).notary.username/passwordEnv`,
    );
    // the log keeps the full key (the client's copy hides addresses:port, the registry's included)
    expect(log).toContain(`check registries.${R}.notary.username/passwordEnv`);
    expect(log).not.toContain(wrong);
    expect(log).not.toContain(password);
    expect(log).not.toContain(Buffer.from(`signer:${wrong}`).toString("base64"));
    expect(log).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
  });

  it("a realm on a host not listed in tokenRealms gets no credentials", async () => {
    const before = issuer.requests.length;
    const p = await start(password, []);
    const res = await pull(p);
    expect(res.status).toBe(403);
    const body = (await res.clone().json()) as { errors: { message: string }[] };
    expect(body.errors[0]?.message).toContain("credentials go only to its own origin");
    const log = await logAfter(p, res);
    // the log names the realm's host and the key to set (the client's copy hides addresses)
    expect(log).toContain(`a token realm on another host (${issuer.host})`);
    expect(log).toContain(`registries.${R}.notary.tokenRealms`);
    expect(log).not.toContain(password);
    // whatever reached the issuer carried no Authorization
    expect(issuer.requests.slice(before).every((r) => r.authorization === undefined)).toBe(true);
  });
});
