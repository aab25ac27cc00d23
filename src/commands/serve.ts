/**
 * `trustgate serve --config FILE [--listen HOST:PORT]`: run the proxy until SIGTERM/SIGINT.
 *
 * A stop (issue 12 item 6) goes in the order a load balancer needs: /readyz turns 503 at once
 * while the OCI listener keeps accepting for `shutdown.graceSeconds` (the balancer's probes notice
 * and stop sending; requests already routed here still land), then the listener closes, in-flight
 * pulls get `shutdown.drainSeconds` to finish before their connections are cut, upstream pools
 * close, and the process exits 0. A second signal skips what is left of the grace. The admin
 * listener (`admin.listen`: /healthz, /readyz, /metrics, /trust) answers until the drain is over.
 *
 * Policies: the directory is loaded at start (an invalid file refuses the start: exit 2 with
 * `file:line: message` lines), watched, and reloaded on SIGHUP; every reload outcome is logged,
 * and a rejected reload keeps the previous set in force (issue 5). A lost directory watch is
 * logged once and re-armed (REVIEW U6).
 *
 * Refused at start (exit 2, the key named): a stateDir or blobCache.dir that does not take a new
 * file (REVIEW U8), and TLS files that do not form a certificate and its key. With `tls`, the
 * listener is HTTPS and follows a renewed certificate (src/tls-listener.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, rm } from "node:fs/promises";
import type { Server } from "node:http";
import type { Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { isIP } from "node:net";
import { join } from "node:path";
import { ClientAccess } from "../access/gate.js";
import { Readiness, StateDirProbe } from "../admin/readiness.js";
import { createAdminServer } from "../admin/server.js";
import { buildRuntime } from "../app.js";
import { loadConfig, parseListen } from "../config/load.js";
import type { Config, ListenAddress } from "../config/types.js";
import { ConfigError, UsageError } from "../errors.js";
import { asyncStdout, createLogger, flushLogger, type Logger } from "../log.js";
import { Metrics } from "../metrics.js";
import { formatProblem, PolicyStore, type ReloadOutcome } from "../policy/index.js";
import { createApp, createHttpServer } from "../server.js";
import { ServingCertificate } from "../tls-listener.js";
import { sourceMismatches } from "../trust/sources.js";
import { parseCommandArgs } from "./args.js";
import { collectTrustStatus } from "./trust-status.js";

export const USAGE = "usage: trustgate serve --config FILE [--listen HOST:PORT]";
/** While draining, keep-alive connections that went idle are closed this often (see drain). */
const IDLE_SWEEP_MS = 100;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: argv,
      options: { config: { type: "string" }, listen: { type: "string" } },
      allowPositionals: false,
    },
    USAGE,
  );
  if (!values.config) throw new UsageError(`serve: --config is required (${USAGE})`);

  const config = await loadConfig(values.config);
  if (values.listen !== undefined) {
    config.listen = parseListen(values.listen, (problem) => {
      throw new ConfigError(`${config.file}: --listen: ${problem}`);
    });
  }

  // Refuse to start on a directory the proxy could not write later (REVIEW U8: the first pull
  // of a new repository got a 500 instead).
  const usesTrustState = [...config.registries.values()].some((r) => r.notary || r.tuf);
  if (usesTrustState) await probeWritable(config.file, "stateDir", config.stateDir);
  if (config.blobCache) await probeWritable(config.file, "blobCache.dir", config.blobCache.dir);

  // Read and pair the TLS files before anything starts: a wrong file is exit 2, the key named.
  const certificate = config.tls ? await ServingCertificate.load(config.file, config.tls) : undefined;
  // The credential file too: a line it cannot use is exit 2 with the file and line named.
  const access = config.clients ? await ClientAccess.open(config.file, config.clients) : undefined;

  const logger = createLogger(config.logLevel, asyncStdout());
  let runtime: Awaited<ReturnType<typeof buildRuntime>> | undefined;
  const policies = await PolicyStore.open(config.policies, {
    onReload: (outcome) => {
      logReload(logger, outcome);
      // A reloaded set may name a trust source a registry does not have: those pulls are refused
      // at request time (with that message); say so now, too.
      if (outcome.ok && runtime) {
        const mismatches = sourceMismatches(policies.current, runtime.sources);
        if (mismatches.length > 0)
          logger.error({ problems: mismatches }, "reloaded policies name trust sources the registries lack");
      }
    },
    // Loud (REVIEW U6): a watch that died silently left a later audit->enforce switch unapplied.
    onWatchChange: (change) => {
      if (change.state === "lost")
        logger.error(
          { policies: config.policies, reason: change.reason },
          "policy directory watch lost: the policies in force stay; it is retried every second, and SIGHUP reloads",
        );
      else logger.info({ policies: config.policies }, "policy directory watch restored");
    },
  });
  // Counted only when there is an admin listener to serve them.
  const metrics = config.admin ? new Metrics() : undefined;
  runtime = await buildRuntime(config, logger, {
    policies,
    ...(metrics ? { metrics } : {}),
    ...(access ? { access } : {}),
  });
  const mismatches = sourceMismatches(policies.current, runtime.sources);
  if (mismatches.length > 0) {
    await runtime.close();
    throw new ConfigError(mismatches.join("\n"));
  }
  const app = createApp(runtime.deps);
  const server = createHttpServer(app, runtime.deps.warm, certificate?.serverOptions(), access);

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(
      `${config.file}: listen: cannot listen on ${config.listen.host}:${config.listen.port}: ${err.code ?? err.message}`,
    );
  });
  let admin: AdminListener | undefined;
  if (config.admin && metrics) {
    try {
      // /trust: the state dir read with the policies in force now (a rejected reload keeps the old set).
      admin = await startAdmin(config, config.admin.listen, server, metrics, logger, () =>
        collectTrustStatus(config, policies.current),
      );
    } catch (err) {
      server.close();
      await runtime.close();
      throw err;
    }
  }
  const addr = server.address() as AddressInfo;
  logger.info(
    {
      listen: `${addr.address}:${addr.port}`,
      tls: certificate
        ? {
            ...certificate.describe(),
            clientCertificates: config.tls?.clientCaFile !== undefined ? "required" : "not requested",
          }
        : false,
      ...(admin ? { admin: admin.address } : {}),
      // Said at every start: without clients:, whoever reaches the port reads what the upstream
      // credentials read (README Security).
      clients: config.clients
        ? {
            users: access?.users ?? 0,
            certificateIdentities: config.clients.certificateIdentities.length,
          }
        : "anyone who can connect",
      registries: [...config.registries.keys()],
      defaultRegistry: config.defaultRegistry,
      policies: policies.current.policies.map((p) => p.name),
      defaultPolicy: config.defaultPolicy,
      trustSources: Object.fromEntries(
        [...config.registries.keys()].map((r) => [r, runtime.sources.kindsOf(r).join("+") || "none"]),
      ),
    },
    "trustgate listening",
  );
  if (certificate) {
    // A renewed certificate (cert-manager rewrites the files) is served without a restart.
    certificate.follow(server as HttpsServer, (change) => {
      if (change.ok)
        logger.info(
          { subject: change.subject, validTo: change.validTo, fingerprint256: change.fingerprint256 },
          "TLS certificate reloaded",
        );
      else
        logger.warn(
          { problem: change.problem },
          "TLS files changed but are not a usable set (yet): the previous certificate keeps serving",
        );
    });
  }
  if (config.clients?.htpasswdFile && !certificate && !isLoopback(config.listen.host))
    logger.warn(
      { listen: `${config.listen.host}:${config.listen.port}` },
      "clients.htpasswdFile without tls on a non-loopback address: Basic credentials cross the network in clear text; serve HTTPS (tls.certFile) or terminate TLS in front",
    );
  // Users added or removed in the credential file count without a restart.
  access?.follow((change) => {
    if (change.ok) logger.info({ users: change.users }, "client credentials reloaded");
    else
      logger.warn(
        { problem: change.problem },
        "client credential file changed but cannot be used: the previous credentials stay in force",
      );
  });
  policies.watch();
  const onHangup = () => {
    logger.info({ trigger: "signal" }, "policy reload requested");
    void policies.reload("signal");
  };
  process.on("SIGHUP", onHangup);

  const signal = await nextStopSignal();
  const { graceSeconds, drainSeconds } = config.shutdown;
  admin?.readiness.beginShutdown(signal);
  logger.info(
    { signal, graceSeconds, drainSeconds },
    "stopping: not ready; still accepting for the grace period",
  );
  process.off("SIGHUP", onHangup);
  policies.close();
  certificate?.close();
  access?.close();
  await graceOrSignal(graceSeconds * 1000);
  logger.info({ drainSeconds }, "stopping: listener closed, draining in-flight requests");
  const cut = await drain(server, drainSeconds * 1000);
  if (cut > 0) logger.warn({ connections: cut }, "drain bound reached: connections cut");
  if (admin) await admin.close();
  await runtime.close();
  logger.info("stopped");
  // The destination is asynchronous: every line, the last ones included, is on disk before we exit.
  await flushLogger(logger);
  return 0;
}

