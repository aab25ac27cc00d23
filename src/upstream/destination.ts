/**
 * Where the upstream client may connect (REVIEW U2): an upstream must not turn trustgate into a
 * tool for reaching the network it sits in. A redirect or a token realm can name any URL, so every
 * connection to a host the operator did not name is checked on the address it actually connects
 * to, after DNS resolution (a `lookup` hook in the connector, so a name that resolves to a public
 * address at check time and to 127.0.0.1 at connect time, DNS rebinding, cannot slip past).
 *
 * Refused: loopback, link-local (169.254.169.254 is the cloud metadata service), private (RFC 1918,
 * ULA fc00::/7, site-local fec0::/10), CGNAT 100.64.0.0/10 (RFC 6598), unspecified, multicast,
 * reserved, and IPv6 forms that carry one of these IPv4 addresses (IPv4-mapped ::ffff:0:0/96,
 * IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16). The ranges follow the IANA special-
 * purpose registries (RFC 6890) as the common SSRF guards read them (e.g. Go's net.IP.IsPrivate,
 * IsLoopback, IsLinkLocalUnicast; ssrf-req-filter).
 *
 * Allowed without an address check: the configured upstream origin (an operator may well run the
 * registry on a private address, and tests run it on loopback) and the hosts listed under
 * `registries.<host>.redirectHosts` / `tokenRealms`.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, isIPv4, type LookupFunction } from "node:net";
import { buildConnector } from "undici";
import { TrustgateError } from "../errors.js";

export type AddressClass =
  | "public"
  | "loopback"
  | "link-local"
  | "private"
  | "cgnat"
  | "unspecified"
  | "multicast"
  | "reserved";

/** [network, prefix, class], most specific first where ranges nest. */
const IPV4_RANGES: [string, number, AddressClass][] = [
  ["0.0.0.0", 8, "unspecified"], // "this network" (RFC 791); 0.0.0.0 reaches the local host
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "cgnat"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "reserved"], // IETF protocol assignments
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "reserved"], // benchmarking (RFC 2544)
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"], // incl. 255.255.255.255
];

const IPV6_RANGES: [string, number, AddressClass][] = [
  ["::", 128, "unspecified"],
  ["::1", 128, "loopback"],
  ["100::", 64, "reserved"], // discard-only (RFC 6666)
  ["fc00::", 7, "private"], // unique local (RFC 4193)
  ["fe80::", 10, "link-local"],
  ["fec0::", 10, "private"], // deprecated site-local (RFC 3879)
  ["ff00::", 8, "multicast"],
];

function buildLists(ranges: [string, number, AddressClass][], family: "ipv4" | "ipv6") {
  return ranges.map(([net, prefix, cls]) => {
    const list = new BlockList();
    list.addSubnet(net, prefix, family);
    return { list, cls };
  });
}

const V4 = buildLists(IPV4_RANGES, "ipv4");
const V6 = buildLists(IPV6_RANGES, "ipv6");

/** The eight 16-bit groups of an IPv6 address (dotted-quad tail included), or undefined. */
export function ipv6Groups(address: string): number[] | undefined {
  if (isIP(address) !== 6) return undefined;
  let text = address.split("%")[0] ?? ""; // a zone id (fe80::1%eth0) does not change the class
  // A dotted-quad tail (::ffff:127.0.0.1) is the last two groups written in decimal.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", rest] = text.split("::");
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const groups =
    rest === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill(0), ...right];
  return groups.length === 8 ? groups : undefined;
}

function v4FromGroups(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any. */
export function embeddedIPv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  if (!g) return undefined;
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, hi = 0, lo = 0] = g;
  const zeroPrefix = a === 0 && b === 0 && c === 0 && d === 0 && e === 0;
  // ::ffff:a.b.c.d (mapped, RFC 4291 §2.5.5.2) and ::a.b.c.d (compatible, §2.5.5.1; :: and ::1 excepted)
  if (zeroPrefix && f === 0xffff) return v4FromGroups(hi, lo);
  if (zeroPrefix && f === 0 && (hi !== 0 || lo > 1)) return v4FromGroups(hi, lo);
  // 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052)
  if (a === 0x64 && b === 0xff9b && c === 0 && d === 0 && e === 0 && f === 0) return v4FromGroups(hi, lo);
  // 2002:AABB:CCDD::/48, 6to4 (RFC 3056)
  if (a === 0x2002) return v4FromGroups(b, c);
  return undefined;
}

