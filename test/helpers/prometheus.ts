/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4, as the Prometheus
 * server reads it: prometheus/common expfmt text_parse.go; format description in Prometheus'
 * "Exposition formats" docs). prom-client only writes this format, it has no parser, so the
 * tests carry this one. It throws on anything a scraper would reject or that is a sign of a
 * broken exporter: a malformed line or value, a bad metric or label name, a bad escape, a sample
 * before its family's TYPE or apart from its family, a duplicate series, a HELP or TYPE given
 * twice, histogram buckets that are not cumulative or whose +Inf bucket is not the count, and a
 * missing final newline.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string | undefined;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export class ExpositionError extends Error {
  constructor(line: number, problem: string) {
    super(`line ${line}: ${problem}`);
    this.name = "ExpositionError";
  }
}

/** The family a sample belongs to: histogram and summary samples carry suffixes. */
function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sample);
  if (direct) return direct;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sample.endsWith(suffix)) continue;
    const f = families.get(sample.slice(0, -suffix.length));
    if (f && (f.type === "histogram" || (f.type === "summary" && suffix !== "_bucket"))) return f;
  }
  return undefined;
}

function parseValue(text: string, line: number): number {
  // Go's strconv.ParseFloat, which expfmt uses: Inf, Infinity and NaN in any case (prom-client
  // writes "Nan"), and decimal numbers (hex floats are legal there, but no exporter writes them).
  const special = text.toLowerCase();
  if (/^\+?inf(inity)?$/.test(special)) return Number.POSITIVE_INFINITY;
  if (/^-inf(inity)?$/.test(special)) return Number.NEGATIVE_INFINITY;
  if (special === "nan") return Number.NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text))
    throw new ExpositionError(line, `bad value ${JSON.stringify(text)}`);
  return Number(text);
}

/** `{a="x",b="y"}` starting at `text[0] === "{"`; returns the labels and the rest of the line. */
function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new ExpositionError(line, "label without '='");
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new ExpositionError(line, `bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new ExpositionError(line, `label ${name} given twice`);
    if (text[eq + 1] !== '"') throw new ExpositionError(line, `label ${name}: value not quoted`);
    let value = "";
    let j = eq + 2;
    for (; ; j++) {
      const ch = text[j];
      if (ch === undefined) throw new ExpositionError(line, `label ${name}: unterminated value`);
      if (ch === '"') break;
      if (ch === "\\") {
        const next = text[++j];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else throw new ExpositionError(line, `label ${name}: bad escape \\${next ?? ""}`);
      } else value += ch;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") throw new ExpositionError(line, `label ${name}: expected ',' or '}'`);
  }
}

export function parseExposition(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith("\n")) throw new ExpositionError(0, "no final newline");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const closed = new Set<string>();
  let current: Family | undefined;
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((raw, index) => {
    const n = index + 1;
    if (raw.trim() === "") return;
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw);
      if (!m) return; // a plain comment
      const [, kind, name = "", rest = ""] = m;
      if (!METRIC_NAME.test(name)) throw new ExpositionError(n, `bad metric name ${JSON.stringify(name)}`);
      let family = families.get(name);
      if (family && closed.has(name))
        throw new ExpositionError(n, `${kind} for ${name} after its samples ended`);
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) throw new ExpositionError(n, `bad type ${JSON.stringify(rest)}`);
        if (family?.samples.length) throw new ExpositionError(n, `TYPE for ${name} after its samples`);
        if (family && family.type !== "untyped") throw new ExpositionError(n, `TYPE for ${name} given twice`);
        family ??= { name, type: "untyped", help: undefined, samples: [] };
        family.type = rest as Family["type"];
      } else {
        if (family?.help !== undefined) throw new ExpositionError(n, `HELP for ${name} given twice`);
        family ??= { name, type: "untyped", help: undefined, samples: [] };
        family.help = rest;
      }
      families.set(name, family);
      if (current && current !== family) closed.add(current.name);
      current = family;
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$/.exec(raw);
    if (!m) throw new ExpositionError(n, `bad sample line ${JSON.stringify(raw)}`);
    const [, name = "", afterName = ""] = m;
    let labels: Record<string, string> = {};
    let rest = afterName;
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, n));
    const parts = rest.trim().split(/ +/);
    if (!rest.startsWith(" ") || parts.length < 1 || parts.length > 2)
      throw new ExpositionError(n, `expected ' value [timestamp]' after ${name}`);
    const value = parseValue(parts[0] ?? "", n);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new ExpositionError(n, "bad timestamp");
    const family = familyOf(name, families);
    if (!family) throw new ExpositionError(n, `sample ${name} before its TYPE`);
    if (closed.has(family.name) || (current && current !== family))
      throw new ExpositionError(n, `sample ${name} apart from its family ${family.name}`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new ExpositionError(n, `duplicate series ${key}`);
    seen.add(key);
    if (family.type === "counter" && !(value >= 0))
      throw new ExpositionError(n, `counter ${name} is ${value}`);
    family.samples.push({ name, labels, value });
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

/** Buckets cumulative (non-decreasing in `le`), ending at +Inf, which equals _count. */
function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name === `${family.name}_bucket`) {
      if (le === undefined) throw new ExpositionError(0, `${family.name}: a bucket without le`);
      entry.buckets.push([parseValue(le, 0), s.value]);
    } else if (s.name === `${family.name}_count`) entry.count = s.value;
  }
  for (const [key, { buckets, count }] of series) {
    const where = `${family.name}${key}`;
    for (let i = 1; i < buckets.length; i++) {
      const [le, v] = buckets[i] as [number, number];
      const [prevLe, prevV] = buckets[i - 1] as [number, number];
      if (!(le > prevLe) || v < prevV) throw new ExpositionError(0, `${where}: buckets not cumulative`);
    }
    const last = buckets.at(-1);
    if (!last || last[0] !== Number.POSITIVE_INFINITY)
      throw new ExpositionError(0, `${where}: no +Inf bucket`);
    if (last[1] !== count)
      throw new ExpositionError(0, `${where}: +Inf bucket ${last[1]} is not _count ${count}`);
  }
}

/** The value of one series (labels must match exactly), or undefined when absent. */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want) return s.value;
    }
  }
  return undefined;
}

/** The sum over every series of `name` whose labels include `match`. */
export function sumOf(
  families: Map<string, Family>,
  name: string,
  match: Record<string, string> = {},
): number {
  let total = 0;
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
    }
  }
  return total;
}
