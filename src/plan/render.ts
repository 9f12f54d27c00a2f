/**
 * Human output of `reshard plan` and `reshard plan --suggest`: aligned plain-text tables, with
 * bold headings on a TTY. Pure (report in, text out); `--json` prints the report itself.
 * Long lists (moves between thousands of shards) show their largest entries and say how many
 * more there are: the JSON has them all.
 */
import {
  CONFIDENCE,
  fmtDuration,
  fmtInt,
  type PairSummary,
  type PlanReport,
  type Spread,
} from './estimate.js';
import type { SuggestCandidate, Suggestion } from './suggest.js';

export interface RenderOptions {
  /** Bold headings (ANSI). */
  tty: boolean;
  /** Rows shown per list before "… N more". */
  maxRows?: number;
}

const DEFAULT_MAX_ROWS = 30;

type Align = 'l' | 'r';

function grid(headers: string[], align: Align[], rows: string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (align[i] === 'r' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

export function fmtShare(x: number | null, exact = true): string {
  if (x === null) return 'data-dependent';
  const p = x * 100;
  const s = p === 0 ? '0' : p >= 10 ? p.toFixed(1) : p >= 0.1 ? p.toFixed(2) : p.toPrecision(2);
  return `${exact ? '' : '~'}${s}%`;
}

export function fmtBytes(n: number | null): string {
  if (n === null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let x = n;
  let u = 0;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(x)} B` : `${x.toFixed(1)} ${units[u]}`;
}

function fmtRows(p: { rows: number | null; rowsLow: number | null; rowsHigh: number | null }): string {
  if (p.rows === null) return '-';
  if (p.rowsLow === null || p.rowsHigh === null || (p.rowsLow === p.rows && p.rowsHigh === p.rows))
    return fmtInt(p.rows);
  return `≈${fmtInt(p.rows)} (${fmtInt(p.rowsLow)}–${fmtInt(p.rowsHigh)})`;
}

function ratio(x: number | null): string {
  return x === null ? '-' : `${x.toFixed(2)}×`;
}

function spread(s: Spread | null): string {
  return s === null ? 'unknown' : `${s.maxOverMean.toFixed(3)} (${s.maxShard})`;
}

export function renderPlanReport(r: PlanReport, opts: RenderOptions): string {
  const h = (s: string) => (opts.tty ? `\x1b[1m${s}\x1b[0m` : s);
  const max = opts.maxRows ?? DEFAULT_MAX_ROWS;
  const estimated = r.estimate.mode !== 'none';
  const out: string[] = [];
  const side = (s: PlanReport['plan']['from']) =>
    `${s.name} (${s.shards} shard${s.shards === 1 ? '' : 's'}, ${s.scheme})`;
  out.push(h(`reshard plan: ${side(r.plan.from)} → ${side(r.plan.to)}`));
  out.push(
    `  plan file  ${r.plan.file ?? '(not written: pass --out plan.json)'}  ${r.plan.hash.slice(0, 19)}`,
  );
  out.push(`  estimate   ${r.estimate.method}`);

  const pairTable = (title: string, pairs: PairSummary[], what: string) => {
    out.push('', h(`${title} (${pairs.length})`));
    if (pairs.length === 0) {
      out.push('  none');
      return;
    }
    // Largest first when the list is cut; otherwise in plan order (by from, to).
    const size = (p: PairSummary) => p.rows ?? p.share ?? 0;
    const shown = pairs.length > max ? [...pairs].sort((a, b) => size(b) - size(a)).slice(0, max) : pairs;
    const rows = shown.map((p) => [
      p.from,
      p.to,
      fmtShare(p.share, p.shareExact),
      ...(estimated ? [fmtRows(p), fmtBytes(p.bytes)] : []),
    ]);
    const headers = ['from', 'to', 'keys', ...(estimated ? ['rows', 'bytes'] : [])];
    const align: Align[] = ['l', 'l', 'r', 'r', 'r'];
    out.push(...grid(headers, align, rows).map((l) => `  ${l}`));
    if (pairs.length > max)
      out.push(`  … ${fmtInt(pairs.length - max)} more ${what} (largest shown; all in --json)`);
  };
  pairTable('Moves', r.moves, 'moves');
  pairTable('Stays, not copied', r.stays, 'stays');

  out.push('', h('Movement'));
  const k = r.movement.keys;
  out.push(
    `  keys   ${fmtShare(k.fraction, k.exact)} of the key space move; minimum for this change ${fmtShare(k.minimum, k.exact)}` +
      (k.ratio !== null ? ` (${ratio(k.ratio)} the minimum)` : ''),
  );
  const mr = r.movement.rows;
  if (mr) {
    const interval =
      mr.low !== mr.moved || mr.high !== mr.moved ? ` (${fmtInt(mr.low)}–${fmtInt(mr.high)})` : '';
    out.push(
      `  rows   ${mr.low !== mr.high ? '≈' : ''}${fmtInt(mr.moved)}${interval} of ${fmtInt(mr.total)} move${mr.fraction === null ? '' : ` (${fmtShare(mr.fraction)})`}`,
    );
  }
  const mb = r.movement.bytes;
  if (mb) out.push(`  bytes  ${fmtBytes(mb.moved)} of ${fmtBytes(mb.total)}`);

  out.push('', h(`Balance after (${r.balance.targets.length} target shards)`));
  const targets = r.balance.targets;
  const load = (t: (typeof targets)[number]) => t.rowShare ?? t.keyShare ?? 0;
  const shownTargets =
    targets.length > max ? [...targets].sort((a, b) => load(b) - load(a)).slice(0, 10) : targets;
  const trows = shownTargets.map((t) => [
    t.shard,
    ...(r.balance.weighted ? [String(t.weight)] : []),
    fmtShare(t.keyShare),
    ...(estimated
      ? [
          t.rows === null ? '-' : fmtInt(t.rows),
          fmtShare(t.rowShare),
          t.incomingRows === null ? '-' : fmtInt(t.incomingRows),
        ]
      : []),
  ]);
  const theaders = [
    'shard',
    ...(r.balance.weighted ? ['weight'] : []),
    'keys',
    ...(estimated ? ['rows', 'rows%', 'moving in'] : []),
  ];
  out.push(...grid(theaders, ['l', 'r', 'r', 'r', 'r', 'r', 'r'], trows).map((l) => `  ${l}`));
  if (targets.length > shownTargets.length)
    out.push(
      `  … ${fmtInt(targets.length - shownTargets.length)} more (the 10 most loaded shown; all in --json)`,
    );
  out.push(
    `  max/mean${r.balance.weighted ? ' (per weight)' : ''}: keys ${spread(r.balance.keys)}${estimated ? `, rows ${spread(r.balance.rows)}` : ''}`,
  );

  out.push('', h('Time'));
  if (r.eta.seconds === null) out.push('  ETA unknown (no row counts)');
  else
    out.push(
      `  ETA ${fmtDuration(r.eta.seconds)}${r.eta.secondsHigh !== null && Math.round(r.eta.secondsHigh) !== Math.round(r.eta.seconds) ? ` (up to ${fmtDuration(r.eta.secondsHigh)} at ${Math.round(CONFIDENCE * 100)}%)` : ''} to copy the moving rows at ${fmtInt(r.eta.copyRate)} rows/s (--copy-rate)`,
    );
  if (r.sources.length > 0) {
    const byAddress = new Map<string, string>();
    for (const s of r.sources) {
      if (byAddress.has(s.address)) continue;
      const ret =
        s.retentionSeconds === null
          ? 'unknown'
          : s.retentionSeconds === 0
            ? 'never purged'
            : fmtDuration(s.retentionSeconds);
      byAddress.set(s.address, `${s.address} ${ret}${s.logBin === false ? ' (binlog off)' : ''}`);
    }
    const list = [...byAddress.values()];
    out.push(
      `  binlog retention: ${list.slice(0, 8).join('; ')}${list.length > 8 ? `; … ${list.length - 8} more servers` : ''}`,
    );
  }

  if (r.warnings.length > 0) {
    out.push('', h(`Warnings (${r.warnings.length})`));
    for (const w of r.warnings.slice(0, max)) out.push(`  - ${w}`);
    if (r.warnings.length > max) out.push(`  … ${r.warnings.length - max} more (all in --json)`);
  }
  if (r.notes.length > 0) {
    out.push('', h('Notes'));
    for (const n of r.notes) out.push(`  - ${n}`);
  }
  return `${out.join('\n')}\n`;
}

function movementCell(c: SuggestCandidate): string {
  return c.movement === null ? 'data-dependent' : fmtShare(c.movement, c.movementExact);
}

export function renderSuggestion(s: Suggestion, opts: RenderOptions): string {
  const h = (x: string) => (opts.tty ? `\x1b[1m${x}\x1b[0m` : x);
  const out: string[] = [];
  const change =
    s.added.length > 0
      ? `adds ${listNames(s.added)}`
      : s.removed.length > 0
        ? `removes ${listNames(s.removed)}`
        : 'same shards';
  out.push(
    h(
      `reshard plan --suggest: ${s.from.name} (${s.from.shards} shards, ${s.from.scheme}) → ${s.shards} shards (${change})`,
    ),
  );
  out.push('');
  const rows = s.candidates.map((c) => [
    `${c.id === s.recommended ? '* ' : '  '}${c.id}`,
    movementCell(c),
    fmtShare(c.minimum),
    ratio(c.ratio),
    `${c.balance.maxOverMean.toFixed(3)}${c.meetsBalance ? '' : ' !'}`,
    c.yaml,
  ]);
  out.push(
    ...grid(
      ['  candidate', 'moves', 'minimum', 'ratio', 'max/mean', 'target scheme'],
      ['l', 'r', 'r', 'r', 'r', 'l'],
      rows,
    ),
  );
  out.push(
    `  (~ estimated across a change of hash; ! max/mean above ${s.balanceTarget}; shares are of the key space, not rows)`,
  );
  out.push('');
  const tried = s.vnodes.tried.map((t) => `${t.vnodes}: ${t.maxOverMean.toFixed(3)}`).join(', ');
  out.push(
    `vnodes for max/mean ≤ ${s.balanceTarget}: ${s.vnodes.recommended ?? 'none found'} (max/mean by vnodes — ${tried})`,
  );
  out.push(`${h('recommended')}: ${s.recommended ?? 'none'} — ${s.reason}`);
  const notes = [...s.notes, ...s.candidates.flatMap((c) => c.notes.map((n) => `${c.id}: ${n}`))];
  if (notes.length > 0) {
    out.push('', h('Notes'));
    for (const n of notes) out.push(`  - ${n}`);
  }
  return `${out.join('\n')}\n`;
}

function listNames(names: string[]): string {
  return names.length <= 6
    ? names.join(', ')
    : `${names.slice(0, 3).join(', ')}, …, ${names.at(-1)} (${names.length})`;
}
