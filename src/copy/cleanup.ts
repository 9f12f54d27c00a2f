/**
 * Cleanup after a committed cutover: delete moved rows from their old owners, in small throttled
 * batches. Only rows whose segment moves away from the shard they are on are touched; rows that
 * stay (in-place expansion) are never read for deletion.
 *
 * Lifecycle: open the job (must be completed; a dry run also when cut-over) → per old shard and table: keyset scan
 * (non-locking) of (primary key, shard key) → keep rows that move away → check each still exists
 * on its new owner → DELETE … WHERE the primary key AND the shard key are still what was read
 * (a row changed meanwhile is left alone) → next batch. Re-runnable: deleted rows are gone.
 *
 * Shards the target topology no longer lists (retired) hold nothing but moved rows; deleting them
 * row by row is rarely what an operator wants (drop the database instead), so they are skipped
 * unless `includeRetired`.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { routeKeyOf, type TableMeta, tableMetaFromDefinition } from '../apply/table.js';
import type { Row } from '../apply/values.js';
import { sqlParam } from '../apply/values.js';
import { connectShard } from '../db/connect.js';
import { q } from '../db/quote.js';
import { MismatchError, PreconditionError } from '../errors.js';
import { openJob } from '../job/context.js';
import { log } from '../output.js';
import { isIntegerType, requireTableDefinition } from '../preflight/schema.js';
import { appendEvent } from '../state/control.js';
import type { Shard } from '../topology/types.js';
import { type KeyColumn, pageQuery, rangeCondition } from './keyset.js';
import { movingFilter, sourcePlans } from './setup.js';
import { createThrottler } from './throttle.js';

export interface RunCleanupOptions {
  planPath: string;
  control?: string;
  /** Without it, count what would be deleted and delete nothing. */
  execute: boolean;
  /** Rows deleted per second per shard (0 = unlimited). */
  rate?: number;
  /** Rows per DELETE (default 500). */
  batchSize?: number;
  maxThreadsRunning?: number;
  includeRetired?: boolean;
  signal?: AbortSignal;
}

export interface CleanupTableSummary {
  shard: string;
  table: string;
  /** Rows on this shard whose segment moves away. */
  moved: number;
  deleted: number;
  /** Moved rows not found on their new owner: kept, reported. */
  missingOnTarget: number;
  /** Rows that changed between the read and the delete: kept (a re-run looks again). */
  changed: number;
}

export interface CleanupSummary {
  ok: boolean;
  executed: boolean;
  job: { id: number; name: string; state: string };
  tables: CleanupTableSummary[];
  /** Retired shards left alone (without includeRetired). */
  retired: string[];
  deleted: number;
  missingOnTarget: number;
  seconds: number;
}

