/**
 * The verifier: do the targets hold exactly the rows the plan moves to them?
 *
 * Lifecycle of one run (`runVerify`):
 *   1. prepare   read every table's definition on every shard that takes part (same columns
 *                everywhere, or E_VERIFY_SCHEMA) beside the read-only preflight, open a change
 *                epoch and record the run as `running`.
 *   2. choose    full: every bucket of every table. incremental: the exact primary keys recorded
 *                since the last clean run (plus the keys of differences later runs found) when
 *                that list is complete, else the change ids the Bloom filters flag (plus buckets
 *                later runs found bad); tables with none are skipped. Tables to scan check
 *                that the servers compute pkHash like we do (else rows are selected client-side).
 *   3. scan      each shard × table once, in primary-key pages — or, by exact keys, the keys'
 *                rows looked up in batches; every row is classified (source row of a moving
 *                segment, target row, stay, misplaced) and hashed into its bucket's partial
 *                count + sum64. Sources' and targets' partials then combine bucket by bucket —
 *                each bucket has one source shard and one target shard.
 *   4. drill     mismatched buckets are walked row by row on their two shards (by exact keys:
 *                their keys looked up again on both, diff.ts); misplaced rows are re-read by
 *                primary key.
 *   5. re-check  under live writes (a tailer is running or changes were recorded during the run)
 *                the drill runs only after the tailer has caught up, and buckets that still
 *                differ in rows written during the run are drilled again, up to `rounds` times,
 *                before they are reported. With writes frozen the first drill is final: exact.
 *   6. record    mismatched buckets and the run's outcome go to the control schema; a clean run
 *                drops change filters older than its epoch. The report is returned; the caller
 *                decides (assertVerified → MismatchError, exit 4).
 */
