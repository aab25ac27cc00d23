/**
 * What one signature rule says about one digest. Each rule kind (cosign, notation) has its own
 * verifier module; the policy layer combines verdicts (`require: all | any`) and the proxy logs them.
 *
 * - `verified`: every check the rule enforces passed.
 * - `logged`: the signature was accepted, but a check the rule only logs failed (Notation's
 *   `permissive`/`audit` levels and `override: log`); `reason` says which, for the audit line.
 * - `refused`: no signature satisfies the rule; `reason` says why (for every candidate signature).
 * - `skipped`: the rule asks for no verification of this artifact (Notation's `skip` level).
 */
export type SignatureOutcome = "verified" | "refused" | "logged" | "skipped";

export interface SignatureVerdict {
  outcome: SignatureOutcome;
  /** which kind of rule produced the verdict */
  rule: "cosign" | "notation";
  /** one line for the audit log and the refusal message; names the policy, signature and check */
  reason: string;
  /** the identity that signed (Notation: the signing certificate's subject DN), when one verified */
  identity?: string;
}
