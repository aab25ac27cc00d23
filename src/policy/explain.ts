/**
 * `policy explain`: what trustgate would demand of one image, as data (for --json and tests) and as
 * text. Pure: the caller supplies the loaded set and the default.
 */

import { describeIdentity } from "../signatures/identity.js";
import { formatInstant, policySources } from "./across-sources.js";
import { type AppliedPolicy, applyPolicy, type DefaultPolicySetting } from "./applied.js";
import { findException } from "./decision.js";
import type { ImageReference } from "./image-reference.js";
import type { PolicySet } from "./policy-set.js";
import type { DigestPulls, PolicyMode } from "./types.js";

export interface Explanation {
  readonly input: string;
  readonly image: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
  /** "defaultPolicy" when no file matched */
  readonly policy: string;
  readonly file: string | undefined;
  readonly pattern: string | undefined;
  readonly why: string;
  /** every pattern that matches, most specific first: "pattern (policy)" */
  readonly candidates: readonly string[];
  readonly mode: PolicyMode | "refuse";
  readonly demands: {
    readonly rootKeys: readonly string[];
    /** how the root of trust is established: pinned keys, tuf.trustedRoot, or trust on first use */
    readonly rootTrust: string;
    readonly roles: readonly string[];
    readonly requireAll: boolean;
    /** the policy's trust.source, or how it will be chosen */
    readonly source: string;
    readonly digestPulls: DigestPulls;
  } | null;
  /** `signatures:`: how the rules combine and what each demands; null without a requirement */
  readonly signatures: { readonly require: string; readonly rules: readonly string[] } | null;
  /** "verified" (tags from the trust source) or "registry", with what the latter gives up */
  readonly tagTrust: string;
  /** the exception that would let this image (and tag) through unsigned, if any */
  readonly exception: string | undefined;
  readonly summary: string;
}

export function explain(
  set: PolicySet,
  input: string,
  ref: ImageReference,
  defaultPolicy: DefaultPolicySetting,
  /** the trust source configured for the registry, when the config is known */
  registrySource?: string,
): Explanation {
  const applied: AppliedPolicy = applyPolicy(set, ref.image, defaultPolicy);
  const candidates = set.allMatches(ref.image).map((c) => `${c.pattern.source} (${c.policy.name})`);
  const base = { input, image: ref.image, tag: ref.tag, digest: ref.digest, candidates };
  if (applied.kind === "refuse") {
    return {
      ...base,
      policy: applied.policyName,
      file: undefined,
      pattern: undefined,
      why: applied.why,
      mode: "refuse",
      demands: null,
      signatures: null,
      tagTrust: "verified",
      exception: undefined,
      summary: `every pull of ${ref.image} is refused (defaultPolicy: refuse)`,
    };
  }
  const { policy } = applied;
  const listed = policySources(policy);
  const until = policy.trust.notaryUntil;
  // trust.sources: asked in this order, the first whose signatures satisfy the policy decides
  const source = listed
    ? listed
        .map((k) => (k === "notary" && until ? `notary (until ${formatInstant(until)})` : k))
        .join(", then ") + (listed.length > 1 ? " (the first that verifies decides)" : "")
    : registrySource
      ? `${registrySource} (the registry's)`
      : "the registry's configured source";
  const kind = listed ? (listed.length === 1 ? listed[0] : undefined) : registrySource?.split(" ")[0];
  const exception = findException(policy, ref.image, ref.tag);
  const rolesText = policy.trust.requireAll
    ? `signed by every one of ${policy.trust.roles.join(", ")}, with the same digest`
    : `signed in ${policy.trust.roles.join(" or ")} (the first role that signs the tag counts)`;
  const signatures = policy.signatures
    ? {
        require: policy.signatures.require,
        rules: policy.signatures.rules.map((r) =>
          r.kind === "notation"
            ? `rule ${r.index} (notation): trust policy ${r.trustPolicy.written}, trust store ${r.trustStore.written}`
            : `rule ${r.index} (cosign): ${[
                r.keys.length > 0 ? `keys ${r.keys.map((k) => k.written).join(", ")}` : "",
                r.identities.length > 0
                  ? `identities ${r.identities.map(describeIdentity).join(", ")} against ${r.trustedRoot?.written}`
                  : "",
                r.requireTlog ? "transparency-log entry required" : "",
                r.dockerReferences.length > 0 ? `also signed as ${r.dockerReferences.join(", ")}` : "",
              ]
                .filter((x) => x !== "")
                .join("; ")}`,
        ),
      }
    : null;
  const tagTrust =
    policy.tagTrust === "registry"
      ? "registry: the tag's digest is taken from the registry, unverified; only the signatures are checked. " +
        "This gives up freshness and rollback protection: whoever can push may move the tag to any other signed digest, an old signed image included"
      : "verified: the tag's digest comes from verified TUF/Notary trust data";
  const signedText = signatures
    ? ` and the digest carries signatures satisfying ${signatures.require === "all" ? "every" : "one"} of ${signatures.rules.length} signature rule(s)`
    : "";
  const summary =
    policy.mode === "off"
      ? "pulls are allowed without a trust check (mode: off)"
      : `${policy.mode === "enforce" ? "tags are refused unless" : "tags are allowed, and logged as would-deny, unless"} ${policy.tagTrust === "registry" ? "(tag taken from the registry, unverified)" : rolesText}${signedText}` +
        (exception
          ? `; unsigned pulls of this ${ref.tag ? "tag" : "image"} are allowed by exception: ${exception.reason}`
          : "");
  return {
    ...base,
    policy: policy.name,
    file: applied.fromDefault ? undefined : policy.file,
    pattern: applied.fromDefault ? undefined : applied.pattern,
    why: applied.why,
    mode: policy.mode,
    demands: {
      rootKeys: policy.trust.rootKeys,
      rootTrust: rootTrust(policy.trust.rootKeys, kind),
      roles: policy.trust.roles,
      requireAll: policy.trust.requireAll,
      source,
      digestPulls: policy.digestPulls,
    },
    signatures,
    tagTrust,
    exception: exception?.reason,
    summary,
  };
}

