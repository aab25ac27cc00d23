/**
 * `--only signatures` (issue 15): what a cosign `signatures:` rule costs a pull by tag.
 *
 *  - warm: two trustgates over the same Notary-signed tag and the same upstream, one whose policy
 *    also requires a cosign key signature, one whose policy does not; wrk runs on them in
 *    alternating order, pair by pair; the with/without req/s ratio per pair, median (min, max).
 *    Target: within 10% (the verdict is cached, verifier.ts; a warm answer reuses it).
 *  - cold: a fresh trustgate with the rule pulls the tag once; the upstream's requests are counted
 *    behind a relay. Target: one signature lookup (the `.sig` tag or the referrers API/tag),
 *    besides the payload blob and the manifest by digest.
 *
 * The `.sig` image is made as cosign makes it (specs/SIGNATURE_SPEC.md: a simple-signing payload
 * layer with the base64 ECDSA P-256 signature in `dev.cosignproject.cosign/signature`), signed
 * here with a fresh key: the bench measures cost, the tests prove verification on real cosign output.
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeImage, pushBlob, pushImage, pushManifest, sha256Digest } from "../test/helpers/image.js";
import { startNotary } from "../test/helpers/notary.js";
import { tempDir } from "../test/helpers/process.js";
import type { RegistryPeer } from "../test/helpers/registry.js";
import { own, ownDir } from "./lifecycle.js";
import { startCountingRelay } from "./relay.js";
import type { Row } from "./report.js";
import { startTrustgate, type TrustgateProcess, trustgateConfig } from "./trustgate.js";
import { MANIFEST_ACCEPT, runWrk } from "./wrk.js";

export interface SignatureBenchSettings {
  registryName: string;
  repo: string;
  pairs: number;
  warmupSeconds: number;
  measureSeconds: number;
  connections: number;
  threads: number;
  logLevel: string;
}

const WARM = ["sig-warm-ratio", "cosign rule: warm by tag, with vs without (req/s ratio)"] as const;
const COLD = ["sig-cold-lookups", "cosign rule: cold by tag, upstream signature lookups"] as const;

/** A signature lookup: the `.sig` tag, the referrers API, or the referrers tag schema. */
export function isSignatureLookup(requestLine: string): boolean {
  return (
    /\/referrers\/sha256:/.test(requestLine) || /\/manifests\/sha256-[0-9a-f]{64}(\.sig)?$/.test(requestLine)
  );
}

