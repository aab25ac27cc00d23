/**
 * The Notation verifier against signatures made by `notation sign` (test/fixtures/signatures/notation,
 * copied byte-exactly from the shared fixtures; provenance in each case's PROVENANCE.md). Every
 * expectation of each case's expected.json is run; the envelopes are read out of the OCI layout
 * (the signature manifests whose subject is the signed image), as discovery would fetch them.
 */
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { loadNotationMaterial } from "../../src/signatures/notation/material.js";
import { type NotationEnvelope, verifyNotation } from "../../src/signatures/notation/verify.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "signatures", "notation");
const REFERENCE = "127.0.0.1:5000/e2e";

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
interface Expectation {
  id: string;
  expect: "pass" | "fail";
  material: { trustPolicy: string; trustStore?: Record<string, string[]> };
  checked_offline: { output: string[] };
}
interface Case {
  subject: Descriptor;
  expectations: Expectation[];
}

async function blob(caseDir: string, digest: string): Promise<Buffer> {
  return readFile(join(caseDir, "blobs", "sha256", digest.replace(/^sha256:/, "")));
}

/** The Notation envelopes of `subject` in the layout: layers of signature manifests that refer to it. */
async function envelopesFor(caseDir: string, subject: Descriptor): Promise<NotationEnvelope[]> {
  const index = JSON.parse((await readFile(join(caseDir, "index.json"))).toString()) as {
    manifests: Descriptor[];
  };
  const envelopes: NotationEnvelope[] = [];
  for (const d of index.manifests) {
    if (d.mediaType !== "application/vnd.oci.image.manifest.v1+json") continue;
    const m = JSON.parse((await blob(caseDir, d.digest)).toString()) as {
      config: Descriptor;
      layers: Descriptor[];
      subject?: Descriptor;
    };
    if (
      m.config.mediaType !== "application/vnd.cncf.notary.signature" ||
      m.subject?.digest !== subject.digest
    )
      continue;
    for (const layer of m.layers)
      envelopes.push({ mediaType: layer.mediaType, bytes: await blob(caseDir, layer.digest) });
  }
  return envelopes;
}

function trustStoreDir(caseDir: string, e: Expectation): string {
  const files = Object.values(e.material.trustStore ?? {}).flat();
  return join(
    caseDir,
    "material",
    files.some((f) => f.includes("truststore-wrong-cert")) ? "truststore-wrong-cert" : "truststore",
  );
}

/** The outcome notation's own output implies: FAIL -> refused; a Warning -> logged; skip -> skipped. */
function expectedOutcome(e: Expectation): { outcome: string; phrases: string[] } {
  const out = e.checked_offline.output.join("\n");
  if (e.expect === "fail") {
    const phrases = [...out.matchAll(/FAILED - (\w+) validation failed/g)].map(
      (m) => `${m[1]} validation failed`,
    );
    return { outcome: "refused", phrases };
  }
  if (out.includes("configured to skip")) return { outcome: "skipped", phrases: ["skip"] };
  const logged = [...out.matchAll(/Warning: (\w+) was set to "log"/g)].map((m) => `${m[1]} (logged)`);
  return logged.length > 0
    ? { outcome: "logged", phrases: logged }
    : { outcome: "verified", phrases: ["verified"] };
}

const CASES = ["jws-valid", "jws-invalid-signature", "jws-expired-signature"];

describe("Notation fixtures: every expectation of expected.json", async () => {
  for (const name of CASES) {
    const caseDir = join(FIXTURES, name);
    const fixture = JSON.parse((await readFile(join(caseDir, "expected.json"))).toString()) as Case;
    describe(name, () => {
      for (const e of fixture.expectations) {
        const want = expectedOutcome(e);
        it(`${e.id}: ${want.outcome}`, async () => {
          const material = await loadNotationMaterial(
            join(caseDir, e.material.trustPolicy),
            trustStoreDir(caseDir, e),
          );
          const envelopes = await envelopesFor(caseDir, fixture.subject);
          expect(envelopes.length).toBe(1);
          const verdict = await verifyNotation({
            material,
            reference: REFERENCE,
            subject: fixture.subject,
            envelopes,
            now: new Date(),
          });
          expect(verdict.outcome, verdict.reason).toBe(want.outcome);
          expect(verdict.rule).toBe("notation");
          for (const phrase of want.phrases) expect(verdict.reason).toContain(phrase);
          if (want.outcome === "verified" || want.outcome === "logged")
            expect(verdict.identity).toBe("CN=e2e,O=Notary,L=Seattle,ST=WA,C=US");
        });
      }
    });
  }
});

