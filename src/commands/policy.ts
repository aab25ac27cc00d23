/**
 * `trustgate policy lint [DIR]` and `trustgate policy explain <image[:tag]> --policies DIR`.
 *
 * lint: exit 0 when every file in DIR (default ./policies) is valid; exit 1 with one
 * `file:line: message` line per problem on STDOUT (the command's product, like eslint; so CI can
 * capture or annotate it), and a one-line count on stderr. Exit 2 for usage errors.
 *
 * explain: which policy applies to the image, which pattern made it win, and what it demands.
 * With --config FILE the policies directory, defaultPolicy and the registry's trust source come
 * from config.yaml; a policy whose trust.source differs from the registry's is an error (exit 2).
 */

import { loadConfig } from "../config/load.js";
import { ConfigError, UsageError } from "../errors.js";
import { policySources } from "../policy/across-sources.js";
import { applyPolicy, SHIPPED_DEFAULT_POLICY } from "../policy/applied.js";
import { explain, renderExplanation } from "../policy/explain.js";
import { ImageReferenceError, parseImageReference } from "../policy/image-reference.js";
import { loadPolicyDir } from "../policy/load-dir.js";
import { formatProblem, PolicyLoadError } from "../policy/types.js";
import { parseCommandArgs } from "./args.js";

export const USAGE = `usage: trustgate policy lint [DIR]                      (DIR defaults to ./policies)
       trustgate policy explain <image[:tag]> (--policies DIR | --config FILE) [--json]`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "lint") return lint(rest);
  if (sub === "explain") return explainCommand(rest);
  throw new UsageError(sub === undefined ? USAGE : `unknown policy subcommand '${sub}'\n${USAGE}`);
}

async function lint(argv: string[]): Promise<number> {
  const { positionals } = parseCommandArgs({ args: argv, allowPositionals: true }, USAGE);
  if (positionals.length > 1) throw new UsageError(USAGE);
  const dir = positionals[0] ?? "./policies";
  const loaded = await loadPolicyDir(dir);
  if (!loaded.set) {
    for (const p of loaded.problems) process.stdout.write(`${formatProblem(p)}\n`);
    process.stderr.write(`${loaded.problems.length} problem(s) in ${dir}\n`);
    return 1;
  }
  process.stderr.write(
    `${dir}: ${loaded.files.length} file(s), ${loaded.set.policies.length} policies, ok\n`,
  );
  return 0;
}

async function explainCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    {
      args: argv,
      options: { policies: { type: "string" }, config: { type: "string" }, json: { type: "boolean" } },
      allowPositionals: true,
    },
    USAGE,
  );
  const input = positionals[0];
  if (input === undefined || positionals.length > 1) throw new UsageError(USAGE);
  if (values.config !== undefined && values.policies !== undefined)
    throw new UsageError(`explain takes --policies DIR or --config FILE, not both\n${USAGE}`);
  const config = values.config !== undefined ? await loadConfig(values.config) : undefined;
  const dir = config?.policies ?? values.policies;
  if (typeof dir !== "string")
    throw new UsageError(`explain needs --policies DIR or --config FILE\n${USAGE}`);
  let ref: ReturnType<typeof parseImageReference>;
  try {
    ref = parseImageReference(input);
  } catch (e) {
    if (e instanceof ImageReferenceError) throw new UsageError(e.message);
    throw e;
  }
  const loaded = await loadPolicyDir(dir);
  if (!loaded.set) throw new PolicyLoadError(loaded.problems);
  let registrySource: string | undefined;
  if (config) {
    const registry = config.registries.get(ref.registry);
    if (!registry)
      throw new ConfigError(
        `${config.file}: registries: ${ref.registry} is not configured: the proxy does not serve ${ref.image}`,
      );
    const configured = [
      ...(registry.notary ? [`notary ${registry.notary.url.href}`] : []),
      ...(registry.tuf ? [`tuf ${registry.tuf.metadataUrl.href}`] : []),
    ];
    registrySource =
      configured.length > 0
        ? configured.join(" and ")
        : "none (no trust source configured for this registry: pulls that need trust are refused)";
    const applied = applyPolicy(loaded.set, ref.image, config.defaultPolicy);
    const has = configured.map((c) => c.split(" ")[0] as string);
    if (applied.kind === "policy" && has.length > 0) {
      const wanted = policySources(applied.policy);
      const lacking = wanted?.filter((k) => !has.includes(k)) ?? [];
      if (applied.policy.trust.source !== undefined && lacking.length > 0)
        throw new ConfigError(
          `${applied.policy.file}: policy ${applied.policy.name} demands trust.source ${applied.policy.trust.source}, but registry ${ref.registry} is configured with ${has.join(" and ")} in ${config.file}`,
        );
      if (lacking.length > 0)
        throw new ConfigError(
          `${applied.policy.file}: policy ${applied.policy.name} lists ${lacking.join(", ")} in trust.sources, but registry ${ref.registry} has no ${lacking.join(", ")}: block in ${config.file}`,
        );
      if (wanted === undefined && has.length > 1)
        throw new ConfigError(
          `${applied.policy.file}: policy ${applied.policy.name} names no trust source, but registry ${ref.registry} has both notary and tuf in ${config.file}: say which count with trust.sources`,
        );
    }
  }
  const result = explain(
    loaded.set,
    input,
    ref,
    config?.defaultPolicy ?? SHIPPED_DEFAULT_POLICY,
    registrySource,
  );
  // With --config, also say which trust source the registry has (explain() covers the policy).
  const shown = registrySource === undefined ? result : { ...result, registryTrustSource: registrySource };
  const text = renderExplanation(result);
  process.stdout.write(
    values.json
      ? `${JSON.stringify(shown, (_key, value) => value ?? null, 2)}\n`
      : registrySource === undefined
        ? text
        : text.replace(/^=> /m, `registry:    ${ref.registry}: trust source ${registrySource}\n=> `),
  );
  return 0;
}
