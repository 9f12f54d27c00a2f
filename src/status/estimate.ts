/**
 * Rows a copy is expected to move, per (source, table): information_schema's TABLE_ROWS on the
 * source × the share of the source's keys that move — the figure the copier's own progress bars
 * use. The control schema does not hold it, so `status` reads it only when given the plan, once
 * per run (it is an estimate; re-reading it every refresh would only load the sources).
 * A source that cannot be reached simply has no estimate.
 */
import type { Connection } from 'mysql2/promise';
import { movingShare, sourcePlans, tableStats } from '../copy/setup.js';
import { connectShard } from '../db/connect.js';
import type { Plan } from '../plan/types.js';
import type { Topology } from '../topology/types.js';
import { estimateKey } from './read.js';

export async function estimateCopyRows(plan: Plan, from: Topology): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  await Promise.all(
    sourcePlans(plan, from).map(async (sp) => {
      let conn: Connection | undefined;
      try {
        conn = await connectShard(sp.shard);
        const share = movingShare(plan, sp.shard.name);
        for (const t of from.tables) {
          const st = await tableStats(conn, sp.shard.endpoint.database, t.name);
          out.set(estimateKey(sp.shard.name, t.name), Math.round(st.rows * share));
        }
      } catch {
        // no estimate for this source
      } finally {
        await conn?.end().catch(() => conn?.destroy());
      }
    }),
  );
  return out;
}
