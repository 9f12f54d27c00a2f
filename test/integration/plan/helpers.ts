/**
 * Helpers for plan tests: the shop fixture seeded into fresh databases, and the truth about
 * which rows move, computed independently of the estimator by reading every row's shard key
 * and routing it in the client with both topologies' routers.
 */
import { join } from 'node:path';
import { q, qt } from '../../../src/db/quote.js';
import { createRouter } from '../../../src/plan/router.js';
import type { Topology } from '../../../src/topology/types.js';
import { rootConn, type SandboxName } from '../../support/db.js';
import { SHOP_SCHEMA, SHOP_TABLES } from '../../support/shop.js';

export const ROOT = join(import.meta.dirname, '..', '..', '..');
export { SHOP_SCHEMA, SHOP_TABLES };
export const SHOP_GROUPS = [{ name: 'user', tables: ['users', 'orders', 'order_items'] }];

/** Which sandbox server each shard of a topology lives on (by port). */
export function serverOf(t: Topology, servers: Record<string, SandboxName>): (shard: string) => SandboxName {
  return (shard) => {
    const s = servers[shard];
    if (!s) throw new Error(`no server for shard ${shard} of ${t.file}`);
    return s;
  };
}

/** "from>to" → rows, counted by routing every row of every table of every source in the client. */
export async function truth(
  from: Topology,
  to: Topology,
  serverFor: (shard: string) => SandboxName,
): Promise<{ pairs: Map<string, number>; perTable: Map<string, Map<string, number>>; misplaced: number }> {
  const ra = createRouter(from);
  const rb = createRouter(to);
  const pairs = new Map<string, number>();
  const perTable = new Map<string, Map<string, number>>();
  let misplaced = 0;
  for (const shard of from.shards) {
    const c = await rootConn(serverFor(shard.name));
    try {
      for (const t of from.tables) {
        const [rows] = await c.query({
          sql: `SELECT ${q(t.shardKey)} FROM ${qt(shard.endpoint.database, t.name)}`,
          rowsAsArray: true,
        });
        const m = new Map<string, number>();
        for (const [v] of rows as [string | number][]) {
          const key = BigInt(v);
          if (ra.ownerOf(key) !== shard.name) {
            misplaced++;
            continue;
          }
          const k = `${shard.name}>${rb.ownerOf(key)}`;
          pairs.set(k, (pairs.get(k) ?? 0) + 1);
          m.set(k, (m.get(k) ?? 0) + 1);
        }
        perTable.set(`${shard.name}.${t.name}`, m);
      }
    } finally {
      await c.end();
    }
  }
  return { pairs, perTable, misplaced };
}
