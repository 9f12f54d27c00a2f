/**
 * What a copy works on, derived from the plan and read from the servers: for every source shard
 * with moving segments and every tracked table, the table's metadata on the source and on each
 * target, the SQL filter selecting the moving rows, and size estimates. Shared by `runCopy`
 * and the dry run.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { tableMetaFromDefinition } from '../apply/table.js';
import { PreconditionError } from '../errors.js';
import type { PlanIndex } from '../plan/plan-index.js';
import type { Plan, Segment } from '../plan/types.js';
import { isIntegerType, requireTableDefinition } from '../preflight/schema.js';
import type { Shard, Topology } from '../topology/types.js';
import { type BulkPlan, bulkPlan } from './bulk.js';
import type { TableJob } from './copier.js';

export interface SourcePlan {
  shard: Shard;
  /** Moving segments from this source. */
  moving: Segment[];
  /** True when some of this source's keys stay on it (in-place expansion): rows must be filtered. */
  hasStays: boolean;
  targets: string[];
}

/** Sources with moving segments, their moves and targets. Pure. */
export function sourcePlans(plan: Plan, from: Topology): SourcePlan[] {
  const out: SourcePlan[] = [];
  for (const shard of from.shards) {
    const mine = plan.segments.filter((s) => s.from === shard.name);
    const moving = mine.filter((s) => s.moves);
    if (moving.length === 0) continue;
    out.push({
      shard,
      moving,
      hasStays: mine.some((s) => !s.moves),
      targets: [...new Set(moving.map((s) => s.to))],
    });
  }
  return out;
}

/**
 * SQL selecting the moving rows of a source: undefined when every key of the source moves (no
 * filter needed) or when the scheme's hash is not SQL-computable (filtered in the client).
 */
export function movingFilter(sp: SourcePlan, index: PlanIndex, shardKeySql: string): string | undefined {
  if (!sp.hasStays) return undefined;
  const preds = sp.moving.map((s) => index.sqlPredicate(s, shardKeySql));
  if (preds.some((p) => p === undefined)) return undefined;
  return preds.length === 1 ? preds[0] : preds.map((p) => `(${p})`).join(' OR ');
}

/** Share of a source's keys that move (1 when unknown). */
export function movingShare(plan: Plan, source: string): number {
  const mine = plan.segments.filter((s) => s.from === source);
  if (mine.some((s) => s.share === null)) return 1;
  const all = mine.reduce((a, s) => a + (s.share?.fraction ?? 0), 0);
  const mv = mine.filter((s) => s.moves).reduce((a, s) => a + (s.share?.fraction ?? 0), 0);
  return all > 0 ? mv / all : 1;
}

export async function tableStats(
  conn: Connection,
  database: string,
  table: string,
): Promise<{ rows: number; avgRowBytes: number }> {
  const [r] = await conn.query<RowDataPacket[]>(
    'SELECT TABLE_ROWS AS n, AVG_ROW_LENGTH AS avg FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
    [database, table],
  );
  return { rows: Number(r[0]?.n ?? 0), avgRowBytes: Number(r[0]?.avg ?? 0) };
}

/**
 * Read every table's definition on a source and on its targets and build the table jobs. Refuses
 * (E_SCHEMA_MISMATCH) a target whose columns or primary key differ from the source's — preflight
 * reports the details; this guards the column order rows are written in.
 */
export async function buildTableJobs(opts: {
  plan: Plan;
  index: PlanIndex;
  from: Topology;
  to: Topology;
  sources: SourcePlan[];
  /** One open connection per shard name (sources and targets). */
  conns: Map<string, Connection>;
  /** false: never use the LOAD DATA path (every row through the applier). */
  bulk?: boolean;
}): Promise<TableJob[]> {
  const { index, from, to } = opts;
  const targetShard = new Map(to.shards.map((s) => [s.name, s]));
  const targetMetaCache = new Map<string, ReturnType<typeof tableMetaFromDefinition>>();
  const targetDefCache = new Map<string, Awaited<ReturnType<typeof requireTableDefinition>>>();
  const jobs: TableJob[] = [];
  for (const sp of opts.sources) {
    const sconn = opts.conns.get(sp.shard.name)!;
    const share = movingShare(opts.plan, sp.shard.name);
    for (const spec of from.tables) {
      const where = `shard ${sp.shard.name}`;
      const def = await requireTableDefinition(sconn, sp.shard.endpoint.database, spec.name, where);
      const meta = tableMetaFromDefinition(def, spec);
      const key = def.primaryKey.map((n) => {
        const col = def.columns.find((c) => c.name === n)!;
        return { name: n, integer: isIntegerType(col) };
      });
      const targetMeta = new Map<string, ReturnType<typeof tableMetaFromDefinition>>();
      const bulk = new Map<string, BulkPlan | undefined>();
      for (const t of sp.targets) {
        const cacheKey = `${t}\u0000${spec.name}`;
        let tm = targetMetaCache.get(cacheKey);
        if (!tm) {
          const shard = targetShard.get(t);
          if (!shard)
            throw new PreconditionError(
              'E_PLAN_TARGET',
              `the plan moves rows to ${t}, which the target topology does not list`,
            );
          const tdef = await requireTableDefinition(
            opts.conns.get(t)!,
            shard.endpoint.database,
            spec.name,
            `shard ${t}`,
          );
          tm = tableMetaFromDefinition(tdef, spec);
          targetMetaCache.set(cacheKey, tm);
          targetDefCache.set(cacheKey, tdef);
        }
        if (
          tm.columns.join('\u0000') !== meta.columns.join('\u0000') ||
          tm.pk.join(',') !== meta.pk.join(',')
        ) {
          throw new PreconditionError(
            'E_SCHEMA_MISMATCH',
            `table ${spec.name} has columns (${tm.columns.join(', ')}) on target ${t} but (${meta.columns.join(', ')}) on source ${sp.shard.name}, or a different primary key`,
            {
              hint: 'make the target table identical to the source (reshard preflight prints the ALTER TABLE)',
            },
          );
        }
        targetMeta.set(t, tm);
        bulk.set(t, opts.bulk === false ? undefined : bulkPlan(tm, targetDefCache.get(cacheKey)!));
      }
      const stats = await tableStats(sconn, sp.shard.endpoint.database, spec.name);
      jobs.push({
        source: sp.shard.name,
        table: spec.name,
        meta,
        key,
        filter: movingFilter(sp, index, meta.sql.shardKey),
        targetMeta,
        targets: sp.targets,
        bulk,
        estimatedRows: Math.round(stats.rows * share),
        avgRowBytes: stats.avgRowBytes,
      });
    }
  }
  return jobs;
}
