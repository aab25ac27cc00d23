/**
 * Subcommand arguments: node:util `parseArgs`, strict, with its errors turned into one-line usage
 * errors (exit 2). Node's message for an unknown option goes on with advice about `--` that is
 * meant for node's own command line, not ours: only its first sentence is kept.
 */
import { type ParseArgsConfig, parseArgs } from "node:util";
import { UsageError } from "../errors.js";

export function parseCommandArgs<T extends ParseArgsConfig>(
  config: T,
  usage: string,
): ReturnType<typeof parseArgs<T>> {
  try {
    // strict is parseArgs's default: unknown options and a value missing after an option are errors
    return parseArgs(config);
  } catch (err) {
    throw new UsageError(`${firstSentence(err)}\n${usage}`);
  }
}

/** "Unknown option '--x'. To specify a positional argument ..." -> "unknown option '--x'" */
function firstSentence(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const first = (message.split("\n")[0] ?? "").split(/\.\s/)[0] ?? "";
  return first.charAt(0).toLowerCase() + first.slice(1).replace(/\.$/, "");
}

/** `--help` / `-h` anywhere before a `--`: the caller prints its usage and exits 0. */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === "--") return false;
    if (arg === "--help" || arg === "-h") return true;
  }
  return false;
}
