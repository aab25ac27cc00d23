/**
 * Client access (issue 12 point 2) with real clients: skopeo and ctr answer trustgate's 401
 * `Basic realm="trustgate"` challenge with `--creds` / `--user` and pull; without credentials, or
 * with wrong ones, they are refused. The credential file is written by Apache's htpasswd
 * (test/fixtures/htpasswd). The upstream is docker-registry; `defaultPolicy: off`.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ctrImageDigest, ctrPull, startContainerd, writeHostsDir } from "../helpers/containerd.js";
import { makeImage, pushImage } from "../helpers/image.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";
import { skopeoInspect } from "../helpers/skopeo.js";
import { startTrustgate, type TrustgatePeer } from "../helpers/trustgate.js";

const USERS = join(import.meta.dirname, "../fixtures/htpasswd/users.htpasswd");

describe("client access: skopeo and ctr answer the Basic challenge", () => {
  let registry: RegistryPeer;
  let proxy: TrustgatePeer;
  const image = makeImage("behind client access");

  beforeAll(async () => {
    registry = await startRegistry();
    await pushImage(registry.url, "acme/app", "v1", image);
    proxy = await startTrustgate({
      registries: { [registry.host]: { upstream: registry.url } },
      defaultRegistry: registry.host,
      extraConfig: { defaultPolicy: "off", clients: { htpasswdFile: USERS } },
    });
  }, 60_000);
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  it("issue 12: /v2/ answers 401 with the challenge; skopeo --creds pulls, without or wrong creds it is refused", async () => {
    const ping = await fetch(`${proxy.url}/v2/`);
    expect(ping.status).toBe(401);
    expect(ping.headers.get("www-authenticate")).toBe('Basic realm="trustgate"');
    expect(((await ping.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe("UNAUTHORIZED");

    const ref = `${proxy.host}/acme/app:v1`;
    const pulled = await skopeoInspect(ref, { raw: true, creds: "alice:correct horse" });
    expect(pulled.stderr).toBe("");
    expect(pulled.code).toBe(0);
    expect(pulled.raw?.equals(image.manifest)).toBe(true);
    // Again: the verdict is remembered (and a warm answer may serve it), still for alice only.
    expect((await skopeoInspect(ref, { raw: true, creds: "alice:correct horse" })).code).toBe(0);

    const none = await skopeoInspect(ref, { raw: true });
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/401|unauthorized|authentication required/i);
    const wrong = await skopeoInspect(ref, { raw: true, creds: "alice:battery staple" });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/401|unauthorized|authentication required/i);

    // The access line is written when the answer has gone out; skopeo may exit before it is in
    // the file (a CI run read the log first): wait for it.
    const requests = async () => (await proxy.logs()).filter((l) => l.msg === "request");
    await expect
      .poll(async () =>
        (await requests()).some(
          (l) => l.client === "alice" && l.clientAuth === "password" && l.status === 200,
        ),
      )
      .toBe(true);
    await expect
      .poll(async () =>
        (await requests()).some((l) => l.status === 401 && l.clientRefused === "wrong password"),
      )
      .toBe(true);
    const lines = await proxy.logs();
    const text = await readFile(join(proxy.dir, "trustgate.log"), "utf8").catch(() => JSON.stringify(lines));
    expect(text).not.toContain("correct horse");
    expect(text).not.toContain(Buffer.from("alice:correct horse").toString("base64"));
  }, 120_000);

  it("issue 12: ctr --user pulls through the challenge; without --user it is refused", async () => {
    const containerd = await startContainerd();
    try {
      const hostsDir = await writeHostsDir(proxy.url, { registries: [registry.host] });
      const ref = `${registry.host}/acme/app:v1`;
      const refused = await ctrPull(containerd, ref, { hostsDir });
      expect(refused.code).not.toBe(0);
      const pulled = await ctrPull(containerd, ref, { hostsDir, user: "bob:battery staple" });
      expect(pulled.stderr).toBe("");
      expect(pulled.code).toBe(0);
      expect(await ctrImageDigest(containerd, ref)).toBe(image.digest);
    } finally {
      await containerd.stop();
    }
  }, 120_000);
});
