/**
 * Test-only network helpers in front of real peers:
 *  - a counting TCP relay (bytes pass unchanged, TLS included) that counts the connections made
 *    and the bytes each way, so a test can prove that a code path did no network I/O, or how
 *    much it moved;
 *  - a lying registry front: an HTTP server that forwards to a real registry and, while told to,
 *    answers manifest GETs by digest with other bytes than the digest names.
 * Both listen on 127.0.0.1, on a free port, and are closed by the test.
 */
import { once } from "node:events";
import { createServer as createHttpServer, type Server } from "node:http";
import { connect, createServer, type Socket } from "node:net";

export interface CountingRelay {
  /** 127.0.0.1:PORT */
  host: string;
  port: number;
  /** connections accepted so far */
  connections: number;
  /** bytes received from clients so far (requests) */
  bytesIn: number;
  /** bytes sent back to clients so far (answers) */
  bytesOut: number;
  close(): Promise<void>;
}

export async function startCountingRelay(targetPort: number): Promise<CountingRelay> {
  const sockets = new Set<Socket>();
  const relay: CountingRelay = {
    host: "",
    port: 0,
    connections: 0,
    bytesIn: 0,
    bytesOut: 0,
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, "close");
    },
  };
  const server = createServer((client) => {
    relay.connections++;
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    client.on("data", (chunk: Buffer) => {
      relay.bytesIn += chunk.length;
    });
    upstream.on("data", (chunk: Buffer) => {
      relay.bytesOut += chunk.length;
    });
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  relay.port = port;
  relay.host = `127.0.0.1:${port}`;
  return relay;
}

export interface LyingRegistry {
  url: string;
  /** while true, manifests fetched by digest come back altered (other bytes, other length) */
  lying: boolean;
  close(): Promise<void>;
}

/** Forwards GET/HEAD to `registryUrl`; alters manifest bodies by digest while `lying`. */
export async function startLyingRegistry(registryUrl: string): Promise<LyingRegistry> {
  const liar: LyingRegistry = {
    url: "",
    lying: true,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
  const server: Server = createHttpServer(async (req, res) => {
    try {
      const upstream = await fetch(`${registryUrl}${req.url}`, {
        method: req.method,
        headers: req.headers.accept ? { accept: req.headers.accept } : {},
      });
      let body = Buffer.from(await upstream.arrayBuffer());
      if (liar.lying && /\/manifests\/sha256:/.test(req.url ?? "") && upstream.status === 200) {
        const doc = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
        body = Buffer.from(JSON.stringify({ ...doc, annotations: { "injected.by": "a lying registry" } }));
      }
      const headers: Record<string, string> = { "content-length": String(body.length) };
      const type = upstream.headers.get("content-type");
      if (type) headers["content-type"] = type;
      const digest = upstream.headers.get("docker-content-digest");
      if (digest) headers["docker-content-digest"] = digest; // the lie keeps the claimed digest
      res.writeHead(upstream.status, headers);
      res.end(req.method === "HEAD" ? undefined : body);
    } catch {
      res.writeHead(502).end();
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  liar.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return liar;
}

export interface SlowRegistry {
  url: string;
  /** 127.0.0.1:PORT */
  host: string;
  /** GETs whose path contains this are answered half, paused for `pauseMs`, then finished */
  slowPath: string | undefined;
  pauseMs: number;
  /** resolves when a slowed answer has sent its first half and is pausing */
  nextPause(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Forwards GET/HEAD to `registryUrl` unchanged; a GET matching `slowPath` sends its headers and
 * the first half of its body, pauses, then sends the rest: a pull in flight for as long as a test
 * needs (a stop signal arriving mid-transfer).
 */
export async function startSlowRegistry(registryUrl: string): Promise<SlowRegistry> {
  let waiters: (() => void)[] = [];
  const slow: SlowRegistry = {
    url: "",
    host: "",
    slowPath: undefined,
    pauseMs: 0,
    nextPause: () => new Promise<void>((resolve) => waiters.push(resolve)),
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
  const server: Server = createHttpServer(async (req, res) => {
    try {
      const headers: Record<string, string> = {};
      for (const h of ["accept", "range"]) {
        const v = req.headers[h];
        if (typeof v === "string") headers[h] = v;
      }
      const upstream = await fetch(`${registryUrl}${req.url}`, { method: req.method, headers });
      const body = Buffer.from(await upstream.arrayBuffer());
      const out: Record<string, string> = {};
      for (const [k, v] of upstream.headers) if (k !== "transfer-encoding" && k !== "connection") out[k] = v;
      res.writeHead(upstream.status, out);
      if (req.method === "HEAD") return void res.end();
      if (!slow.slowPath || !(req.url ?? "").includes(slow.slowPath)) return void res.end(body);
      const half = Math.floor(body.length / 2);
      res.write(body.subarray(0, half));
      const paused = waiters;
      waiters = [];
      for (const w of paused) w();
      await new Promise((r) => setTimeout(r, slow.pauseMs));
      res.end(body.subarray(half));
    } catch {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  slow.url = `http://127.0.0.1:${port}`;
  slow.host = `127.0.0.1:${port}`;
  return slow;
}