describe("Notation verification beyond the fixtures' expectations", () => {
  const valid = join(FIXTURES, "jws-valid");
  const policies = join(valid, "material", "trustpolicies");
  const store = join(valid, "material", "truststore");
  const subject = {
    digest: "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9",
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    size: 517,
  };
  let envelopes: NotationEnvelope[];
  let scratch: string;
  beforeAll(async () => {
    envelopes = await envelopesFor(valid, subject);
    scratch = await mkdtemp(join(tmpdir(), "notation-verify-"));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });
  const verifyWith = async (policyFile: string, over: Partial<Parameters<typeof verifyNotation>[0]> = {}) =>
    verifyNotation({
      material: await loadNotationMaterial(policyFile, store),
      reference: REFERENCE,
      subject,
      envelopes,
      now: new Date(),
      ...over,
    });

  it("refuses a valid signature for another digest, even at audit", async () => {
    for (const policy of ["trustpolicy.json", "audit_trustpolicy.json"]) {
      const verdict = await verifyWith(join(policies, policy), {
        subject: { ...subject, digest: `sha256:${"0".repeat(64)}` },
      });
      expect(verdict.outcome).toBe("refused");
      expect(verdict.reason).toContain("target artifact mismatch");
    }
  });

  it("refuses when the signed media type or size differs from the served artifact", async () => {
    const byType = await verifyWith(join(policies, "trustpolicy.json"), {
      subject: { ...subject, mediaType: "application/vnd.oci.image.index.v1+json" },
    });
    expect(byType.outcome).toBe("refused");
    const bySize = await verifyWith(join(policies, "trustpolicy.json"), {
      subject: { ...subject, size: 518 },
    });
    expect(bySize.outcome).toBe("refused");
    expect(bySize.reason).toContain("size");
  });

  it("refuses an artifact without signatures, even at audit; skip skips", async () => {
    expect((await verifyWith(join(policies, "audit_trustpolicy.json"), { envelopes: [] })).outcome).toBe(
      "refused",
    );
    expect((await verifyWith(join(policies, "skip_trustpolicy.json"), { envelopes: [] })).outcome).toBe(
      "skipped",
    );
  });

  it("refuses a JWS whose payload was changed after signing (integrity, even at audit)", async () => {
    const env = JSON.parse(Buffer.from((envelopes[0] as NotationEnvelope).bytes).toString()) as {
      payload: string;
    };
    const payload = JSON.parse(Buffer.from(env.payload, "base64url").toString()) as {
      targetArtifact: { digest: string };
    };
    payload.targetArtifact.digest = `sha256:${"1".repeat(64)}`;
    env.payload = Buffer.from(JSON.stringify(payload)).toString("base64url");
    const tampered = [{ mediaType: "application/jose+json", bytes: Buffer.from(JSON.stringify(env)) }];
    const verdict = await verifyWith(join(policies, "audit_trustpolicy.json"), {
      envelopes: tampered,
      subject: { ...subject, digest: payload.targetArtifact.digest },
    });
    expect(verdict.outcome).toBe("refused");
    expect(verdict.reason).toContain("integrity validation failed: the signature does not verify");
  });

  it("accepts when one of several signatures verifies, and names every failure when none does", async () => {
    const junk = { mediaType: "application/jose+json", bytes: Buffer.from("{}") };
    const ok = await verifyWith(join(policies, "trustpolicy.json"), { envelopes: [junk, ...envelopes] });
    expect(ok.outcome).toBe("verified");
    const none = await verifyWith(join(policies, "trustpolicy.json"), { envelopes: [junk, junk] });
    expect(none.outcome).toBe("refused");
    expect(none.reason.match(/integrity validation failed/g)?.length).toBe(2);
  });

  it("refuses a COSE envelope that is not COSE_Sign1 (integrity)", async () => {
    const verdict = await verifyWith(join(policies, "trustpolicy.json"), {
      envelopes: [{ mediaType: "application/cose", bytes: Buffer.from([0xd2]) }],
    });
    expect(verdict.outcome).toBe("refused");
    expect(verdict.reason).toContain("integrity validation failed: the COSE envelope is not valid CBOR");
  });

  it("authentic timestamp: a certificate not yet valid at verification time is enforced by strict, logged by permissive", async () => {
    const before = new Date("2020-01-01T00:00:00Z"); // the e2e certificate is valid from 2022-12-19
    const strict = await verifyWith(join(policies, "trustpolicy.json"), { now: before });
    expect(strict.outcome).toBe("refused");
    expect(strict.reason).toContain("authentic timestamp validation failed");
    const permissive = await verifyWith(join(policies, "permissive_trustpolicy.json"), { now: before });
    expect(permissive.outcome).toBe("logged");
    expect(permissive.reason).toContain("authentic timestamp (logged)");
  });

  it("selects the policy whose scope names the repository over the global one", async () => {
    const doc = {
      version: "1.0",
      trustPolicies: [
        {
          name: "global",
          registryScopes: ["*"],
          signatureVerification: { level: "strict" },
          trustStores: ["ca:e2e"],
          trustedIdentities: ["*"],
        },
        {
          name: "exact",
          registryScopes: ["127.0.0.1:5000/e2e"],
          signatureVerification: { level: "strict" },
          trustStores: ["ca:e2e"],
          trustedIdentities: ["x509.subject: C=US, ST=WA, O=Someone Else"],
        },
      ],
    };
    const file = join(scratch, "scopes.json");
    await writeFile(file, JSON.stringify(doc));
    const exact = await verifyWith(file);
    expect(exact.outcome).toBe("refused");
    expect(exact.reason).toContain('trust policy "exact"');
    const other = await verifyWith(file, { reference: "127.0.0.1:5000/other" });
    expect(other.outcome).toBe("verified");
    expect(other.reason).toContain('trust policy "global"');
    doc.trustPolicies.shift();
    await writeFile(file, JSON.stringify(doc));
    const none = await verifyWith(file, { reference: "127.0.0.1:5000/other" });
    expect(none.outcome).toBe("refused");
    expect(none.reason).toContain("no Notation trust policy applies");
  });

  it("matches trusted identities by attribute subset, and escapes in DNs", async () => {
    const file = join(scratch, "ids.json");
    const write = (identities: string[]) =>
      writeFile(
        file,
        JSON.stringify({
          version: "1.0",
          trustPolicies: [
            {
              name: "p",
              registryScopes: ["*"],
              signatureVerification: { level: "strict" },
              trustStores: ["ca:e2e"],
              trustedIdentities: identities,
            },
          ],
        }),
      );
    await write(["x509.subject: C=US, ST=WA, O=Notary"]);
    expect((await verifyWith(file)).outcome).toBe("verified");
    await write(["x509.subject: C=US, ST=WA, O=Notary, CN=e2f"]);
    expect((await verifyWith(file)).outcome).toBe("refused");
    await write(["x509.subject: C=US,ST=WA,O=Not\\61ry"]);
    expect((await verifyWith(file)).outcome).toBe("verified");
  });
});

