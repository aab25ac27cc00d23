/** One table on stdout, and the same rows as JSON in bench-results/<timestamp>.json. */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface Ratio {
  /** what it is compared with, e.g. "pull-through" */
  vs: string;
  value: number;
  /** the target's minimum for this ratio, when the issue sets one */
  min?: number;
}

export interface Row {
  id: string;
  scenario: string;
  /** "rps": req/s; "bps": bytes/s; "ms": a duration; "us": CPU µs; "bytes": memory; "count": request counts */
  unit: "rps" | "bps" | "ms" | "us" | "bytes" | "count";
  value?: number;
  p50Ms?: number;
  p99Ms?: number;
  ratios?: Ratio[];
  target?: string;
  met?: boolean;
  peakRssBytes?: number;
  /** detail (counts, sizes, what was checked) */
  note?: string;
  /** why the scenario did not run ("not available yet: ...") */
  skipped?: string;
}

const MB = 1024 * 1024;

function formatValue(row: Row): string {
  if (row.value === undefined) return "-";
  switch (row.unit) {
    case "rps":
      return `${Math.round(row.value).toLocaleString("en-US")} req/s`;
    case "bps":
      return `${(row.value / 1e9).toFixed(2)} GB/s`;
    case "ms":
      return `${row.value.toFixed(1)} ms`;
    case "us":
      return `${row.value.toFixed(2)} µs`;
    case "bytes":
      return `${(row.value / MB).toFixed(0)} MiB`;
    case "count":
      return String(row.value);
  }
}

const ms = (v: number | undefined) => (v === undefined ? "-" : `${v.toFixed(2)} ms`);

export function formatTable(rows: Row[]): string {
  const header = ["scenario", "result", "p50", "p99", "ratio", "target", "met?", "peak RSS", "note"];
  const body = rows.map((r) => [
    r.scenario,
    r.skipped ? "skipped" : formatValue(r),
    ms(r.p50Ms),
    ms(r.p99Ms),
    (r.ratios ?? []).map((x) => `${x.value.toFixed(2)}x ${x.vs}`).join(", ") || "-",
    r.target ?? "-",
    r.skipped ? "-" : r.met === undefined ? "-" : r.met ? "yes" : "NO",
    r.peakRssBytes === undefined ? "-" : `${(r.peakRssBytes / MB).toFixed(0)} MiB`,
    r.skipped ?? r.note ?? "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join(" | ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...body.map(line)].join("\n");
}

export async function writeResults(dir: string, meta: Record<string, unknown>, rows: Row[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const file = join(dir, `${stamp}.json`);
  await writeFile(file, `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
  return file;
}
