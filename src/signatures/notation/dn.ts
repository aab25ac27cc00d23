/**
 * Distinguished names in `trustedIdentities` (`x509.subject: C=US, ST=WA, O=...`), with the rules
 * of the trust policy specification ("Trusted Identities Constraints") as notation-go applies them
 * (internal/pkix/pkix.go ParseDistinguishedName, IsSubsetDN): RFC 4514 syntax, one attribute per
 * RDN, no attribute twice, C, ST and O required, no `=#` (BER-encoded) values; an identity matches
 * a signing certificate when every attribute it names has the same value in the certificate's subject.
 */

export class DistinguishedNameError extends Error {}

/** attribute type (upper-cased short name or dotted OID) -> value */
export type DnMap = ReadonlyMap<string, string>;

const MANDATORY = ["C", "ST", "O"] as const;
const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * Splits an RFC 4514 string into RDNs of [type, value] pairs, decoding escapes (`\,`, `\\`,
 * `\2C`, ...) and dropping the unescaped spaces around types and values.
 */
function parseRfc4514(text: string): [string, string][][] {
  const rdns: [string, string][][] = [];
  let rdn: [string, string][] = [];
  let i = 0;
  const n = text.length;
  const skipSpaces = () => {
    while (i < n && text[i] === " ") i++;
  };
  while (true) {
    skipSpaces();
    let type = "";
    while (i < n && text[i] !== "=") {
      const c = text[i] as string;
      if (c === "," || c === "+" || c === ";" || c === "\\")
        throw new DistinguishedNameError(`unexpected "${c}" in an attribute type`);
      type += c;
      i++;
    }
    if (i >= n) throw new DistinguishedNameError(`attribute "${type.trim()}" has no "="`);
    type = type.trim();
    if (!/^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)$/.test(type))
      throw new DistinguishedNameError(`"${type}" is not an attribute type`);
    i++; // "="
    skipSpaces();
    if (text[i] === "#") throw new DistinguishedNameError('BER-encoded values ("=#") are not supported');
    const bytes: number[] = [];
    let trailingSpaces = 0; // unescaped spaces at the end of the value are not part of it
    while (i < n) {
      const c = text[i] as string;
      if (c === "," || c === "+" || c === ";") break;
      if (c === "\\") {
        const next = text.slice(i + 1, i + 3);
        if (HEX.test(next)) {
          bytes.push(Number.parseInt(next, 16));
          i += 3;
        } else if (i + 1 < n && ' "#+,;<=>\\'.includes(text[i + 1] as string)) {
          bytes.push((text[i + 1] as string).charCodeAt(0));
          i += 2;
        } else {
          throw new DistinguishedNameError("invalid escape sequence");
        }
        trailingSpaces = 0;
        continue;
      }
      if (c === '"') throw new DistinguishedNameError('unescaped " in a value');
      for (const b of Buffer.from(c, "utf8")) bytes.push(b);
      trailingSpaces = c === " " ? trailingSpaces + 1 : 0;
      i++;
    }
    const value = Buffer.from(bytes.slice(0, bytes.length - trailingSpaces)).toString("utf8");
    if (value === "") throw new DistinguishedNameError(`attribute "${type}" has an empty value`);
    rdn.push([type.toUpperCase(), value]);
    if (i >= n) {
      rdns.push(rdn);
      return rdns;
    }
    const sep = text[i];
    i++;
    if (sep !== "+") {
      rdns.push(rdn);
      rdn = [];
    }
  }
}

/** Parses a trusted-identity DN; throws DistinguishedNameError naming the broken rule. */
export function parseTrustedIdentityDn(text: string): DnMap {
  const rdns = parseRfc4514(text);
  const map = new Map<string, string>();
  for (const rdn of rdns) {
    if (rdn.length > 1) throw new DistinguishedNameError("multi-valued RDNs (with '+') are not supported");
    const [type, value] = rdn[0] as [string, string];
    if (map.has(type)) throw new DistinguishedNameError(`attribute ${type} appears twice`);
    map.set(type, value);
  }
  for (const field of MANDATORY)
    if (!map.has(field))
      throw new DistinguishedNameError(`it has no ${field}: an identity must name C, ST and O at least`);
  return map;
}

/**
 * The certificate subject as a DnMap, or a reason it cannot be one (notation parses the subject
 * with the same rules: a multi-valued RDN or a repeated attribute makes it unmatchable).
 */
export function certificateSubjectDn(subject: { type: string; value: string }[][]): DnMap | string {
  const map = new Map<string, string>();
  for (const rdn of subject) {
    if (rdn.length !== 1) return "the signing certificate's subject has a multi-valued RDN";
    const { type, value } = rdn[0] as { type: string; value: string };
    if (map.has(type)) return `the signing certificate's subject has ${type} twice`;
    map.set(type, value);
  }
  return map;
}

/** Every attribute of `identity` has the same value in `subject` (pkix.IsSubsetDN). */
export function isSubsetDn(identity: DnMap, subject: DnMap): boolean {
  for (const [type, value] of identity) if (subject.get(type) !== value) return false;
  return true;
}
