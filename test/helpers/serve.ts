/**
 * Run trustgate itself as the black box users run: `node dist/cli.js serve --config FILE
 * --listen 127.0.0.1:PORT` (build first: `npm run build`), ready once `GET /v2/` answers 200.
 */
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { freePort, type Peer, startPeer, tempDir, waitFor } from "./process.js";

export interface TrustgatePeer extends Peer {
  /** http://127.0.0.1:PORT */
  url: string;
  host: string;
  dir: string;
}

const CLI = resolve(import.meta.dirname, "../../dist/cli.js");

/** Start trustgate with `configYaml` (written to a temp dir; relative paths resolve there). */
export async function startTrustgate(
  configYaml: string,
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<TrustgatePeer> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const dir = await tempDir("trustgate");
  const configFile = join(dir, "config.yaml");
  await writeFile(configFile, configYaml);
  const port = await freePort();
  const peer = startPeer(
    "trustgate",
    process.execPath,
    [CLI, "serve", "--config", configFile, "--listen", `127.0.0.1:${port}`],
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
