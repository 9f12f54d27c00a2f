/**
 * Small formatters shared by the plain-text report and the ink dashboard. Pure.
 */
import type { BinlogPositionStatus, JobStatus } from './types.js';

/** 0 → "0s", 75 → "1m15s", 7260 → "2h01m"; null → "?". */
export function duration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/** 9.46 → "9.5", 950.4 → "950", 12_345 → "12.3k", 4_200_000 → "4.2M". */
export function count(n: number | null): string {
  if (n === null) return '?';
  const a = Math.abs(n);
  if (a < 100) return String(Math.round(n * 10) / 10);
  if (a < 10_000) return String(Math.round(n));
  if (a < 1_000_000) return `${(n / 1000).toFixed(1)}k`;
  if (a < 1_000_000_000) return `${(n / 1_000_000).toFixed(1)}M`;
  return `${(n / 1_000_000_000).toFixed(1)}G`;
}

export function percent(p: number | null): string {
  return p === null ? '?' : `${p.toFixed(1)}%`;
}

export function seconds(s: number | null, digits = 1): string {
  return s === null ? '-' : s.toFixed(digits);
}

export function binlogPosition(p: BinlogPositionStatus | null): string {
  if (!p) return '-';
  if (p.file !== null) return `${p.file}:${p.pos ?? '?'}`;
  return p.gtid ?? '-';
}

/** `2025-01-02T03:04:05.123456Z` → `2025-01-02 03:04:05`. */
export function time(iso: string | null): string {
  return iso === null ? '-' : iso.replace('T', ' ').replace(/(\.\d+)?Z$/, '');
}

/** `planned ✓ > COPYING > catching-up > … | rolled-back | cancelled` (ASCII with `ascii`). */
export function machineLine(job: JobStatus, ascii = false): string {
  const mark = (s: JobStatus['machine'][number]) =>
    s.status === 'current'
      ? `[${s.state.toUpperCase()}]`
      : s.status === 'done'
        ? `${s.state} ${ascii ? '+' : '✓'}`
        : s.status === 'skipped'
          ? `(${s.state})`
          : s.state;
  const fwd = job.machine.filter((s) => s.path === 'forward').map(mark);
  const exits = job.machine.filter((s) => s.path === 'exit').map(mark);
  return `${fwd.join(ascii ? ' > ' : ' → ')}  |  ${exits.join(' | ')}`;
}

/** One line for an event: its kind and a compact detail. */
export function eventDetail(detail: unknown, max = 80): string {
  if (detail === null || detail === undefined) return '';
  const s = typeof detail === 'string' ? detail : JSON.stringify(detail);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A text progress bar of `width` cells: `█████░░░░░`. */
export function bar(p: number | null, width: number, ascii = false): string {
  const full = ascii ? '#' : '█';
  const empty = ascii ? '.' : '░';
  if (p === null) return empty.repeat(width);
  const n = Math.max(0, Math.min(width, Math.round((p / 100) * width)));
  return full.repeat(n) + empty.repeat(width - n);
}
