/**
 * Which target names a Notary delegation chain grants (REVIEW T4): the rule of Notary's
 * tuf/data/roles.go, used by the trusted state when it indexes a role's targets.
 */
import type { DelegatedRole } from "./models.js";

/**
 * Does the delegation chain from `targets` down to this role grant `name`? Notary's rule
 * (tuf/data/roles.go): a delegation grants the names that start with one of its `paths`, and a
 * child's paths are first restricted to those that start with one of its parent's paths
 * (DelegationRole.Restrict, RestrictDelegationPathPrefixes), so a child cannot widen what its
 * parent was given. Notary's delegations have no `path_hash_prefixes` (the Role type has only
 * `paths`; Go's JSON decoder ignores the field), so a delegation with only hash prefixes grants
 * nothing (REVIEW T4).
 */
export function pathAllowed(name: string, chain: readonly DelegatedRole[]): boolean {
  if (chain.length === 0) return true; // the top-level targets role speaks for every path
  // tuf/tuf.go WalkTargets: "Make the targets role have the empty path, when we treat it as a delegation role"
  let granted: readonly string[] = [""];
  for (const d of chain) {
    const paths = d.paths ?? [];
    granted = paths.filter((p) => granted.some((parent) => p.startsWith(parent)));
    if (granted.length === 0) return false;
  }
  return granted.some((p) => name.startsWith(p));
}
