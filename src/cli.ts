#!/usr/bin/env node
/**
 * Entry point: subcommands and exit codes only. Each subcommand lives in its own module under
 * src/commands/ and exports `run(argv): Promise<number>` returning the exit code.
 *
 * Exit codes: 0 success / allow, 1 a verification failure or a refusal, 2 usage or configuration error.
 */
import { readFileSync } from "node:fs";
import { wantsHelp } from "./commands/args.js";
import { TrustgateError, UsageError } from "./errors.js";

/** A subcommand module: its usage text (printed for --help) and its entry point. */
interface CommandModule {
  USAGE: string;
  run: (argv: string[]) => Promise<number>;
}

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandModule>;
}

// Loaded on demand: `policy lint` in a CI job should not pay for the proxy's imports.
const commands: Record<string, CommandEntry> = {
  serve: {
    summary: "run the proxy (--config FILE [--listen HOST:PORT])",
    load: () => import("./commands/serve.js"),
  },
  resolve: {
    summary: "what the proxy would decide for an image, without pulling",
    load: () => import("./commands/resolve.js"),
  },
  policy: {
    summary: "lint policy files; explain which policy applies to an image",
    load: () => import("./commands/policy.js"),
  },
  trust: {
    summary:
      "list a GUN's signed tags, verified (like `notary list`); forget a repository trusted on first use; show the recorded trust state",
    load: () => import("./commands/trust.js"),
  },
  "containerd-hosts": {
    summary: "write containerd's <registry>/hosts.toml files that send a node's pulls through trustgate",
    load: () => import("./commands/containerd-hosts.js"),
  },
  tuf: {
    summary: "run a TUF 1.0 repository of signed image tags as static files (docs/tuf-for-oci.md)",
    load: () => import("./commands/tuf.js"),
  },
  notary: {
    summary: "mirror a Notary repository's trust data, verified, as static files (file:// or any web server)",
    load: () => import("./commands/notary.js"),
  },
  migrate: {
    summary: "move a repository's Docker Content Trust tags into a TUF 1.0 repository, with a parity check",
    load: () => import("./commands/migrate.js"),
  },
};

const USAGE = `usage: trustgate <command> [options]

commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(18)}${c.summary}`)
  .join("\n")}

'trustgate <command> --help' shows a command's options; 'trustgate --version' the version.
Exit codes: 0 success or allow, 1 refusal or failed verification, 2 usage or configuration error.
`;

/** package.json sits one level above dist/ (and above src/ when run from source). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version?: string;
  };
  return pkg.version ?? "unknown";
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h") {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    process.stdout.write(`trustgate ${version()}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) throw new UsageError(`unknown command '${name}'\n\n${USAGE}`);
  const module = await command.load();
  if (wantsHelp(rest)) {
    process.stdout.write(`${module.USAGE}\n\n${command.summary}\n`);
    return 0;
  }
  return module.run(rest);
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
