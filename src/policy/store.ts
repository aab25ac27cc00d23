/**
 * The live policy set, reloaded without a restart.
 *
 * `current` is an immutable PolicySet; a request reads it once and keeps that object for its
 * whole life, so a reload never changes the rules under a request in flight. `reload()` loads
 * the whole directory into a NEW set and swaps the reference only when every file is valid;
 * otherwise the previous set stays in force and the problems are reported (never thrown).
 *
 * Triggers: `watch()` (fs.watch on the directory, debounced) and whatever the caller wires to
 * `reload()`, e.g. SIGHUP. The directory, not each file, is watched: editors save by writing a
 * temporary file and renaming it over the old one, and Kubernetes ConfigMaps swap a `..data`
 * symlink; both show up as events on the directory. Every event, whatever its file name, just
 * schedules a full reload: a file caught half-written is invalid and rejected, and the write's
 * later events schedule the reload that sees it whole.
 *
 * An inotify watch is tied to the directory's inode: once the directory is deleted (or the
 * configured path, itself a symlink, is pointed elsewhere) it never fires again, silently
 * (REVIEW U6). So the watch is re-armed after every burst of events, and on a poll that finds
 * another directory (dev, inode) at the path. While the path is missing the loss is reported
 * once (the caller logs it), the set in force stays, reload() (SIGHUP) still works, and the path
 * is looked for every second. A poll also compares the policy files' stat (through symlinks)
 * with what the last reload read, so a change the watch never reports (network filesystems, a
 * missed event) is still picked up within `pollMs`.
 */
import { type FSWatcher, watch } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { isPolicyFileName, loadPolicyDir } from "./load-dir.js";
import type { PolicySet } from "./policy-set.js";
import { PolicyLoadError, type PolicyProblem } from "./types.js";

export type ReloadTrigger = "watch" | "signal" | "manual";

export interface ReloadOutcome {
  /** true: the new set is in force; false: the previous set stays, see problems */
  readonly ok: boolean;
  readonly trigger: ReloadTrigger;
  readonly problems: readonly PolicyProblem[];
  /** number of policies in force after this reload */
  readonly policies: number;
}

export interface PolicyStoreOptions {
  /** quiet period after the last fs event before reloading (default 250 ms) */
  readonly debounceMs?: number;
  /** called after every reload attempt, valid or not: the caller logs it */
  readonly onReload?: (outcome: ReloadOutcome) => void;
  /**
   * The watch was lost (the directory vanished or was replaced, or fs.watch failed) or is back:
   * the caller logs it. While lost, the current set stays and reload() still works.
   */
  readonly onWatchChange?: (change: WatchChange) => void;
  /** how often the directory is re-checked when no event arrives (default 5000 ms) */
  readonly pollMs?: number;
}

export type WatchChange =
  | { readonly state: "lost"; readonly reason: string }
  | { readonly state: "restored" };

/** While the directory is missing, it is looked for this often (at most). */
const LOST_RETRY_MS = 1000;

export class PolicyStore {
  readonly dir: string;
  #current: PolicySet;
  readonly #options: PolicyStoreOptions;
  #tail: Promise<unknown> = Promise.resolve();
  #queued: Promise<ReloadOutcome> | undefined;
  #watcher: FSWatcher | undefined;
  /** dev:ino of the directory the watcher is on */
  #watchedId: string | undefined;
  #watching = false;
  #lost = false;
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #checking: Promise<void> = Promise.resolve();
  /** the policy files' stat as the last reload attempt saw them */
  #seen: string | undefined;

  private constructor(dir: string, initial: PolicySet, options: PolicyStoreOptions) {
    this.dir = dir;
    this.#current = initial;
    this.#options = options;
  }

  /** Load `dir`; throws PolicyLoadError (every `file:line: message`) when it is not valid: refuse to start. */
  static async open(dir: string, options: PolicyStoreOptions = {}): Promise<PolicyStore> {
    const seen = await fingerprint(dir);
    const loaded = await loadPolicyDir(dir);
    if (!loaded.set) throw new PolicyLoadError(loaded.problems);
    const store = new PolicyStore(dir, loaded.set, options);
    store.#seen = seen;
    return store;
  }

  /** The set in force now. Read it once per request and keep it. */
  get current(): PolicySet {
    return this.#current;
  }

