/**
 * `npm run demo`: trustgate refusing an unsigned image, in one command, on this machine only.
 *
 * It starts a local docker-registry (the upstream) and a notary-server (the trust server), pushes
 * two tiny images, signs one of them with the real `notary` CLI (as `docker trust sign` would),
 * starts trustgate in front of the registry with a policy that enforces signatures, and lets
 * skopeo pull both through trustgate: the signed tag arrives with exactly the signed digest, the
 * unsigned one is refused with the reason. Everything it started is stopped at the end, also on
 * an error or Ctrl-C. Exit 0 when the demo showed what it should.
 *
 * The peers come from the test launchers (test/helpers), compiled beside this file into .build/.
 */
import { constants } from "node:fs";
import { access, copyFile, mkdir, readFile, rm } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { makeImage, pushImage } from "../test/helpers/image.js";
import { type NotaryLab, startNotary } from "../test/helpers/notary.js";
import { tempDir } from "../test/helpers/process.js";
import { type RegistryPeer, startRegistry } from "../test/helpers/registry.js";
import { skopeoCopyToOciDir, skopeoInspect } from "../test/helpers/skopeo.js";
import { asAudit, digestHex, writePolicy } from "../test/helpers/trust-e2e.js";
import { startTrustgate, type TrustgatePeer } from "../test/helpers/trustgate.js";

const REPOSITORY = "acme/hello";
const GUN = `docker.io/${REPOSITORY}`; // Notary's name for it: <registry as trustgate knows it>/<repository>

const POLICY = `# policies/acme.yaml: every acme image must be signed
name: acme
match: ["docker.io/acme/**"]
mode: enforce
trust:
  roles: [targets/releases, targets]
`;

