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
import { type NotationPlug, notationVerifierPlug } from "./notation/plug.js";

export type { NotationPlug, NotationRuleInput } from "./notation/plug.js";

// The Notation verifier (src/signatures/notation/plug.ts): notation rules load and are judged.
export const notationPlug: NotationPlug | undefined = notationVerifierPlug;
