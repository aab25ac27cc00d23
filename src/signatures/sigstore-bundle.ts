/**
 * cosign v3 Sigstore bundles (`application/vnd.dev.sigstore.bundle.v0.3+json`) stored as OCI
 * referrers: the bundle is the referrer's layer. Verified with @sigstore/bundle (parse, shape) and
 * @sigstore/verify (signature, certificate chain to the local trusted_root.json's Fulcio CAs, SCTs,
 * transparency-log inclusion and SET, timestamps): nothing is fetched from Fulcio or Rekor.
 *
 * Then, as cosign's verify-attestation does on top of the library (pkg/cosign/verify.go): the DSSE
 * payload must be an in-toto statement whose `subject[].digest.sha256` names the digest being
 * served ("provided artifact digest does not match any digest in statement"), and the signer must
 * be one of the rule's keys or identities (issuer exact; subject exact or by anchored pattern).
 * What the bundle proves is computed first, whether the rule accepts the signer second.
 */
import type { KeyObject } from "node:crypto";
import { bundleFromJSON } from "@sigstore/bundle";
import { TrustedRoot } from "@sigstore/protobuf-specs";
import { type Signer, type TrustMaterial, toSignedEntity, toTrustMaterial, Verifier } from "@sigstore/verify";
import { type DiscoveredSignatures, SIGSTORE_BUNDLE_V03 } from "./discover.js";
import { matchingIdentity } from "./identity.js";
import type { LoadedCosignRule } from "./types.js";

const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";

/** A trusted root with nothing in it: key-only rules without trustedRoot verify the key alone. */
const EMPTY_TRUST: TrustMaterial = toTrustMaterial(
  TrustedRoot.fromJSON({
    mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  }),
);

export async function verifySigstoreBundles(
  rule: LoadedCosignRule,
  found: DiscoveredSignatures,
): Promise<{ satisfied: boolean; detail: string }> {
  const why: string[] = [];
  const hex = found.digest.slice("sha256:".length);
  for (const referrer of found.referrers) {
    if (referrer.artifactType !== SIGSTORE_BUNDLE_V03) continue;
    for (const layer of referrer.layers.filter((l) => l.mediaType === SIGSTORE_BUNDLE_V03)) {
      const at = `bundle ${referrer.digest}`;
      let bundle: ReturnType<typeof bundleFromJSON>;
      try {
        bundle = bundleFromJSON(JSON.parse((await found.blob(layer)).toString("utf8")));
      } catch (e) {
        why.push(`${at}: not a Sigstore bundle (${(e as Error).message})`);
        continue;
      }
      if (bundle.content.$case !== "dsseEnvelope") {
        why.push(
          `${at}: a message-signature bundle names no image digest; only DSSE statements are accepted`,
        );
        continue;
      }
      const envelope = bundle.content.dsseEnvelope;
      const subjectProblem = statementProblem(envelope.payloadType, envelope.payload, hex);
      const keyless = bundle.verificationMaterial.content.$case !== "publicKey";
      const attempts: Array<{ trust: TrustMaterial; label?: string }> = keyless
        ? rule.material.trustedRoot && rule.identities.length > 0
          ? [{ trust: rule.material.trustedRoot }]
          : []
        : rule.material.keys.map((k) => ({
            trust: trustWithKey(rule.material.trustedRoot, k.key),
            label: k.name,
          }));
      if (attempts.length === 0) {
        why.push(
          `${at}: ${keyless ? "signed keyless, and the rule lists no identities" : "signed with a key, and the rule lists no keys"}`,
        );
        continue;
      }
      for (const attempt of attempts) {
        let signer: Signer;
        try {
          const verifier = new Verifier(attempt.trust, {
            tlogThreshold: rule.requireTlog ? 1 : 0,
            // a Fulcio certificate lives minutes: its validity is judged at a verified time
            // (tlog integrated time or an RFC 3161 timestamp), and it must be logged (SCT)
            ctlogThreshold: keyless ? 1 : 0,
            timestampThreshold: keyless ? 1 : 0,
          });
          signer = verifier.verify(toSignedEntity(bundle));
        } catch (e) {
          why.push(`${at}${attempt.label ? ` (key ${attempt.label})` : ""}: ${errorText(e)}`);
          continue;
        }
        if (subjectProblem) {
          why.push(`${at}: ${subjectProblem}`);
          break;
        }
        if (attempt.label)
          return {
            satisfied: true,
            detail: `Sigstore bundle ${referrer.digest} signed by key ${attempt.label}`,
          };
        const san = signer.identity?.subjectAlternativeName;
        const issuer = signer.identity?.extensions?.issuer;
        const match = matchingIdentity(rule.identities, san, issuer);
        if (match)
          return {
            satisfied: true,
            detail: `Sigstore bundle ${referrer.digest} signed by identity ${san} (issuer ${issuer})`,
          };
        why.push(
          `${at}: signed by ${san ?? "(no SAN)"} (issuer ${issuer ?? "none"}), not an identity the rule lists`,
        );
      }
    }
  }
  return {
    satisfied: false,
    detail:
      why.join("; ") || `no Sigstore bundle refers to ${found.digest} (referrers: ${found.referrersVia})`,
  };
}

/** undefined when the DSSE payload is an in-toto statement about sha256:<hex>, else why not. */
function statementProblem(payloadType: string, payload: Buffer, hex: string): string | undefined {
  if (payloadType !== IN_TOTO_PAYLOAD_TYPE)
    return `DSSE payload type ${payloadType} is not an in-toto statement`;
  let statement: { subject?: Array<{ digest?: Record<string, unknown> }> };
  try {
    statement = JSON.parse(payload.toString("utf8")) as typeof statement;
  } catch {
    return "the in-toto statement is not JSON";
  }
  const digests = (statement.subject ?? []).map((s) => s.digest?.sha256);
  return digests.includes(hex)
    ? undefined
    : `the in-toto statement's subjects (${digests.map((d) => `sha256:${String(d)}`).join(", ")}) do not include sha256:${hex}`;
}

/** The trusted root (or none) with `key` as the one key a key-signed entity may name. */
export function trustWithKey(root: TrustMaterial | undefined, key: KeyObject): TrustMaterial {
  return { ...(root ?? EMPTY_TRUST), publicKey: () => ({ publicKey: key, validFor: () => true }) };
}

/** A @sigstore/verify error as "CODE: message". */
export function errorText(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return `${typeof code === "string" ? `${code}: ` : ""}${(e as Error).message}`;
}
