#!/usr/bin/env node
/**
 * Entry point: subcommands and exit codes only. Each subcommand lives in its own module under
 * src/commands/ and exports `run(argv): Promise<number>` returning the exit code.
 *
 * Exit codes: 0 success / allow, 1 a verification failure or a refusal, 2 usage or configuration error.
 */
import { TrustgateError, UsageError } from "./errors.js";

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  serve: async () => (await import("./commands/serve.js")).run,
  policy: async () => (await import("./commands/policy.js")).run,
  trust: async () => (await import("./commands/trust.js")).run,
  resolve: async () => (await import("./commands/resolve.js")).run,
};

const USAGE = `usage: trustgate <command> [options]

commands:
${Object.keys(commands)
  .map((c) => `  ${c}`)
  .join("\n")}
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h") {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) throw new UsageError(`unknown command '${name}'\n\n${USAGE}`);
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Known failures print one line; anything else is a bug, and still never a stack trace.
    if (err instanceof UsageError) {
      process.stderr.write(`trustgate: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof TrustgateError) {
      process.stderr.write(`trustgate: ${err.message}\n`);
      process.exitCode = err.code === "CONFIG_INVALID" ? 2 : 1;
    } else {
      process.stderr.write(
        `trustgate: internal error: ${err instanceof Error ? err.message : String(err)}\n`,
      );
      process.exitCode = 1;
    }
  },
);
