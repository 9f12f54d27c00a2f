/**
 * Result rows, the printed table, ratios against targets, and bench/results/latest.{md,json}.
 *
 * A row is one measured figure; (area, tool, metric) names it across runs, so latest.json of two
 * runs can be compared line by line. A figure that could not be measured is still a row, with
 * value NaN (written as null in JSON) and a note saying why — never silently left out.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type Area = 'copy' | 'tail' | 'verify' | 'plan' | 'memory';
export const AREAS: readonly Area[] = ['plan', 'copy', 'verify', 'tail', 'memory'];

export interface Row {
  area: Area;
  tool: string;
  metric: string;
  value: number;
  rows: number;
  note?: string;
}

export function row(
  area: Area,
  tool: string,
  metric: string,
  value: number,
  rows: number,
  note?: string,
): Row {
  return { area, tool, metric, value, rows, ...(note ? { note } : {}) };
}

/** A row for a figure that could not be measured this run, with the reason. */
export function missing(area: Area, tool: string, metric: string, note: string): Row {
  return { area, tool, metric, value: Number.NaN, rows: 0, note };
}

/** One line of the comparison table: a ratio between two tools, or a figure against a target. */
export interface Comparison {
  area: Area;
  label: string;
  value: number;
  /** How the value prints: a ratio (1.23×), a share (12.3%) or the figure itself. */
  kind: 'ratio' | 'share' | 'figure';
  /** Human form of the target, e.g. '≥ 1.6×'; absent for context-only lines. */
  target?: string;
  met?: boolean;
}

function find(rows: Row[], area: Area, tool: string, metric: string): number {
  return rows.find((r) => r.area === area && r.tool === tool && r.metric === metric)?.value ?? Number.NaN;
}

/** The comparisons the issues ask for, each with its target where it has one. */
export function comparisons(rows: Row[]): Comparison[] {
  const out: Comparison[] = [];
  const add = (c: Omit<Comparison, 'met'>, ok?: (v: number) => boolean) =>
    out.push(ok && Number.isFinite(c.value) ? { ...c, met: ok(c.value) } : c);
  const ratio = (area: Area, label: string, a: number, b: number, min?: number) =>
    add(
      { area, label, value: a / b, kind: 'ratio', ...(min !== undefined ? { target: `≥ ${min}×` } : {}) },
      min !== undefined ? (v) => v >= min : undefined,
    );
  const rate = (area: Area, tool: string) => find(rows, area, tool, 'rows_per_s');
  ratio('copy', 'copy: reshard / myloader', rate('copy', 'reshard'), rate('copy', 'myloader'), 1);
  ratio(
    'copy',
    'copy: reshard / mysqldump (one pipe at a time)',
    rate('copy', 'reshard'),
    rate('copy', 'mysqldump'),
    1.6,
  );
  ratio(
    'copy',
    'copy: reshard / mysqldump (both pipes at once)',
    rate('copy', 'reshard'),
    rate('copy', 'mysqldump-parallel'),
  );
  ratio(
    'copy',
    'copy: reshard / load-data (the target limit)',
    rate('copy', 'reshard'),
    rate('copy', 'load-data'),
  );
  ratio('tail', 'tail: reshard / sysbench write rate', rate('tail', 'reshard'), rate('tail', 'sysbench'), 2);
  ratio('tail', 'tail: reshard / replica (native apply)', rate('tail', 'reshard'), rate('tail', 'replica'));
  add(
    {
      area: 'tail',
      label: 'tail: live lag p99 at half the sysbench rate, seconds',
      value: find(rows, 'tail', 'reshard', 'live_lag_p99_s'),
      kind: 'figure',
      target: '< 1 s',
    },
    (v) => v < 1,
  );
  ratio(
    'verify',
    'verify: reshard / md5-64-chunk',
    rate('verify', 'reshard'),
    rate('verify', 'md5-64-chunk'),
    1,
  );
  ratio('verify', 'verify: reshard / crc32-chunk', rate('verify', 'reshard'), rate('verify', 'crc32-chunk'));
  add(
    {
      area: 'verify',
      label: 'verify: incremental / full time',
      value:
        find(rows, 'verify', 'reshard', 'incremental_seconds') / find(rows, 'verify', 'reshard', 'seconds'),
      kind: 'share',
      target: '≤ 10%',
    },
    (v) => v <= 0.1,
  );
  // Context, no target: the same ratio of the times verify reports for itself, without process
  // start-up — what cutover pays under the freeze, where verify runs in-process.
  add({
    area: 'verify',
    label: 'verify: incremental / full, own timing',
    value:
      find(rows, 'verify', 'reshard', 'incremental_own_seconds') /
      find(rows, 'verify', 'reshard', 'own_seconds'),
    kind: 'share',
  });
  add(
    {
      area: 'plan',
      label: 'plan: 1024 → 1100 × 256 vnodes, seconds',
      value: find(rows, 'plan', 'reshard', 'seconds'),
      kind: 'figure',
      target: '< 2 s',
    },
    (v) => v < 2,
  );
  add(
    {
      area: 'plan',
      label: 'plan: ownerOf integer keys/s (hash-mod crc32)',
      value: find(rows, 'plan', 'reshard', 'keys_per_s'),
      kind: 'figure',
      target: '≥ 5M/s',
    },
    (v) => v >= 5e6,
  );
  add(
    {
      area: 'memory',
      label: 'memory: reshard copy peak RSS, MB',
      value: find(rows, 'memory', 'reshard copy', 'peak_rss_mb'),
      kind: 'figure',
      target: '< 300 MB',
    },
    (v) => v < 300,
  );
  return out;
}

