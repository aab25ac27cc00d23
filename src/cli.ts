#!/usr/bin/env node
/**
 * Entry point: subcommands and exit codes only. Each subcommand lives in its own module under
 * src/commands/ and exports `run(argv): Promise<number>` returning the exit code.
 *
 * Exit codes: 0 success / allow, 1 a verification failure or a refusal, 2 usage or configuration error.
 */
import { TrustgateError, UsageError } from "./errors.js";

type Command = (argv: string[]) => Promise<number>;

interface CommandEntry {
  summary: string;
  load: () => Promise<Command>;
}

// Loaded on demand: `policy lint` in a CI job should not pay for the proxy's imports.
const commands: Record<string, CommandEntry> = {
  serve: {
    summary: "run the proxy (--config FILE [--listen HOST:PORT])",
    load: async () => (await import("./commands/serve.js")).run,
  },
  resolve: {
    summary: "what the proxy would decide for an image, without pulling",
    load: async () => (await import("./commands/resolve.js")).run,
  },
  policy: {
    summary: "lint policy files; explain which policy applies to an image",
    load: async () => (await import("./commands/policy.js")).run,
  },
  trust: {
    summary: "list a GUN's signed tags from a Notary server, verified (like `notary list`)",
    load: async () => (await import("./commands/trust.js")).run,
  },
};

const USAGE = `usage: trustgate <command> [options]

commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(9)}${c.summary}`)
  .join("\n")}

Exit codes: 0 success or allow, 1 refusal or failed verification, 2 usage or configuration error.
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h") {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) throw new UsageError(`unknown command '${name}'\n\n${USAGE}`);
  return (await command.load())(rest);
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