export async function runCleanup(opts: RunCleanupOptions): Promise<CleanupSummary> {
  const started = Date.now();
  const ctx = await openJob({ planPath: opts.planPath, control: opts.control, create: false });
  const conns: Connection[] = [];
  try {
    const { job, plan, index } = ctx;
    if (job.state !== 'cut-over' && job.state !== 'completed') {
      throw new PreconditionError(
        'E_CLEANUP_TOO_EARLY',
        `job '${job.name}' is '${job.state}': cleanup deletes the moved rows from their old shards, which is only safe after a committed cutover`,
        {
          hint: 'finish the reshard first (copy, tail, verify, cutover, complete); a dry run is allowed once cut over',
          data: { state: job.state },
        },
      );
    }
    // While a job is cut over, reverse replication keeps the old shards current so that a
    // rollback loses nothing: deleting the moved rows there would make that rollback lose them.
    if (opts.execute && job.state !== 'completed') {
      throw new PreconditionError(
        'E_CLEANUP_TOO_EARLY',
        `job '${job.name}' is cut over but not completed: its old shards are still the rollback copy, so cleanup would make a rollback lose the moved rows`,
        {
          hint: 'once rollback is no longer wanted, stop `reshard tail --reverse` and run `reshard complete --plan … --execute`; then clean up',
          data: { state: job.state },
        },
      );
    }
    const toNames = new Set(ctx.to.shards.map((s) => s.name));
    const shardByName = new Map<string, Shard>(
      [...ctx.from.shards, ...ctx.to.shards].map((s) => [s.name, s]),
    );
    const tables: CleanupTableSummary[] = [];
    const retired: string[] = [];
    const batch = Math.max(1, opts.batchSize ?? 500);
    for (const sp of sourcePlans(plan, ctx.from)) {
      const shard = sp.shard;
      if (!toNames.has(shard.name) && !opts.includeRetired) {
        retired.push(shard.name);
        continue;
      }
      const conn = await connectShard(shard);
      conns.push(conn);
      const targetConns = new Map<string, Connection>();
      for (const t of sp.targets) {
        const c = await connectShard(shardByName.get(t)!);
        conns.push(c);
        targetConns.set(t, c);
      }
      const throttle = createThrottler({
        servers: [shard.name],
        observe: async () => {
          const [r] = await conn.query<RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'Threads_running'");
          return Number(r[0]?.Value);
        },
        rate: opts.rate ?? 0,
        maxThreadsRunning: opts.maxThreadsRunning ?? 50,
      });
      throttle.start();
      try {
        for (const spec of ctx.from.tables) {
          const def = await requireTableDefinition(
            conn,
            shard.endpoint.database,
            spec.name,
            `shard ${shard.name}`,
          );
          const meta = tableMetaFromDefinition(def, spec);
          const key: KeyColumn[] = def.primaryKey.map((n) => ({
            name: n,
            integer: isIntegerType(def.columns.find((c) => c.name === n)!),
          }));
          const targetMeta = new Map<string, TableMeta>();
          for (const t of sp.targets) {
            const ts = shardByName.get(t)!;
            const tdef = await requireTableDefinition(
              targetConns.get(t)!,
              ts.endpoint.database,
              spec.name,
              `shard ${t}`,
            );
            targetMeta.set(t, tableMetaFromDefinition(tdef, spec));
          }
          const summary: CleanupTableSummary = {
            shard: shard.name,
            table: spec.name,
            moved: 0,
            deleted: 0,
            missingOnTarget: 0,
            changed: 0,
          };
          tables.push(summary);
          const filter = movingFilter(sp, index, meta.sql.shardKey);
          // Only the primary key and the shard key are read.
          const cols = [...new Set([...meta.pk, meta.shardKey])];
          const colSql = cols.map((i) => q(meta.columns[i]!)).join(', ');
          let lower: Row | null = null;
          for (;;) {
            if (opts.signal?.aborted) throw opts.signal.reason;
            await throttle.admit([shard.name], opts.signal);
            const page = pageQuery({
              table: meta.sql.table,
              columns: colSql,
              key,
              lower,
              upper: null,
              filter,
              limit: batch,
            });
            const [res] = await conn.query({ sql: page.sql, values: page.params, rowsAsArray: true });
            const rows = res as unknown as Row[];
            if (rows.length === 0) break;
            const pkIdx = meta.pk.map((i) => cols.indexOf(i));
            const keyIdx = cols.indexOf(meta.shardKey);
            const last = rows.at(-1)!;
            const upper = pkIdx.map((i) => last[i] ?? null);
            const byTarget = new Map<string, Row[]>();
            for (const r of rows) {
              const seg = index.segmentOf(routeKeyOf(meta, r[keyIdx] ?? null));
              if (seg.from !== shard.name || !seg.moves || seg.to === shard.name) continue;
              const list = byTarget.get(seg.to) ?? [];
              list.push(r);
              byTarget.set(seg.to, list);
            }
            for (const [target, list] of byTarget) {
              summary.moved += list.length;
              if (!opts.execute) continue;
              const present = await presentOnTarget(
                targetConns.get(target)!,
                targetMeta.get(target)!,
                list,
                pkIdx,
              );
              const del = list.filter((r) => present.has(pkText(r, pkIdx)));
              summary.missingOnTarget += list.length - del.length;
              if (del.length === 0) continue;
              const n = await deleteRows(conn, meta, key, del, pkIdx, keyIdx, lower, upper);
              summary.deleted += n;
              summary.changed += del.length - n;
              throttle.charge(shard.name, n);
            }
            if (rows.length < batch) break;
            lower = upper;
          }
          log().info({ ...summary, executed: opts.execute }, 'cleanup table done');
        }
      } finally {
        throttle.stop();
      }
    }
    const deleted = tables.reduce((a, t) => a + t.deleted, 0);
    const missingOnTarget = tables.reduce((a, t) => a + t.missingOnTarget, 0);
    if (opts.execute)
      await appendEvent(ctx.control.conn, job.id, 'cleanup', { deleted, missingOnTarget, retired, tables });
    const summary: CleanupSummary = {
      ok: missingOnTarget === 0,
      executed: opts.execute,
      job: { id: job.id, name: job.name, state: job.state },
      tables,
      retired,
      deleted,
      missingOnTarget,
      seconds: (Date.now() - started) / 1000,
    };
    if (missingOnTarget > 0) {
      throw new MismatchError(
        'E_CLEANUP_MISSING_ON_TARGET',
        `${missingOnTarget} moved rows are not on their new owner; they were kept on their old shard`,
        {
          hint: 'run `reshard verify` and repair before cleaning up again; nothing missing on a target was deleted',
          data: { summary },
        },
      );
    }
    return summary;
  } finally {
    for (const c of conns) await c.end().catch(() => c.destroy());
    await ctx.close();
  }
}

