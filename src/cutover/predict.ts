/**
 * The predicted freeze (pure), decided before anything is frozen:
 *
 *   predicted = drain + verify + overhead
 *
 *   drain    = the longest of the last catch-up probes (drain.ts): time from reading every source's
 *              binlog end to every target having applied it, measured under the live load — the
 *              backlog of that instant divided by the rate the tailer drains it at. After writes
 *              stop the backlog only shrinks, so the drain under the freeze is at most this —
 *              plus, when a separate `reshard tail` applies, its idle flush delay (≤ 2 s): under
 *              the freeze a pair with nothing left to apply only records the final position when
 *              that tailer's idle flush comes round (an in-process tailer is asked to flush at once).
 *   verify   = duration of the last finished verify run of the mode the freeze will use
 *              (incremental when the tailer records changes, else full); an incremental freeze
 *              without an earlier incremental run uses the last full run's duration (an upper
 *              bound).
 *   overhead = the freeze's own round trips: FLIP_ROUND_TRIPS × the slowest measured round trip
 *              (control server or any shard server involved) + FLIP_FIXED_MS (process overhead).
 *
 * If predicted > --max-freeze the cutover stops before freezing anything.
 */

/** Statements on the critical path: freeze + kill check, final positions, arm-reverse, flip, unfreeze. */
export const FLIP_ROUND_TRIPS = 16;
export const FLIP_FIXED_MS = 150;
/**
 * Worst case before a separate `reshard tail` records an idle position: it flushes once its last
 * commit is 1 s old (src/binlog/tailer.ts DEFAULTS.idleFlushMs), checked on a 1 s timer.
 */
export const EXTERNAL_FLUSH_MS = 2000;

export interface PredictionInput {
  /** Catch-up probe durations (ms), oldest first; empty when none could be measured. */
  probesMs: readonly number[];
  /** Added to the drain: the idle position flush of a tailer in another process (0 in-process). */
  flushMs?: number;
  /** Verify duration estimate (ms), or undefined when no verify run is known. */
  verifyMs: number | undefined;
  /** Measured round-trip times (ms) of the control server and every server the freeze touches. */
  rttMs: readonly number[];
  budgetMs: number;
}

export interface Prediction {
  drainMs: number | undefined;
  verifyMs: number | undefined;
  overheadMs: number;
  /** Undefined when a part is unknown. */
  totalMs: number | undefined;
  budgetMs: number;
  /** total ≤ budget (false when unknown). */
  fits: boolean;
}

export function predictFreeze(i: PredictionInput): Prediction {
  const recent = i.probesMs.slice(-3);
  const drainMs = recent.length ? Math.max(...recent) + (i.flushMs ?? 0) : undefined;
  const overheadMs = Math.round(FLIP_ROUND_TRIPS * Math.max(1, ...i.rttMs) + FLIP_FIXED_MS);
  const totalMs =
    drainMs === undefined || i.verifyMs === undefined
      ? undefined
      : Math.round(drainMs + i.verifyMs + overheadMs);
  return {
    drainMs: drainMs === undefined ? undefined : Math.round(drainMs),
    verifyMs: i.verifyMs === undefined ? undefined : Math.round(i.verifyMs),
    overheadMs,
    totalMs,
    budgetMs: i.budgetMs,
    fits: totalMs !== undefined && totalMs <= i.budgetMs,
  };
}

/** `5s`, `500ms`, `30m`, `1h`, `1.5s`, or a bare number of seconds → ms. */
export function parseDurationMs(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return 'unknown';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}
