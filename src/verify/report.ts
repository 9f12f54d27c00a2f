/**
 * The verify report (JSON-safe; the same object `--json` prints and `--report` writes) and its
 * rendering for humans.
 */
import { table as textTable } from '../output.js';
import { thousands } from '../util/format.js';
import type { JsonValue } from './table.js';

export interface BucketRef {
  /** segment × 2^bits + sub. */
  id: number;
  segment: number;
  from: string;
  to: string;
  sub: number;
  bits: number;
}

export interface RowReport {
  kind: 'missing' | 'extra' | 'different' | 'misplaced';
  table: string;
  pk: Record<string, JsonValue>;
  /** The shard the row is on (extra, different, misplaced) or is missing from (missing). */
  shard: string;
  /** Source shard of the row (missing, different). */
  source?: string;
  /** Misplaced: the target that owns the row. */
  owner?: string;
  bucket: BucketRef;
  /** Different: each differing column with both values. */
  columns?: { name: string; source: JsonValue; target: JsonValue }[];
  /** The bucket kept changing under live writes through every re-check. */
  changedDuringCheck?: boolean;
}

export interface TableReport {
  table: string;
  /** skipped: incremental run with nothing changed in this table. */
  mode: 'full' | 'incremental' | 'skipped';
  bits: number;
  sourceRows: number;
  targetRows: number;
  buckets: { checked: number; mismatched: number };
  differences: { missing: number; extra: number; different: number; misplaced: number };
  /** Source-only shards holding rows they do not own (not copied; a problem of the source estate). */
  sourceStrays: number;
  /** The servers select a bucket's rows themselves (else drill-downs filter client-side). */
  sqlBucketFilter: boolean;
  /** Incremental by exact keys: the primary keys looked up (instead of scanning flagged buckets). */
  keys?: number;
  /** Incremental by exact keys: key lookups made, summed over the shards each key was looked up on. */
  lookups?: number;
}

export interface VerifyReport {
  ok: boolean;
  job: { id: number; name: string };
  runId: number;
  mode: 'full' | 'incremental';
  baseRunId?: number;
  checksum: 'count + sum64(fmix64(CRC-64/XZ(row)))';
  startedAt: string;
  finishedAt: string;
  seconds: number;
  scanSeconds: number;
  /**
   * Where `seconds` went, phase by phase (prepare: definitions and preflight; choose: the change
   * records; scan: scans and lookups; drill: comparing, drilling and re-checking; record: the
   * run's outcome in the control schema). Cutover pays all of it under the freeze.
   */
  phases?: Record<'prepare' | 'choose' | 'scan' | 'drill' | 'record', number>;
  /** (source rows + target rows read) / scanSeconds. */
  rowsPerSecond: number;
  totals: {
    sourceRows: number;
    targetRows: number;
    bucketsChecked: number;
    bucketsMismatched: number;
    missing: number;
    extra: number;
    different: number;
    misplaced: number;
    sourceStrays: number;
  };
  tables: TableReport[];
  /** The differing rows (at most `limits.rows` of them; `truncated` when there were more). */
  differences: RowReport[];
  truncated: boolean;
  recheck: {
    /** Writes were seen during the check (a tailer is running or changes were recorded). */
    live: boolean;
    rounds: number;
    waitedMs: number;
    /** Mismatched in the scan, equal when drilled into (changed in between). */
    resolvedBuckets: number;
    /** Still different after the last re-check, and changing throughout. */
    changedDuringCheck: number;
    tailerCaughtUp: boolean;
  };
  fixSql?: { path: string; statements: number };
  notes: string[];
}

function n(x: number): string {
  return thousands(x);
}

function shown(v: JsonValue): string {
  if (v === null) return 'NULL';
  if (typeof v === 'string') return JSON.stringify(v);
  return `0x${v.hex}`;
}

function pkShown(pk: Record<string, JsonValue>): string {
  return Object.entries(pk)
    .map(([k, v]) => `${k}=${shown(v)}`)
    .join(', ');
}

/** Human summary: one line per table, then the first differences. */
export function renderVerifyReport(r: VerifyReport, maxRows = 20): string {
  const lines: string[] = [];
  lines.push(
    `verify run ${r.runId} of job ${r.job.name} (${r.mode}${r.baseRunId !== undefined ? ` since run ${r.baseRunId}` : ''}): ${
      r.ok ? 'targets match the sources' : 'MISMATCH'
    }`,
  );
  lines.push(
    textTable(
      [
        'table',
        'mode',
        'source rows',
        'target rows',
        'buckets',
        'mismatched',
        'missing',
        'extra',
        'different',
        'misplaced',
      ],
      r.tables.map((t) => [
        t.table,
        t.keys !== undefined ? `${t.mode} (${n(t.keys)} keys)` : t.mode,
        n(t.sourceRows),
        n(t.targetRows),
        n(t.buckets.checked),
        n(t.buckets.mismatched),
        n(t.differences.missing),
        n(t.differences.extra),
        n(t.differences.different),
        n(t.differences.misplaced),
      ]),
    ),
  );
  lines.push(
    `read ${n(r.totals.sourceRows + r.totals.targetRows)} rows in ${r.scanSeconds.toFixed(1)} s (${n(Math.round(r.rowsPerSecond))} rows/s); total ${r.seconds.toFixed(1)} s`,
  );
  if (r.recheck.rounds > 0) {
    lines.push(
      `re-checked mismatched buckets in ${r.recheck.rounds} round(s)${r.recheck.live ? ' under live writes' : ''}: ${r.recheck.resolvedBuckets} resolved, ${r.recheck.changedDuringCheck} still changing`,
    );
  }
  for (const d of r.differences.slice(0, maxRows)) {
    const where =
      d.kind === 'missing'
        ? `missing on ${d.shard} (source ${d.source})`
        : d.kind === 'extra'
          ? `extra on ${d.shard}`
          : d.kind === 'misplaced'
            ? `on ${d.shard}, owned by ${d.owner}`
            : `different on ${d.shard}: ${(d.columns ?? []).map((c) => `${c.name} ${shown(c.source)} → ${shown(c.target)}`).join('; ')}`;
    lines.push(
      `  ${d.kind.padEnd(9)} ${d.table} ${pkShown(d.pk)}  ${where}${d.changedDuringCheck ? ' (changing under live writes)' : ''}`,
    );
  }
  const total = r.totals.missing + r.totals.extra + r.totals.different + r.totals.misplaced;
  if (total > Math.min(maxRows, r.differences.length))
    lines.push(`  … ${n(total - Math.min(maxRows, r.differences.length))} more (see --report)`);
  if (r.fixSql) lines.push(`repair SQL: ${r.fixSql.path} (${r.fixSql.statements} statements)`);
  for (const note of r.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}
