/**
 * A counting relay: a tiny node:net (or node:tls, terminating and re-originating TLS) proxy put
 * in front of a peer so the bench can count the HTTP requests that peer receives, without
 * relying on its logs. It recognises HTTP/1.x request lines in the client-to-server stream; the
 * peers it fronts (registry, notary-server) only ever receive GET/HEAD from trustgate, which have
 * no body that could be mistaken for a request line.
 */
import * as net from "node:net";
import * as tls from "node:tls";

export interface CountingRelay {
  port: number;
  /** request lines seen so far, e.g. "GET /v2/x/_trust/tuf/root.json" */
  readonly requests: string[];
  reset(): void;
  stop(): Promise<void>;
}

export interface RelayOptions {
  targetPort: number;
  /** terminate TLS with this cert/key and connect to the target over TLS trusting `ca` */
  tls?: { cert: Buffer; key: Buffer; ca: Buffer };
}

const REQUEST_LINE = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/;

export function startCountingRelay(opts: RelayOptions): Promise<CountingRelay> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const onClient = (client: net.Socket) => {
    const upstream: net.Socket = opts.tls
      ? tls.connect({ host: "127.0.0.1", port: opts.targetPort, ca: opts.tls.ca })
      : net.connect({ host: "127.0.0.1", port: opts.targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    let partial = "";
    client.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString("latin1")).split("\r\n");
      partial = (lines.pop() ?? "").slice(-8192);
      for (const line of lines) {
        const m = REQUEST_LINE.exec(line);
        if (m) requests.push(`${m[1]} ${m[2]}`);
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
  };
  const server = opts.tls
    ? tls.createServer({ cert: opts.tls.cert, key: opts.tls.key }, onClient)
    : net.createServer(onClient);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        requests,
        reset: () => {
          requests.length = 0;
        },
        stop: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
