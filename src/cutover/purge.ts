/**
 * Purging copied rows from the targets of a cancelled job (`reshard rollback --purge-targets`).
 *
 * Only rows of moving segments whose new owner is that target are deleted — a row of a staying
 * segment on an in-place target is the target's own data and is never touched. Rows are found by
 * routing each row's shard key with the plan (so every scheme works, consistent hashing too),
 * read as a stream of (primary key, shard key) on one session and deleted by primary key in
 * batches on another, each batch followed by a pause as long as the batch took (at most half the
 * time spent deleting), so the targets' own load keeps its share. Idempotent: a re-run deletes
 * whatever is left. reshard's own rows of the job (parked rows, apply positions) go too.
 */
import { jobOwner, metaOwner } from '../apply/applier.js';
import { loadTableMeta, routeKeyOf } from '../apply/table.js';
import type { Value } from '../apply/values.js';
import { sqlParam } from '../apply/values.js';
import { connect } from '../db/connect.js';
import { q } from '../db/quote.js';
import { sleep } from '../db/retry.js';
import { iterateQuery } from '../db/stream.js';
import type { JobContext } from '../job/context.js';

export interface PurgeSummary {
  deleted: number;
  tables: { target: string; table: string; deleted: number }[];
  seconds: number;
}

const BATCH = 500;

export async function purgeTargets(
  ctx: JobContext,
  metaDb: string,
  onProgress?: (text: string) => void,
): Promise<PurgeSummary> {
  const t0 = Date.now();
  const targets = [...new Set(ctx.plan.segments.filter((s) => s.moves).map((s) => s.to))].sort();
  const out: PurgeSummary = { deleted: 0, tables: [], seconds: 0 };
  for (const name of targets) {
    const shard = ctx.to.shards.find((s) => s.name === name)!;
    const reader = await connect(shard.endpoint, `target ${name}`);
    const writer = await connect(shard.endpoint, `target ${name}`);
    try {
      for (const spec of ctx.to.tables) {
        const meta = await loadTableMeta(writer, shard.endpoint.database, spec, `target ${name}`);
        const pkCols = meta.pk.map((i) => q(meta.columns[i]!));
        const sql = `SELECT ${pkCols.join(', ')}, ${q(meta.columns[meta.shardKey]!)} FROM ${meta.sql.table}`;
        let batch: Value[][] = [];
        let deleted = 0;
        const flush = async () => {
          if (batch.length === 0) return;
          const tb = Date.now();
          const tuple = pkCols.length === 1 ? '?' : `(${pkCols.map(() => '?').join(', ')})`;
          const lhs = pkCols.length === 1 ? pkCols[0]! : `(${pkCols.join(', ')})`;
          const [res] = await writer.query(
            `DELETE FROM ${meta.sql.table} WHERE ${lhs} IN (${batch.map(() => tuple).join(', ')})`,
            batch.flat().map((v) => sqlParam(v)),
          );
          deleted += (res as { affectedRows: number }).affectedRows;
          batch = [];
          await sleep(Math.max(10, Date.now() - tb));
        };
        for await (const r of iterateQuery<Value[]>(reader, { sql, rowsAsArray: true })) {
          const key = routeKeyOf(meta, r[pkCols.length] ?? null);
          const seg = ctx.index.segmentOf(key);
          if (!seg.moves || seg.to !== name) continue;
          batch.push(r.slice(0, pkCols.length));
          if (batch.length >= BATCH) await flush();
        }
        await flush();
        out.tables.push({ target: name, table: spec.name, deleted });
        out.deleted += deleted;
        if (deleted) onProgress?.(`purged ${deleted} rows of ${spec.name} on ${name}`);
      }
      // Only this job's: the same job id of another control schema is another job's (claimMeta).
      // No owner recorded (no meta database, or one of the previous meta version): this job's.
      const found = await metaOwner(writer, metaDb, ctx.job.id);
      if (found === undefined || found === jobOwner(ctx.control.database, ctx.job)) {
        for (const t of ['parked_rows', 'apply_positions', 'copy_fences', 'jobs'])
          await writer
            .query(`DELETE FROM ${q(metaDb)}.${q(t)} WHERE job_id = ?`, [ctx.job.id])
            .catch((e: unknown) => {
              const errno = (e as { errno?: number }).errno;
              if (errno !== 1049 && errno !== 1146) throw e;
            });
      }
    } finally {
      await reader.end().catch(() => reader.destroy());
      await writer.end().catch(() => writer.destroy());
    }
  }
  out.seconds = (Date.now() - t0) / 1000;
  return out;
}
