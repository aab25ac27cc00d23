/**
 * One policy file: YAML text -> a validated Policy, or every problem found, each with its line.
 *
 * The YAML is walked as a syntax tree (yaml's parseDocument + LineCounter) rather than converted to
 * plain objects first, so every message can point at the line of the offending key or value.
 * Unknown keys are errors (a typo such as `rootkeys:` must never silently mean trust on first use).
 */
import { basename, dirname, resolve } from "node:path";
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from "yaml";
import {
  type CosignIdentity,
  type PolicyFileRef,
  SIGNATURE_COMBINATIONS,
  type SignatureCombination,
  type SignatureRequirementSpec,
  type SignatureRuleSpec,
} from "../signatures/types.js";
import { type ImagePattern, overlapWitness, PatternSyntaxError, parseImagePattern } from "./pattern.js";
import { compileTagGlob, isValidTagGlob } from "./tag-glob.js";
import {
  DEFAULT_ROLES,
  DIGEST_PULLS,
  type DigestPulls,
  POLICY_MODES,
  type Policy,
  type PolicyException,
  type PolicyMode,
  type PolicyProblem,
  TAG_TRUSTS,
  type TagTrust,
  TRUST_SOURCE_KINDS,
  type TrustSourceKind,
} from "./types.js";

const TOP_KEYS = [
  "name",
  "match",
  "mode",
  "trust",
  "digestPulls",
  "exceptions",
  "tagTrust",
  "signatures",
] as const;
const SIGNATURES_KEYS = ["require", "rules"] as const;
const RULE_KINDS = ["cosign", "notation"] as const;
const COSIGN_KEYS = ["keys", "identities", "trustedRoot", "requireTlog", "dockerReferences"] as const;
const IDENTITY_KEYS = ["issuer", "issuerPattern", "subject", "subjectPattern"] as const;
const NOTATION_KEYS = ["trustPolicy", "trustStore"] as const;
/** A repository name as a legacy cosign payload gives it: host[:port]/path, lower case. */
const DOCKER_REFERENCE = /^[a-z0-9.-]+(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$/;
const TRUST_KEYS = ["rootKeys", "roles", "requireAll", "source", "sources", "notaryUntil"] as const;
const EXCEPTION_KEYS = ["repository", "tag", "reason"] as const;
const KEY_ID = /^[0-9a-f]{64}$/;
const POLICY_NAME = /^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$/;
/** Role names: Notary's `targets` / `targets/<delegation>`, or a TUF delegated role name. */
const ROLE_NAME = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/;

export interface ParsedPolicyFile {
  /** undefined when there were problems */
  readonly policy: Policy | undefined;
  readonly problems: readonly PolicyProblem[];
}

/** The policy name a file gets when it has no `name:` key: its file name without extension. */
export function defaultPolicyName(file: string): string {
  return basename(file).replace(/\.ya?ml$/, "");
}

export function parsePolicyFile(file: string, text: string): ParsedPolicyFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: PolicyProblem[] = [];
  const lineOf = (offset: number | undefined) =>
    offset === undefined ? 1 : lineCounter.linePos(offset).line;
  const at = (node: Node | null | undefined) => lineOf(node?.range?.[0]);
  const problem = (line: number, message: string) => problems.push({ file, line, message });

  for (const e of doc.errors) problem(lineOf(e.pos[0]), `YAML: ${e.message}`);
  if (problems.length > 0) return { policy: undefined, problems };

  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ""))) {
    problem(1, "file is empty; a policy needs at least match and mode");
    return { policy: undefined, problems };
  }
  if (!isMap(root)) {
    problem(at(root), "a policy file must be a mapping (name, match, mode, trust, digestPulls, exceptions)");
    return { policy: undefined, problems };
  }

  // --- helpers over the syntax tree -------------------------------------------------------------
  const entries = (map: YAMLMap, allowed: readonly string[], where: string) => {
    const out = new Map<string, { node: Node | null; line: number }>();
    for (const pair of map.items) {
      const keyNode = pair.key as Node | null;
      const valueNode = pair.value as Node | null;
      if (!isScalar(keyNode) || typeof keyNode.value !== "string") {
        problem(at(keyNode), `${where}keys must be plain strings`);
        continue;
      }
      const key = keyNode.value;
      if (!allowed.includes(key)) {
        problem(at(keyNode), `unknown key "${where}${key}" (allowed: ${allowed.join(", ")})`);
        continue;
      }
      if (isAlias(valueNode)) {
        problem(at(valueNode), `${where}${key}: YAML aliases are not supported in policy files`);
        continue;
      }
      out.set(key, { node: valueNode, line: at(keyNode) });
    }
    return out;
  };
  const str = (node: Node | null, line: number, what: string): string | undefined => {
    if (isScalar(node) && typeof node.value === "string" && node.value !== "") return node.value;
    problem(node ? at(node) : line, `${what} must be a non-empty string`);
    return undefined;
  };
  const strList = (node: Node | null, line: number, what: string): Array<{ value: string; line: number }> => {
    if (!isSeq(node)) {
      problem(node ? at(node) : line, `${what} must be a list`);
      return [];
    }
    if (node.items.length === 0) problem(at(node), `${what} must not be empty`);
    const out: Array<{ value: string; line: number }> = [];
    for (const item of node.items as Array<Node | null>) {
      const value = str(item, at(node), `each entry of ${what}`);
      if (value !== undefined) out.push({ value, line: at(item) });
    }
    return out;
  };
  const oneOf = <T extends string>(node: Node | null, line: number, what: string, allowed: readonly T[]) => {
    if (
      isScalar(node) &&
      typeof node.value === "string" &&
      (allowed as readonly string[]).includes(node.value)
    ) {
      return node.value as T;
    }
    const shown = isScalar(node) ? JSON.stringify(node.value) : "this";
    problem(node ? at(node) : line, `${what} must be one of ${allowed.join(" | ")}, not ${shown}`);
    return undefined;
  };

  // --- top level ----------------------------------------------------------------------------------
  const top = entries(root, TOP_KEYS, "");
  const firstLine = at(root);

  let name = defaultPolicyName(file);
  const nameEntry = top.get("name");
  if (nameEntry) {
    name = str(nameEntry.node, nameEntry.line, "name") ?? name;
    if (!POLICY_NAME.test(name)) {
      problem(at(nameEntry.node), `name "${name}" must be lower case a-z, 0-9, ".", "_", "-" (at most 64)`);
    }
  } else if (!POLICY_NAME.test(name)) {
    problem(firstLine, `file name "${name}" is not a valid policy name; add a name: key`);
  }

  const match: ImagePattern[] = [];
  const matchLines: number[] = [];
  const matchEntry = top.get("match");
  if (!matchEntry) {
    problem(firstLine, "missing key: match (the image patterns this policy covers)");
  } else {
    for (const { value, line } of strList(matchEntry.node, matchEntry.line, "match")) {
      const pattern = patternAt(value, line, `match`);
      if (!pattern) continue;
      const dup = match.findIndex((p) => p.source === pattern.source);
      if (dup >= 0) {
        problem(line, `match pattern "${value}" is listed twice (first on line ${matchLines[dup]})`);
        continue;
      }
      match.push(pattern);
      matchLines.push(line);
    }
  }

  // mode has no default on purpose: a file cut short by a partial write must not load as a weaker policy.
  let mode: PolicyMode | undefined;
  const modeEntry = top.get("mode");
  if (!modeEntry) problem(firstLine, "missing key: mode (enforce | audit | off)");
  else mode = oneOf(modeEntry.node, modeEntry.line, "mode", POLICY_MODES);

  let rootKeys: string[] = [];
  let roles: string[] = [...DEFAULT_ROLES];
  let requireAll = false;
  let source: TrustSourceKind | undefined;
  let sources: TrustSourceKind[] | undefined;
  let notaryUntil: Date | undefined;
  const trustEntry = top.get("trust");
  if (trustEntry) {
    if (!isMap(trustEntry.node)) {
      problem(trustEntry.node ? at(trustEntry.node) : trustEntry.line, "trust must be a mapping");
    } else {
      const trust = entries(trustEntry.node, TRUST_KEYS, "trust.");
      const sourceEntry = trust.get("source");
      if (sourceEntry) source = oneOf(sourceEntry.node, sourceEntry.line, "trust.source", ["notary", "tuf"]);
      ({ sources, notaryUntil } = cutOver(trust, source));
      const keysEntry = trust.get("rootKeys");
      if (keysEntry) {
        rootKeys = [];
        for (const { value, line } of strList(keysEntry.node, keysEntry.line, "trust.rootKeys")) {
          if (!KEY_ID.test(value)) {
            problem(line, `trust.rootKeys: "${value}" is not a key ID (64 lower-case hex characters)`);
          } else if (rootKeys.includes(value)) {
            problem(line, `trust.rootKeys: key ID ${value} is listed twice`);
          } else {
            rootKeys.push(value);
          }
        }
      }
      const rolesEntry = trust.get("roles");
      if (rolesEntry) {
        roles = [];
        for (const { value, line } of strList(rolesEntry.node, rolesEntry.line, "trust.roles")) {
          if (!ROLE_NAME.test(value)) problem(line, `trust.roles: "${value}" is not a role name`);
          else if (source === "notary" && value !== "targets" && !value.startsWith("targets/")) {
            problem(line, `trust.roles: "${value}" is not a Notary role (targets or targets/<delegation>)`);
          } else if (roles.includes(value)) problem(line, `trust.roles: "${value}" is listed twice`);
          else roles.push(value);
        }
      }
      const allEntry = trust.get("requireAll");
      if (allEntry) {
        if (isScalar(allEntry.node) && typeof allEntry.node.value === "boolean")
          requireAll = allEntry.node.value;
        else
          problem(
            allEntry.node ? at(allEntry.node) : allEntry.line,
            "trust.requireAll must be true or false",
          );
      }
    }
  }

  let digestPulls: DigestPulls = "signed";
  const digestEntry = top.get("digestPulls");
  if (digestEntry)
    digestPulls = oneOf(digestEntry.node, digestEntry.line, "digestPulls", DIGEST_PULLS) ?? "signed";

  const exceptions: PolicyException[] = [];
  const exEntry = top.get("exceptions");
  if (exEntry) {
    if (!isSeq(exEntry.node)) {
      problem(exEntry.node ? at(exEntry.node) : exEntry.line, "exceptions must be a list");
    } else {
      for (const item of exEntry.node.items as Array<Node | null>) {
        const line = at(item);
        if (!isMap(item)) {
          problem(line, "each exception must be a mapping {repository and/or tag, reason}");
          continue;
        }
        const ex = entries(item, EXCEPTION_KEYS, "exceptions[].");
        const reasonEntry = ex.get("reason");
        const reason = reasonEntry
          ? str(reasonEntry.node, reasonEntry.line, "exception reason")
          : void problem(line, "an exception needs a reason (it is logged with every pull it allows)");
        let repository: ImagePattern | undefined;
        const repoEntry = ex.get("repository");
        if (repoEntry) {
          const value = str(repoEntry.node, repoEntry.line, "exception repository");
          repository =
            value === undefined ? undefined : patternAt(value, at(repoEntry.node), "exception repository");
          if (
            repository &&
            match.length > 0 &&
            !match.some((m) => overlapWitness(m, repository as ImagePattern))
          ) {
            problem(
              at(repoEntry.node),
              `exception repository "${repository.source}" matches no image this policy covers (${match.map((m) => m.source).join(", ")})`,
            );
          }
        }
        let tag: string | undefined;
        let tagRegExp: RegExp | undefined;
        const tagEntry = ex.get("tag");
        if (tagEntry) {
          tag = str(tagEntry.node, tagEntry.line, "exception tag");
          if (tag !== undefined && !isValidTagGlob(tag)) {
            problem(
              at(tagEntry.node),
              `exception tag "${tag}" is not a tag glob (A-Z a-z 0-9 _ . - and * ?)`,
            );
            tag = undefined;
          }
          tagRegExp = tag === undefined ? undefined : compileTagGlob(tag);
        }
        if (!repoEntry && !tagEntry) {
          problem(line, "an exception needs a repository pattern, a tag glob, or both");
        }
        if (reason !== undefined) {
          exceptions.push(Object.freeze({ repository, tag, tagRegExp, reason, line }));
        }
      }
    }
  }

  let tagTrust: TagTrust = "verified";
  const tagTrustEntry = top.get("tagTrust");
  if (tagTrustEntry)
    tagTrust = oneOf(tagTrustEntry.node, tagTrustEntry.line, "tagTrust", TAG_TRUSTS) ?? "verified";

  let signatures: SignatureRequirementSpec | undefined;
  const sigEntry = top.get("signatures");
  if (sigEntry) signatures = parseSignatures(sigEntry.node, sigEntry.line);
  if (tagTrust === "registry" && !signatures && tagTrustEntry) {
    problem(
      tagTrustEntry.line,
      "tagTrust: registry takes a tag's digest from the registry unverified; it is allowed only with signatures: rules the digest must satisfy",
    );
  }
  if (tagTrust === "registry" && trustEntry) {
    problem(
      trustEntry.line,
      "trust: has no effect with tagTrust: registry (no trust source is asked); remove one of them",
    );
  }

  // Stable sort: in file order, as a person reads them.
  problems.sort((a, b) => a.line - b.line);
  if (problems.length > 0 || mode === undefined) return { policy: undefined, problems };
  const policy: Policy = Object.freeze({
    name,
    file,
    match: Object.freeze(match),
    matchLines: Object.freeze(matchLines),
    mode,
    trust: Object.freeze({
      rootKeys: Object.freeze(rootKeys),
      roles: Object.freeze(roles),
      requireAll,
      source,
      ...(sources ? { sources: Object.freeze(sources) } : {}),
      ...(notaryUntil ? { notaryUntil } : {}),
    }),
    digestPulls,
    exceptions: Object.freeze(exceptions),
    tagTrust,
    signatures,
  });
  return { policy, problems };

  /**
   * `trust.sources: [tuf, notary]` and `trust.notaryUntil: DATE`: the sources that count during a
   * cut-over from Notary to TUF, in the order they are asked, and until when Notary counts.
   */
  function cutOver(
    trust: Map<string, { node: Node | null; line: number }>,
    single: TrustSourceKind | undefined,
  ): { sources: TrustSourceKind[] | undefined; notaryUntil: Date | undefined } {
    let listed: TrustSourceKind[] | undefined = single ? [single] : undefined;
    const sourcesEntry = trust.get("sources");
    if (sourcesEntry) {
      if (trust.has("source"))
        problem(
          sourcesEntry.line,
          "trust.source and trust.sources cannot both be set: list them in trust.sources",
        );
      listed = [];
      for (const { value, line } of strList(sourcesEntry.node, sourcesEntry.line, "trust.sources")) {
        if (!(TRUST_SOURCE_KINDS as readonly string[]).includes(value))
          problem(line, `trust.sources: unknown source "${value}" (known: ${TRUST_SOURCE_KINDS.join(", ")})`);
        else if (listed.includes(value as TrustSourceKind))
          problem(line, `trust.sources: "${value}" is listed twice`);
        else listed.push(value as TrustSourceKind);
      }
    }
    let until: Date | undefined;
    const untilEntry = trust.get("notaryUntil");
    if (untilEntry) {
      const node = untilEntry.node;
      const text = isScalar(node) ? String(node.value) : "";
      until = parseInstant(text);
      if (until === undefined)
        problem(
          node ? at(node) : untilEntry.line,
          `trust.notaryUntil must be a date (2026-12-08: Notary counts until that day begins, UTC) or an RFC 3339 time (2026-12-08T12:00:00Z), not ${JSON.stringify(isScalar(node) ? node.value : "this")}`,
        );
      else if (!listed?.includes("notary"))
        problem(
          untilEntry.line,
          "trust.notaryUntil says until when Notary counts, but notary is not in trust.sources",
        );
    }
    return { sources: listed, notaryUntil: until };
  }

  function fileRef(node: Node | null, line: number, what: string): PolicyFileRef | undefined {
    const written = str(node, line, what);
    if (written === undefined) return undefined;
    return Object.freeze({ written, path: resolve(dirname(file), written), line: node ? at(node) : line });
  }

  function bool(node: Node | null, line: number, what: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === "boolean") return node.value;
    problem(node ? at(node) : line, `${what} must be true or false`);
    return undefined;
  }

  /** `signatures: {require: all|any, rules: [{cosign: {...}} | {notation: {...}}]}` */
  function parseSignatures(node: Node | null, line: number): SignatureRequirementSpec | undefined {
    if (!isMap(node)) {
      problem(node ? at(node) : line, "signatures must be a mapping {require: all | any, rules: [...]}");
      return undefined;
    }
    const sig = entries(node, SIGNATURES_KEYS, "signatures.");
    let require: SignatureCombination = "all";
    const requireEntry = sig.get("require");
    if (requireEntry)
      require =
        oneOf(requireEntry.node, requireEntry.line, "signatures.require", SIGNATURE_COMBINATIONS) ?? "all";
    const rulesEntry = sig.get("rules");
    if (!rulesEntry) {
      problem(at(node), "signatures needs rules: a list of cosign: or notation: rules");
      return undefined;
    }
    if (!isSeq(rulesEntry.node) || rulesEntry.node.items.length === 0) {
      problem(
        rulesEntry.node ? at(rulesEntry.node) : rulesEntry.line,
        "signatures.rules must be a non-empty list",
      );
      return undefined;
    }
    const rules: SignatureRuleSpec[] = [];
    for (const item of rulesEntry.node.items as Array<Node | null>) {
      const index = rules.length + 1;
      const itemLine = item ? at(item) : rulesEntry.line;
      if (!isMap(item) || item.items.length !== 1) {
        problem(itemLine, `signatures.rules[${index}] must be a mapping with one key: cosign or notation`);
        rules.push(placeholder(index, itemLine));
        continue;
      }
      const kinds = entries(item, RULE_KINDS, "signatures.rules[].");
      const cosign = kinds.get("cosign");
      const notation = kinds.get("notation");
      const rule = cosign
        ? parseCosign(cosign.node, cosign.line, index)
        : notation
          ? parseNotation(notation.node, notation.line, index)
          : undefined;
      rules.push(rule ?? placeholder(index, itemLine));
    }
    return Object.freeze({ loaded: false as const, require, rules: Object.freeze(rules), line });
  }

  /** Keeps rule numbers stable when one is invalid (the policy does not load anyway). */
  function placeholder(index: number, line: number): SignatureRuleSpec {
    return {
      kind: "cosign",
      index,
      line,
      keys: [],
      identities: [],
      trustedRoot: undefined,
      requireTlog: false,
      dockerReferences: [],
    };
  }

  function parseCosign(node: Node | null, line: number, index: number): SignatureRuleSpec | undefined {
    const where = `signatures.rules[${index}].cosign`;
    if (!isMap(node)) {
      problem(
        node ? at(node) : line,
        `${where} must be a mapping (keys, identities, trustedRoot, requireTlog, dockerReferences)`,
      );
      return undefined;
    }
    const c = entries(node, COSIGN_KEYS, `${where}.`);
    const keys: PolicyFileRef[] = [];
    const keysEntry = c.get("keys");
    if (keysEntry) {
      for (const { value, line: l } of strList(keysEntry.node, keysEntry.line, `${where}.keys`)) {
        const ref = Object.freeze({ written: value, path: resolve(dirname(file), value), line: l });
        if (keys.some((k) => k.path === ref.path)) problem(l, `${where}.keys: ${value} is listed twice`);
        else keys.push(ref);
      }
    }
    /** `name` exactly or `patternName` as an anchored pattern: exactly one of the two. */
    const exactOrPattern = (
      id: Map<string, { node: Node | null; line: number }>,
      name: string,
      patternName: string,
      l: number,
      what: string,
    ): { exact: string | undefined; pattern: string | undefined } | undefined => {
      const exactEntry = id.get(name);
      const patternEntry = id.get(patternName);
      if (exactEntry && patternEntry) {
        problem(l, `${where}.identities[]: give ${name} or ${patternName}, not both`);
        return undefined;
      }
      if (!exactEntry && !patternEntry) {
        problem(l, `${where}.identities[]: ${name} or ${patternName} is required (${what})`);
        return undefined;
      }
      if (exactEntry) {
        const exact = str(exactEntry.node, exactEntry.line, `${where}.identities[].${name}`);
        return exact === undefined ? undefined : { exact, pattern: undefined };
      }
      const entry = patternEntry as { node: Node | null; line: number };
      const pattern = str(entry.node, entry.line, `${where}.identities[].${patternName}`);
      if (pattern === undefined) return undefined;
      try {
        new RegExp(`^(?:${pattern})$`, "u");
      } catch (e) {
        problem(
          entry.node ? at(entry.node) : entry.line,
          `${where}.identities[].${patternName} is not a regular expression: ${(e as Error).message}`,
        );
        return undefined;
      }
      return { exact: undefined, pattern };
    };
    const identities: CosignIdentity[] = [];
    const idEntry = c.get("identities");
    if (idEntry) {
      if (!isSeq(idEntry.node) || idEntry.node.items.length === 0) {
        problem(
          idEntry.node ? at(idEntry.node) : idEntry.line,
          `${where}.identities must be a non-empty list`,
        );
      } else {
        for (const item of idEntry.node.items as Array<Node | null>) {
          const l = item ? at(item) : idEntry.line;
          if (!isMap(item)) {
            problem(
              l,
              `each entry of ${where}.identities must be a mapping {issuer | issuerPattern, subject | subjectPattern}`,
            );
            continue;
          }
          const id = entries(item, IDENTITY_KEYS, `${where}.identities[].`);
          const issuer = exactOrPattern(
            id,
            "issuer",
            "issuerPattern",
            l,
            "the OIDC issuer in the certificate",
          );
          const subject = exactOrPattern(id, "subject", "subjectPattern", l, "the certificate's SAN");
          if (issuer && subject)
            identities.push(
              Object.freeze({
                issuer: issuer.exact,
                issuerPattern: issuer.pattern,
                subject: subject.exact,
                subjectPattern: subject.pattern,
                line: l,
              }),
            );
        }
      }
    }
    const rootEntry = c.get("trustedRoot");
    const trustedRoot = rootEntry
      ? fileRef(rootEntry.node, rootEntry.line, `${where}.trustedRoot`)
      : undefined;
    const tlogEntry = c.get("requireTlog");
    const requireTlog = tlogEntry
      ? (bool(tlogEntry.node, tlogEntry.line, `${where}.requireTlog`) ?? false)
      : false;
    const dockerReferences: string[] = [];
    const refsEntry = c.get("dockerReferences");
    if (refsEntry) {
      for (const { value, line: l } of strList(refsEntry.node, refsEntry.line, `${where}.dockerReferences`)) {
        if (!DOCKER_REFERENCE.test(value))
          problem(
            l,
            `${where}.dockerReferences: "${value}" is not a repository name (host[:port]/path, no tag or digest)`,
          );
        else dockerReferences.push(value);
      }
    }
    if (!keysEntry && !idEntry)
      problem(line, `${where} needs keys: (public key files) or identities: (keyless signers), or both`);
    if (idEntry && !rootEntry)
      problem(
        idEntry.line,
        `${where}.identities need trustedRoot: (a Sigstore trusted_root.json) to check the certificates against`,
      );
    if (tlogEntry && requireTlog && !rootEntry)
      problem(
        tlogEntry.line,
        `${where}.requireTlog needs trustedRoot: (it holds the transparency log's keys)`,
      );
    return Object.freeze({
      kind: "cosign" as const,
      index,
      line,
      keys: Object.freeze(keys),
      identities: Object.freeze(identities),
      trustedRoot,
      requireTlog,
      dockerReferences: Object.freeze(dockerReferences),
    });
  }

  function parseNotation(node: Node | null, line: number, index: number): SignatureRuleSpec | undefined {
    const where = `signatures.rules[${index}].notation`;
    if (!isMap(node)) {
      problem(node ? at(node) : line, `${where} must be a mapping (trustPolicy, trustStore)`);
      return undefined;
    }
    const n = entries(node, NOTATION_KEYS, `${where}.`);
    const policyEntry = n.get("trustPolicy");
    const storeEntry = n.get("trustStore");
    if (!policyEntry) problem(line, `${where}: trustPolicy is required (Notation's trustpolicy.json)`);
    if (!storeEntry)
      problem(
        line,
        `${where}: trustStore is required (a directory laid out as Notation's, x509/ca/<name>/*.pem)`,
      );
    const trustPolicy = policyEntry
      ? fileRef(policyEntry.node, policyEntry.line, `${where}.trustPolicy`)
      : undefined;
    const trustStore = storeEntry
      ? fileRef(storeEntry.node, storeEntry.line, `${where}.trustStore`)
      : undefined;
    if (!trustPolicy || !trustStore) return undefined;
    return Object.freeze({ kind: "notation" as const, index, line, trustPolicy, trustStore });
  }

  function patternAt(value: string, line: number, what: string): ImagePattern | undefined {
    try {
      return parseImagePattern(value);
    } catch (e) {
      if (!(e instanceof PatternSyntaxError)) throw e;
      problem(line, `${what}: ${e.message}`);
      return undefined;
    }
  }
}

/** `YYYY-MM-DD` (that day's start, UTC) or an RFC 3339 date-time with Z or an offset. */
function parseInstant(text: string): Date | undefined {
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (day) {
    const date = new Date(`${text}T00:00:00Z`);
    // 2026-02-30 parses to March: refuse what does not round-trip
    return Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== text ? undefined : date;
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(text)) return undefined;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
