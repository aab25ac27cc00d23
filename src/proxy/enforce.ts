/**
 * The trust-enforcing ManifestResolver (issue 4); its tags/list counterpart is tags.ts SignedTagLister.
 *
 * By tag: decide (policy -> trust source -> policy verdict); when allowed with a signed digest,
 * fetch `/manifests/<signed digest>` from the upstream, NEVER the tag, and answer only bytes that
 * hash to the signed digest and have the signed length. So a tag overwritten upstream with other
 * content still yields the signed manifest, and HEAD and GET agree on Docker-Content-Digest
 * (dockerd and containerd HEAD the tag, then GET the digest from that header: shared/LAB.md).
 * Allowed without a signature (mode off, audit, an exception): the tag passes through.
 *
 * By digest: allowed when the digest is signed, or a child of a signed index served earlier
 * (index-children.ts), else per the policy's `digestPulls`.
 *
 * Every decision is ONE audit record: on the request's access line when the HTTP server passes a
 * `decisionSink` (server.ts), else its own "trust decision" line; every refusal is 403 DENIED naming the image, the
 * reference and why, with a short HTTP reason phrase (containerd shows only the status line).
 */
import type { Logger } from "../log.js";
import { OciCode, OciError } from "../oci/errors.js";
import { type Digest, parseDigest } from "../oci/reference.js";
import type { PolicyDecision } from "../policy/index.js";
import { UpstreamError } from "../upstream/errors.js";
import { type AuditLine, auditLine } from "./audit.js";
import type { Decided, TrustDecider } from "./decide.js";
import type { IndexChildren } from "./index-children.js";
import type { ManifestAnswer, ManifestRequest, ManifestResolver, ManifestStore } from "./manifests.js";

export type { AuditLine } from "./audit.js";

export interface EnforcementDeps {
  decider: TrustDecider;
  store: ManifestStore;
  reachable: IndexChildren;
  /** audit lines go here (msg "trust decision") */
  logger: Logger;
}

export class TrustEnforcingResolver implements ManifestResolver {
  constructor(private readonly deps: EnforcementDeps) {}

  resolve(req: ManifestRequest): Promise<ManifestAnswer> {
    return req.reference.kind === "tag"
      ? this.byTag(req, req.reference.tag)
      : this.byDigest(req, req.reference.digest);
  }

  private async byTag(req: ManifestRequest, tag: string): Promise<ManifestAnswer> {
    const { registry, repository } = req;
    const decided = await this.deps.decider.decideTag(registry, repository, tag);
    const { decision } = decided;
    const line = (d: PolicyDecision): AuditLine => auditLine(decided, d, { reqId: req.requestId, tag });
    if (decision.decision === "deny") {
      this.audit(req, line(decision));
      throw denied(decision.reason, `${decided.image}:${tag}`, decision, { tag }, decided.trustFailure);
    }
    if (decision.digest === undefined) {
      // Allowed unsigned (off, audit's would-deny, an exception): the tag as the upstream has it.
      this.audit(req, line(decision));
      return this.deps.store.byTag(registry, repository, tag, req.accept);
    }
    const signed = signedDigest(decision.digest);
    const answer = await this.fetchSigned(req, signed, decision.size, decided, line, { tag });
    const recordChildren = this.deps.reachable.recorderFor(
      registry,
      repository,
      signed.value,
      answer.bytes,
      answer.mediaType,
    );
    recordChildren?.();
    this.audit(req, line(decision));
    // Signed bytes, decided from verified trust: the same request gets the same answer while the
    // trust source vouches for its data without asking again and the policies are unchanged.
    if (!decided.reuse) return answer;
    return { ...answer, reuse: { ...decided.reuse, ...(recordChildren ? { onReuse: recordChildren } : {}) } };
  }

