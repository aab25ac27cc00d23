import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  PolicyLoadError,
  PolicyStore,
  type PolicyStoreOptions,
  type ReloadOutcome,
} from "../../src/policy/index.js";

const ACME_ENFORCE = "name: acme\nmatch: [docker.io/acme/**]\nmode: enforce\n";
const ACME_AUDIT = "name: acme\nmatch: [docker.io/acme/**]\nmode: audit\n";

let dir: string;
const stores: PolicyStore[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "trustgate-policy-"));
  await writeFile(join(dir, "acme.yaml"), ACME_ENFORCE);
});
afterEach(async () => {
  for (const s of stores.splice(0)) s.close();
  await rm(dir, { recursive: true, force: true });
});

async function open(options: PolicyStoreOptions = {}) {
  const store = await PolicyStore.open(dir, options);
  stores.push(store);
  return store;
}

/**
 * Keeps "pulling" while the test changes files: every iteration reads the current set once and
 * matches against it, as a request does. Bounded in iterations; yields to the event loop each time.
 */
function pullLoop(store: PolicyStore, iterations: number) {
  const seen = new Set<string>();
  const done = (async () => {
    for (let i = 0; i < iterations; i++) {
      const set = store.current;
      const m = set.match("docker.io/acme/app");
      if (!m) throw new Error("a pull found no policy mid-reload");
      // The set a request started with never changes under it.
      expect(set.match("docker.io/acme/app")?.policy).toBe(m.policy);
      seen.add(m.policy.mode);
      await new Promise((r) => setImmediate(r));
    }
  })();
  return { seen, done };
}

