/**
 * Helpers for the review-b tests: a one-source estate (s0 → t0, t1, every row moves) with a custom
 * table, per-column stored-value comparison (HEX of the stored bytes) between the source and the
 * union of the targets, copy / tail / verify runners.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTail } from '../../../src/binlog/tailer.js';
import { runCopy } from '../../../src/copy/run.js';
import { openJob } from '../../../src/job/context.js';
import { splitFixSql } from '../../../src/verify/fixsql.js';
import { runVerify } from '../../../src/verify/verifier.js';
import { rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { type Estate, makeEstate } from './helpers.js';

export type { Estate };

export async function oneSourceEstate(
  prefix: string,
  schemaSql: string,
  table: string,
  shardKey: string,
): Promise<Estate> {
  const db = uniqueDb(prefix);
  return makeEstate({
    prefix,
    db,
    rows: 0,
    schemaSql,
    tables: [{ name: table, shardKey }],
    sources: [{ name: 's0', server: 's0', database: db }],
    targets: [
      { name: 't0', server: 't0', database: db },
      { name: 't1', server: 't1', database: db },
    ],
  });
}

export async function sql(server: SandboxName, db: string, text: string, params: unknown[] = []) {
  const c = await rootConn(server, db);
  try {
    const [rows] = await c.query(text, params);
    return rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

/**
 * Stored values per row: `exprs` maps a label to an SQL expression (e.g. HEX(col)); rows keyed by
 * the text of `key`. Targets: the union of t0 and t1 (a key on both is reported as such).
 */
export async function stored(
  servers: SandboxName[],
  db: string,
  table: string,
  key: string,
  exprs: Record<string, string>,
): Promise<Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, unknown>> = {};
  const list = Object.entries(exprs)
    .map(([k, v]) => `${v} AS \`${k}\``)
    .join(', ');
  for (const s of servers) {
    for (const r of await sql(s, db, `SELECT HEX(${key}) AS k__, ${list} FROM \`${table}\``)) {
      const k = String(r.k__);
      const { k__: _, ...rest } = r;
      out[out[k] ? `${k}@dup-${s}` : k] = rest;
    }
  }
  return out;
}

export async function copy(e: Estate, bulk: boolean) {
  return runCopy({ planPath: e.planPath, control: e.controlDsn, metaDb: e.metaDb, progress: 'none', bulk });
}

/** Run a forward tailer until it has caught up with s0 (or failed); resolves with the failure. */
export async function tailOnce(e: Estate, direction: 'forward' | 'reverse' = 'forward'): Promise<unknown> {
  const ctx = await openJob({ planPath: e.planPath, control: e.controlDsn, create: true });
  try {
    const tail = await startTail({ ctx, metaDb: e.metaDb, direction });
    try {
      return await Promise.race([tail.waitCaughtUp({ timeoutMs: 30_000 }), tail.done]).then(
        () => undefined,
        (err: unknown) => err,
      );
    } finally {
      await tail.stop().catch(() => undefined);
    }
  } finally {
    await ctx.close();
  }
}

export async function verify(e: Estate, fixSqlPath?: string) {
  return runVerify({
    planPath: e.planPath,
    control: e.controlDsn,
    recheck: { rounds: 0, pauseMs: 0 },
    ...(fixSqlPath ? { fixSqlPath } : {}),
  });
}

/** Apply a --fix-sql file: each section on its shard's server (shard names are sandbox names). */
export async function applyFix(path: string): Promise<void> {
  for (const [shard, text] of splitFixSql(readFileSync(path, 'utf8'))) {
    const c = await rootConn(shard as SandboxName);
    try {
      await c.query(text);
    } finally {
      await c.end();
    }
  }
}

export function fixPath(e: Estate): string {
  return join(e.dir, 'fix.sql');
}