export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${Math.round(v / 1e3)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

function comparisonCells(c: Comparison): string[] {
  const value = !Number.isFinite(c.value)
    ? '—'
    : c.kind === 'ratio'
      ? `${c.value.toFixed(2)}×`
      : c.kind === 'share'
        ? `${(c.value * 100).toFixed(1)}%`
        : formatValue(c.value);
  const verdict = !Number.isFinite(c.value)
    ? 'not measured'
    : c.met === undefined
      ? ''
      : c.met
        ? 'met'
        : 'NOT MET';
  return [c.label, value, c.target ?? '', verdict];
}

/** The comparison lines of the areas that ran. */
function comparisonTable(rows: Row[], areas: Area[]): string[][] {
  return comparisons(rows)
    .filter((c) => areas.includes(c.area))
    .map(comparisonCells);
}

/** Plain aligned text table (stdout). */
function textTable(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

function mdTable(head: string[], body: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...body.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

function rowCells(r: Row): string[] {
  return [r.area, r.tool, r.metric, formatValue(r.value), r.rows ? String(r.rows) : '', r.note ?? ''];
}

const ROW_HEAD = ['area', 'tool', 'metric', 'value', 'rows', 'note'];
const RATIO_HEAD = ['comparison', 'value', 'target', ''];

export interface RunInfo {
  started: Date;
  seconds: number;
  rowsPerSource: number;
  areas: Area[];
  environment: Record<string, string>;
}

export function renderText(rows: Row[], info: RunInfo): string {
  return [
    `reshard bench: ${info.rowsPerSource} rows per source × 2 sources, areas ${info.areas.join(',')}, ${info.seconds.toFixed(0)} s`,
    '',
    textTable(ROW_HEAD, rows.map(rowCells)),
    '',
    textTable(RATIO_HEAD, comparisonTable(rows, info.areas)),
    '',
  ].join('\n');
}

export function renderMarkdown(rows: Row[], info: RunInfo): string {
  const env = Object.entries(info.environment).map(([k, v]) => [k, v]);
  return [
    '# reshard bench: latest run',
    '',
    `${info.started.toISOString()} · ${info.rowsPerSource} rows per source × 2 sources · areas ${info.areas.join(', ')} · ${info.seconds.toFixed(0)} s.`,
    'Written by `npm run bench`; see bench/README.md for what each row measures. Figures from one run on a',
    'shared machine: compare ratios, not absolute values, across machines.',
    '',
    '## Ratios and targets',
    '',
    mdTable(RATIO_HEAD.slice(0, 3).concat(['verdict']), comparisonTable(rows, info.areas)),
    '',
    '## Figures',
    '',
    mdTable(ROW_HEAD, rows.map(rowCells)),
    '',
    '## Environment',
    '',
    mdTable(['', ''], env),
    '',
  ].join('\n');
}

/** NaN is not JSON: an unmeasured value is written as null (its note says why). */
export function toJson(rows: Row[]): string {
  return `${JSON.stringify(
    rows.map((r) => ({ ...r, value: Number.isFinite(r.value) ? r.value : null })),
    null,
    2,
  )}\n`;
}

/** Write both files atomically (tmp + rename), so a crash never leaves half a result. */
export function writeResults(dir: string, rows: Row[], info: RunInfo): { md: string; json: string } {
  mkdirSync(dir, { recursive: true });
  const md = join(dir, 'latest.md');
  const json = join(dir, 'latest.json');
  writeFileSync(`${md}.tmp`, renderMarkdown(rows, info));
  writeFileSync(`${json}.tmp`, toJson(rows));
  renameSync(`${md}.tmp`, md);
  renameSync(`${json}.tmp`, json);
  return { md, json };
}
