/**
 * The audit record of one trust decision (issue 4/5), and how a decision becomes one. A manifest
 * request's record goes on its access line (DecisionSink; server.ts writes it), else on a
 * "trust decision" line of its own (enforce.ts).
 */
import type { PolicyDecision } from "../policy/index.js";
import type { Decided } from "./decide.js";

/**
 * What one audit line says (issue 4/5: decision, image, tag|digest, digest, role, policy, mode, source, reason).
 * Keep it flat (primitive values, no secret-named keys): it is logged without redaction (log.ts fixedFieldsLogger).
 */
export interface AuditLine {
  /** the request id of the access-log line for the same request */
  reqId?: string;
  decision: "allow" | "deny";
  image: string;
  tag?: string;
  /** the digest asked for (pulls by digest) */
  reference?: string;
  /** the digest served or that would have been served */
  digest?: string;
  role?: string;
  policy: string;
  mode: string;
  source?: string;
  wouldDeny?: boolean;
  exception?: string;
  /** the TrustError code when trust could not be established (a bounded value: metrics.ts) */
  trustFailure?: string;
  /** the signature requirement's verdict: which rule and key/identity verified, or why none did */
  signatures?: string;
  reason: string;
}

/** Receives the one audit record of a request's trust decision. */
export interface DecisionSink {
  decision?: AuditLine;
}

export function auditLine(decided: Decided, d: PolicyDecision, ref: Partial<AuditLine>): AuditLine {
  return {
    decision: d.decision,
    image: decided.image,
    ...ref,
    ...(d.digest !== undefined ? { digest: d.digest } : {}),
    ...(d.role !== undefined ? { role: d.role } : {}),
    policy: d.policy,
    mode: d.mode,
    ...(decided.source !== undefined ? { source: decided.source } : {}),
    ...(d.wouldDeny !== undefined ? { wouldDeny: d.wouldDeny } : {}),
    ...(d.exception !== undefined ? { exception: d.exception } : {}),
    ...(decided.trustFailure !== undefined ? { trustFailure: decided.trustFailure } : {}),
    ...(d.signatures !== undefined ? { signatures: d.signatures } : {}),
    reason: d.reason,
  };
}
