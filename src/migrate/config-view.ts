/**
 * What `notary mirror` and `migrate notary` take from a proxy's config.yaml (--config): the
 * registry's notary settings (URL, CA, token-auth credentials) and the policies with
 * `defaultPolicy`, loaded by the proxy's own loaders, so pins and roles are the proxy's.
 * Without --config: no policy file, and Docker's defaults (targets/releases then targets, trust on
 * first use) as `defaultPolicy: enforce` gives them.
 */
import { loadConfig } from "../config/load.js";
import type { Config, NotaryConfig } from "../config/types.js";
import { UsageError } from "../errors.js";
import {
  applyPolicy,
  type DefaultPolicySetting,
  loadPolicyDir,
  PolicyLoadError,
  PolicySet,
} from "../policy/index.js";

export interface PolicyView {
  /** the config file it came from, for messages; undefined without --config */
  file: string | undefined;
  policies: PolicySet;
  defaultPolicy: DefaultPolicySetting;
  /** the registry's notary block, when --config names one */
  notary: NotaryConfig | undefined;
}

export async function policyView(configFile: string | undefined, registry: string): Promise<PolicyView> {
  if (configFile === undefined)
    return { file: undefined, policies: PolicySet.empty(), defaultPolicy: "enforce", notary: undefined };
  const config: Config = await loadConfig(configFile);
  const loaded = await loadPolicyDir(config.policies);
  if (!loaded.set) throw new PolicyLoadError(loaded.problems);
  const entry = config.registries.get(registry);
  if (!entry) throw new UsageError(`registry ${registry} is not configured in ${config.file}`);
  return {
    file: config.file,
    policies: loaded.set,
    defaultPolicy: config.defaultPolicy,
    notary: entry.notary,
  };
}

/** The root key IDs the policy applying to `gun` pins (none: trust on first use, or no policy). */
export function pinsFor(view: PolicyView, gun: string): readonly string[] {
  const applied = applyPolicy(view.policies, gun, view.defaultPolicy);
  return applied.kind === "policy" ? applied.policy.trust.rootKeys : [];
}
