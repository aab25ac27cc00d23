/**
 * `signatures:` and `tagTrust:` in policy files: strict validation (file:line: message), the
 * material read at load (keys, trusted root), and kinds this build cannot verify refused at load.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { formatProblem, loadPolicyDir } from "../../src/policy/index.js";
import { tempDir } from "../helpers/process.js";

const FIXTURES = resolve("test/fixtures/signatures");
const KEY = join(FIXTURES, "cosign-legacy/key-valid/material/cosign.pub");
const KEY2 = join(FIXTURES, "cosign-legacy/key-valid/material/cosign2.pub");
const ROOT = join(FIXTURES, "sigstore-bundle/cosign-v3-oci-attestation/material/trusted_root.json");
const NOTATION = join(FIXTURES, "notation/jws-valid/material");

async function load(yaml: string, extra: Record<string, string> = {}) {
  const dir = await tempDir("policy-signatures");
  await mkdir(join(dir, "policies"));
  for (const [name, text] of Object.entries(extra)) await writeFile(join(dir, "policies", name), text);
  await writeFile(join(dir, "policies", "acme.yaml"), yaml);
  const result = await loadPolicyDir(join(dir, "policies"));
  return { ...result, text: result.problems.map(formatProblem).join("\n"), dir };
}

const head = `name: acme
match: ["docker.io/acme/**"]
mode: enforce
`;

describe("policy signatures: syntax", () => {
  it.each([
    [
      "unknown rule key",
      `signatures:\n  rules:\n    - cosign:\n        key: [${KEY}]\n`,
      7,
      'unknown key "signatures.rules[1].cosign.key"',
    ],
    [
      "no keys nor identities",
      `signatures:\n  rules:\n    - cosign:\n        requireTlog: false\n`,
      6,
      "needs keys: (public key files) or identities:",
    ],
    [
      "identities without trustedRoot",
      `signatures:\n  rules:\n    - cosign:\n        identities:\n          - {issuer: https://x, subject: a@b}\n`,
      7,
      "need trustedRoot:",
    ],
    [
      "identity without subject",
      `signatures:\n  rules:\n    - cosign:\n        trustedRoot: ${ROOT}\n        identities:\n          - {issuer: https://x}\n`,
      9,
      "subject or subjectPattern is required",
    ],
    [
      "identity with both",
      `signatures:\n  rules:\n    - cosign:\n        trustedRoot: ${ROOT}\n        identities:\n          - {issuer: https://x, subject: a, subjectPattern: b}\n`,
      9,
      "not both",
    ],
    [
      "bad pattern",
      `signatures:\n  rules:\n    - cosign:\n        trustedRoot: ${ROOT}\n        identities:\n          - {issuer: https://x, subjectPattern: "a("}\n`,
      9,
      "subjectPattern is not a regular expression",
    ],
    [
      "identity without issuer",
      `signatures:\n  rules:\n    - cosign:\n        trustedRoot: ${ROOT}\n        identities:\n          - {subject: a@b}\n`,
      9,
      "issuer or issuerPattern is required",
    ],
    [
      "identity with issuer and issuerPattern",
      `signatures:\n  rules:\n    - cosign:\n        trustedRoot: ${ROOT}\n        identities:\n          - {issuer: https://x, issuerPattern: "https://.*", subject: a}\n`,
      9,
      "give issuer or issuerPattern, not both",
    ],
    [
      "bad issuer pattern",
      `signatures:\n  rules:\n    - cosign:\n        trustedRoot: ${ROOT}\n        identities:\n          - {issuerPattern: "[", subject: a}\n`,
      9,
      "issuerPattern is not a regular expression",
    ],
    [
      "bad require",
      `signatures:\n  require: both\n  rules:\n    - cosign: {keys: [${KEY}]}\n`,
      5,
      "signatures.require must be one of all | any",
    ],
    ["empty rules", `signatures:\n  rules: []\n`, 5, "signatures.rules must be a non-empty list"],
    [
      "two kinds in one rule",
      `signatures:\n  rules:\n    - cosign: {keys: [${KEY}]}\n      notation: {trustPolicy: a, trustStore: b}\n`,
      6,
      "must be a mapping with one key",
    ],
    [
      "unknown kind",
      `signatures:\n  rules:\n    - gpg: {keys: [a]}\n`,
      6,
      'unknown key "signatures.rules[].gpg"',
    ],
    ["tagTrust without signatures", `tagTrust: registry\n`, 4, "allowed only with signatures:"],
    ["tagTrust bad value", `tagTrust: tuf\n`, 4, "tagTrust must be one of verified | registry"],
    [
      "docker reference with tag",
      `signatures:\n  rules:\n    - cosign:\n        keys: [${KEY}]\n        dockerReferences: ["example.com/a:v1"]\n`,
      8,
      "is not a repository name",
    ],
    [
      "missing key file",
      `signatures:\n  rules:\n    - cosign: {keys: [nope.pub]}\n`,
      6,
      "cannot read nope.pub (no such file or directory)",
    ],
    [
      "not a PEM key",
      `signatures:\n  rules:\n    - cosign: {keys: [${ROOT}]}\n`,
      6,
      "is not a PEM public key",
    ],
    [
      "not a trusted root",
      `signatures:\n  rules:\n    - cosign: {keys: [${KEY}], trustedRoot: ${KEY}}\n`,
      6,
      "is not a usable Sigstore trusted_root.json",
    ],
    [
      "same key twice",
      `signatures:\n  rules:\n    - cosign: {keys: [${KEY}, ${KEY}]}\n`,
      6,
      "is listed twice",
    ],
    [
      "notation store missing",
      `signatures:\n  rules:\n    - notation: {trustPolicy: ${NOTATION}/trustpolicies/trustpolicy.json, trustStore: nowhere}\n`,
      6,
      "trustStore: cannot read nowhere",
    ],
  ])("%s", async (_name, body, line, fragment) => {
    const r = await load(head + body);
    expect(r.set).toBeUndefined();
    expect(r.text).toContain(`acme.yaml:${line}: `);
    expect(r.text).toContain(fragment);
  });

  it("key kinds: P-384 and RSA-1024 are refused, ed25519 and RSA-2048 accepted (relative paths resolve from the policy file)", async () => {
    const pem = (k: ReturnType<typeof generateKeyPairSync>["publicKey"]) =>
      k.export({ type: "spki", format: "pem" }) as string;
    const extra = {
      "p384.pub": pem(generateKeyPairSync("ec", { namedCurve: "secp384r1" }).publicKey),
      "rsa1024.pub": pem(generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey),
    };
    const bad = await load(
      `${head}signatures:\n  rules:\n    - cosign: {keys: [p384.pub, rsa1024.pub]}\n`,
      extra,
    );
    expect(bad.text).toContain("p384.pub is a ECDSA on secp384r1 key");
    expect(bad.text).toContain("rsa1024.pub is a RSA 1024 bits key");
    const good = {
      "ed.pub": pem(generateKeyPairSync("ed25519").publicKey),
      "rsa.pub": pem(generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey),
    };
    const r = await load(
      `${head}signatures:\n  rules:\n    - cosign: {keys: [ed.pub, rsa.pub, ${KEY}]}\n`,
      good,
    );
    // everything about the rule is valid: what remains is whether this build verifies it
    expect(r.problems.every((p) => !p.message.includes("key"))).toBe(true);
  });

  it("a notation rule loads with its trust policy and trust store; bad Notation material is a policy problem", async () => {
    const r = await load(
      `${head}signatures:\n  rules:\n    - notation:\n        trustPolicy: ${NOTATION}/trustpolicies/trustpolicy.json\n        trustStore: ${NOTATION}/truststore\n`,
    );
    expect(r.text).toBe("");
    const rule = r.set?.policies.find((p) => p.name === "acme")?.signatures?.rules[0];
    expect(rule?.kind).toBe("notation");
    expect((rule as { fingerprint?: string } | undefined)?.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const bad = await load(
      `${head}signatures:\n  rules:\n    - notation:\n        trustPolicy: ${NOTATION}/trustpolicies/trustpolicy.json\n        trustStore: ${NOTATION}/certs\n`,
    );
    expect(bad.set).toBeUndefined();
    expect(bad.text).toMatch(
      /acme\.yaml:6: signatures\.rules\[1\]\.notation: .*the trust store ca:e2e named by the trust policy does not exist/,
    );
  });
});

describe("policy signatures: loaded material", () => {
  it("a valid cosign rule loads; its fingerprint changes with a key file's content", async () => {
    const pem = (k: ReturnType<typeof generateKeyPairSync>["publicKey"]) =>
      k.export({ type: "spki", format: "pem" }) as string;
    const yaml = `${head}signatures:\n  rules:\n    - cosign: {keys: [k.pub, ${KEY2}]}\n`;
    const one = await load(yaml, { "k.pub": pem(generateKeyPairSync("ed25519").publicKey) });
    const two = await load(yaml, { "k.pub": pem(generateKeyPairSync("ed25519").publicKey) });
    expect(one.text).toBe("");
    const req = one.set?.policies[0]?.signatures;
    expect(req?.loaded).toBe(true);
    const other = two.set?.policies[0]?.signatures;
    expect(
      req && "fingerprint" in req && other && "fingerprint" in other && req.fingerprint !== other.fingerprint,
    ).toBe(true);
  });

  it("tagTrust: registry with signatures loads", async () => {
    const r = await load(
      `${head}tagTrust: registry\nsignatures:\n  rules:\n    - cosign: {keys: [${KEY}]}\n`,
    );
    expect(r.text).toBe("");
    expect(r.set?.policies[0]?.tagTrust).toBe("registry");
  });
});