function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}

/** One line per reload attempt; a rejected one names every problem and says the old set stays. */
function logReload(logger: Logger, outcome: ReloadOutcome): void {
  if (outcome.ok) {
    logger.info({ trigger: outcome.trigger, policies: outcome.policies }, "policies reloaded");
  } else {
    logger.error(
      {
        trigger: outcome.trigger,
        policies: outcome.policies,
        problems: outcome.problems.map(formatProblem),
      },
      "policy reload rejected: the previous policies stay in force",
    );
  }
}

/**
 * `dir` exists (made if missing) and takes a new file: one is created, written, fsync'd and
 * removed, which is what a state write does (a full disk or a read-only mount fails here, not on
 * the first pull). Throws ConfigError naming the key.
 */
async function probeWritable(file: string, key: string, dir: string): Promise<void> {
  const probe = join(dir, `.trustgate-probe.${process.pid}.${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const fh = await open(probe, "wx", 0o600);
    try {
      await fh.writeFile("probe");
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(`${file}: ${key}: ${dir} is not writable (${code})`);
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
}

function nextStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off("SIGTERM", on);
      process.off("SIGINT", on);
      resolve(signal);
    };
    process.on("SIGTERM", on);
    process.on("SIGINT", on);
  });
}

/**
 * Wait out the grace period; a second SIGTERM/SIGINT ends it early (the operator insists). Once
 * it is over no handler is left, so a signal during the drain stops the process at once.
 */
function graceOrSignal(ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const end = () => {
      clearTimeout(timer);
      process.off("SIGTERM", end);
      process.off("SIGINT", end);
      resolve();
    };
    const timer = setTimeout(end, ms);
    process.on("SIGTERM", end);
    process.on("SIGINT", end);
  });
}

/**
 * Stop accepting and wait for in-flight requests, at most `boundMs`; then cut what is still
 * running (a half-sent blob fails on the client, never ends cleanly). Returns how many
 * connections were cut. server.close() closes only the connections idle at that moment; a
 * keep-alive connection whose answer finishes later would hold the close until the bound, so
 * idle ones are swept until the server has closed.
 */
async function drain(server: Server, boundMs: number): Promise<number> {
  let cut = 0;
  await new Promise<void>((resolve) => {
    const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
    const deadline = setTimeout(() => {
      server.getConnections((_err, count) => {
        cut = count;
        server.closeAllConnections();
      });
    }, boundMs);
    server.close(() => {
      clearInterval(sweep);
      clearTimeout(deadline);
      resolve();
    });
    server.closeIdleConnections();
  });
  return cut;
}

interface AdminListener {
  readiness: Readiness;
  /** HOST:PORT as bound */
  address: string;
  close(): Promise<void>;
}

/** The admin listener (src/admin): its own address; readiness follows the OCI `server`. */
async function startAdmin(
  config: Config,
  listen: ListenAddress,
  server: Server,
  metrics: Metrics,
  logger: Logger,
  trustStatus: () => Promise<unknown>,
): Promise<AdminListener> {
  const probe = new StateDirProbe(config.stateDir);
  await probe.start();
  const readiness = new Readiness({ stateDir: probe, listening: () => server.listening });
  const admin = createAdminServer({ readiness, metrics, logger, trustStatus });
  await new Promise<void>((resolve, reject) => {
    admin.once("error", reject);
    admin.listen(listen.port, listen.host, () => {
      admin.off("error", reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    probe.stop();
    throw new ConfigError(
      `${config.file}: admin.listen: cannot listen on ${listen.host}:${listen.port}: ${err.code ?? err.message}`,
    );
  });
  const addr = admin.address() as AddressInfo;
  return {
    readiness,
    address: `${addr.address}:${addr.port}`,
    async close() {
      probe.stop();
      admin.closeAllConnections();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
    },
  };
}
