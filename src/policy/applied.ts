/**
 * Which rules apply to one image: the most specific policy file, or else `defaultPolicy` from
 * config.yaml. The shipped default is `refuse`: an image nobody wrote a policy for is not pulled
 * (fail closed), and the refusal says so.
 */
import { parseImagePattern } from "./pattern.js";
import type { PolicyMatch, PolicySet } from "./policy-set.js";
import { DEFAULT_ROLES, type Policy, type PolicyMode } from "./types.js";

/**
 * `defaultPolicy` in config.yaml: `refuse` (shipped), or a mode applied with Docker's defaults
 * (roles targets/releases then targets, trust on first use, digest pulls must be signed).
 */
export type DefaultPolicySetting = "refuse" | PolicyMode;
export const DEFAULT_POLICY_SETTINGS: readonly DefaultPolicySetting[] = ["refuse", "enforce", "audit", "off"];
export const SHIPPED_DEFAULT_POLICY: DefaultPolicySetting = "refuse";

/** Name under which decisions made by the default are logged. */
export const DEFAULT_POLICY_NAME = "defaultPolicy";

export type AppliedPolicy =
  | {
      readonly kind: "policy";
      readonly policy: Policy;
      /** the winning pattern as written, or "(defaultPolicy)" */
      readonly pattern: string;
      readonly why: string;
      readonly fromDefault: boolean;
    }
  | { readonly kind: "refuse"; readonly policyName: typeof DEFAULT_POLICY_NAME; readonly why: string };

const defaultPolicies = new Map<PolicyMode, Policy>(
  (["enforce", "audit", "off"] as const).map((mode) => [
    mode,
    Object.freeze({
      name: DEFAULT_POLICY_NAME,
      file: "config.yaml",
      // Never matched against: the default applies exactly when no pattern matched.
      match: Object.freeze([parseImagePattern("default.invalid/**")]),
      matchLines: Object.freeze([0]),
      mode,
      trust: Object.freeze({
        rootKeys: Object.freeze([]),
        roles: DEFAULT_ROLES,
        requireAll: false,
        source: undefined,
      }),
      digestPulls: mode === "off" ? "any" : "signed",
      exceptions: Object.freeze([]),
      tagTrust: "verified",
      signatures: undefined,
    } satisfies Policy),
  ]),
);

/** Resolve the rules for `canonicalImage` (e.g. `docker.io/library/alpine`). */
export function applyPolicy(
  set: PolicySet,
  canonicalImage: string,
  defaultPolicy: DefaultPolicySetting,
): AppliedPolicy {
  const match: PolicyMatch | undefined = set.match(canonicalImage);
  if (match) {
    return {
      kind: "policy",
      policy: match.policy,
      pattern: match.pattern.source,
      get why() {
        return match.why;
      },
      fromDefault: false,
    };
  }
  if (defaultPolicy === "refuse") {
    return { kind: "refuse", policyName: DEFAULT_POLICY_NAME, why: `no policy covers ${canonicalImage}` };
  }
  const policy = defaultPolicies.get(defaultPolicy) as Policy;
  return {
    kind: "policy",
    policy,
    pattern: "(defaultPolicy)",
    why: `no policy covers ${canonicalImage}; defaultPolicy is ${defaultPolicy}`,
    fromDefault: true,
  };
}
