/**
 * The verifier: do the targets hold exactly the rows the plan moves to them?
 *
 * Lifecycle of one run (`runVerify`):
 *   1. prepare   read every table's definition on every shard that takes part (same columns
 *                everywhere, or E_VERIFY_SCHEMA), check the server computes pkHash like we do,
 *                open a change-filter epoch and record the run as `running`.
 *   2. choose    full: every bucket of every table. incremental: only the change ids recorded
 *                since the last clean run (plus buckets later runs found bad); tables with none
 *                are skipped.
 *   3. scan      each shard × table once, in primary-key pages; every row is classified (source
 *                row of a moving segment, target row, stay, misplaced) and hashed into its
 *                bucket's partial count + sum64. Sources' and targets' partials then combine
 *                bucket by bucket — each bucket has one source shard and one target shard.
 *   4. drill     mismatched buckets are walked row by row on their two shards (diff.ts);
 *                misplaced rows are re-read by primary key.
 *   5. re-check  under live writes (a tailer is running or changes were recorded during the run)
 *                the drill runs only after the tailer has caught up, and buckets that still
 *                differ *and* changed during the run are drilled again, up to `rounds` times,
 *                before they are reported. With writes frozen the first drill is final: exact.
 *   6. record    mismatched buckets and the run's outcome go to the control schema; a clean run
 *                drops change filters older than its epoch. The report is returned; the caller
 *                decides (assertVerified → MismatchError, exit 4).
 */
import { writeFileSync } from 'node:fs';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { connectShard } from '../db/connect.js';
import { MismatchError, PreconditionError, UsageError } from '../errors.js';
import { type JobContext, openJob } from '../job/context.js';
import type { Segment } from '../plan/types.js';
import { requireTableDefinition } from '../preflight/schema.js';
import {
  BucketSums,
  bucketId,
  CHANGE_BITS,
  changeIdOf,
  chooseBits,
  maxBitsFor,
  mismatchedBuckets,
  pkHashRaw,
  splitBucketId,
} from './bucket.js';
import { type ChangeSet, loadChangeSet, openEpoch, pruneChangesBefore } from './changes.js';
import { type BucketFilter, drillDown, lookupRows, maskOf, pkTupleKey, type RowDiff } from './diff.js';
import { renderFixSql } from './fixsql.js';
import { tailerRunning, waitForTailer } from './live.js';
import type { BucketRef, RowReport, TableReport, VerifyReport } from './report.js';
import { buildRouting, ROLE_MISPLACED, type Routing, roleOf, type ShardRole } from './routing.js';
import type { RawRow } from './rowhash.js';
import { fetchRows } from './scan.js';
import type { TablePlan } from './scan-part.js';
import { defaultWorkers, runScans, type ScanTask } from './scan-pool.js';
import {
  type BucketRow,
  finishRun,
  lastCleanRun,
  latestRunId,
  type RunDetail,
  saveBuckets,
  startRun,
  unresolvedBucketsSince,
  updateRunDetail,
} from './store.js';
import {
  displayPk,
  displayValue,
  routeKeyOfRaw,
  shapeDifference,
  tableRef,
  type VerifyTable,
  verifyTableFrom,
} from './table.js';

export interface VerifyProgress {
  phase: 'prepare' | 'scan' | 'recheck' | 'drill' | 'done';
  /** Rows read so far in this phase, and the estimate of the total. */
  rows: number;
  estimatedRows: number;
  message?: string;
}

export interface VerifyOptions {
  /** An open job context (cutover passes its own); else planPath (+ control) are opened here. */
  ctx?: JobContext;
  planPath?: string;
  control?: string;
  /** Re-check only what changed since the last clean run (everything when there was none). */
  incremental?: boolean;
  /** Shard × table scans at once (one connection each). Default 4. */
  concurrency?: number;
  /** Run the read-only preflight (connectivity, grants, tables) first. Default true. */
  preflight?: boolean;
  /** Write the repair SQL here. */
  fixSqlPath?: string;
  /** Differences kept with their rows (for the report and the repair SQL). Default 100 000. */
  maxDiffs?: number;
  /** Rows per scan page. Default 10 000. */
  pageSize?: number;
  /**
   * Let the servers select a bucket's rows (`CRC32(pk…) >> s IN (…)`). Default true where the
   * per-table self-check passes; false selects rows in the client (slower; for diagnosis).
   */
  sqlBucketFilter?: boolean;
  /**
   * Worker threads for the scan (0: scan in this thread). Default: one per core up to the
   * concurrency when the pass is large (≥ 200 000 rows), else 0.
   */
  workers?: number;
  recheck?: {
    /** Drill rounds for buckets that keep changing under live writes. Default 3. */
    rounds?: number;
    /** Longest wait for the tailer to catch up before a round. Default 30 s. */
    tailerTimeoutMs?: number;
    /** Pause before a round when no tailer is running. Default 1 s. */
    pauseMs?: number;
  };
  onProgress?: (p: VerifyProgress) => void;
  signal?: AbortSignal;
}

