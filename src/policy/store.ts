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
 */
import { type FSWatcher, watch } from "node:fs";
import { loadPolicyDir } from "./load-dir.js";
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
  /** the directory watch itself failed (e.g. the directory was removed); the current set stays */
  readonly onWatchError?: (err: Error) => void;
}

export class PolicyStore {
  readonly dir: string;
  #current: PolicySet;
  readonly #options: PolicyStoreOptions;
  #tail: Promise<unknown> = Promise.resolve();
  #queued: Promise<ReloadOutcome> | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;

  private constructor(dir: string, initial: PolicySet, options: PolicyStoreOptions) {
    this.dir = dir;
    this.#current = initial;
    this.#options = options;
  }

  /** Load `dir`; throws PolicyLoadError (every `file:line: message`) when it is not valid: refuse to start. */
  static async open(dir: string, options: PolicyStoreOptions = {}): Promise<PolicyStore> {
    const loaded = await loadPolicyDir(dir);
    if (!loaded.set) throw new PolicyLoadError(loaded.problems);
    return new PolicyStore(dir, loaded.set, options);
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

  /** Start watching the directory. Idempotent. */
  watch(): void {
    if (this.#watcher) return;
    const debounceMs = this.#options.debounceMs ?? 250;
    // persistent: false: the watch alone must not keep the process alive (the server does).
    const watcher = watch(this.dir, { persistent: false }, () => {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        void this.reload("watch");
      }, debounceMs);
    });
    watcher.on("error", (err) => this.#options.onWatchError?.(err));
    this.#watcher = watcher;
  }

  /** Stop watching; pending debounced reloads are dropped. */
  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  async #loadOnce(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    let outcome: ReloadOutcome;
    try {
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
