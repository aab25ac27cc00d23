/** Public surface of the policy engine: what the proxy, config and CLI call. */

export { policySources } from "./across-sources.js";
export {
  type AppliedPolicy,
  applyPolicy,
  DEFAULT_POLICY_NAME,
  DEFAULT_POLICY_SETTINGS,
  type DefaultPolicySetting,
  SHIPPED_DEFAULT_POLICY,
} from "./applied.js";
export {
  applySignatureVerdict,
  type DigestSignatures,
  decideDigestPull,
  decideRegistryTag,
  decideTag,
  findException,
  needsTrust,
  type PolicyDecision,
  type TagRef,
  trustQueryFor,
} from "./decision.js";
export { type Explanation, explain, renderExplanation } from "./explain.js";
export { type ImageReference, ImageReferenceError, parseImageReference } from "./image-reference.js";
export { type JudgedSubject, type Judgement, judgeSignatures } from "./judge.js";
export { isPolicyFileName, type LoadResult, loadPolicyDir } from "./load-dir.js";
export { parsePolicyFile } from "./parse-file.js";
export { type ImagePattern, parseImagePattern } from "./pattern.js";
export { type PolicyMatch, PolicySet } from "./policy-set.js";
export { PolicyStore, type PolicyStoreOptions, type ReloadOutcome, type ReloadTrigger } from "./store.js";
export {
  DEFAULT_ROLES,
  type DigestPulls,
  formatProblem,
  type Policy,
  type PolicyException,
  PolicyLoadError,
  type PolicyMode,
  type PolicyProblem,
  type TrustRequirement,
  type TrustSourceKind,
} from "./types.js";
