/**
 * Re-read files that an operator (or cert-manager, or a Kubernetes Secret volume) rewrites in
 * place: a watch on their directories for speed, and a poll because watches are lost (a directory
 * replaced, an inotify limit, a network file system). Used by the TLS certificate and the client
 * credential file, which both keep what is in force until a complete new version reads cleanly.
 */
import { type FSWatcher, watch } from "node:fs";
import { dirname } from "node:path";

export interface Following {
  close(): void;
}

/**
 * Call `check` (debounced by 100 ms) on any fs event in the directories of `files` that `accepts`
 * the entry name, and every `checkMs` regardless.
 */
export function followFiles(
  files: readonly string[],
  check: () => void,
  checkMs: number,
  accepts: (entry: string | null) => boolean = () => true,
): Following {
  let debounce: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const dir of new Set(files.map((f) => dirname(f)))) {
    try {
      // persistent: false: the watch alone must not keep the process alive.
      const w = watch(dir, { persistent: false }, (_event, entry) => {
        if (!accepts(entry === null ? null : String(entry))) return;
        if (debounce) clearTimeout(debounce);
        debounce = setTimeout(check, 100);
      });
      w.on("error", () => w.close()); // the poll still runs
      watchers.push(w);
    } catch {
      // no watch: the poll alone
    }
  }
  const poll = setInterval(check, checkMs);
  poll.unref();
  return {
    close() {
      clearInterval(poll);
      if (debounce) clearTimeout(debounce);
      for (const w of watchers) w.close();
      watchers.length = 0;
    },
  };
}
