/**
 * The Notation verifier behind the plug point of the policy layer (../notation-plug.ts): loads a
 * rule's trust policy and trust store (material.ts) and judges the Notation signatures discovery
 * found for a digest (../discover.ts: referrers of artifact type application/vnd.cncf.notary.signature,
 * fetched by digest and checked). The signature manifest holds exactly one layer, the envelope
 * (signature-specification.md "OCI Signatures"); its media type says JWS or COSE.
 *
 * A rule is satisfied by a `verified` or `logged` verdict (the trust policy's own level accepted
 * the signature) and by `skipped` (the trust policy says not to verify this repository); `detail`
 * carries the reason either way, so the audit line says what was only logged or skipped.
 */

import type { DiscoveredSignatures } from "../discover.js";
import { NOTATION_SIGNATURE } from "../discover.js";
import { loadNotationMaterial, type NotationMaterial, selectTrustPolicy } from "./material.js";
import { type NotationEnvelope, verifyNotation } from "./verify.js";

export interface NotationRuleInput {
  /** what loadMaterial returned for this rule */
  readonly material: unknown;
  /** canonical image, e.g. docker.io/acme/app (Notation registryScopes match on it) */
  readonly image: string;
  /** the digest being served: the envelope's targetArtifact must name it */
  readonly digest: string;
  /**
   * Discovers the digest's referrers of artifact type application/vnd.cncf.notary.signature;
   * called only when the applicable trust policy verifies (level `skip`: Notation's "no
   * verification" fetches nothing, so a registry error cannot fail a skipped image). Throws when
   * discovery fails.
   */
  readonly signatures: () => Promise<DiscoveredSignatures>;
}

export interface NotationPlug {
  /** read and validate trustpolicy.json and the trust store; the fingerprint covers their content */
  loadMaterial(
    trustPolicyFile: string,
    trustStoreDir: string,
  ): Promise<{ material: unknown; fingerprint: string }>;
  /** satisfied, with who signed; or not, with why no signature verified */
  verify(input: NotationRuleInput): Promise<{ satisfied: boolean; detail: string }>;
}

export const notationVerifierPlug: NotationPlug = {
  async loadMaterial(trustPolicyFile, trustStoreDir) {
    const material = await loadNotationMaterial(trustPolicyFile, trustStoreDir);
    return { material, fingerprint: material.fingerprint };
  },

  async verify(input: NotationRuleInput) {
    const material = input.material as NotationMaterial;
    const envelopes: NotationEnvelope[] = [];
    const unusable: string[] = [];
    // No policy applies (refused) or it is `skip` (skipped): verifyNotation decides without envelopes.
    const policy = selectTrustPolicy(material, input.image);
    const found = policy && policy.level !== "skip" ? await input.signatures() : undefined;
    for (const artifact of found?.referrers ?? []) {
      if (artifact.artifactType !== NOTATION_SIGNATURE || artifact.subject !== input.digest) continue;
      const layer = artifact.layers[0];
      if (!layer || artifact.layers.length !== 1) {
        unusable.push(
          `signature manifest ${artifact.digest} has ${artifact.layers.length} layers, not one envelope`,
        );
        continue;
      }
      try {
        envelopes.push({
          mediaType: layer.mediaType,
          bytes: await (found as DiscoveredSignatures).blob(layer),
        });
      } catch (err) {
        // A blob the registry will not give (or gives wrong) is no signature; the others still count.
        unusable.push(`signature manifest ${artifact.digest}: ${(err as Error).message}`);
      }
    }
    const verdict = await verifyNotation({
      material,
      reference: input.image,
      subject: { digest: input.digest },
      envelopes,
      now: new Date(),
    });
    const satisfied = verdict.outcome !== "refused";
    const who = verdict.identity ? `signed by "${verdict.identity}": ` : "";
    const extra = !satisfied && unusable.length > 0 ? `; unusable: ${unusable.join("; ")}` : "";
    return { satisfied, detail: `${who}${verdict.reason}${extra}` };
  },
};