interface Misplaced {
  table: TablePlan;
  shard: ShardRole;
  pk: RawRow;
  bucket: number;
  segment: number;
}

/** Per-shard connections for metadata, drill-downs and lookups (scans open their own). */
class ShardConnections {
  private readonly m = new Map<string, Promise<Connection>>();
  get(role: ShardRole): Promise<Connection> {
    let c = this.m.get(role.name);
    if (!c) {
      c = connectShard(role.shard);
      this.m.set(role.name, c);
    }
    return c;
  }
  async close(): Promise<void> {
    const all = [...this.m.values()];
    this.m.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.end().catch(() => undefined)));
  }
}

export async function runVerify(opts: VerifyOptions): Promise<VerifyReport> {
  let ctx = opts.ctx;
  let own = false;
  if (!ctx) {
    if (!opts.planPath) throw new UsageError('E_USAGE', 'runVerify needs a job context or a plan path');
    ctx = await openJob({
      planPath: opts.planPath,
      ...(opts.control ? { control: opts.control } : {}),
      create: false,
    });
    own = true;
  }
  const conns = new ShardConnections();
  try {
    return await verify(ctx, opts, conns);
  } finally {
    await conns.close();
    if (own) await ctx.close();
  }
}

/** Throw MismatchError (exit 4) with the report as data unless the report is clean. */
export function assertVerified(report: VerifyReport): void {
  if (report.ok) return;
  const t = report.totals;
  throw new MismatchError(
    'E_VERIFY_MISMATCH',
    `verify run ${report.runId} found ${t.missing} missing, ${t.extra} extra, ${t.different} different and ${t.misplaced} misplaced rows in ${t.bucketsMismatched} buckets`,
    {
      hint: 'inspect the report (--report), repair with --fix-sql or by re-copying, then verify again',
      data: { report },
    },
  );
}

