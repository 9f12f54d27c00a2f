/**
 * Peak resident memory of reshard's commands, each run as its own process.
 *
 * The kernel keeps a process's high-water mark (VmHWM in /proc/<pid>/status), so sampling it
 * until the process exits loses nothing between samples except growth in its last interval.
 * A command's figure is the sum over the process and its descendants (reshard may fork workers).
 */
import { readFileSync } from 'node:fs';
import { type Row, row } from './report.js';

function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Samples the high-water mark of a process tree until stopped. */
export class RssSampler {
  private readonly peaks = new Map<number, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    intervalMs = 20,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const stack = [this.pid];
    while (stack.length) {
      const p = stack.pop()!;
      const kb = statusKb(p, 'VmHWM');
      if (kb > (this.peaks.get(p) ?? 0)) this.peaks.set(p, kb);
      stack.push(...children(p));
    }
  }

  /** Current peak in MB (the process may still run). */
  peakMb(): number {
    let kb = 0;
    for (const v of this.peaks.values()) kb += v;
    return kb / 1024;
  }

  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return this.peakMb();
  }
}

/** One reshard command's run, as recorded by the harness. */
export interface CommandMemory {
  /** e.g. 'copy', 'tail (sbtest)'. */
  command: string;
  peakRssMb: number;
  rows: number;
}

/** One row per command run, plus the largest as the reshard figure. */
export function memoryRows(runs: CommandMemory[]): Row[] {
  if (runs.length === 0) return [];
  const out = runs.map((r) =>
    row('memory', `reshard ${r.command}`, 'peak_rss_mb', round1(r.peakRssMb), r.rows),
  );
  const top = runs.reduce((a, b) => (b.peakRssMb > a.peakRssMb ? b : a));
  out.unshift(
    row('memory', 'reshard', 'peak_rss_mb', round1(top.peakRssMb), top.rows, `largest: ${top.command}`),
  );
  return out;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
