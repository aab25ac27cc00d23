// Micro-benchmark behind the crypto choice in src/trust/notary/keys.ts (not a test; no assertions).
// node bench/crypto-choice.mjs   — ops/s for the operations a Notary update performs.
import { createHash, generateKeyPairSync, sign, verify } from "node:crypto";
import * as ed from "@noble/ed25519";
import { sha256 as nobleSha256, sha512 } from "@noble/hashes/sha2.js";

ed.hashes.sha512 = sha512;
const msg = Buffer.alloc(1500, 7); // about the size of a canonical targets file
const N = 2000;

function bench(name, fn, n = N) {
  for (let i = 0; i < 50; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  console.log(`${name.padEnd(34)} ${us.toFixed(1).padStart(8)} µs/op`);
  return us;
}

const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const ecSig = sign("sha256", msg, { key: ec.privateKey, dsaEncoding: "ieee-p1363" });
const edk = generateKeyPairSync("ed25519");
const edSig = sign(null, msg, edk.privateKey);
const edRaw = edk.publicKey.export({ format: "der", type: "spki" }).subarray(-32);

bench("node:crypto ecdsa P-256 verify", () =>
  verify("sha256", msg, { key: ec.publicKey, dsaEncoding: "ieee-p1363" }, ecSig),
);
const a = bench("node:crypto ed25519 verify", () => verify(null, msg, edk.publicKey, edSig));
const b = bench("@noble/ed25519 verify", () => ed.verify(edSig, msg, edRaw), 300);
const c = bench("node:crypto sha256 (1.5 KiB)", () => createHash("sha256").update(msg).digest(), 20000);
const d = bench("@noble/hashes sha256 (1.5 KiB)", () => nobleSha256(msg), 20000);
console.log(`ed25519: node:crypto ${(b / a).toFixed(1)}x faster; sha256: ${(d / c).toFixed(1)}x faster`);
console.log("ecdsa P-256 via @noble needs @noble/curves, which is not installed: not measured here");

// Blob streams: SHA-256 throughput over 64 KiB chunks (the socket read size), 64 MiB in all.
const chunk = Buffer.alloc(64 * 1024, 9);
function throughput(name, makeHasher) {
  const h = makeHasher();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 1024; i++) h.update(chunk);
  h.digest();
  const gbps = (1024 * chunk.length) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9;
  console.log(`${name.padEnd(34)} ${gbps.toFixed(2).padStart(8)} GB/s`);
  return gbps;
}
const e = throughput("node:crypto sha256 stream", () => createHash("sha256"));
const f = throughput("@noble/hashes sha256 stream", () => nobleSha256.create());
console.log(`sha256 streaming: node:crypto ${(e / f).toFixed(1)}x faster`);
