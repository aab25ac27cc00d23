/** A tiny notary-server stand-in over node:http on 127.0.0.1 (port 0): serves a map of metadata files. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface FixtureServer {
  url: string;
  /** replace what is served (e.g. before/ -> after/) */
  files: Map<string, Uint8Array>;
  requests: string[];
  close(): Promise<void>;
}

export async function serveNotaryFiles(gun: string, files: Map<string, Uint8Array>): Promise<FixtureServer> {
  const prefix = `/v2/${gun}/_trust/tuf/`;
  const state: { files: Map<string, Uint8Array> } = { files };
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    requests.push(path);
    const body = path.startsWith(prefix) ? state.files.get(path.slice(prefix.length)) : undefined;
    if (!body) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"errors":[{"code":"METADATA_NOT_FOUND"}]}');
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get files() {
      return state.files;
    },
    set files(f) {
      state.files = f;
    },
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