describe("PolicyStore", () => {
  it("refuses to open an invalid directory with file:line problems", async () => {
    await writeFile(join(dir, "bad.yaml"), "match: [alpine]\nmode: enforce\n");
    const err = await PolicyStore.open(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyLoadError);
    expect((err as PolicyLoadError).message).toBe(
      `${join(dir, "bad.yaml")}:1: match: pattern "alpine" must begin with a registry name (a host with a "." or ":", or localhost); Docker Hub images are written docker.io/library/<name> or docker.io/<org>/<name>`,
    );
    expect((err as PolicyLoadError).code).toBe("CONFIG_INVALID");
  });

  it("valid change: swapped atomically; invalid change: rejected, old set stays; under concurrent pulls", async () => {
    const store = await open();
    const before = store.current;
    const loop = pullLoop(store, 400);

    await writeFile(join(dir, "acme.yaml"), ACME_AUDIT);
    const ok = await store.reload("signal");
    expect(ok).toMatchObject({ ok: true, trigger: "signal", problems: [], policies: 1 });
    expect(store.current).not.toBe(before);
    expect(store.current.match("docker.io/acme/app")?.policy.mode).toBe("audit");
    expect(before.match("docker.io/acme/app")?.policy.mode).toBe("enforce"); // the old set is untouched

    await writeFile(join(dir, "acme.yaml"), "name: acme\nmatch: [docker.io/acme/**]\nmode: enforcing\n");
    const bad = await store.reload();
    expect(bad.ok).toBe(false);
    expect(bad.problems.map((p) => `${p.file}:${p.line}`)).toEqual([`${join(dir, "acme.yaml")}:3`]);
    expect(store.current.match("docker.io/acme/app")?.policy.mode).toBe("audit");

    await loop.done;
    expect(loop.seen.has("enforce") || loop.seen.has("audit")).toBe(true);
  });

  it("a partial write caught mid-way is rejected, and the completed write is taken", async () => {
    const store = await open();
    const loop = pullLoop(store, 400);
    const full = `${ACME_AUDIT}trust:\n  roles: [targets/releases]\n`;
    // Every prefix of the file, as a reader could see it between write() calls; none may fall back
    // to "no policy", and a prefix that drops `mode:` must not load.
    const outcomes: boolean[] = [];
    for (const cut of [0, 5, 12, 30, 40, full.length - 10]) {
      await writeFile(join(dir, "acme.yaml"), full.slice(0, cut));
      const outcome = await store.reload("watch");
      outcomes.push(outcome.ok);
      const mode = store.current.match("docker.io/acme/app")?.policy.mode;
      expect(mode === "enforce" || mode === "audit").toBe(true);
    }
    // Every cut here is invalid (empty, no mode yet, or an unclosed flow list), so none was taken.
    expect(outcomes).toEqual([false, false, false, false, false, false]);
    await writeFile(join(dir, "acme.yaml"), full);
    expect((await store.reload("watch")).ok).toBe(true);
    expect(store.current.match("docker.io/acme/app")?.policy.trust.roles).toEqual(["targets/releases"]);
    await loop.done;
  });

  it("reloads on its own when a file is renamed into place (editor save), via fs.watch", async () => {
    const outcomes: ReloadOutcome[] = [];
    let notify: () => void = () => {};
    const store = await open({
      debounceMs: 20,
      onReload: (o) => {
        outcomes.push(o);
        if (o.ok && store.current.match("docker.io/acme/app")?.policy.mode === "audit") notify();
      },
    });
    const reloaded = new Promise<void>((resolve) => {
      notify = resolve;
    });
    store.watch();
    const tmp = join(dir, ".acme.yaml.tmp");
    await writeFile(tmp, ACME_AUDIT);
    await rename(tmp, join(dir, "acme.yaml"));
    await reloaded; // bounded by the test timeout
    expect(outcomes.every((o) => o.trigger === "watch")).toBe(true);
  });

  it("concurrent reload calls are serialised; the last one sees the latest files", async () => {
    const store = await open();
    const first = store.reload();
    await writeFile(join(dir, "acme.yaml"), ACME_AUDIT);
    const second = store.reload();
    const third = store.reload();
    expect(third).toBe(second); // a reload already waiting to start is shared
    await Promise.all([first, second]);
    expect(store.current.match("docker.io/acme/app")?.policy.mode).toBe("audit");
  });

  it("U6: the watch survives the directory being deleted and recreated; the loss is reported", async () => {
    const changes: string[] = [];
    const store = await open({ debounceMs: 20, onWatchChange: (c) => changes.push(c.state) });
    store.watch();
    await until(() => store.current.match("docker.io/acme/app")?.policy.mode === "enforce");
    await new Promise((r) => setTimeout(r, 50)); // the watch is armed
    await rm(dir, { recursive: true });
    await until(() => changes.includes("lost"));
    expect(store.current.match("docker.io/acme/app")?.policy.mode).toBe("enforce"); // the set stays
    await mkdir(dir);
    await writeFile(join(dir, "acme.yaml"), ACME_AUDIT);
    await until(() => store.current.match("docker.io/acme/app")?.policy.mode === "audit");
    expect(changes).toEqual(["lost", "restored"]);
    // The review's case: a later switch from audit to enforce, in the recreated directory.
    await writeFile(join(dir, "acme.yaml"), ACME_ENFORCE);
    await until(() => store.current.match("docker.io/acme/app")?.policy.mode === "enforce");
  });

  it("U6: a directory replaced within one debounce (rm -rf; mkdir; cp) is re-watched and loaded", async () => {
    const store = await open({ debounceMs: 50, pollMs: 60_000 });
    store.watch();
    await new Promise((r) => setTimeout(r, 50));
    await rm(dir, { recursive: true });
    await mkdir(dir);
    await writeFile(join(dir, "acme.yaml"), ACME_AUDIT);
    await until(() => store.current.match("docker.io/acme/app")?.policy.mode === "audit");
    await writeFile(join(dir, "acme.yaml"), ACME_ENFORCE);
    await until(() => store.current.match("docker.io/acme/app")?.policy.mode === "enforce");
  });

  it("U6: a Kubernetes ConfigMap update (a new timestamped dir, ..data renamed over) is loaded", async () => {
    // kubelet's AtomicWriter: the visible file is a symlink through ..data into a timestamped
    // directory; an update writes a new directory and renames a new ..data symlink over the old.
    await rm(join(dir, "acme.yaml"));
    await mkdir(join(dir, "..2026_12_01_x"));
    await writeFile(join(dir, "..2026_12_01_x", "acme.yaml"), ACME_ENFORCE);
    await symlink("..2026_12_01_x", join(dir, "..data"));
    await symlink("..data/acme.yaml", join(dir, "acme.yaml"));
    const store = await open({ debounceMs: 20, pollMs: 60_000 });
    expect(store.current.match("docker.io/acme/app")?.policy.mode).toBe("enforce");
    store.watch();
    await new Promise((r) => setTimeout(r, 50));
    await mkdir(join(dir, "..2026_12_01_y"));
    await writeFile(join(dir, "..2026_12_01_y", "acme.yaml"), ACME_AUDIT);
    await symlink("..2026_12_01_y", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    await rm(join(dir, "..2026_12_01_x"), { recursive: true });
    await until(() => store.current.match("docker.io/acme/app")?.policy.mode === "audit");
  });

  it("U6: a change no fs event reports is picked up by the poll", async () => {
    let reloads = 0;
    const store = await open({ debounceMs: 20, pollMs: 300, onReload: () => reloads++ });
    store.watch();
    await new Promise((r) => setTimeout(r, 50));
    // The file is a symlink into a directory outside the watched one: rewriting the target is an
    // event there, not here (as on a network filesystem, where no event comes at all).
    const outside = await mkdtemp(join(tmpdir(), "trustgate-policy-target-"));
    try {
      await writeFile(join(outside, "acme.yaml"), ACME_ENFORCE);
      await rm(join(dir, "acme.yaml"));
      await symlink(join(outside, "acme.yaml"), join(dir, "acme.yaml"));
      await until(() => reloads > 0); // the events of the swap above, then quiet
      await new Promise((r) => setTimeout(r, 100));
      const before = reloads;
      await writeFile(join(outside, "acme.yaml"), ACME_AUDIT);
      await until(() => store.current.match("docker.io/acme/app")?.policy.mode === "audit");
      expect(reloads).toBe(before + 1);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

/** Wait for `cond`, polling every 10 ms, at most 5 s (then fail). */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}