function pkText(r: Row, pkIdx: number[]): string {
  return JSON.stringify(
    pkIdx.map((i) => {
      const v = r[i] ?? null;
      return Buffer.isBuffer(v) ? { b: v.toString('base64') } : v === null ? null : String(v);
    }),
  );
}

/** Primary keys (as read from the old shard) that exist on the target. */
async function presentOnTarget(
  conn: Connection,
  t: TableMeta,
  rows: Row[],
  pkIdx: number[],
): Promise<Set<string>> {
  const cols = t.pk.map((i) => q(t.columns[i]!));
  const tuple = `(${cols.map(() => '?').join(', ')})`;
  const params: unknown[] = [];
  for (const r of rows) for (const i of pkIdx) params.push(sqlParam(r[i] ?? null));
  const where =
    cols.length === 1
      ? `${cols[0]} IN (${rows.map(() => '?').join(', ')})`
      : `(${cols.join(', ')}) IN (${rows.map(() => tuple).join(', ')})`;
  const [res] = await conn.query({
    sql: `SELECT ${cols.join(', ')} FROM ${t.sql.table} WHERE ${where}`,
    values: params,
    rowsAsArray: true,
  });
  // Compare as the target's collation sees the key: look each read key up by the server's answer.
  const found = res as unknown as Row[];
  const out = new Set<string>();
  if (found.length === rows.length) {
    for (const r of rows) out.add(pkText(r, pkIdx));
    return out;
  }
  // Fewer found: match one by one (exact text first, then the server decides per key).
  const foundText = new Set(
    found.map((f) =>
      pkText(
        f,
        f.map((_, i) => i),
      ),
    ),
  );
  for (const r of rows) {
    const k = pkText(r, pkIdx);
    if (foundText.has(k)) {
      out.add(k);
      continue;
    }
    const one = pkIdx.map((i) => sqlParam(r[i] ?? null));
    const [x] = await conn.query({
      sql: `SELECT 1 FROM ${t.sql.table} WHERE ${cols.map((c) => `${c} = ?`).join(' AND ')} LIMIT 1`,
      values: one,
      rowsAsArray: true,
    });
    if ((x as unknown[]).length > 0) out.add(k);
  }
  return out;
}

/** Delete rows whose primary key and shard key are still as read; returns rows deleted. */
async function deleteRows(
  conn: Connection,
  t: TableMeta,
  key: KeyColumn[],
  rows: Row[],
  pkIdx: number[],
  keyIdx: number,
  lower: Row | null,
  upper: Row,
): Promise<number> {
  const range = rangeCondition(key, lower, upper);
  const shardCol = q(t.columns[t.shardKey]!);
  const keyExpr = t.keyKind === 'string' ? `CAST(${shardCol} AS BINARY)` : shardCol;
  const pkCols = t.pk.map((i) => q(t.columns[i]!));
  const inKeyPk = t.pk.includes(t.shardKey);
  const tupleCols = inKeyPk ? pkCols : [...pkCols, keyExpr];
  const tuple = `(${tupleCols.map(() => '?').join(', ')})`;
  const params: unknown[] = [...range.params];
  for (const r of rows) {
    for (const i of pkIdx) params.push(sqlParam(r[i] ?? null));
    if (!inKeyPk) params.push(sqlParam(r[keyIdx] ?? null));
  }
  const [res] = await conn.query(
    `DELETE FROM ${t.sql.table} WHERE ${range.sql} AND (${tupleCols.join(', ')}) IN (${rows.map(() => tuple).join(', ')})`,
    params,
  );
  return (res as { affectedRows: number }).affectedRows;
}