async function verify(ctx: JobContext, opts: VerifyOptions, conns: ShardConnections): Promise<VerifyReport> {
  const started = new Date();
  const t0 = performance.now();
  const control = ctx.control.conn;
  const jobId = ctx.job.id;
  const notes: string[] = [];
  const progress = opts.onProgress ?? (() => undefined);
  const pageSize = opts.pageSize ?? 10_000;
  const maxDiffs = opts.maxDiffs ?? 100_000;
  const rounds = Math.max(1, opts.recheck?.rounds ?? 3);
  const routing = buildRouting(ctx.index, ctx.from, ctx.to);
  const segments = ctx.plan.segments;
  const moving = segments.filter((s) => s.moves);

  progress({ phase: 'prepare', rows: 0, estimatedRows: 0, message: 'reading table definitions' });
  if (opts.preflight !== false) {
    const { runPreflight, assertPreflight } = await import('../preflight/index.js');
    assertPreflight(
      await runPreflight({ from: ctx.from, to: ctx.to, roles: { from: ['reader'], to: ['reader'] } }),
    );
  }
  const tables = await loadTables(ctx, routing, conns, notes);
  if (ctx.job.state === 'planned' || ctx.job.state === 'copying') {
    notes.push(
      `job ${ctx.job.name} is '${ctx.job.state}': until the copy has finished, rows missing on targets are expected`,
    );
  }

  // Epoch first, then the run: every change recorded from here on is "during this run".
  const epoch = await openEpoch(
    control,
    jobId,
    ctx.from.shards.map((s) => s.name),
  );
  const detail: RunDetail = { mode: opts.incremental ? 'incremental' : 'full', epoch, bits: {} };
  const runId = await startRun(control, jobId, detail);

  try {
    // ---- choose what to check
    let mode: 'full' | 'incremental' = 'full';
    let baseRunId: number | undefined;
    const plans: TablePlan[] = [];
    let changedIds: Map<string, number[]> | undefined;
    if (opts.incremental) {
      const base = await lastCleanRun(control, jobId);
      if (!base) {
        notes.push('incremental: no clean verify of this job yet, so every bucket was checked');
      } else {
        mode = 'incremental';
        baseRunId = base.runId;
        changedIds = await changedSince(control, jobId, base.runId, base.detail.epoch, tables);
      }
    }
    const incBits = maxBitsFor(segments.length);
    for (const { table, estimatedRows, sqlOk: agrees } of tables) {
      const sqlOk = agrees && opts.sqlBucketFilter !== false;
      const fullBits = chooseBits(estimatedRows, moving.length, segments.length);
      const ids = changedIds?.get(table.name);
      if (!changedIds) {
        plans.push({ table, mode: 'full', filter: { bits: fullBits, sql: sqlOk }, estimatedRows });
      } else if (!ids || ids.length === 0) {
        plans.push({ table, mode: 'skipped', filter: { bits: incBits, sql: sqlOk }, estimatedRows: 0 });
      } else if (ids.length > 2 ** CHANGE_BITS / 4) {
        plans.push({ table, mode: 'full', filter: { bits: fullBits, sql: sqlOk }, estimatedRows });
      } else {
        plans.push({
          table,
          mode: 'incremental',
          filter: { bits: incBits, sql: sqlOk, mask: maskOf(ids), maskIds: ids },
          estimatedRows: Math.ceil((estimatedRows * ids.length) / 2 ** CHANGE_BITS),
        });
      }
    }
    detail.mode = mode;
    detail.baseRunId = baseRunId;
    detail.bits = Object.fromEntries(plans.map((p) => [p.table.name, p.filter.bits]));
    await updateRunDetail(control, jobId, runId, detail);

    // ---- scan
    const scanStart = performance.now();
    const active = plans.filter((p) => p.mode !== 'skipped');
    const estimate = active.reduce((a, p) => a + p.estimatedRows * 2, 0);
    let rowsRead = 0;
    const tick = (n: number) => {
      rowsRead += n;
      progress({ phase: 'scan', rows: rowsRead, estimatedRows: estimate });
    };
    const concurrency = Math.max(1, opts.concurrency ?? 4);
    const tasks: ScanTask[] = [];
    for (const plan of active) for (const shard of routing.scanned) tasks.push({ plan, shard });
    const scanned = await runScans({
      tasks,
      routing,
      init: { plan: ctx.plan, from: ctx.from, to: ctx.to },
      workers: opts.workers ?? defaultWorkers(estimate, tasks.length, concurrency),
      concurrency,
      pageSize,
      maxMisplaced: maxDiffs,
      tick,
      signal: opts.signal,
    });
    const parts = scanned.map(({ task, part }) => ({
      plan: task.plan,
      part: {
        ...part,
        misplaced: part.misplaced.map((m): Misplaced => ({ ...m, table: task.plan, shard: task.shard })),
      },
    }));
    const scanSeconds = (performance.now() - scanStart) / 1000;

    // ---- combine and compare
    const perTable = new Map<
      TablePlan,
      { source: BucketSums; target: BucketSums; strays: number; mismatched: number[] }
    >();
    const misplaced: Misplaced[] = [];
    let misplacedOverflow = 0;
    let sourceRows = 0;
    let targetRows = 0;
    for (const p of active)
      perTable.set(p, { source: new BucketSums(), target: new BucketSums(), strays: 0, mismatched: [] });
    for (const { plan, part } of parts) {
      const acc = perTable.get(plan)!;
      acc.source.merge(part.source);
      acc.target.merge(part.target);
      acc.strays += part.strays;
      sourceRows += part.sourceRows;
      targetRows += part.targetRows;
      const room = Math.max(0, maxDiffs - misplaced.length);
      misplaced.push(...part.misplaced.slice(0, room));
      misplacedOverflow += part.misplacedOverflow + Math.max(0, part.misplaced.length - room);
    }
    for (const acc of perTable.values()) acc.mismatched = mismatchedBuckets(acc.source, acc.target);
    const scannedMismatched = [...perTable.values()].reduce((a, x) => a + x.mismatched.length, 0);

    // ---- drill and re-check
    const recheck = await drillAndRecheck({
      ctx,
      routing,
      conns,
      perTable,
      misplaced,
      epoch,
      rounds,
      pageSize: Math.min(pageSize, 2000),
      maxDiffs,
      opts,
      progress,
    });
    if (recheck.waitTimedOut) notes.push('the tailer did not catch up within the wait; re-checks ran anyway');
    if (recheck.resolved > 0 && !recheck.live) {
      notes.push(
        `${recheck.resolved} bucket(s) differed in the scan but matched when re-read, with no tailer running: something wrote to the shards during the run`,
      );
    }

    // ---- report
    const diffs = recheck.final;
    const rowReports = diffs.kept.map((d) => rowReport(d, recheck.changing.has(bucketKeyOf(d))));
    const tableReports: TableReport[] = plans.map((p) => {
      const acc = perTable.get(p);
      const c = diffs.countsByTable.get(p.table.name) ?? { missing: 0, extra: 0, different: 0, misplaced: 0 };
      const checked = acc ? new Set([...acc.source.keys(), ...acc.target.keys()]).size : 0;
      return {
        table: p.table.name,
        mode: p.mode,
        bits: p.filter.bits,
        sourceRows: acc?.source.totalRows() ?? 0,
        targetRows: acc?.target.totalRows() ?? 0,
        buckets: { checked, mismatched: acc?.mismatched.length ?? 0 },
        differences: c,
        sourceStrays: acc?.strays ?? 0,
        sqlBucketFilter: p.filter.sql,
      };
    });
    const sum = (k: 'missing' | 'extra' | 'different' | 'misplaced') =>
      tableReports.reduce((a, t) => a + t.differences[k], 0);
    const totals = {
      sourceRows,
      targetRows,
      bucketsChecked: tableReports.reduce((a, t) => a + t.buckets.checked, 0),
      bucketsMismatched: scannedMismatched,
      missing: sum('missing'),
      extra: sum('extra'),
      different: sum('different'),
      misplaced: sum('misplaced') + misplacedOverflow,
      sourceStrays: tableReports.reduce((a, t) => a + t.sourceStrays, 0),
    };
    if (totals.sourceStrays > 0) {
      notes.push(
        `${totals.sourceStrays} rows on source shards are not owned by the shard they are on (the copy skips them); fix the source estate`,
      );
    }
    const differing = totals.missing + totals.extra + totals.different + totals.misplaced;
    const ok = differing === 0;

    // ---- record
    const bucketRows: BucketRow[] = [];
    for (const [plan, acc] of perTable) {
      for (const id of recheck.badBuckets.get(plan.table.name) ?? []) {
        const seg = segments[splitBucketId(id, plan.filter.bits).segment]!;
        const s = acc.source.get(id);
        const t = acc.target.get(id);
        bucketRows.push(
          {
            table: plan.table.name,
            bucket: id,
            side: 'source',
            shard: seg.from,
            rowCount: s.count,
            sum: s.sum,
            status: 'mismatch',
          },
          {
            table: plan.table.name,
            bucket: id,
            side: 'target',
            shard: seg.to,
            rowCount: t.count,
            sum: t.sum,
            status: 'mismatch',
          },
        );
      }
    }
    const misplacedBuckets = new Map<string, BucketRow>();
    for (const d of diffs.kept) {
      if (d.kind !== 'misplaced') continue;
      const k = `${d.table.name}|${d.bucket}|${d.shard}`;
      const row = misplacedBuckets.get(k);
      if (row) row.rowCount++;
      else
        misplacedBuckets.set(k, {
          table: d.table.name,
          bucket: d.bucket,
          side: 'target',
          shard: d.shard,
          rowCount: 1,
          sum: '0000000000000000',
          status: 'misplaced',
        });
    }
    bucketRows.push(...misplacedBuckets.values());
    await saveBuckets(control, jobId, runId, bucketRows);

    let fixSql: VerifyReport['fixSql'];
    if (opts.fixSqlPath) {
      const sql = renderFixSql({
        jobName: ctx.job.name,
        runId,
        generatedAt: new Date().toISOString(),
        shards: routing.shards,
        diffs: diffs.kept,
        truncated: diffs.truncated || misplacedOverflow > 0,
      });
      writeFileSync(opts.fixSqlPath, sql.text);
      fixSql = { path: opts.fixSqlPath, statements: sql.statements };
    }

    const finished = new Date();
    const report: VerifyReport = {
      ok,
      job: { id: jobId, name: ctx.job.name },
      runId,
      mode,
      ...(baseRunId !== undefined ? { baseRunId } : {}),
      checksum: 'count + sum64(fmix64(CRC-64/XZ(row)))',
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      seconds: (performance.now() - t0) / 1000,
      scanSeconds,
      rowsPerSecond: scanSeconds > 0 ? (sourceRows + targetRows) / scanSeconds : 0,
      totals,
      tables: tableReports,
      differences: rowReports,
      truncated: diffs.truncated || misplacedOverflow > 0,
      recheck: {
        live: recheck.live,
        rounds: recheck.rounds,
        waitedMs: recheck.waitedMs,
        resolvedBuckets: recheck.resolved,
        changedDuringCheck: recheck.changing.size,
        tailerCaughtUp: !recheck.waitTimedOut,
      },
      ...(fixSql ? { fixSql } : {}),
      notes,
    };
    detail.summary = { ok, totals, seconds: report.seconds };
    await finishRun(control, jobId, runId, ok ? 'match' : 'mismatch', differing, detail);
    // Older filters are never read again once this is the last clean run; a run started after
    // this one (concurrent verifies) may still need them, so then they stay.
    if (ok && (await latestRunId(control, jobId)) === runId) await pruneChangesBefore(control, jobId, epoch);
    progress({ phase: 'done', rows: sourceRows + targetRows, estimatedRows: estimate });
    return report;
  } catch (e) {
    detail.summary = { error: e instanceof Error ? e.message : String(e) };
    await finishRun(control, jobId, runId, 'failed', 0, detail).catch(() => undefined);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// prepare

interface LoadedTable {
  table: VerifyTable;
  estimatedRows: number;
  /** Every shard computes pkHash in SQL exactly as the client does. */
  sqlOk: boolean;
}

async function loadTables(
  ctx: JobContext,
  routing: Routing,
  conns: ShardConnections,
  notes: string[],
): Promise<LoadedTable[]> {
  // One connection per shard; tables in parallel across shards, in order on each shard.
  const perShard = await Promise.all(
    routing.scanned.map(async (role) => {
      const conn = await conns.get(role);
      const out: { table: VerifyTable; rows: number; sqlOk: boolean }[] = [];
      for (const spec of ctx.from.tables) {
        const def = await requireTableDefinition(conn, role.database, spec.name, `shard ${role.name}`);
        const table = verifyTableFrom(def, spec);
        let rows = 0;
        if (role.fromIdx >= 0) {
          const [r] = await conn.query<RowDataPacket[]>(
            'SELECT TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
            [role.database, spec.name],
          );
          rows = Number(r[0]?.n ?? 0);
        }
        out.push({ table, rows, sqlOk: await pkHashAgrees(conn, tableRef(role.database, table), table) });
      }
      return { role, out };
    }),
  );
  return ctx.from.tables.map((spec, i) => {
    const ref = perShard[0]!;
    const first = ref.out[i]!;
    let estimatedRows = 0;
    let sqlOk = true;
    for (const { role, out } of perShard) {
      const mine = out[i]!;
      const diff = shapeDifference(first.table, mine.table);
      if (diff) {
        throw new PreconditionError(
          'E_VERIFY_SCHEMA',
          `table ${spec.name} differs between shard ${ref.role.name} and shard ${role.name}: ${diff}`,
          {
            hint: 'rows of different shapes cannot be compared; make the definitions equal (see `reshard preflight`)',
          },
        );
      }
      estimatedRows += mine.rows;
      if (sqlOk && !mine.sqlOk) {
        sqlOk = false;
        notes.push(
          `table ${spec.name}: shard ${role.name} computes CRC32 of the primary key differently from reshard, so bucket rows are selected by the client (slower drill-downs)`,
        );
      }
    }
    return { table: first.table, estimatedRows, sqlOk };
  });
}

/** Does the server's pkHash SQL give the client's pkHash on a sample of rows? */
async function pkHashAgrees(conn: Connection, ref: string, t: VerifyTable): Promise<boolean> {
  const pkCols = t.pk.map((i) => t.columns[i]!.name);
  const { qcols } = await import('../db/quote.js');
  const rows = await fetchRows(
    conn,
    `SELECT ${qcols(pkCols)}, ${t.sql.pkHash} FROM ${ref} ORDER BY ${t.sql.orderBy} LIMIT 64`,
  );
  const idx = pkCols.map((_, i) => i);
  return rows.every((r) => String(pkHashRaw(r, idx)) === r[pkCols.length]?.toString('latin1'));
}

/** Change ids per table that an incremental run must check. */
async function changedSince(
  control: Connection,
  jobId: number,
  baseRunId: number,
  baseEpoch: Record<string, number>,
  tables: readonly LoadedTable[],
): Promise<Map<string, number[]>> {
  const changes = await loadChangeSet(control, jobId, baseEpoch);
  const out = new Map<string, Set<number>>();
  for (const { table } of tables) out.set(table.name, new Set(changes.flaggedIds(table.name)));
  for (const b of await unresolvedBucketsSince(control, jobId, baseRunId)) {
    const set = out.get(b.table);
    if (!set) continue;
    const { sub } = splitBucketId(b.bucket, b.bits);
    const span = 2 ** (CHANGE_BITS - b.bits);
    for (let id = sub * span; id < (sub + 1) * span; id++) set.add(id);
  }
  return new Map([...out].map(([k, v]) => [k, [...v].sort((a, b) => a - b)]));
}

// ---------------------------------------------------------------------------------------------
// drill and re-check

type Counts = { missing: number; extra: number; different: number; misplaced: number };

/** Differences of finished buckets: rows kept up to a cap, counts always exact. */
class DiffSink {
  readonly kept: RowDiff[] = [];
  readonly countsByTable = new Map<string, Counts>();
  truncated = false;
  constructor(private readonly cap: number) {}
  add(d: RowDiff): void {
    let c = this.countsByTable.get(d.table.name);
    if (!c) {
      c = { missing: 0, extra: 0, different: 0, misplaced: 0 };
      this.countsByTable.set(d.table.name, c);
    }
    c[d.kind]++;
    if (this.kept.length < this.cap) this.kept.push(d);
    else this.truncated = true;
  }
}

function bucketKeyOf(d: RowDiff): string {
  return d.kind === 'misplaced'
    ? `m|${d.shard}|${d.table.name}|${pkTupleKey(d.pk)}`
    : `b|${d.table.name}|${d.bucket}`;
}

interface RecheckResult {
  final: DiffSink;
  /** Per table: ids of buckets that ended with differences. */
  badBuckets: Map<string, number[]>;
  /** Keys (bucketKeyOf) of results still changing after the last round. */
  changing: Set<string>;
  resolved: number;
  /** Buckets walked a second time with client-side row selection (see drillAndRecheck). */
  reread: number;
  rounds: number;
  live: boolean;
  waitedMs: number;
  waitTimedOut: boolean;
}

async function drillAndRecheck(a: {
  ctx: JobContext;
  routing: Routing;
  conns: ShardConnections;
  perTable: Map<TablePlan, { source: BucketSums; target: BucketSums; mismatched: number[] }>;
  misplaced: Misplaced[];
  epoch: Record<string, number>;
  rounds: number;
  pageSize: number;
  maxDiffs: number;
  opts: VerifyOptions;
  progress: (p: VerifyProgress) => void;
}): Promise<RecheckResult> {
  const { ctx, routing, conns } = a;
  const control = ctx.control.conn;
  const jobId = ctx.job.id;
  const final = new DiffSink(a.maxDiffs);
  const badBuckets = new Map<string, number[]>();
  const changing = new Set<string>();
  const result: RecheckResult = {
    final,
    badBuckets,
    changing,
    resolved: 0,
    reread: 0,
    rounds: 0,
    live: false,
    waitedMs: 0,
    waitTimedOut: false,
  };

  // Pending work: per (table, segment) the bucket subs to drill; misplaced rows to re-read.
  type Group = { plan: TablePlan; segment: Segment; subs: Set<number> };
  let groups = new Map<string, Group>();
  for (const [plan, acc] of a.perTable) {
    for (const id of acc.mismatched) {
      const { segment, sub } = splitBucketId(id, plan.filter.bits);
      const k = `${plan.table.name}|${segment}`;
      let g = groups.get(k);
      if (!g) {
        g = { plan, segment: routing.segments[segment]!, subs: new Set() };
        groups.set(k, g);
      }
      g.subs.add(sub);
    }
  }
  let misplaced = a.misplaced;
  if (groups.size === 0 && misplaced.length === 0) return result;

  result.live =
    (await tailerRunning(control, jobId)) || !(await loadChangeSet(control, jobId, a.epoch)).empty;

  for (let round = 1; round <= a.rounds; round++) {
    result.rounds = round;
    if (result.live) {
      a.progress({
        phase: 'recheck',
        rows: 0,
        estimatedRows: 0,
        message: 'waiting for the tailer to catch up',
      });
      const w = await waitForTailer({
        control,
        jobId,
        sources: ctx.from.shards,
        timeoutMs: a.opts.recheck?.tailerTimeoutMs ?? 30_000,
        pauseMs: a.opts.recheck?.pauseMs ?? 1000,
        signal: a.opts.signal,
      });
      result.waitedMs += w.waitedMs;
      if (!w.caughtUp) result.waitTimedOut = true;
    }
    a.progress({
      phase: 'drill',
      rows: 0,
      estimatedRows: 0,
      message: `drilling into ${groups.size} segment(s), round ${round}`,
    });

    // Drill every pending group; collect this round's differences per bucket.
    const roundDiffs = new Map<string, RowDiff[]>();
    const keep = (d: RowDiff) => {
      const k = bucketKeyOf(d);
      let l = roundDiffs.get(k);
      if (!l) {
        l = [];
        roundDiffs.set(k, l);
      }
      if (l.length < a.maxDiffs) l.push(d);
    };
    const drill = async (g: Group, subs: Iterable<number>, filter: BucketFilter) => {
      const srcRole = routing.shards.get(g.segment.from)!;
      const tgtRole = routing.shards.get(g.segment.to)!;
      await drillDown(
        {
          table: g.plan.table,
          segment: g.segment,
          subs: [...subs].sort((x, y) => x - y),
          filter,
          routing,
          source: {
            conn: await conns.get(srcRole),
            ref: tableRef(srcRole.database, g.plan.table),
            role: srcRole,
          },
          target: {
            conn: await conns.get(tgtRole),
            ref: tableRef(tgtRole.database, g.plan.table),
            role: tgtRole,
          },
          pageSize: a.pageSize,
          signal: a.opts.signal,
        },
        keep,
      );
    };
    for (const g of groups.values()) await drill(g, g.subs, g.plan.filter);
    if (!result.live && round === 1) {
      // Nothing was written during the run, so a bucket the scan found different must show a
      // differing row. If one does not, do not trust the server's bucket filter for it: walk
      // the buckets again selecting rows in the client (slower, but it cannot miss a row).
      for (const g of groups.values()) {
        if (!g.plan.filter.sql) continue;
        const quiet = [...g.subs].filter(
          (sub) =>
            !roundDiffs.has(`b|${g.plan.table.name}|${bucketId(g.segment.id, g.plan.filter.bits, sub)}`),
        );
        if (quiet.length > 0) {
          result.reread += quiet.length;
          await drill(g, quiet, { ...g.plan.filter, sql: false });
        }
      }
    }
    for (const d of await confirmMisplaced(misplaced, routing, conns)) keep(d);

    // Which of the differing buckets changed during this run (live writes)?
    const changes = result.live ? await loadChangeSet(control, jobId, a.epoch) : undefined;
    const lastRound = round === a.rounds;
    const retryGroups = new Map<string, Group>();
    const retryMisplaced: Misplaced[] = [];
    const stillBad = new Set<string>();
    for (const [k, list] of roundDiffs) {
      stillBad.add(k);
      const d0 = list[0]!;
      const moving = changes !== undefined && changedDuring(changes, d0);
      if (moving && !lastRound) {
        if (d0.kind === 'misplaced') {
          const m = misplaced.find(
            (x) => x.shard.name === d0.shard && pkTupleKey(x.pk) === pkTupleKey(d0.pk),
          );
          if (m) retryMisplaced.push(m);
        } else {
          const plan = [...groups.values()].find((g) => g.plan.table === d0.table)!.plan;
          const gk = `${d0.table.name}|${d0.segment.id}`;
          let g = retryGroups.get(gk);
          if (!g) {
            g = { plan, segment: d0.segment, subs: new Set() };
            retryGroups.set(gk, g);
          }
          g.subs.add(splitBucketId(d0.bucket, plan.filter.bits).sub);
        }
        continue;
      }
      if (moving) changing.add(k);
      for (const d of list) final.add(d);
      if (d0.kind !== 'misplaced') {
        let ids = badBuckets.get(d0.table.name);
        if (!ids) {
          ids = [];
          badBuckets.set(d0.table.name, ids);
        }
        ids.push(d0.bucket);
      }
    }
    // Buckets drilled this round without differences are resolved.
    for (const g of groups.values()) {
      for (const sub of g.subs) {
        const id = g.segment.id * 2 ** g.plan.filter.bits + sub;
        if (!stillBad.has(`b|${g.plan.table.name}|${id}`)) result.resolved++;
      }
    }
    groups = retryGroups;
    misplaced = retryMisplaced;
    if (groups.size === 0 && misplaced.length === 0) break;
  }
  return result;
}

/**
 * A bucket (or a misplaced row) changed since the run's epoch began: any change id inside it is
 * flagged. A bucket of b bits spans the 2^(CHANGE_BITS − b) change ids whose top b bits are its sub.
 */
function changedDuring(changes: ChangeSet, d: RowDiff): boolean {
  if (changes.empty) return false;
  if (d.kind === 'misplaced') {
    return changes.mayHaveChanged(
      d.table.name,
      changeIdOf(
        pkHashRaw(
          d.pk,
          d.pk.map((_, i) => i),
        ),
      ),
    );
  }
  const { sub } = splitBucketId(d.bucket, d.bits);
  const span = 2 ** (CHANGE_BITS - d.bits);
  for (let id = sub * span; id < (sub + 1) * span; id++) {
    if (changes.mayHaveChanged(d.table.name, id)) return true;
  }
  return false;
}

/** Re-read misplaced rows by primary key: still there and still misplaced → a difference. */
async function confirmMisplaced(
  list: readonly Misplaced[],
  routing: Routing,
  conns: ShardConnections,
): Promise<RowDiff[]> {
  const out: RowDiff[] = [];
  const byShardTable = new Map<string, Misplaced[]>();
  for (const m of list) {
    const k = `${m.shard.name}|${m.table.table.name}`;
    let l = byShardTable.get(k);
    if (!l) {
      l = [];
      byShardTable.set(k, l);
    }
    l.push(m);
  }
  for (const group of byShardTable.values()) {
    const { shard, table: plan } = group[0]!;
    const t = plan.table;
    const rows = await lookupRows(
      await conns.get(shard),
      tableRef(shard.database, t),
      t,
      group.map((m) => m.pk),
    );
    for (const m of group) {
      const row = rows.get(pkTupleKey(m.pk));
      if (!row) continue;
      const key = routeKeyOfRaw(t, row[t.shardKey]!);
      const fi = routing.from.ownerIndexOf(key);
      const ti = routing.to.ownerIndexOf(key);
      if (roleOf(shard, fi, ti) !== ROLE_MISPLACED) continue;
      const segId = routing.segByPair[fi * routing.nTo + ti]!;
      out.push({
        kind: 'misplaced',
        table: t,
        bits: plan.filter.bits,
        bucket:
          segId * 2 ** plan.filter.bits +
          (plan.filter.bits === 0 ? 0 : pkHashRaw(row, t.pk) >>> (32 - plan.filter.bits)),
        segment: routing.segments[segId]!,
        shard: shard.name,
        owner: routing.to.shards[ti]!,
        pk: m.pk,
        targetRow: row,
      });
    }
  }
  return out;
}

function rowReport(d: RowDiff, changing: boolean): RowReport {
  const t = d.table;
  const bucket: BucketRef = {
    id: d.bucket,
    segment: d.segment.id,
    from: d.segment.from,
    to: d.segment.to,
    sub: splitBucketId(d.bucket, d.bits).sub,
    bits: d.bits,
  };
  const r: RowReport = { kind: d.kind, table: t.name, pk: displayPk(t, d.pk), shard: d.shard, bucket };
  if (d.source) r.source = d.source;
  if (d.owner) r.owner = d.owner;
  if (d.columns && d.sourceRow && d.targetRow) {
    r.columns = d.columns.map((name) => {
      const i = t.columns.findIndex((c) => c.name === name);
      const c = t.columns[i]!;
      return {
        name,
        source: displayValue(c, d.sourceRow![i] ?? null),
        target: displayValue(c, d.targetRow![i] ?? null),
      };
    });
  }
  if (changing) r.changedDuringCheck = true;
  return r;
}