  private async byDigest(req: ManifestRequest, digest: Digest): Promise<ManifestAnswer> {
    const { registry, repository } = req;
    const decided = await this.deps.decider.decideDigest(
      registry,
      repository,
      digest.value,
      this.deps.reachable,
    );
    const { decision } = decided;
    const line = (d: PolicyDecision): AuditLine =>
      auditLine(decided, d, { reqId: req.requestId, reference: digest.value, digest: digest.value });
    if (decision.decision === "deny") {
      this.audit(req, line(decision));
      throw denied(
        decision.reason,
        `${decided.image}@${digest.value}`,
        decision,
        { digest: digest.value },
        decided.trustFailure,
      );
    }
    const answer = await this.fetchSigned(req, digest, decided.size, decided, line, {
      digest: digest.value,
    });
    if (decided.root !== undefined) {
      // A signed index (or an index inside one) vouches for its children: record them under the
      // signed root this very decision was made from (REVIEW T13: not merely the first root the
      // index was ever reached from, which may no longer be signed).
      this.deps.reachable.recordIfIndex(registry, repository, decided.root, answer.bytes, answer.mediaType);
    }
    this.audit(req, line(decision));
    return answer;
  }

  /**
   * The upstream asked by digest only; bytes that do not hash to the digest or lack the signed
   * length are a refusal (the upstream lied), logged as the decision.
   */
  private async fetchSigned(
    req: ManifestRequest,
    digest: Digest,
    size: number | undefined,
    decided: Decided,
    line: (d: PolicyDecision) => AuditLine,
    detail: Record<string, string>,
  ): Promise<ManifestAnswer> {
    try {
      return await this.deps.store.byDigest(req.registry, req.repository, digest, size);
    } catch (err) {
      // With trust off, a lying upstream is an upstream fault (502), as in pass-through.
      if (
        err instanceof UpstreamError &&
        err.code === "UPSTREAM_INVALID" &&
        decided.decision.mode !== "off"
      ) {
        const name = detail.tag ? `${decided.image}:${detail.tag}` : `${decided.image}@${digest.value}`;
        const reason = `${name}: the upstream registry's manifest does not match the signed digest ${digest.value}${size !== undefined ? ` and length ${size}` : ""} (${err.message})`;
        const refusal: PolicyDecision = {
          ...decided.decision,
          decision: "deny",
          reason,
        };
        this.audit(req, line(refusal));
        throw denied(reason, name, refusal, detail, undefined, "content does not match signature");
      }
      // Not a decision about trust (404, unreachable...): log what was decided, pass the error on.
      this.audit(req, line(decided.decision));
      throw err;
    }
  }

  /** Every decision once: to the request's sink when it has one, else as its own line. */
  private audit(req: ManifestRequest, line: AuditLine): void {
    if (req.decisionSink) {
      req.decisionSink.decision = line;
      return;
    }
    if (line.decision === "deny" || line.wouldDeny) this.deps.logger.warn(line, "trust decision");
    else this.deps.logger.info(line, "trust decision");
  }
}

function signedDigest(value: string): Digest {
  const digest = parseDigest(value);
  // Trust sources only return "sha256:<64 hex>"; anything else is a bug upstream of here.
  if (!digest) throw new Error(`trust source returned an unusable digest ${JSON.stringify(value)}`);
  return digest;
}

/** 403 DENIED with the reason, and a short reason phrase for clients that show only the status line. */
function denied(
  reason: string,
  name: string,
  decision: PolicyDecision,
  detail: Record<string, string>,
  trustFailure: string | undefined,
  short?: string,
): OciError {
  const why =
    short ??
    (decision.mode === "refuse"
      ? "no policy covers it"
      : decision.signatures !== undefined
        ? "signature rule not met"
        : trustFailure
          ? `trust not established (${trustFailure})`
          : detail.tag
            ? "not signed"
            : "digest not signed");
  return new OciError(OciCode.DENIED, {
    message: reason,
    detail: { ...detail, policy: decision.policy },
    // RFC 9112 reason phrases are free text; keep it short and ASCII (renderOciError strips the rest).
    reasonPhrase: `Forbidden (trustgate: ${name} ${why})`.slice(0, 200),
  });
}