/** The programs the demo runs, and the Debian package each comes in. */
const NEEDED: readonly { command: string; debianPackage: string }[] = [
  { command: "docker-registry", debianPackage: "docker-registry" },
  { command: "notary-server", debianPackage: "notary" },
  { command: "notary", debianPackage: "notary" },
  { command: "skopeo", debianPackage: "skopeo" },
  { command: "openssl", debianPackage: "openssl" },
];

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      await access(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/**
 * Checked before anything starts, so a missing program is one clear line and nothing is left
 * running or behind (the review found a stack trace, a running docker-registry and temp dirs).
 */
async function missingPackages(): Promise<string[]> {
  const missing: string[] = [];
  for (const { command, debianPackage } of NEEDED) {
    if (!(await onPath(command))) missing.push(`${command} (Debian package ${debianPackage})`);
  }
  return missing;
}

/** What was started, newest last; stopped in reverse order by `cleanUp`. */
const started: { name: string; stop: () => Promise<void> }[] = [];
let cleaning: Promise<void> | undefined;

function step(n: number, text: string): void {
  console.log(`\n== Step ${n}: ${text}`);
}

function say(text: string): void {
  console.log(`   ${text}`);
}

function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    console.log("\n== Stopping everything the demo started");
    for (const peer of started.reverse()) {
      try {
        await peer.stop();
        say(`stopped ${peer.name}`);
      } catch (err) {
        say(`could not stop ${peer.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const scratch = await tempDir("demo");
  started.push({ name: `scratch dir ${scratch}`, stop: () => rm(scratch, { recursive: true, force: true }) });

  step(1, "start a local docker-registry: the upstream registry trustgate protects");
  const registry: RegistryPeer = await startRegistry();
  started.push({
    name: `docker-registry (pid ${registry.pid})`,
    stop: async () => {
      await registry.stop();
      await rm(registry.dir, { recursive: true, force: true });
    },
  });
  say(`docker-registry listening on ${registry.url} (pid ${registry.pid})`);

  step(2, "start notary-server: the trust server that holds signed tag -> digest metadata");
  const notary: NotaryLab = await startNotary();
  started.push({ name: `notary-server (pid ${notary.pids.join(", ")})`, stop: () => notary.stop() });
  say(`notary-server listening on ${notary.url} (pid ${notary.pids.join(", ")}), TLS with a throwaway CA`);
  const notaryCa = join(scratch, "notary-ca.crt");
  await copyFile(notary.ca, notaryCa);

  step(3, `push two tiny images to the registry: ${REPOSITORY}:signed and ${REPOSITORY}:unsigned`);
  const signedImage = makeImage("hello from a signed image");
  const unsignedImage = makeImage("hello from an image nobody signed");
  await pushImage(registry.url, REPOSITORY, "signed", signedImage);
  await pushImage(registry.url, REPOSITORY, "unsigned", unsignedImage);
  say(`${REPOSITORY}:signed   -> ${signedImage.digest}`);
  say(`${REPOSITORY}:unsigned -> ${unsignedImage.digest}`);

  step(4, `sign ${REPOSITORY}:signed with the notary CLI (GUN ${GUN}); leave the other unsigned`);
  const signer = notary.client();
  say(`notary init ${GUN} && notary publish ${GUN}`);
  await signer.init(GUN);
  say(`notary addhash ${GUN} signed ${signedImage.size} --sha256 ${digestHex(signedImage.digest)}`);
  await signer.addhash(GUN, "signed", signedImage.size, digestHex(signedImage.digest));
  say(`notary publish ${GUN}`);
  await signer.publish(GUN);

  step(
    5,
    "start trustgate in front of the registry, trusting the notary-server, enforcing policies/acme.yaml",
  );
  const policies = join(scratch, "policies");
  await mkdir(policies);
  await writePolicy(policies, "acme.yaml", POLICY);
  const trustgate: TrustgatePeer = await startTrustgate({
    registries: { "docker.io": { upstream: registry.url, notary: { url: notary.url, caFile: notaryCa } } },
    defaultRegistry: "docker.io",
    extraConfig: { policies },
  });
  started.push({
    name: `trustgate (pid ${trustgate.pid})`,
    stop: async () => {
      await trustgate.stop();
      await rm(trustgate.dir, { recursive: true, force: true });
    },
  });
  say(`trustgate listening on ${trustgate.url} (pid ${trustgate.pid}); its config.yaml:`);
  for (const line of (await readFile(trustgate.configFile, "utf8")).trimEnd().split("\n")) say(`  | ${line}`);
  say("and the policy:");
  for (const line of POLICY.trimEnd().split("\n")) say(`  | ${line}`);

  step(6, "skopeo pulls the signed tag through trustgate");
  const signedRef = `${trustgate.host}/${REPOSITORY}:signed`;
  say(`skopeo copy --src-tls-verify=false docker://${signedRef} oci:<dir>`);
  const copy = await skopeoCopyToOciDir(signedRef, join(scratch, "pulled"));
  if (copy.code !== 0) throw new Error(`skopeo could not pull the signed tag:\n${copy.stderr}`);
  if (copy.digest !== signedImage.digest)
    throw new Error(`skopeo stored ${copy.digest}, not the signed digest ${signedImage.digest}`);
  say(`[ok] pulled ${GUN}:signed with digest ${copy.digest}, exactly the digest signed in notary`);

  step(7, "skopeo asks for the unsigned tag through trustgate");
  const unsignedRef = `${trustgate.host}/${REPOSITORY}:unsigned`;
  say(`skopeo inspect --tls-verify=false docker://${unsignedRef}`);
  const refused = await skopeoInspect(unsignedRef);
  if (refused.code === 0) throw new Error("trustgate let the unsigned tag through");
  const denied = refused.stderr.match(/denied: [^\n"]*/)?.[0];
  if (!denied) throw new Error(`skopeo failed, but not with trustgate's refusal:\n${refused.stderr}`);
  say(`[refused] skopeo says: ${denied}`);
  // The log is written asynchronously: the refusal's line may land just after skopeo saw it.
  const line = await trustgate
    .waitForLog((l) => {
      const a = asAudit(l);
      return a?.decision === "deny" && a.tag === "unsigned";
    })
    .catch(() => undefined);
  const audit = line && asAudit(line);
  if (audit)
    say(`trustgate's audit log: decision=${audit.decision} policy=${audit.policy} reason="${audit.reason}"`);

  console.log("\nDemo complete: the signed tag was served, the unsigned tag was refused (403 DENIED).");
}

let exitCode = 0;
const onSignal = (signal: NodeJS.Signals) => {
  console.log(`\n${signal} received`);
  void cleanUp().finally(() => process.exit(130));
};
process.once("SIGINT", onSignal);
process.once("SIGTERM", onSignal);

const missing = await missingPackages();
if (missing.length > 0) {
  const packages = [
    ...new Set(
      NEEDED.filter((n) => missing.some((m) => m.startsWith(`${n.command} `))).map((n) => n.debianPackage),
    ),
  ];
  console.error(`The demo needs programs that are not installed: ${missing.join(", ")}.`);
  console.error(`Install them with: apt-get install ${packages.join(" ")}`);
  process.exit(1);
}

try {
  await main();
} catch (err) {
  exitCode = 1;
  console.error(`\nDemo failed: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanUp();
  console.log(exitCode === 0 ? "All processes stopped. Bye." : "All processes stopped.");
  process.exit(exitCode);
}