import { writeFileSync } from 'node:fs';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import pLimit from 'p-limit';
import { connectShard } from '../db/connect.js';
import { MismatchError, PreconditionError, UsageError } from '../errors.js';
import { type JobContext, openJob } from '../job/context.js';
import type { Segment } from '../plan/types.js';
import { requireTableDefinitions } from '../preflight/schema.js';
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
  subOf,
} from './bucket.js';
import {
  type ChangeSet,
  loadChangedKeys,
  loadChangeSet,
  openEpoch,
  pruneChangesBefore,
  type RecordedKeys,
} from './changes.js';
import { type BucketFilter, drillDown, lookupRows, maskOf, pkTupleKey, type RowDiff } from './diff.js';
import { renderFixSql } from './fixsql.js';
import { tailerRunning, waitForTailer } from './live.js';
import type { BucketRef, RowReport, TableReport, VerifyReport } from './report.js';
import { buildRouting, ROLE_MISPLACED, type Routing, roleOf, type ShardRole } from './routing.js';
import type { RawRow } from './rowhash.js';
import { fetchRows } from './scan.js';
import { keysToLookUp, lookupPart, type ScanPart, type TablePlan } from './scan-part.js';
import { defaultWorkers, runScans, type ScanTask } from './scan-pool.js';
import {
  type BucketRow,
  diffKeyOf,
  finishRun,
  lastCleanRun,
  latestRunId,
  type RunDetail,
  type RunRecord,
  saveBuckets,
  startRun,
  unresolvedSince,
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
  const pageSize = opts.pageSize ?? 50_000;
  const maxDiffs = opts.maxDiffs ?? 100_000;
  const rounds = Math.max(1, opts.recheck?.rounds ?? 3);
  const routing = buildRouting(ctx.index, ctx.from, ctx.to);
  const segments = ctx.plan.segments;
  const moving = segments.filter((s) => s.moves);

  progress({ phase: 'prepare', rows: 0, estimatedRows: 0, message: 'reading table definitions' });
  // The preflight and the definitions both only read: at once. The preflight's verdict comes first.
  const [pre, loaded] = await Promise.allSettled([
    opts.preflight === false
      ? Promise.resolve()
      : import('../preflight/index.js').then(async ({ runPreflight, assertPreflight }) => {
          assertPreflight(
            await runPreflight({ from: ctx.from, to: ctx.to, roles: { from: ['reader'], to: ['reader'] } }),
          );
        }),
    loadTables(ctx, routing, conns),
  ]);
  if (pre.status === 'rejected') throw pre.reason;
  if (loaded.status === 'rejected') throw loaded.reason;
  const tables = loaded.value;
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
  const tPrepared = performance.now();

  try {
    // ---- choose what to check
    let mode: 'full' | 'incremental' = 'full';
    let baseRunId: number | undefined;
    const plans: TablePlan[] = [];
    let changed: Changed | undefined;
    if (opts.incremental) {
      const base = await lastCleanRun(control, jobId);
      if (!base) {
        notes.push('incremental: no clean verify of this job yet, so every bucket was checked');
      } else {
        mode = 'incremental';
        baseRunId = base.runId;
        changed = await changedSince(control, jobId, base, epoch, tables, ctx.from.shards, notes);
      }
    }
    const incBits = maxBitsFor(segments.length);
    // filter.sql is settled below, for the plans that scan.
    for (const { table, estimatedRows } of tables) {
      const fullBits = chooseBits(estimatedRows, moving.length, segments.length);
      const recorded = changed?.keys.get(table.name);
      const keys = recorded?.keys;
      const ids = changed?.ids.get(table.name);
      if (!changed || changed.full.has(table.name)) {
        plans.push({ table, mode: 'full', filter: { bits: fullBits, sql: false }, estimatedRows });
      } else if (keys) {
        if (keys.length === 0) {
          plans.push({ table, mode: 'skipped', filter: { bits: incBits, sql: false }, estimatedRows: 0 });
        } else if (keys.length > Math.max(FULL_AFTER_KEYS, estimatedRows / 4)) {
          plans.push({ table, mode: 'full', filter: { bits: fullBits, sql: false }, estimatedRows });
        } else {
          // About 4 keys per bucket and segment: buckets only place rows for the comparison
          // (drills look keys up again), so no need for 2^20 of them.
          const bits = Math.max(0, Math.min(incBits, Math.ceil(Math.log2(keys.length)) - 2));
          plans.push({
            table,
            mode: 'incremental',
            filter: { bits, sql: false },
            estimatedRows: keys.length,
            keys,
            keysAt: recorded,
          });
        }
      } else if (!ids || ids.length === 0) {
        plans.push({ table, mode: 'skipped', filter: { bits: incBits, sql: false }, estimatedRows: 0 });
      } else if (ids.length > 2 ** CHANGE_BITS / 4) {
        plans.push({ table, mode: 'full', filter: { bits: fullBits, sql: false }, estimatedRows });
      } else {
        plans.push({
          table,
          mode: 'incremental',
          filter: { bits: incBits, sql: false, mask: maskOf(ids), maskIds: ids },
          estimatedRows: Math.ceil((estimatedRows * ids.length) / 2 ** CHANGE_BITS),
        });
      }
    }
    // Scans let the servers select bucket rows where they hash keys as we do; lookups by key need not.
    const scanning = plans.filter((p) => p.mode !== 'skipped' && !p.keys);
    if (opts.sqlBucketFilter !== false && scanning.length > 0) {
      const agree = await sqlHashAgrees(
        scanning.map((p) => p.table),
        routing,
        conns,
        notes,
      );
      for (const p of scanning) p.filter.sql = agree.get(p.table.name) ?? false;
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
    for (const plan of active)
      if (!plan.keys) for (const shard of routing.scanned) tasks.push({ plan, shard });
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
    // Exact keys: each shard looks up the keys that can be there (keysToLookUp: recorded by it as
    // a source or applied to it as a target), one connection per shard, shards at once (each
    // mostly waits for its server), tables in turn.
    const keyed = active.filter((p) => p.keys);
    const limit = pLimit(Math.max(concurrency, Math.min(routing.scanned.length, 16)));
    const looked = (
      await Promise.all(
        routing.scanned.map((shard) =>
          limit(async () => {
            const conn = await conns.get(shard);
            const out: { task: ScanTask; part: ScanPart }[] = [];
            for (const plan of keyed)
              out.push({
                task: { plan, shard },
                part: await lookupPart(conn, shard, plan, routing, maxDiffs, tick, opts.signal),
              });
            return out;
          }),
        ),
      )
    ).flat();
    const parts = [...scanned, ...looked].map(({ task, part }) => ({
      plan: task.plan,
      part: {
        ...part,
        misplaced: part.misplaced.map((m): Misplaced => ({ ...m, table: task.plan, shard: task.shard })),
      },
    }));
    const scanSeconds = (performance.now() - scanStart) / 1000;

    // ---- combine and compare
    const perTable = new Map<TablePlan, TableAcc>();
    const misplaced: Misplaced[] = [];
    let misplacedOverflow = 0;
    let sourceRows = 0;
    let targetRows = 0;
    for (const p of active)
      perTable.set(p, {
        source: new BucketSums(),
        target: new BucketSums(),
        strays: 0,
        inexact: 0,
        mismatched: [],
      });
    for (const { plan, part } of parts) {
      const acc = perTable.get(plan)!;
      acc.source.merge(part.source);
      acc.target.merge(part.target);
      acc.strays += part.strays;
      acc.inexact += part.inexact;
      sourceRows += part.sourceRows;
      targetRows += part.targetRows;
      const room = Math.max(0, maxDiffs - misplaced.length);
      misplaced.push(...part.misplaced.slice(0, room));
      misplacedOverflow += part.misplacedOverflow + Math.max(0, part.misplaced.length - room);
    }
    for (const acc of perTable.values()) acc.mismatched = mismatchedBuckets(acc.source, acc.target);
    const scannedMismatched = [...perTable.values()].reduce((a, x) => a + x.mismatched.length, 0);

    // ---- drill and re-check
    const tScanned = performance.now();
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
    const tDrilled = performance.now();
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
        ...(p.keys
          ? {
              keys: p.keys.length,
              lookups: routing.scanned.reduce((n, x) => n + keysToLookUp(p, x.name).length, 0),
            }
          : {}),
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
    // The differences' keys, so the next incremental run can re-check them by key (store.ts).
    detail.diffKeys = undefined;
    if (
      !diffs.truncated &&
      misplacedOverflow === 0 &&
      diffs.kept.length < Math.min(maxDiffs, DIFF_KEYS_KEPT)
    ) {
      const byTable: Record<string, string[]> = {};
      for (const d of diffs.kept) {
        const list = byTable[d.table.name] ?? [];
        list.push(diffKeyOf(d.pk));
        byTable[d.table.name] = list;
      }
      detail.diffKeys = byTable;
    }
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
      phases: {
        prepare: (tPrepared - t0) / 1000,
        choose: (scanStart - tPrepared) / 1000,
        scan: (tScanned - scanStart) / 1000,
        drill: (tDrilled - tScanned) / 1000,
        record: 0,
      },
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
    if (ok && (await latestRunId(control, jobId)) === runId) {
      // Housekeeping: the run is recorded clean already, and records older than its epoch are
      // never read again (the next clean run drops what this one could not).
      await pruneChangesBefore(control, jobId, epoch).catch((e: unknown) => {
        notes.push(
          `could not drop the change records older than this run (${e instanceof Error ? e.message : String(e)}); the next clean run drops them`,
        );
      });
    }
    const tRecorded = performance.now();
    // The report's time covers the record too (cutover pays it under the freeze); the run record
    // written above says when the comparison ended.
    report.phases!.record = (tRecorded - tDrilled) / 1000;
    report.seconds = (tRecorded - t0) / 1000;
    report.finishedAt = new Date().toISOString();
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
}

async function loadTables(
  ctx: JobContext,
  routing: Routing,
  conns: ShardConnections,
): Promise<LoadedTable[]> {
  // One connection per shard; tables in parallel across shards, in order on each shard.
  const perShard = await Promise.all(
    routing.scanned.map(async (role) => {
      const conn = await conns.get(role);
      const defs = await requireTableDefinitions(
        conn,
        role.database,
        ctx.from.tables.map((spec) => spec.name),
        `shard ${role.name}`,
      );
      const tables: VerifyTable[] = ctx.from.tables.map((spec, i) => verifyTableFrom(defs[i]!, spec));
      const rows = new Map<string, number>();
      if (role.fromIdx >= 0) {
        const [r] = await conn.query<RowDataPacket[]>(
          'SELECT TABLE_NAME AS t, TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?',
          [role.database],
        );
        for (const x of r) rows.set(String(x.t), Number(x.n ?? 0));
      }
      return { role, tables, rows };
    }),
  );
  return ctx.from.tables.map((spec, i) => {
    const ref = perShard[0]!;
    const first = ref.tables[i]!;
    let estimatedRows = 0;
    for (const { role, tables, rows } of perShard) {
      const diff = shapeDifference(first, tables[i]!);
      if (diff) {
        throw new PreconditionError(
          'E_VERIFY_SCHEMA',
          `table ${spec.name} differs between shard ${ref.role.name} and shard ${role.name}: ${diff}`,
          {
            hint: 'rows of different shapes cannot be compared; make the definitions equal (see `reshard preflight`)',
          },
        );
      }
      estimatedRows += rows.get(spec.name) ?? 0;
    }
    return { table: first, estimatedRows };
  });
}

/** Per table: every shard computes pkHash in SQL exactly as the client does (else rows are selected client-side). */
async function sqlHashAgrees(
  tables: readonly VerifyTable[],
  routing: Routing,
  conns: ShardConnections,
  notes: string[],
): Promise<Map<string, boolean>> {
  const perShard = await Promise.all(
    routing.scanned.map(async (role) => {
      const conn = await conns.get(role);
      const ok: boolean[] = [];
      for (const t of tables) ok.push(await pkHashAgrees(conn, tableRef(role.database, t), t));
      return { role, ok };
    }),
  );
  const out = new Map<string, boolean>();
  tables.forEach((t, i) => {
    const bad = perShard.find((s) => !s.ok[i]);
    out.set(t.name, !bad);
    if (bad)
      notes.push(
        `table ${t.name}: shard ${bad.role.name} computes CRC32 of the primary key differently from reshard, so bucket rows are selected by the client (slower drill-downs)`,
      );
  });
  return out;
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

/** What an incremental run re-checks, per table: exact keys, or else change ids. */
interface Changed {
  /** Tables re-checked by exact primary keys, and where (no keys: nothing changed). */
  keys: Map<string, RecordedKeys>;
  /** The other tables: the change ids (2^CHANGE_BITS per table) to re-check. */
  ids: Map<string, number[]>;
  /** Tables verified in full: what changed in them cannot be told exactly. */
  full: Set<string>;
}

/** Above this many keys and a quarter of its rows, a table is verified in full instead. */
const FULL_AFTER_KEYS = 4096;

/** `r` with `more` keys added to be looked up on every shard (each key once overall). */
function withEverywhere(r: RecordedKeys, more: readonly RawRow[]): RecordedKeys {
  const everywhere = new Map([...r.everywhere, ...more].map((k) => [pkTupleKey(k), k]));
  const at = new Map<string, RawRow[]>();
  for (const [shard, keys] of r.at)
    at.set(
      shard,
      keys.filter((k) => !everywhere.has(pkTupleKey(k))),
    );
  return {
    keys: [...new Map([...r.keys, ...more].map((k) => [pkTupleKey(k), k])).values()],
    at,
    everywhere: [...everywhere.values()],
  };
}

/** A run keeps its differences' keys for the next incremental run up to this many. */
const DIFF_KEYS_KEPT = 10_000;

/**
 * What changed since the clean run `base`. By exact keys when every source kept its key list
 * for every epoch from base's up to this run's (`loadChangedKeys`) — per table also only when
 * every later run that found differences there kept their keys. Otherwise by the Bloom filters:
 * every change id they flag, plus every bucket later runs found bad.
 */
async function changedSince(
  control: Connection,
  jobId: number,
  base: RunRecord,
  epoch: Record<string, number>,
  tables: readonly LoadedTable[],
  sources: readonly { name: string }[],
  notes: string[],
): Promise<Changed> {
  const later = await unresolvedSince(control, jobId, base.runId);
  const exact = await loadChangedKeys(
    control,
    jobId,
    sources.map((s) => s.name),
    base.detail.epoch,
    epoch,
  );
  if (!exact.complete)
    notes.push(
      `incremental: the changed keys are not known exactly (${exact.reason}): re-checked the buckets the Bloom filters flag`,
    );
  const out: Changed = { keys: new Map(), ids: new Map(), full: new Set() };
  if (later.lost) {
    notes.push(
      'incremental: a run since the last clean one did not keep all its differences, so every table was verified in full',
    );
    for (const { table } of tables) out.full.add(table.name);
    return out;
  }
  const byBucket: string[] = [];
  for (const { table } of tables) {
    // A FLOAT/DOUBLE key prints differently in the binlog (a JavaScript number: 1e-7) and in
    // SELECT (0.0000001): looked up by value it could miss the row, and its change id (a hash
    // of that text) flags another bucket than the row's. Such tables are verified in full.
    const floatKey = table.pk.some((i) => table.columns[i]!.kind === 'float');
    if (floatKey) {
      out.full.add(table.name);
      notes.push(
        `incremental: ${table.name}: a FLOAT/DOUBLE primary key cannot be matched with the tailer's record of changes, so the table was verified in full`,
      );
      continue;
    }
    if (exact.complete && !later.uncovered.has(table.name)) {
      const recorded = exact.keys.get(table.name) ?? { keys: [], at: new Map(), everywhere: [] };
      const found = later.keys.get(table.name);
      // An earlier run's differences are looked up on every shard: where they sit is the question.
      out.keys.set(table.name, found ? withEverywhere(recorded, found) : recorded);
    } else if (table.keyPrintsOtherwise) {
      // By bucket, the recorded keys flag buckets by a hash of their recorded text.
      out.full.add(table.name);
      notes.push(
        `incremental: ${table.name}: its primary key prints otherwise than the tailer records it (${table.keyPrintsOtherwise}), and its changed keys are not known exactly, so the table was verified in full`,
      );
    } else {
      byBucket.push(table.name);
      if (exact.complete)
        notes.push(
          `incremental: ${table.name}: an earlier run's differences were not all kept, so its buckets were re-checked`,
        );
    }
  }
  if (byBucket.length === 0) return out;
  const changes = await loadChangeSet(control, jobId, base.detail.epoch);
  const ids = new Map(byBucket.map((name) => [name, new Set(changes.flaggedIds(name))]));
  for (const b of later.buckets) {
    const set = ids.get(b.table);
    if (!set) continue;
    const { sub } = splitBucketId(b.bucket, b.bits);
    const span = 2 ** (CHANGE_BITS - b.bits);
    for (let id = sub * span; id < (sub + 1) * span; id++) set.add(id);
  }
  for (const [name, set] of ids)
    out.ids.set(
      name,
      [...set].sort((a, b) => a - b),
    );
  return out;
}

// ---------------------------------------------------------------------------------------------
// drill and re-check

type Counts = { missing: number; extra: number; different: number; misplaced: number };

/** One table's combined scan results. */
interface TableAcc {
  source: BucketSums;
  target: BucketSums;
  strays: number;
  /** Key lookups that returned rows under other key bytes (ScanPart.inexact). */
  inexact: number;
  mismatched: number[];
}

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
  perTable: Map<TablePlan, TableAcc>;
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
    const drill = async (g: Group, subs: Iterable<number>, filter: BucketFilter, allKeys = false) => {
      const srcRole = routing.shards.get(g.segment.from)!;
      const tgtRole = routing.shards.get(g.segment.to)!;
      const sorted = [...subs].sort((x, y) => x - y);
      await drillDown(
        {
          table: g.plan.table,
          segment: g.segment,
          subs: sorted,
          filter,
          keys: g.plan.keys && keysOf(g.plan, sorted, allKeys || (a.perTable.get(g.plan)?.inexact ?? 0) > 0),
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
    if (round === 1) {
      // A bucket the scan found different should show a differing row. If one does not, do not
      // trust the server's bucket filter for it: walk the buckets again selecting rows in the
      // client (slower, but it cannot miss a row). Under live writes too: a write since the scan
      // explains such a bucket, but so would a blind spot of the filter, and only the walk tells
      // them apart — and cutover's final check counts as live (a tailer ran), while it must be
      // exact.
      // By exact keys, the buckets' rows are looked up by the keys whose own bucket they are: walk
      // them again with every key of the table instead (a row equal to a key under the collation
      // but not byte for byte is in another bucket than that key).
      for (const g of groups.values()) {
        if (g.plan.keys ? (a.perTable.get(g.plan)?.inexact ?? 0) > 0 : !g.plan.filter.sql) continue;
        const quiet = [...g.subs].filter(
          (sub) =>
            !roundDiffs.has(`b|${g.plan.table.name}|${bucketId(g.segment.id, g.plan.filter.bits, sub)}`),
        );
        if (quiet.length > 0) {
          result.reread += quiet.length;
          if (g.plan.keys) await drill(g, quiet, g.plan.filter, true);
          else await drill(g, quiet, { ...g.plan.filter, sql: false });
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
      const moving = changes !== undefined && list.some((d) => changedDuring(changes, d));
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

const keysBySub = new WeakMap<TablePlan, Map<number, RawRow[]>>();

/** The keys of an exact-keys plan whose bucket is one of `subs` (all of them with `all`). */
function keysOf(plan: TablePlan, subs: readonly number[], all: boolean): RawRow[] {
  const keys = plan.keys ?? [];
  if (all) return keys;
  let m = keysBySub.get(plan);
  if (!m) {
    m = new Map();
    const bits = plan.filter.bits;
    const idx = plan.table.pk.map((_, i) => i);
    for (const k of keys) {
      const sub = subOf(pkHashRaw(k, idx), bits);
      let l = m.get(sub);
      if (!l) {
        l = [];
        m.set(sub, l);
      }
      l.push(k);
    }
    keysBySub.set(plan, m);
  }
  return subs.flatMap((sub) => m.get(sub) ?? []);
}

/**
 * A differing row was written since the run's epoch began: its change id is flagged. (Per row,
 * not per bucket: a real fault next to a row that keeps changing is reported at once.)
 */
function changedDuring(changes: ChangeSet, d: RowDiff): boolean {
  if (changes.empty) return false;
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