/** What kind of destination an IP address literal is; `public` is the only one we connect to. */
export function classifyAddress(address: string): AddressClass {
  if (isIPv4(address)) return V4.find(({ list }) => list.check(address, "ipv4"))?.cls ?? "public";
  const bare = address.split("%")[0] ?? "";
  if (isIP(bare) !== 6) return "reserved"; // not an address at all: never "public"
  const v4 = embeddedIPv4(bare);
  if (v4 !== undefined) {
    const inner = classifyAddress(v4);
    if (inner !== "public") return inner;
  }
  return V6.find(({ list }) => list.check(bare, "ipv6"))?.cls ?? "public";
}

export class DestinationRefusedError extends TrustgateError {
  constructor(
    readonly host: string,
    readonly address: string,
    readonly addressClass: AddressClass,
  ) {
    super(
      "UPSTREAM_DESTINATION_REFUSED",
      `refused to connect to ${host} (${address} is a ${addressClass} address; allow the host under redirectHosts if it is meant)`,
    );
  }
}

/** `host:port` with the scheme's default port filled in; IPv6 without brackets. */
export function hostPortKey(hostname: string, port: string | number, protocol: string): string {
  const host = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  const p = port === "" || port === undefined ? (protocol === "https:" ? 443 : 80) : Number(port);
  return `${host}:${p}`;
}

/** A list entry `host[:port]` (`[v6]:port` for IPv6) as a key; no port: the scheme's default. */
export function entryKeys(entry: string): string[] {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::([0-9]{1,5}))?$/.exec(entry.trim());
  const host = (m?.[1] ?? m?.[2] ?? "").toLowerCase();
  if (!m || host === "") return [];
  if (m[3] !== undefined) return [`${host}:${Number(m[3])}`];
  return [`${host}:443`, `${host}:80`];
}

/**
 * A `lookup` for net.connect/tls.connect that answers only public addresses: what the socket
 * connects to is what this returns, so the check and the connection cannot disagree.
 */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true } as { all: true }, (err, addresses) => {
    if (err) return callback(err, options.all ? [] : "");
    const usable = addresses.filter((a) => classifyAddress(a.address) === "public");
    const first = addresses[0];
    if (usable.length === 0 || !first) {
      const refused = new DestinationRefusedError(
        hostname,
        first?.address ?? "(none)",
        first ? classifyAddress(first.address) : "reserved",
      );
      return callback(refused, options.all ? [] : "");
    }
    if (options.all) return callback(null, usable);
    const one = usable[0] as LookupAddress;
    callback(null, one.address, one.family);
  });
};

/** An IP literal host that is not public: the reason to refuse it before any connection. */
export function refusedLiteral(hostname: string): DestinationRefusedError | undefined {
  const host = hostname.replace(/^\[(.*)\]$/, "$1");
  if (isIP(host.split("%")[0] ?? "") === 0) return undefined;
  const cls = classifyAddress(host);
  return cls === "public" ? undefined : new DestinationRefusedError(hostname, host, cls);
}

/** The refusal a connect failure carries, however undici wrapped it. */
export function refusalIn(err: unknown): DestinationRefusedError | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DestinationRefusedError) return e;
  }
  return undefined;
}

/**
 * A connector that lets every host in `allowed` (host:port keys) through as is and checks every
 * other destination: an IP literal before any connection, a name through a lookup that answers
 * only public addresses (the address checked is the address connected to).
 */
export function guardedConnector(
  options: buildConnector.BuildOptions,
  allowed: ReadonlySet<string>,
): buildConnector.connector {
  const open = buildConnector(options);
  const guarded = buildConnector({ ...options, lookup: publicOnlyLookup });
  return (target, callback) => {
    if (allowed.has(hostPortKey(target.hostname, target.port, target.protocol)))
      return open(target, callback);
    const refused = refusedLiteral(target.hostname);
    if (refused) return callback(refused, null);
    return guarded(target, callback);
  };
}
