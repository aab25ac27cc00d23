/**
 * Run trustgate itself as the black box users run: `node dist/cli.js serve --config FILE
 * --listen 127.0.0.1:PORT` (build first: `npm run build`), ready once `GET /v2/` answers 200.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { freePort, type Peer, startPeer, tempDir, waitFor } from "./process.js";

export interface TrustgatePeer extends Peer {
  /** http://127.0.0.1:PORT */
  url: string;
  host: string;
  dir: string;
}

const CLI = resolve(import.meta.dirname, "../../dist/cli.js");

/**
 * Start trustgate with `configYaml` (written to a temp dir; relative paths resolve there). The
 * default policy directory `./policies` is created there, holding `opts.policies` (file name ->
 * YAML text), so a config that names no `policies:` loads an empty (or the given) set.
 * `wrapper` runs node under a command, e.g. ["faketime", "+30 days"] (Node honours libfaketime).
 */
export async function startTrustgate(
  configYaml: string,
  opts: { env?: NodeJS.ProcessEnv; policies?: Record<string, string>; wrapper?: string[] } = {},
): Promise<TrustgatePeer> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const dir = await tempDir("trustgate");
  const configFile = join(dir, "config.yaml");
  await writeFile(configFile, configYaml);
  await mkdir(join(dir, "policies"));
  for (const [name, text] of Object.entries(opts.policies ?? {}))
    await writeFile(join(dir, "policies", name), text);
  const port = await freePort();
  const peer = startPeer(
    "trustgate",
    opts.wrapper?.[0] ?? process.execPath,
    [
      ...(opts.wrapper ? [...opts.wrapper.slice(1), process.execPath] : []),
      CLI,
      "serve",
      "--config",
      configFile,
      "--listen",
      `127.0.0.1:${port}`,
    ],
    { cwd: dir, logFile: join(dir, "trustgate.log"), env: { ...process.env, ...opts.env } },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`trustgate on port ${port}`, async () => (await fetch(`${url}/v2/`)).status === 200);
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return { ...peer, url, host: `127.0.0.1:${port}`, dir };
}
