/**
 * The dry run of `reshard copy`: what would be copied, from where to where, and about how much.
 * Reads the plan and topologies, runs preflight, and reads table statistics on the sources. It
 * writes nothing anywhere (not even a job row in the control schema).
 */
import type { Connection } from 'mysql2/promise';
import { connectShard } from '../db/connect.js';
import { q } from '../db/quote.js';
import { loadPlanContext } from '../job/context.js';
import { runPreflight } from '../preflight/index.js';
import type { PreflightReport } from '../preflight/types.js';
import { movingFilter, movingShare, sourcePlans, tableStats } from './setup.js';

export interface CopyPreview {
  plan: { path: string; hash: string; from: string; to: string };
  /** The full preflight report (the command refuses with exit 3 when it has failures). */
  preflight: PreflightReport;
  sources: {
    source: string;
    /** Moving segments from this source: target shard and share of the key space. */
    moves: { to: string; share: number | null }[];
    /** Share of this source's keys that move (null: data-dependent). */
    movingShare: number | null;
    tables: {
      table: string;
      tableRows: number | null;
      estimatedRows: number | null;
      /** How moving rows are selected: all rows of the source, an SQL predicate, or in the client. */
      filter: 'all' | 'sql' | 'client';
    }[];
  }[];
  estimatedRows: number;
}

export async function previewCopy(opts: { planPath: string }): Promise<CopyPreview> {
  const ctx = loadPlanContext({ planPath: opts.planPath });
  const report = await runPreflight({ from: ctx.from, to: ctx.to });
  const sps = sourcePlans(ctx.plan, ctx.from);
  const out: CopyPreview = {
    plan: { path: opts.planPath, hash: ctx.planHash, from: ctx.from.name, to: ctx.to.name },
    preflight: report,
    sources: [],
    estimatedRows: 0,
  };
  for (const sp of sps) {
    const unknownShare = ctx.plan.segments.some((s) => s.from === sp.shard.name && s.share === null);
    const share = movingShare(ctx.plan, sp.shard.name);
    let conn: Connection | undefined;
    try {
      conn = await connectShard(sp.shard);
    } catch {
      conn = undefined; // preflight already reports the connection failure
    }
    const tables: CopyPreview['sources'][number]['tables'] = [];
    for (const spec of ctx.from.tables) {
      const st = conn
        ? await tableStats(conn, sp.shard.endpoint.database, spec.name).catch(() => undefined)
        : undefined;
      const est = st ? Math.round(st.rows * share) : null;
      if (est !== null) out.estimatedRows += est;
      tables.push({
        table: spec.name,
        tableRows: st?.rows ?? null,
        estimatedRows: est,
        filter: !sp.hasStays ? 'all' : movingFilter(sp, ctx.index, q(spec.shardKey)) ? 'sql' : 'client',
      });
    }
    await conn?.end().catch(() => conn?.destroy());
    out.sources.push({
      source: sp.shard.name,
      moves: sp.moving.map((s) => ({ to: s.to, share: s.share?.fraction ?? null })),
      movingShare: unknownShare ? null : share,
      tables,
    });
  }
  return out;
}
