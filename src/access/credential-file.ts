/**
 * `clients.htpasswdFile`, read at start and kept current without a restart: an operator adds or
 * removes a user by rewriting the file (or a Kubernetes Secret's `..data` symlink swap does).
 *
 * Followed like the serving certificate (src/tls-listener.ts): re-read on an fs event in its
 * directory (fast) and on a poll every `checkMs` (the events may never come). A file whose bytes
 * changed is parsed whole; a file with any problem is not taken, the previous set stays in force,
 * and the problem is reported once per new content. At start a problem refuses the start, with
 * `clients.htpasswdFile: <file>:<line>: <what>` (never the hash).
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { ConfigError } from "../errors.js";
import { type Following, followFiles } from "../file-follow.js";
import { type Credential, decoyCredential, parseCredentials } from "./htpasswd.js";

/** What one version of the file admits. */
export interface CredentialSet {
  readonly entries: ReadonlyMap<string, Credential>;
  /** compared against for an unknown user when the file has bcrypt entries (htpasswd.ts) */
  readonly decoy: Credential | undefined;
}

export type CredentialChange =
  | { readonly ok: true; readonly users: number }
  | { readonly ok: false; readonly problem: string };

const KEY = "clients.htpasswdFile";

/** Thrown by readSet: the message names the key, the file and the line. */
class CredentialFileProblem extends Error {}

async function readSet(path: string): Promise<{ set: CredentialSet; digest: string }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new CredentialFileProblem(`${KEY}: cannot read ${path} (${(err as NodeJS.ErrnoException).code})`);
  }
  return { set: await toSet(path, bytes), digest: digestOf(bytes) };
}

async function toSet(path: string, bytes: Buffer): Promise<CredentialSet> {
  const parsed = parseCredentials(bytes.toString("utf8"));
  const first = parsed.problems[0];
  if (first) {
    const more = parsed.problems.length > 1 ? ` (and ${parsed.problems.length - 1} more)` : "";
    throw new CredentialFileProblem(`${KEY}: ${path}:${first.line}: ${first.message}${more}`);
  }
  // The decoy costs what the dearest entry costs: an unknown user is never the quick answer.
  let cost = 0;
  for (const c of parsed.entries.values()) if (c.kind === "bcrypt") cost = Math.max(cost, c.cost);
  return { entries: parsed.entries, decoy: cost > 0 ? await decoyCredential(cost) : undefined };
}

function digestOf(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export class CredentialFile {
  readonly #path: string;
  #current: CredentialSet;
  /** digest of the bytes last seen (taken or refused): a refused file is reported once */
  #seen: string;
  #generation = 0;
  #following: Following | undefined;
  #checking = false;

  private constructor(path: string, set: CredentialSet, digest: string) {
    this.#path = path;
    this.#current = set;
    this.#seen = digest;
  }

  /** Read the file at start; a problem is a ConfigError naming the key (exit 2). */
  static async load(configFile: string, path: string): Promise<CredentialFile> {
    try {
      const { set, digest } = await readSet(path);
      return new CredentialFile(path, set, digest);
    } catch (err) {
      if (err instanceof CredentialFileProblem) throw new ConfigError(`${configFile}: ${err.message}`);
      throw err;
    }
  }

  get current(): CredentialSet {
    return this.#current;
  }

  /** Bumped on every set taken: verifications begun under an older one are not remembered. */
  get generation(): number {
    return this.#generation;
  }

  /** Re-read on fs events in the file's directory and every `checkMs`; `onChange` hears each new content. */
  follow(onChange: (change: CredentialChange) => void, checkMs = 5000): void {
    const check = () => void this.#check(onChange);
    const name = basename(this.#path);
    // A Secret volume swaps `..data`, not the file's own name: any such entry may be the change.
    this.#following = followFiles(
      [this.#path],
      check,
      checkMs,
      (entry) => entry === null || entry === name || entry.startsWith(".."),
    );
  }

  close(): void {
    this.#following?.close();
    this.#following = undefined;
  }

  /** Read the file now (tests; the watch and the poll call it too). */
  async check(onChange: (change: CredentialChange) => void = () => {}): Promise<void> {
    await this.#check(onChange);
  }

  async #check(onChange: (change: CredentialChange) => void): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      // A file missing for a moment (between a delete and a write) is not news yet.
      const bytes = await readFile(this.#path).catch(() => undefined);
      if (bytes === undefined) return;
      const digest = digestOf(bytes);
      if (digest === this.#seen) return;
      this.#seen = digest;
      let next: CredentialSet;
      try {
        next = await toSet(this.#path, bytes);
      } catch (err) {
        onChange({ ok: false, problem: err instanceof Error ? err.message : String(err) });
        return;
      }
      this.#current = next;
      this.#generation++;
      onChange({ ok: true, users: next.entries.size });
    } finally {
      this.#checking = false;
    }
  }
}