export async function signatureScenarios(
  direct: RegistryPeer,
  s: SignatureBenchSettings,
  note: (m: string) => void,
  buildProblem: string | undefined,
): Promise<Row[]> {
  const skipped = (why: string): Row[] =>
    [WARM, COLD].map(([id, scenario]) => ({ id, scenario, unit: "count", skipped: why }));
  if (buildProblem) return skipped(buildProblem);

  const image = makeImage("trustgate bench, cosign-signed");
  await pushImage(direct.url, s.repo, "signed", image);
  // Notary-signed but without a cosign signature: the rule must refuse it, else nothing is measured
  const notaryOnly = makeImage("trustgate bench, Notary-signed only");
  await pushImage(direct.url, s.repo, "notary-only", notaryOnly);
  const work = ownDir(await tempDir("bench-signatures"));
  const keyFile = join(work, "cosign.pub");
  await pushCosignSignature(direct.url, s.repo, `${s.registryName}/${s.repo}`, image.digest, keyFile);

  note("notary-server + notary CLI: signing the tag for the signature scenarios");
  const gun = `${s.registryName}/${s.repo}`;
  let lab: Awaited<ReturnType<typeof startNotary>>;
  try {
    lab = own("notary-server (signatures)", await startNotary());
    const client = lab.client();
    await client.init(gun);
    await client.addhash(gun, "signed", image.size, image.digest.slice("sha256:".length));
    await client.addhash(gun, "notary-only", notaryOnly.size, notaryOnly.digest.slice("sha256:".length));
    await client.publish(gun);
  } catch (err) {
    return skipped(`not available: notary-server/CLI: ${(err as Error).message.split("\n")[0]}`);
  }
  const relay = own(
    "upstream relay (signatures)",
    await startCountingRelay({ targetPort: Number(new URL(direct.url).port) }),
  );

  const start = async (label: string, withRule: boolean): Promise<TrustgateProcess> => {
    const dir = ownDir(await tempDir(`bench-tg-sig-${label}`));
    await mkdir(join(dir, "policies"), { recursive: true });
    // the same policy both ways, but for the signature rule: only the rule's cost is compared
    const rule = withRule
      ? `signatures:\n  rules:\n    - cosign:\n        keys: [${JSON.stringify(keyFile)}]\n`
      : "";
    await writeFile(
      join(dir, "policies", "bench.yaml"),
      `name: bench\nmatch: ["${s.registryName}/**"]\nmode: enforce\n${rule}`,
    );
    return own(
      `trustgate (${label})`,
      await startTrustgate(
        dir,
        trustgateConfig(
          dir,
          {
            name: s.registryName,
            upstream: `http://127.0.0.1:${relay.port}`,
            notary: { url: lab.url, caFile: lab.ca },
          },
          s.logLevel,
        ),
      ),
    );
  };
  const path = `/v2/${s.repo}/manifests/signed`;
  const get = async (tg: TrustgateProcess) => {
    const res = await fetch(`${tg.url}${path}`, { headers: { accept: MANIFEST_ACCEPT } });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200 || sha256Digest(body) !== image.digest)
      throw new Error(`GET ${path}: HTTP ${res.status} ${body.toString().slice(0, 200)}`);
  };

  const rows: Row[] = [];
  // ---- cold: one pull on a fresh trustgate with the rule; count what reaches the upstream
  note(COLD[1]);
  let withRule: TrustgateProcess | undefined;
  let without: TrustgateProcess | undefined;
  try {
    withRule = await start("with-rule", true);
    relay.reset();
    await get(withRule);
    const upstream = [...relay.requests];
    const lookups = upstream.filter(isSignatureLookup);
    const refused = await fetch(`${withRule.url}/v2/${s.repo}/manifests/notary-only`, {
      headers: { accept: MANIFEST_ACCEPT },
    });
    await refused.arrayBuffer();
    if (refused.status !== 403)
      throw new Error(
        `the rule is not enforced: a tag without a cosign signature answered ${refused.status}`,
      );
    rows.push({
      id: COLD[0],
      scenario: COLD[1],
      unit: "count",
      value: lookups.length,
      target: "1 signature lookup (.sig or referrers)",
      met: lookups.length === 1,
      note: `upstream: ${upstream.map(short).join(", ")}; a Notary-signed tag without a cosign signature: 403`,
    });
  } catch (err) {
    rows.push({
      id: COLD[0],
      scenario: COLD[1],
      unit: "count",
      skipped: `failed: ${(err as Error).message}`,
    });
  }

  // ---- warm: alternating wrk runs, with and without the rule
  note(`${WARM[1]}: ${s.pairs} alternating pairs`);
  try {
    if (!withRule) throw new Error("no trustgate with the rule");
    without = await start("without-rule", false);
    await get(without);
    const base = { connections: s.connections, threads: s.threads, headers: { Accept: MANIFEST_ACCEPT } };
    const run = async (tg: TrustgateProcess, seconds: number) => {
      const r = await runWrk(`${tg.url}${path}`, { ...base, durationSeconds: seconds });
      if (r.errors > 0) throw new Error(`${r.errors} of ${r.requests} requests failed or were not 2xx`);
      return r.rps;
    };
    await run(withRule, s.warmupSeconds);
    await run(without, s.warmupSeconds);
    const ratios: number[] = [];
    const rps = { with: [] as number[], without: [] as number[] };
    let upstreamDuringWith = 0;
    for (let i = 0; i < s.pairs; i++) {
      // alternate which goes first, so drift on a shared machine does not favour one side
      const order = i % 2 === 0 ? (["with", "without"] as const) : (["without", "with"] as const);
      const pair: Record<string, number> = {};
      for (const side of order) {
        relay.reset();
        pair[side] = await run(side === "with" ? withRule : without, s.measureSeconds);
        if (side === "with") upstreamDuringWith += relay.requests.length;
      }
      rps.with.push(pair.with as number);
      rps.without.push(pair.without as number);
      ratios.push((pair.with as number) / (pair.without as number));
    }
    const m = stats(ratios);
    rows.push({
      id: WARM[0],
      scenario: WARM[1],
      unit: "rps",
      value: stats(rps.with).median,
      ratios: [{ vs: "without", value: m.median, min: 0.9 }],
      target: ">= 0.90x (within 10%)",
      met: m.median >= 0.9,
      note:
        `with/without per pair: median ${m.median.toFixed(3)} (min ${m.min.toFixed(3)}, max ${m.max.toFixed(3)}), n=${ratios.length}; ` +
        `req/s with ${fmt(rps.with)}, without ${fmt(rps.without)}; upstream requests during the runs with the rule: ${upstreamDuringWith}`,
    });
  } catch (err) {
    rows.push({ id: WARM[0], scenario: WARM[1], unit: "rps", skipped: `failed: ${(err as Error).message}` });
  }
  await withRule?.stop();
  await without?.stop();
  return rows;
}

/** Push `sha256-<hex>.sig` with one simple-signing layer signed by a fresh ECDSA P-256 key. */
async function pushCosignSignature(
  registryUrl: string,
  repo: string,
  reference: string,
  digest: string,
  publicKeyFile: string,
): Promise<void> {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  await writeFile(publicKeyFile, publicKey.export({ type: "spki", format: "pem" }) as string);
  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { "docker-reference": reference },
        image: { "docker-manifest-digest": digest },
        type: "cosign container image signature",
      },
      optional: null,
    }),
  );
  const config = Buffer.from("{}");
  const blob = (bytes: Buffer) => ({ digest: sha256Digest(bytes), bytes });
  await pushBlob(registryUrl, repo, blob(payload));
  await pushBlob(registryUrl, repo, blob(config));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        size: config.length,
        digest: sha256Digest(config),
      },
      layers: [
        {
          mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
          size: payload.length,
          digest: sha256Digest(payload),
          annotations: {
            "dev.cosignproject.cosign/signature": sign("sha256", payload, privateKey).toString("base64"),
          },
        },
      ],
    }),
  );
  const hex = digest.slice("sha256:".length);
  await pushManifest(
    registryUrl,
    repo,
    `sha256-${hex}.sig`,
    manifest,
    "application/vnd.oci.image.manifest.v1+json",
  );
}

function stats(xs: readonly number[]): { median: number; min: number; max: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] ?? 0, min: sorted[0] ?? 0, max: sorted.at(-1) ?? 0 };
}

function fmt(xs: readonly number[]): string {
  return xs.map((x) => Math.round(x)).join("/");
}

/** "GET /v2/bench/app/manifests/sha256-<64 hex>.sig" -> "manifests/sha256-1a2b3c4d….sig" */
function short(requestLine: string): string {
  return requestLine
    .split(" ")
    .pop()
    ?.split("/")
    .slice(-2)
    .join("/")
    .replace(/([0-9a-f]{8})[0-9a-f]{56}/, "$1…") as string;
}
