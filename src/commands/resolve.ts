/**
 * `trustgate resolve <image[:tag]|image@digest> --config FILE [--json]`: what the proxy would
 * decide for this reference, without pulling anything from the registry (the trust server is
 * asked, through the same sources, state dir and policies the proxy uses).
 *
 * Prints `{"image","decision","digest","role","policy","reason"}` (and `signatures` when the policy
 * requires signatures) with --json, else one line.
 * Exit 0 allow, 1 deny, 2 usage or configuration error.
 */
import { buildRuntime } from "../app.js";
import { loadConfig } from "../config/load.js";
import { UsageError } from "../errors.js";
import { createLogger } from "../log.js";
import { ImageReferenceError, PolicyStore, parseImageReference } from "../policy/index.js";
import type { Decided } from "../proxy/decide.js";
import { parseCommandArgs } from "./args.js";

export const USAGE = "usage: trustgate resolve <image[:tag]|image@digest> --config FILE [--json]";

export interface ResolveResult {
  image: string;
  decision: "allow" | "deny";
  digest: string | null;
  role: string | null;
  policy: string;
  /** the trust source that decided, or the sources asked when none verified */
  source: string | null;
  reason: string;
  /** the policy's signature requirement, when it has one: which rule and key/identity verified, or why none did */
  signatures?: string;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    {
      args: argv,
      allowPositionals: true,
      options: { config: { type: "string" }, json: { type: "boolean" } },
    },
    USAGE,
  );
  const input = positionals[0];
  if (input === undefined || positionals.length > 1) throw new UsageError(USAGE);
  if (!values.config) throw new UsageError(`resolve: --config is required\n${USAGE}`);
  let ref: ReturnType<typeof parseImageReference>;
  try {
    ref = parseImageReference(input);
  } catch (e) {
    if (e instanceof ImageReferenceError) throw new UsageError(`resolve: ${e.message}`);
    throw e;
  }

  const config = await loadConfig(values.config);
  const result = await (async (): Promise<ResolveResult> => {
    const display = `${ref.image}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
    if (!config.registries.has(ref.registry)) {
      return {
        image: display,
        decision: "deny",
        digest: null,
        role: null,
        policy: "(none)",
        source: null,
        reason: `registry ${ref.registry} is not configured in ${config.file}: the proxy does not serve it`,
      };
    }
    const policies = await PolicyStore.open(config.policies);
    const runtime = await buildRuntime(config, createLogger("silent"), { policies });
    try {
      // a digest wins over a tag, as in a pull (docker pull name:tag@digest pulls the digest)
      const decided: Decided = ref.digest
        ? await runtime.decider.decideDigest(ref.registry, ref.repository, ref.digest, undefined)
        : await runtime.decider.decideTag(ref.registry, ref.repository, ref.tag ?? "latest");
      const d = decided.decision;
      return {
        image: display,
        decision: d.decision,
        digest: d.digest ?? null,
        role: d.role ?? null,
        policy: d.policy,
        // the trust source that decided (with trust.sources: the first that verified), or those asked
        source: decided.source ?? null,
        reason: d.reason,
        ...(d.signatures !== undefined ? { signatures: d.signatures } : {}),
      };
    } finally {
      await runtime.close();
    }
  })();

  process.stdout.write(
    values.json
      ? `${JSON.stringify(result)}\n`
      : `${result.decision} ${result.image}${result.digest ? ` ${result.digest}` : ""} (policy ${result.policy}${result.role ? `, ${result.role}` : ""}${result.source ? `, via ${result.source}` : ""}): ${result.reason}\n`,
  );
  return result.decision === "allow" ? 0 : 1;
}
