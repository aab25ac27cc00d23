/**
 * Client certificate identities (`clients.certificateIdentities`): which of the certificates the
 * HTTPS listener verified (`tls.clientCaFile`, src/tls-listener.ts) are admitted without a
 * password. A CA often issues for more than trustgate's clients (a cluster CA, a SPIFFE trust
 * domain), so chaining to it is not enough: the certificate must also carry a listed name.
 *
 * Names are matched exactly (DNS case-insensitively, as DNS is): a `*.example` SAN in a
 * certificate does not match a listed `DNS:node-1.example`, and a listed name is never a pattern.
 * The subject's common name counts only when the subject has exactly one.
 */
import type { Socket } from "node:net";
import { type PeerCertificate, TLSSocket } from "node:tls";
import type { CertificateIdentity } from "../config/types.js";

/**
 * The entries of a subjectAltName string as Node writes it (`DNS:a, URI:spiffe://x`; a value with
 * a comma, quote or other special character is written as a JSON string since Node 17.3 /
 * CVE-2021-44532, so a crafted value cannot forge a second entry).
 */
export function subjectAltNames(text: string | undefined): { kind: string; value: string }[] {
  const out: { kind: string; value: string }[] = [];
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) break;
    const kind = text.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === "\\" ? 2 : 1;
      try {
        value = JSON.parse(text.slice(j, k + 1)) as string;
      } catch {
        break; // not Node's format: nothing after this point is trusted
      }
      j = k + 1;
    } else {
      const end = text.indexOf(", ", j);
      value = text.slice(j, end < 0 ? text.length : end);
      j = end < 0 ? text.length : end;
    }
    out.push({ kind, value });
    if (text.startsWith(", ", j)) j += 2;
    else if (j < text.length) break;
    i = j;
  }
  return out;
}

/** The listed identity this certificate carries (`CN:x`, `DNS:y`, `URI:z`), or undefined. */
export function matchCertificate(
  cert: Pick<PeerCertificate, "subject" | "subjectaltname">,
  allowed: readonly CertificateIdentity[],
): string | undefined {
  const cn = cert.subject?.CN as string | string[] | undefined;
  const sans = subjectAltNames(cert.subjectaltname);
  for (const id of allowed) {
    if (id.kind === "CN") {
      if (typeof cn === "string" && cn === id.value) return `CN:${id.value}`;
    } else if (id.kind === "DNS") {
      if (sans.some((s) => s.kind === "DNS" && s.value.toLowerCase() === id.value)) return `DNS:${id.value}`;
    } else if (sans.some((s) => s.kind === "URI" && s.value === id.value)) return `URI:${id.value}`;
  }
  return undefined;
}

/**
 * The listed identity of the client on `socket`: only a TLS socket whose certificate the
 * handshake verified (`authorized`) has one. The answer is kept per connection: the certificate
 * cannot change on it (Node's server does not renegotiate for the client).
 */
export class CertificateIdentities {
  readonly #allowed: readonly CertificateIdentity[];
  readonly #seen = new WeakMap<Socket, string | null>();

  constructor(allowed: readonly CertificateIdentity[]) {
    this.#allowed = allowed;
  }

  get configured(): boolean {
    return this.#allowed.length > 0;
  }

  of(socket: Socket | undefined): string | undefined {
    if (!socket || this.#allowed.length === 0 || !(socket instanceof TLSSocket)) return undefined;
    const known = this.#seen.get(socket);
    if (known !== undefined) return known ?? undefined;
    let found: string | undefined;
    if (socket.authorized) {
      const cert = socket.getPeerCertificate();
      if (cert && Object.keys(cert).length > 0) found = matchCertificate(cert, this.#allowed);
    }
    this.#seen.set(socket, found ?? null);
    return found;
  }
}
