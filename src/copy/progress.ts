/**
 * Copy progress: bars per (source, table) with rows, rows/s and ETA on a terminal; JSON lines on
 * stderr otherwise (every `intervalMs`, and when a table finishes). Results never go here: the
 * final summary is the command's stdout.
 *
 * Lifecycle: start(items) → add(source, table, rows)* / finish(source, table) → stop().
 */
import cliProgress from 'cli-progress';
import { log } from '../output.js';
import type { ThrottleStatus } from './throttle.js';

export interface ProgressItem {
  source: string;
  table: string;
  /** Rows already copied (all workers, earlier runs) when this worker started. */
  done: number;
  estimate: number;
}

export interface Progress {
  start(items: ProgressItem[]): void;
  add(source: string, table: string, rows: number): void;
  finish(source: string, table: string): void;
  note(message: string, detail?: Record<string, unknown>): void;
  stop(): void;
}

export type ProgressMode = 'auto' | 'bars' | 'lines' | 'none';

interface Counter extends ProgressItem {
  rows: number;
  finished: boolean;
}

const key = (s: string, t: string) => `${s}\u0000${t}`;

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '-';
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fmtRate(n: number): string {
  return n >= 10_000 ? `${Math.round(n / 1000)}k` : String(Math.round(n));
}

export function createProgress(
  mode: ProgressMode,
  opts: { intervalMs?: number; throttle?: () => ThrottleStatus } = {},
): Progress {
  const resolved = mode === 'auto' ? (process.stderr.isTTY ? 'bars' : 'lines') : mode;
  const counters = new Map<string, Counter>();
  const started = Date.now();
  const total = () => {
    let rows = 0;
    let est = 0;
    for (const c of counters.values()) {
      rows += c.done + c.rows;
      est += Math.max(c.estimate, c.done + c.rows);
    }
    return { rows, est };
  };
  const mine = () => [...counters.values()].reduce((a, c) => a + c.rows, 0);

  if (resolved === 'none') {
    return {
      start: (items) => {
        for (const i of items) counters.set(key(i.source, i.table), { ...i, rows: 0, finished: false });
      },
      add: () => undefined,
      finish: () => undefined,
      note: () => undefined,
      stop: () => undefined,
    };
  }

  if (resolved === 'lines') {
    let timer: NodeJS.Timeout | undefined;
    const line = () => {
      const secs = (Date.now() - started) / 1000;
      const rate = secs > 0 ? mine() / secs : 0;
      const t = total();
      log().info(
        {
          progress: {
            rows: t.rows,
            estimate: t.est,
            rowsPerSec: Math.round(rate),
            etaSeconds: rate > 0 ? Math.max(0, Math.round((t.est - t.rows) / rate)) : null,
            tables: [...counters.values()].map((c) => ({
              source: c.source,
              table: c.table,
              rows: c.done + c.rows,
              estimate: Math.max(c.estimate, c.done + c.rows),
              finished: c.finished,
            })),
            ...(opts.throttle ? { throttle: opts.throttle() } : {}),
          },
        },
        'copy progress',
      );
    };
    return {
      start(items) {
        for (const i of items) counters.set(key(i.source, i.table), { ...i, rows: 0, finished: false });
        timer = setInterval(line, opts.intervalMs ?? 5000).unref();
      },
      add(source, table, rows) {
        const c = counters.get(key(source, table));
        if (c) c.rows += rows;
      },
      finish(source, table) {
        const c = counters.get(key(source, table));
        if (!c || c.finished) return;
        c.finished = true;
        log().info({ source, table, rows: c.done + c.rows }, 'copy table done');
      },
      note(message, detail) {
        log().info(detail ?? {}, message);
      },
      stop() {
        if (timer) clearInterval(timer);
        line();
      },
    };
  }

  const multi = new cliProgress.MultiBar(
    {
      format:
        '{name} [{bar}] {percentage}% | {value}/{total} rows | {speed} rows/s | ETA {eta_formatted}{note}',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  const startedAt = new Map<string, number>();
  let ticker: NodeJS.Timeout | undefined;
  const refresh = () => {
    const waiting = opts.throttle?.().waiting ?? [];
    const note = waiting.length ? ` | waiting: ${waiting.join(', ')}` : '';
    for (const [k, bar] of bars) {
      const c = counters.get(k)!;
      const began = startedAt.get(k);
      const secs = began === undefined ? 0 : (Date.now() - began) / 1000;
      const rate = secs > 0 ? c.rows / secs : 0;
      const value = c.done + c.rows;
      const total = Math.max(c.estimate, value, 1);
      bar.setTotal(total);
      bar.update(value, {
        speed: fmtRate(rate),
        etaText: c.finished ? 'done' : rate > 0 ? fmtSeconds((total - value) / rate) : '-',
        note: c.finished ? '' : note,
      });
    }
  };
  return {
    start(items) {
      const width = Math.max(...items.map((i) => `${i.source}/${i.table}`.length), 4);
      for (const i of items) {
        const k = key(i.source, i.table);
        counters.set(k, { ...i, rows: 0, finished: false });
        bars.set(
          k,
          multi.create(Math.max(i.estimate, i.done, 1), i.done, {
            name: `${i.source}/${i.table}`.padEnd(width),
            speed: '0',
            etaText: '-',
            note: '',
          }),
        );
      }
      ticker = setInterval(refresh, 500).unref();
    },
    add(source, table, rows) {
      const k = key(source, table);
      const c = counters.get(k);
      if (!c) return;
      // A table's rate counts from its first chunk, not from the start of the run.
      if (!startedAt.has(k)) startedAt.set(k, Date.now());
      c.rows += rows;
    },
    finish(source, table) {
      const k = key(source, table);
      const c = counters.get(k);
      if (!c) return;
      c.finished = true;
      c.estimate = c.done + c.rows;
      refresh();
    },
    note(message) {
      multi.log(`${message}\n`);
    },
    stop() {
      if (ticker) clearInterval(ticker);
      refresh();
      multi.stop();
    },
  };
}
