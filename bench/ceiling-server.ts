/**
 * Baseline (1): the Node ceiling. A plain `node:http` server answering every request with one
 * manifest held in memory, with the headers a registry sends. Run as its own child process
 * (`node ceiling-server.js <manifest file> <media type>`) so it has a core to itself like
 * trustgate does; it prints `PORT <n>` once listening on 127.0.0.1.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

const [file, mediaType] = process.argv.slice(2);
if (!file || !mediaType) {
  process.stderr.write("usage: ceiling-server <manifest file> <media type>\n");
  process.exit(2);
}
const body = readFileSync(file);
const headers = {
  "content-type": mediaType,
  "content-length": String(body.length),
  "docker-content-digest": `sha256:${createHash("sha256").update(body).digest("hex")}`,
  "docker-distribution-api-version": "registry/2.0",
};
const server = createServer((req, res) => {
  res.writeHead(200, headers);
  res.end(req.method === "HEAD" ? undefined : body);
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`PORT ${(server.address() as AddressInfo).port}\n`);
});
process.once("SIGTERM", () => server.close(() => process.exit(0)));
