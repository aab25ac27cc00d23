/**
 * Load a whole policy directory into a new PolicySet: every `*.yaml` / `*.yml` file (dotfiles and
 * editor leftovers such as `.acme.yaml.swp` or `acme.yaml~` are ignored), in name order, and all
 * or nothing: one invalid file means no set, only problems.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadSignatureMaterial } from "../signatures/material.js";
import type { SignatureRequirementSpec } from "../signatures/types.js";
import { parsePolicyFile } from "./parse-file.js";
import { PolicySet } from "./policy-set.js";
import type { Policy, PolicyProblem } from "./types.js";

export interface LoadResult {
  /** undefined when any problem was found */
  readonly set: PolicySet | undefined;
  readonly problems: readonly PolicyProblem[];
  /** the files read, as paths joined onto `dir` */
  readonly files: readonly string[];
}

export function isPolicyFileName(name: string): boolean {
  return !name.startsWith(".") && /\.ya?ml$/.test(name);
}

const MAX_POLICY_FILE_BYTES = 1024 * 1024;

export async function loadPolicyDir(dir: string): Promise<LoadResult> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true }))
      .filter((d) => (d.isFile() || d.isSymbolicLink()) && isPolicyFileName(d.name))
      .map((d) => d.name)
      .sort();
  } catch (e) {
    return {
      set: undefined,
      problems: [{ file: dir, line: 0, message: `cannot read policy directory: ${errText(e)}` }],
      files: [],
    };
  }
  const files = names.map((n) => join(dir, n));
  const problems: PolicyProblem[] = [];
  const policies: Policy[] = [];
  for (const file of files) {
    let text: string;
    try {
      // A file can vanish between readdir and read while an editor renames over it: that is a
      // problem for this attempt (the old set stays), and the watcher's next event loads again.
      const bytes = await readFile(file);
      if (bytes.length > MAX_POLICY_FILE_BYTES) {
        problems.push({
          file,
          line: 0,
          message: `larger than ${MAX_POLICY_FILE_BYTES} bytes; not a policy file`,
        });
        continue;
      }
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (e) {
      problems.push({ file, line: 0, message: `cannot read: ${errText(e)}` });
      continue;
    }
    const parsed = parsePolicyFile(file, text);
    problems.push(...parsed.problems);
    if (!parsed.policy) continue;
    if (parsed.policy.signatures === undefined) {
      policies.push(parsed.policy);
      continue;
    }
    // The files `signatures:` names are read with the policy, all or nothing like the policy.
    const loaded = await loadSignatureMaterial(file, parsed.policy.signatures as SignatureRequirementSpec);
    problems.push(...loaded.problems);
    if (loaded.requirement)
      policies.push(Object.freeze({ ...parsed.policy, signatures: loaded.requirement }));
  }
  if (problems.length > 0) return { set: undefined, problems, files };
  const built = PolicySet.build(policies);
  return { set: built.set, problems: built.problems, files };
}

function errText(e: unknown): string {
  if (e instanceof TypeError) return "not valid UTF-8";
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return "no such file or directory";
  if (code === "EACCES") return "permission denied";
  return code ?? (e instanceof Error ? e.message : String(e));
}
