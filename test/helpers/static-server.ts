/**
 * A static file server for a directory, as any web server or object store would serve a TUF
 * repository or a Notary mirror: files under `root` only, each path asked recorded in `requests`.
 */
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize } from "node:path";

export interface StaticServer {
  server: Server;
  url: string;
  /** every path asked, in order */
  requests: string[];
}

export async function staticServer(root: string): Promise<StaticServer> {
  const requests: string[] = [];
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? "/").split("?")[0] ?? "/"));
    requests.push(path);
    if (path.includes("..")) return void res.writeHead(400).end();
    try {
      const body = await readFile(join(root, path));
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length }).end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}
