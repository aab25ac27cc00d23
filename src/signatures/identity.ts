/**
 * Whether a verified keyless signer is one a cosign rule lists: the Fulcio certificate's SAN and
 * OIDC issuer (extension 1.3.6.1.4.1.57264.1.8, or .1.1 on older certificates), each compared
 * exactly or by pattern. One matcher for Sigstore bundles and legacy `.sig` signatures alike.
 *
 * Patterns are anchored (`^(?:p)$`): cosign's --certificate-identity-regexp is an unanchored Go
 * regexp.MatchString, so `acme` there also accepts `not-acme.evil`; a trust proxy states the
 * whole name instead (README "Requiring cosign or Notation signatures").
 */
import type { CosignIdentity } from "./types.js";

const compiled = new Map<string, RegExp>();

function wholeMatch(pattern: string, value: string): boolean {
  let re = compiled.get(pattern);
  if (!re) {
    re = new RegExp(`^(?:${pattern})$`, "u");
    // patterns come from loaded policies only; keep the memo from growing across many reloads
    if (compiled.size >= 1024) compiled.clear();
    compiled.set(pattern, re);
  }
  return re.test(value);
}

function matches(exact: string | undefined, pattern: string | undefined, value: string): boolean {
  if (exact !== undefined) return exact === value;
  return pattern !== undefined && wholeMatch(pattern, value);
}

/** The first listed identity the signer is, or undefined. */
export function matchingIdentity(
  identities: readonly CosignIdentity[],
  subject: string | undefined,
  issuer: string | undefined,
): CosignIdentity | undefined {
  if (subject === undefined || issuer === undefined) return undefined;
  return identities.find(
    (id) => matches(id.issuer, id.issuerPattern, issuer) && matches(id.subject, id.subjectPattern, subject),
  );
}

/** "ci@acme.example (issuer https://token.actions.githubusercontent.com)", patterns as /p/. */
export function describeIdentity(id: CosignIdentity): string {
  const subject = id.subject ?? `/${id.subjectPattern}/`;
  const issuer = id.issuer ?? `/${id.issuerPattern}/`;
  return `${subject} (issuer ${issuer})`;
}