describe("loadNotationMaterial: clear errors for bad material", () => {
  const valid = join(FIXTURES, "jws-valid", "material");
  const store = join(valid, "truststore");
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "notation-material-"));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });
  const policy = (over: Record<string, unknown>) => ({
    version: "1.0",
    trustPolicies: [
      {
        name: "p",
        registryScopes: ["*"],
        signatureVerification: { level: "strict" },
        trustStores: ["ca:e2e"],
        trustedIdentities: ["*"],
        ...over,
      },
    ],
  });
  const loadDoc = async (doc: unknown, trustStore = store) => {
    const file = join(scratch, `p-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, typeof doc === "string" ? doc : JSON.stringify(doc));
    return loadNotationMaterial(file, trustStore);
  };
  const rejects = async (doc: unknown, message: string | RegExp, trustStore = store) => {
    const err = await loadDoc(doc, trustStore).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
  };

  it("loads the fixture material: one ca store with the e2e certificate, a stable fingerprint", async () => {
    const m = await loadNotationMaterial(join(valid, "trustpolicies", "trustpolicy.json"), store);
    expect(m.policies[0]?.actions).toEqual({
      integrity: "enforce",
      authenticity: "enforce",
      authenticTimestamp: "enforce",
      expiry: "enforce",
      revocation: "enforce",
    });
    expect(m.stores.get("ca:e2e")?.length).toBe(1);
    const again = await loadNotationMaterial(join(valid, "trustpolicies", "trustpolicy.json"), store);
    expect(again.fingerprint).toBe(m.fingerprint);
    const other = await loadNotationMaterial(
      join(valid, "trustpolicies", "trustpolicy.json"),
      join(valid, "truststore-wrong-cert"),
    );
    expect(other.fingerprint).not.toBe(m.fingerprint);
    const otherPolicy = await loadNotationMaterial(
      join(valid, "trustpolicies", "audit_trustpolicy.json"),
      store,
    );
    expect(otherPolicy.fingerprint).not.toBe(m.fingerprint);
  });

  it("applies override on top of the level", async () => {
    const m = await loadNotationMaterial(
      join(valid, "trustpolicies", "override_permissive_trustpolicy.json"),
      store,
    );
    expect(m.policies[0]?.actions).toEqual({
      integrity: "enforce",
      authenticity: "log",
      authenticTimestamp: "enforce",
      expiry: "enforce",
      revocation: "enforce",
    });
  });

  it("refuses a missing file, bad JSON, a wrong version, no policies", async () => {
    await expect(loadNotationMaterial(join(scratch, "absent.json"), store)).rejects.toThrow(/does not exist/);
    await rejects("{not json", /is not valid JSON/);
    await rejects({ ...policy({}), version: "2.0" }, /version must be "1.0"/);
    await rejects({ version: "1.0", trustPolicies: [] }, /trustPolicies must be a non-empty array/);
    await rejects({ ...policy({}), extra: 1 }, /unknown key "extra"/);
  });

  it("refuses bad statements", async () => {
    await rejects(policy({ name: "" }), /has no name/);
    await rejects(policy({ signatureVerification: { level: "paranoid" } }), /level must be one of/);
    await rejects(
      policy({ signatureVerification: { level: "strict", override: { integrity: "log" } } }),
      /integrity validation cannot be overridden/,
    );
    await rejects(
      policy({ signatureVerification: { level: "strict", override: { expiry: "skip" } } }),
      /override.expiry must be one of enforce, log/,
    );
    await rejects(
      {
        version: "1.0",
        trustPolicies: [
          {
            name: "s",
            registryScopes: ["*"],
            signatureVerification: { level: "skip" },
            trustStores: ["ca:e2e"],
          },
        ],
      },
      /set to "skip" but names trust stores/,
    );
    await rejects(policy({ trustedIdentities: [] }), /needs both trustStores and trustedIdentities/);
    await rejects(policy({ trustStores: ["e2e"] }), /must be <type>:<name>/);
    await rejects(policy({ trustStores: ["root:e2e"] }), /has type "root"/);
    await rejects(policy({ trustStores: ["tsa:e2e"] }), /names no ca or signingAuthority trust store/);
    await rejects(policy({ registryScopes: ["*", "docker.io/library/alpine"] }), /cannot be combined/);
    await rejects(policy({ registryScopes: ["alpine"] }), /not a fully qualified repository/);
    await rejects(policy({ registryScopes: ["docker.io/library/*"] }), /not a fully qualified repository/);
    await rejects(
      policy({ trustedIdentities: ["*", "x509.subject: C=US, ST=WA, O=X"] }),
      /wildcard identity/,
    );
    await rejects(policy({ trustedIdentities: ["x509.subject: C=US, O=X"] }), /has no ST/);
    await rejects(policy({ trustedIdentities: ["x509.subject: C=US, ST=WA, O=X+OU=Y"] }), /multi-valued/);
    await rejects(policy({ trustedIdentities: ["x509.subject: C=US, ST=WA, O=#0403"] }), /BER-encoded/);
    await rejects(policy({ trustedIdentities: ["x509.subject: C=US, ST=WA, O=X, O=Y"] }), /appears twice/);
    await rejects(
      policy({
        trustedIdentities: ["x509.subject: C=US, ST=WA, O=X", "x509.subject: C=US, ST=WA, O=X, OU=Y"],
      }),
      /overlap/,
    );
    await rejects(
      policy({ trustedIdentities: ["x509.email: a@b"] }),
      /must be "\*" or start with "x509.subject:"/,
    );
  });

  it("refuses two policies with one name or one scope", async () => {
    const p = policy({}).trustPolicies[0];
    await rejects({ version: "1.0", trustPolicies: [p, p] }, /two trust policies are named "p"/);
    await rejects(
      { version: "1.0", trustPolicies: [p, { ...p, name: "q" }] },
      /registry scope "\*" is in trust policies "p" and "q"/,
    );
  });

  it("refuses a missing store, an empty store, a symlinked certificate, a non-certificate file", async () => {
    await rejects(
      policy({ trustStores: ["ca:absent"] }),
      /trust store ca:absent named by the trust policy does not exist/,
    );
    const ts = join(scratch, "ts");
    await cp(store, ts, { recursive: true });
    await writeFile(join(ts, "x509", "ca", "e2e", "notes.txt"), "ignored");
    const m = await loadDoc(policy({}), ts);
    expect(m.warnings.join("\n")).toContain("notes.txt");
    await writeFile(
      join(ts, "x509", "ca", "e2e", "broken.pem"),
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    await rejects(policy({}), /broken.pem: certificate 1 does not parse/, ts);
    await rm(join(ts, "x509", "ca", "e2e", "broken.pem"));
    await writeFile(
      join(ts, "x509", "ca", "e2e", "key.pem"),
      "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    await rejects(policy({}), /holds -----BEGIN PRIVATE KEY-----/, ts);
    await rm(join(ts, "x509", "ca", "e2e", "key.pem"));
    await symlink(join(store, "x509", "ca", "e2e", "e2e.crt"), join(ts, "x509", "ca", "e2e", "link.crt"));
    await rejects(policy({}), /symlinks are not supported/, ts);
    const empty = join(scratch, "empty");
    await cp(store, empty, { recursive: true });
    await rm(join(empty, "x509", "ca", "e2e", "e2e.crt"));
    await rejects(policy({}), /holds no certificate/, empty);
  });
});
