/**
 * A cosign rule as the policy loader makes it (material.ts loadCosignRule: keys and trusted root
 * read, fingerprinted), from a partial spec with the defaults a policy file would give, and a
 * policy carrying rules: what the signature unit tests judge with.
 */
import type { Policy } from "../../src/policy/types.js";
import { loadCosignRule } from "../../src/signatures/material.js";
import type { CosignRuleSpec, LoadedCosignRule, LoadedSignatureRule } from "../../src/signatures/types.js";

/** Loads the rule; a load problem throws (a test's material must load). */
export async function testCosignRule(spec: Partial<CosignRuleSpec>): Promise<LoadedCosignRule> {
  const problems: string[] = [];
  const loaded = await loadCosignRule(
    {
      kind: "cosign",
      index: 1,
      line: 7,
      keys: [],
      identities: [],
      trustedRoot: undefined,
      requireTlog: false,
      dockerReferences: [],
      ...spec,
    },
    (_l, m) => problems.push(m),
  );
  if (problems.length > 0 || !loaded) throw new Error(`the test rule does not load: ${problems.join("; ")}`);
  return loaded as LoadedCosignRule;
}

/** A policy named acme requiring `rules` (`require`, default all), fingerprinted as the loader does. */
export function policyRequiring(
  rules: readonly LoadedSignatureRule[],
  require: "all" | "any" = "all",
): Policy {
  const fingerprint = rules.map((r) => r.fingerprint).join(":");
  return {
    name: "acme",
    signatures: { loaded: true, require, rules, line: 5, fingerprint },
  } as unknown as Policy;
}