  /**
   * Load the directory again and swap atomically if it is valid. Reloads run one at a time; calls
   * made while one is waiting to start share it (it will read the latest files anyway).
   */
  reload(trigger: ReloadTrigger = "manual"): Promise<ReloadOutcome> {
    if (this.#queued) return this.#queued;
    const run = this.#tail.then(() => {
      this.#queued = undefined;
      return this.#loadOnce(trigger);
    });
    this.#queued = run;
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Start watching the directory (and re-checking it every `pollMs`). Idempotent. */
  watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    void this.#check(false);
  }

  /** Stop watching; pending debounced reloads are dropped. */
  close(): void {
    this.#watching = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#poll) clearTimeout(this.#poll);
    this.#poll = undefined;
    this.#unwatch();
  }

  /** Open the watch on the directory now at `dir`; report a loss when there is none. */
  async #arm(): Promise<void> {
    this.#unwatch();
    const id = await identity(this.dir);
    if (!this.#watching) return;
    if (id === undefined) return this.#markLost("the directory does not exist");
    let watcher: FSWatcher;
    try {
      // persistent: false: the watch alone must not keep the process alive (the server does).
      watcher = watch(this.dir, { persistent: false }, () => this.#onEvent());
    } catch (err) {
      return this.#markLost(errnoText(err));
    }
    watcher.on("error", (err) => {
      if (this.#watcher !== watcher) return;
      this.#unwatch();
      this.#markLost(errnoText(err));
    });
    this.#watcher = watcher;
    this.#watchedId = id;
    if (this.#lost) {
      this.#lost = false;
      this.#notify({ state: "restored" });
    }
    this.#schedulePoll(this.#options.pollMs ?? 5000);
  }

  #unwatch(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#watchedId = undefined;
  }

  #markLost(reason: string): void {
    if (!this.#lost) {
      this.#lost = true;
      this.#notify({ state: "lost", reason });
    }
    this.#schedulePoll(Math.min(this.#options.pollMs ?? 5000, LOST_RETRY_MS));
  }

  #notify(change: WatchChange): void {
    try {
      this.#options.onWatchChange?.(change);
    } catch {
      // the observer's failure is not the watch's
    }
  }

  #onEvent(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#check(true);
    }, this.#options.debounceMs ?? 250);
  }

  #schedulePoll(ms: number): void {
    if (this.#poll) clearTimeout(this.#poll);
    this.#poll = setTimeout(() => {
      this.#poll = undefined;
      void this.#check(false);
    }, ms);
    this.#poll.unref();
  }

  /** One check at a time: two would each open a watcher. */
  #check(changed: boolean): Promise<void> {
    this.#checking = this.#checking.then(() => this.#checkOnce(changed)).catch(() => undefined);
    return this.#checking;
  }

  /**
   * After events (`changed`) or on a poll: re-arm when the directory is not the one watched, and
   * reload when the events said so or the files' stat differs from what the last reload saw (a
   * directory recreated while unwatched always differs: new inodes, new ctimes).
   */
  async #checkOnce(changed: boolean): Promise<void> {
    if (!this.#watching) return;
    const id = await identity(this.dir);
    if (!this.#watching) return;
    if (id === undefined) {
      // Reported once; a reload now would only log "cannot read" on every retry.
      this.#unwatch();
      this.#markLost("the directory does not exist");
      return;
    }
    // After events, re-arm anyway: a directory deleted and recreated at once can get the same
    // inode number back, and the old watch is dead all the same. Re-arming is cheap, and what
    // changed in between is in the fingerprint compared below.
    if (changed || id !== this.#watchedId) await this.#arm();
    if (!this.#watching) return;
    if (changed || (await fingerprint(this.dir)) !== this.#seen) void this.reload("watch");
    if (!this.#poll) this.#schedulePoll(this.#options.pollMs ?? 5000);
  }

  async #loadOnce(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    let outcome: ReloadOutcome;
    try {
      this.#seen = await fingerprint(this.dir);
      const loaded = await loadPolicyDir(this.dir);
      if (loaded.set) this.#current = loaded.set;
      outcome = {
        ok: loaded.set !== undefined,
        trigger,
        problems: loaded.problems,
        policies: this.#current.policies.length,
      };
    } catch (e) {
      // A bug in loading must not take the proxy down: keep the set in force, report.
      const message = `reload failed: ${e instanceof Error ? e.message : String(e)}`;
      outcome = {
        ok: false,
        trigger,
        problems: [{ file: this.dir, line: 0, message }],
        policies: this.#current.policies.length,
      };
    }
    try {
      this.#options.onReload?.(outcome);
    } catch {
      // the observer's failure is not the reload's
    }
    return outcome;
  }
}

/** "dev:ino" of the directory at `dir` (through symlinks), or undefined when there is none. */
async function identity(dir: string): Promise<string | undefined> {
  try {
    const s = await stat(dir);
    return s.isDirectory() ? `${s.dev}:${s.ino}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The policy files' names and stat, through symlinks (a ConfigMap's `acme.yaml` points through
 * `..data` into a timestamped directory: a swap changes the inode seen here). Cheap: a readdir and
 * one stat per policy file.
 */
async function fingerprint(dir: string): Promise<string | undefined> {
  try {
    const names = (await readdir(dir)).filter(isPolicyFileName).sort();
    const parts = await Promise.all(
      names.map(async (name) => {
        const s = await stat(join(dir, name)).catch(() => undefined);
        return s ? `${name}:${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}` : `${name}:-`;
      }),
    );
    return parts.join("/");
  } catch {
    return undefined;
  }
}

function errnoText(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
}
