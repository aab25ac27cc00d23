/**
 * Where the Notation verifier plugs in (issue 15's other half: src/signatures/notation/, exporting
 * `verifyNotation` and `loadNotationMaterial`). Were it undefined, material.ts would refuse every
 * policy with a `notation:` rule at load ("not supported in this build"): fail closed, never
 * loaded and then ignored.
 *
 * `notationPlug` is the adapter over those two functions (notation/plug.ts). Discovery hands it the
 * referrers of artifact type NOTATION_SIGNATURE (discover.ts), already fetched by digest and
 * checked; the verifier judges them against its own trust policy and trust store.
 */
import type { DiscoveredSignatures } from "./discover.js";
import { notationVerifierPlug } from "./notation/plug.js";

export interface NotationRuleInput {
  /** what loadMaterial returned for this rule */
  readonly material: unknown;
  /** canonical image, e.g. docker.io/acme/app (Notation registryScopes match on it) */
  readonly image: string;
  /** the digest being served: the envelope's targetArtifact must name it */
  readonly digest: string;
  /** the digest's referrers, of artifact type application/vnd.cncf.notary.signature */
  readonly signatures: DiscoveredSignatures;
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

// The Notation verifier (src/signatures/notation/plug.ts): notation rules load and are judged.
export const notationPlug: NotationPlug | undefined = notationVerifierPlug;
