/**
 * Notation signatures made by `notation sign`, pushed byte-exactly into a real docker-registry
 * (distribution 2.8, no referrers API) with the fixtures' push.sh, then discovered through the
 * proxy's own registry client (RegistrySignatureFetcher: the sha256-<hex> fallback index, the
 * signature manifest and the envelope by digest) and judged by the Notation verifier. What the
 * proxy's `signatures:` enforcement will call at pull time, against the real peer.
 */

import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { discoverSignatures, NOTATION_SIGNATURE } from "../../src/signatures/discover.js";
import { notationVerifierPlug } from "../../src/signatures/notation/plug.js";
import { RegistrySignatureFetcher } from "../../src/signatures/registry-fetcher.js";
import { TokenCache } from "../../src/upstream/auth.js";
import { RegistryClient } from "../../src/upstream/client.js";
import { runCommand } from "../helpers/process.js";
import { type RegistryPeer, startRegistry } from "../helpers/registry.js";

const SIGNATURES = resolve("test/fixtures/signatures");
const SUBJECT = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";
const CASES = ["jws-valid", "jws-invalid-signature", "jws-expired-signature"];

let registry: RegistryPeer;
let client: RegistryClient;

beforeAll(async () => {
  registry = await startRegistry();
  for (const name of CASES) {
    const pushed = await runCommand(
      "bash",
      [join(SIGNATURES, "push.sh"), join(SIGNATURES, "notation", name), registry.host, name],
      {
        env: { ...process.env, TMPDIR: process.env.TMPDIR ?? "/tmp" },
      },
    );
    expect(pushed.stdout, pushed.stderr).toContain("RESULT: complete, byte-identical");
  }
  client = new RegistryClient({
    registry: { name: registry.host, upstream: new URL(registry.url) },
    timeouts: { connectMs: 5000, headersMs: 5000, bodyMs: 5000 },
    tokens: new TokenCache(),
    logger: createLogger("silent", new Writable({ write: (_c, _e, done) => done() })),
  });
});

afterAll(async () => {
  await registry?.stop();
});

async function judge(name: string, trustPolicy: string, trustStore = "truststore") {
  const material = join(SIGNATURES, "notation", name, "material");
  const loaded = await notationVerifierPlug.loadMaterial(
    join(material, "trustpolicies", trustPolicy),
    join(material, trustStore),
  );
  const signatures = async () => {
    const found = await discoverSignatures(new RegistrySignatureFetcher(client), name, SUBJECT, {
      legacy: false,
      artifactTypes: [NOTATION_SIGNATURE],
    });
    expect(found.referrersVia).toBe("tag");
    return found;
  };
  return notationVerifierPlug.verify({
    material: loaded.material,
    image: `${registry.host}/${name}`,
    digest: SUBJECT,
    signatures,
  });
}

describe("Notation signatures in a real docker-registry", () => {
  it("jws-valid verifies (strict), is refused with the wrong trust store or identity, audit only logs", async () => {
    const ok = await judge("jws-valid", "trustpolicy.json");
    expect(ok.satisfied, ok.detail).toBe(true);
    expect(ok.detail).toContain('signed by "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"');
    expect((await judge("jws-valid", "trustpolicy.json", "truststore-wrong-cert")).satisfied).toBe(false);
    expect((await judge("jws-valid", "invalid_trusted_identity_trustpolicy.json")).satisfied).toBe(false);
    const audit = await judge("jws-valid", "audit_trustpolicy.json", "truststore-wrong-cert");
    expect(audit.satisfied).toBe(true);
    expect(audit.detail).toContain("authenticity (logged)");
  });

  it("jws-invalid-signature is refused even at audit", async () => {
    const r = await judge("jws-invalid-signature", "audit_trustpolicy.json");
    expect(r.satisfied).toBe(false);
    expect(r.detail).toContain("integrity validation failed");
  });

  it("jws-expired-signature: strict refuses, permissive logs the expiry", async () => {
    expect((await judge("jws-expired-signature", "trustpolicy.json")).satisfied).toBe(false);
    const p = await judge("jws-expired-signature", "permissive_trustpolicy.json");
    expect(p.satisfied).toBe(true);
    expect(p.detail).toContain("expiry (logged)");
  });
});