/**
 * A TUF source never trusts on first use: its chain starts at the operator's `tuf.trustedRoot`
 * file (TUF 1.0 §5.2). Notary without pins records the first root it sees (Docker's TOFU).
 */
function rootTrust(rootKeys: readonly string[], kind: string | undefined): string {
  const pinned = rootKeys.length > 0 ? `pinned: ${rootKeys.join(", ")}` : undefined;
  if (kind === "tuf") {
    return pinned
      ? `${pinned}; the chain starts at the configured tuf.trustedRoot`
      : "anchored by the configured tuf.trustedRoot (not trust on first use)";
  }
  if (pinned) return pinned;
  if (kind === "notary") return "not pinned (trust on first use)";
  return "not pinned: trust on first use with a notary source; a tuf source starts at its tuf.trustedRoot";
}

export function renderExplanation(e: Explanation): string {
  const ref = `${e.image}${e.tag ? `:${e.tag}` : ""}${e.digest ? `@${e.digest}` : ""}`;
  const lines = [`image:       ${ref}${e.input !== ref ? `  (from "${e.input}")` : ""}`];
  lines.push(`policy:      ${e.policy}${e.file ? ` (${e.file})` : ""}`);
  lines.push(`why:         ${e.why}`);
  lines.push(`mode:        ${e.mode}`);
  if (e.demands) {
    const d = e.demands;
    lines.push(`trust:       source ${d.source}`);
    lines.push(`root keys:   ${d.rootTrust}`);
    lines.push(
      `roles:       ${d.roles.join(", ")}${d.requireAll ? " (all required, same digest)" : " (first that signs counts)"}`,
    );
    lines.push(`digestPulls: ${d.digestPulls}`);
    lines.push(`tagTrust:    ${e.tagTrust}`);
  }
  if (e.signatures) {
    lines.push(`signatures:  require ${e.signatures.require}`);
    for (const r of e.signatures.rules) lines.push(`             ${r}`);
  }
  if (e.exception) lines.push(`exception:   ${e.exception}`);
  lines.push(`=> ${e.summary}`);
  return `${lines.join("\n")}\n`;
}
