import { describe, expect, it } from "vitest";
import {
  classifyAddress,
  DestinationRefusedError,
  embeddedIPv4,
  entryKeys,
  hostPortKey,
  ipv6Groups,
  publicOnlyLookup,
  refusedLiteral,
} from "../../src/upstream/destination.js";

// Pure checks only: nothing here opens a connection (the preamble forbids any non-loopback traffic).
describe("U2: the destination address classifier", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "cgnat"],
    ["100.127.255.255", "cgnat"],
    ["169.254.169.254", "link-local"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["255.255.255.255", "reserved"],
    ["240.0.0.1", "reserved"],
    ["198.18.0.1", "reserved"],
    ["192.0.0.170", "reserved"],
  ])("IPv4 %s is %s", (address, cls) => {
    expect(classifyAddress(address)).toBe(cls);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "172.15.255.255", // just below 172.16/12
    "172.32.0.0", // just above
    "100.63.255.255", // just below 100.64/10
    "100.128.0.0", // just above
    "169.253.255.255",
    "192.169.0.1",
    "11.0.0.1",
    "223.255.255.255",
  ])("IPv4 %s is public", (address) => {
    expect(classifyAddress(address)).toBe("public");
  });

  it.each([
    ["::1", "loopback"],
    ["::", "unspecified"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["febf:ffff::1", "link-local"],
    ["fc00::1", "private"],
    ["fd12:3456:789a::1", "private"],
    ["fec0::1", "private"],
    ["ff02::1", "multicast"],
    ["100::1", "reserved"],
    // IPv6 forms that carry a private IPv4 address
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::FFFF:169.254.169.254", "link-local"],
    ["::ffff:a9fe:a9fe", "link-local"],
    ["0:0:0:0:0:ffff:10.0.0.1", "private"],
    ["::127.0.0.1", "loopback"], // IPv4-compatible
    ["64:ff9b::7f00:1", "loopback"], // NAT64
    ["64:ff9b::192.168.0.1", "private"],
    ["2002:7f00:1::", "loopback"], // 6to4 of 127.0.0.1
    ["2002:a9fe:a9fe::1", "link-local"],
    ["::ffff:100.64.0.1", "cgnat"],
    ["::ffff:0.0.0.0", "unspecified"],
  ])("IPv6 %s is %s", (address, cls) => {
    expect(classifyAddress(address)).toBe(cls);
  });

  it.each([
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
  ])("IPv6 %s is public", (address) => {
    expect(classifyAddress(address)).toBe("public");
  });

  it("never calls something that is not an address public", () => {
    expect(classifyAddress("localhost")).not.toBe("public");
    expect(classifyAddress("")).not.toBe("public");
    expect(classifyAddress("1.2.3")).not.toBe("public");
  });

  it("expands IPv6 groups, dotted tails included", () => {
    expect(ipv6Groups("::1")).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    expect(ipv6Groups("::ffff:1.2.3.4")).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    expect(ipv6Groups("1:2:3:4:5:6:7:8")).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(ipv6Groups("1::8")).toEqual([1, 0, 0, 0, 0, 0, 0, 8]);
    expect(ipv6Groups("not an address")).toBeUndefined();
    expect(embeddedIPv4("::ffff:7f00:1")).toBe("127.0.0.1");
    expect(embeddedIPv4("2001:db8::1")).toBeUndefined();
  });

  // WHATWG URL parsing (what undici and we use) turns hex, octal, short and integer IPv4 forms
  // and mapped IPv6 into canonical literals; the classifier sees the canonical form.
  it.each([
    ["http://0x7f.0.0.1/", "loopback"],
    ["http://0177.0.0.1/", "loopback"],
    ["http://2130706433/", "loopback"],
    ["http://127.1/", "loopback"],
    ["http://0x7f000001/", "loopback"],
    ["http://0xa9.0xfe.0xa9.0xfe/", "link-local"],
    ["http://025177524776/", "link-local"], // 169.254.169.254 in octal
    ["http://[::ffff:127.0.0.1]/", "loopback"],
    ["http://[::ffff:169.254.169.254]:8080/", "link-local"],
    ["http://0/", "unspecified"],
    ["http://[0:0:0:0:0:0:0:1]/", "loopback"],
  ])("%s parses to a %s literal that is refused", (text, cls) => {
    const url = new URL(text);
    const refused = refusedLiteral(url.hostname);
    expect(refused).toBeInstanceOf(DestinationRefusedError);
    expect(refused?.addressClass).toBe(cls);
  });

  it("names are not literals: they are checked after resolution", () => {
    expect(refusedLiteral("registry.example")).toBeUndefined();
    expect(refusedLiteral("8.8.8.8")).toBeUndefined();
  });
});

describe("U2: host:port keys of the allowed hosts", () => {
  it("fills in the scheme's default port and strips IPv6 brackets", () => {
    expect(hostPortKey("Registry.Example", "", "https:")).toBe("registry.example:443");
    expect(hostPortKey("registry.example", "", "http:")).toBe("registry.example:80");
    expect(hostPortKey("[::1]", "5000", "http:")).toBe("::1:5000");
    expect(hostPortKey("127.0.0.1", 5000, "http:")).toBe("127.0.0.1:5000");
  });

  it("a list entry without a port means the default ports; with one, that port only", () => {
    expect(entryKeys("cdn.example")).toEqual(["cdn.example:443", "cdn.example:80"]);
    expect(entryKeys("127.0.0.1:9000")).toEqual(["127.0.0.1:9000"]);
    expect(entryKeys("[::1]:9000")).toEqual(["::1:9000"]);
    expect(entryKeys("a:b:c")).toEqual([]);
  });
});

describe("U2: the connect-time lookup answers only public addresses", () => {
  it("refuses a name that resolves to loopback (what a rebinding name does at connect time)", async () => {
    const err = await new Promise<unknown>((resolve) =>
      publicOnlyLookup("localhost", { all: true }, (e) => resolve(e)),
    );
    expect(err).toBeInstanceOf(DestinationRefusedError);
    expect((err as DestinationRefusedError).addressClass).toBe("loopback");
  });

  it("refuses in the single-address form too", async () => {
    const err = await new Promise<unknown>((resolve) => publicOnlyLookup("localhost", {}, (e) => resolve(e)));
    expect(err).toBeInstanceOf(DestinationRefusedError);
  });
});
