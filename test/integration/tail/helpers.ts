/**
 * Throw-away estates for tailer tests: fresh databases (sources → targets), the shop schema
 * (optionally seeded), an initialised control schema, topology files and a plan in a temp
 * directory, and the job row. `drop()` removes all of it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { readMasterPosition } from '../../../src/binlog/position.js';
import { recordStartPosition } from '../../../src/binlog/status.js';
import { startTail, type TailContext, type TailOptions } from '../../../src/binlog/tailer.js';
import { openJob } from '../../../src/job/context.js';
import { writePlanFile } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import {
  findServerBinary,
  instanceInfo,
  startInstance,
  stopInstance,
} from '../../../src/sandbox/instances.js';
import { seed } from '../../../src/sandbox/seed.js';
import { connectControl } from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { loadTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';
import { type CliResult, ROOT, startReshard } from '../../support/cli.js';
import { compareEstate } from '../../support/compare.js';
import { port, type SandboxName, uniqueDb } from '../../support/db.js';
import { SHOP_SCHEMA, SHOP_TABLES } from '../../support/shop.js';

export { ROOT };
export const SCHEMA = SHOP_SCHEMA;
export const TABLES = SHOP_TABLES;

export interface Endpoint {
  name: string;
  port: number;
}

export interface Estate {
  db: string;
  metaDb: string;
  controlDb: string;
  controlDsn: string;
  dir: string;
  planPath: string;
  fromPath: string;
  toPath: string;
  from: Topology;
  to: Topology;
  sources: Endpoint[];
  targets: Endpoint[];
  /** Open the job (creating it) as the tailer sees it; close it with ctx.close(). */
  job(): Promise<TailContext & { close(): Promise<void> }>;
  drop(): Promise<void>;
}

function yaml(
  name: string,
  shards: Endpoint[],
  db: string,
  scheme = '{ type: hash-mod, hash: crc32 }',
): string {
  const lines = ['version: 1', `name: ${name}`, 'shards:'];
  for (const s of shards)
    lines.push(
      `  - { name: ${s.name}, host: 127.0.0.1, port: ${s.port}, database: ${JSON.stringify(db)}, user: root }`,
    );
  lines.push('tables:');
  for (const t of TABLES) lines.push(`  - { name: ${JSON.stringify(t.name)}, shardKey: ${t.shardKey} }`);
  lines.push('groups:', '  - { name: user, tables: [users, orders, order_items] }');
  lines.push(`scheme: ${scheme}`);
  return `${lines.join('\n')}\n`;
}

async function exec(p: number, sql: string, database?: string): Promise<void> {
  const mysql = await import('mysql2/promise');
  const c = await mysql.createConnection({
    host: '127.0.0.1',
    port: p,
    user: 'root',
    multipleStatements: true,
    ...(database ? { database } : {}),
  });
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export async function makeEstate(opts: {
  prefix: string;
  rows: number;
  seed?: number;
  sources?: Endpoint[];
  targets?: Endpoint[];
  /** Schemes (YAML flow maps) of the two topologies; hash-mod crc32 by default. */
  fromScheme?: string;
  toScheme?: string;
}): Promise<Estate> {
  const db = uniqueDb(opts.prefix);
  const metaDb = `${db}_meta`;
  const controlDb = `${db}_ctl`;
  const controlDsn = `mysql://root@127.0.0.1:${port('ctl')}/${controlDb}`;
  const sources = opts.sources ?? (['s0', 's1'] as SandboxName[]).map((n) => ({ name: n, port: port(n) }));
  const targets =
    opts.targets ?? (['t0', 't1', 't2'] as SandboxName[]).map((n) => ({ name: n, port: port(n) }));
  const dir = mkdtempSync(join(tmpdir(), `reshard-${opts.prefix}-`));
  const fromPath = join(dir, 'from.yaml');
  const toPath = join(dir, 'to.yaml');
  writeFileSync(fromPath, yaml('from', sources, db, opts.fromScheme));
  writeFileSync(toPath, yaml('to', targets, db, opts.toScheme));
  const from = loadTopology(fromPath);
  const to = loadTopology(toPath);
  const planPath = join(dir, 'plan.json');
  writePlanFile(planPath, plan(from, to));
  await seed({ topology: from, rows: opts.rows, seed: opts.seed ?? 1, schemaSql: SCHEMA, replace: false });
  for (const t of targets) {
    await exec(t.port, `CREATE DATABASE \`${db}\` CHARACTER SET utf8mb4`);
    await exec(t.port, SCHEMA, db);
  }
  const ctl = await connectControl(controlDsn);
  try {
    await ensureControlSchema(ctl);
  } finally {
    await ctl.close();
  }
  const e: Estate = {
    db,
    metaDb,
    controlDb,
    controlDsn,
    dir,
    planPath,
    fromPath,
    toPath,
    from,
    to,
    sources,
    targets,
    job: () => openJob({ planPath, control: controlDsn, create: true }),
    drop: async () => {
      for (const s of [...sources, ...targets]) {
        await exec(s.port, `DROP DATABASE IF EXISTS \`${db}\`; DROP DATABASE IF EXISTS \`${metaDb}\``).catch(
          () => undefined,
        );
      }
      await exec(port('ctl'), `DROP DATABASE IF EXISTS \`${controlDb}\``).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return e;
}

/**
 * What `reshard copy` does before its first read, for tests that copy by hand: record each
 * source's current binlog end as the forward start position.
 */
export async function recordStarts(e: Estate, direction: 'forward' | 'reverse' = 'forward'): Promise<void> {
  const ctx = await e.job();
  try {
    for (const s of (direction === 'forward' ? e.from : e.to).shards) {
      const c = await rootConn2(s.endpoint.port);
      try {
        await recordStartPosition(
          ctx.control.conn,
          ctx.job.id,
          s.name,
          direction,
          await readMasterPosition(c),
        );
      } finally {
        await c.end();
      }
    }
  } finally {
    await ctx.close();
  }
}

async function rootConn2(p: number): Promise<Connection> {
  const mysql = await import('mysql2/promise');
  const { EXACT_VALUE_OPTIONS } = await import('../../../src/db/connect.js');
  const c = await mysql.createConnection({
    host: '127.0.0.1',
    port: p,
    user: 'root',
    ...EXACT_VALUE_OPTIONS,
  });
  await c.query("SET SESSION time_zone = '+00:00'");
  return c;
}

/**
 * A quiescent copy for tests that do not exercise the copier: every moving row of every source
 * written to its new owner with INSERT … SELECT-like fidelity (same driver values both ways).
 */
/**
 * The usual start of a tailer test: start positions recorded, the rows copied by hand, the job
 * opened and a tailer running on it. The caller stops the tailer and closes the job.
 */
export async function copiedAndTailing(e: Estate) {
  await recordStarts(e);
  await naiveCopy(e);
  const ctx = await e.job();
  const { startTail } = await import('../../../src/binlog/tailer.js');
  const tail = await startTail({ ctx, metaDb: e.metaDb });
  return { ctx, tail };
}

export async function naiveCopy(e: Estate): Promise<void> {
  const { createRouter } = await import('../../../src/plan/router.js');
  const { loadTableMeta, routeKeyOf } = await import('../../../src/apply/table.js');
  const { sqlParam } = await import('../../../src/apply/values.js');
  const toRouter = createRouter(e.to);
  for (const spec of e.from.tables) {
    for (const s of e.from.shards) {
      const c = await rootConn2(s.endpoint.port);
      try {
        const meta = await loadTableMeta(c, e.db, spec, 'naive copy');
        const [rows] = await c.query({
          sql: `SELECT ${meta.sql.columns} FROM ${meta.sql.table}`,
          rowsAsArray: true,
        });
        const byTarget = new Map<string, unknown[][]>();
        for (const r of rows as unknown as unknown[][]) {
          const t = toRouter.ownerOf(routeKeyOf(meta, r[meta.shardKey] as never));
          const list = byTarget.get(t) ?? [];
          list.push(r);
          byTarget.set(t, list);
        }
        for (const [t, list] of byTarget) {
          const tc = await rootConn2(e.to.shards.find((x) => x.name === t)!.endpoint.port);
          try {
            for (let i = 0; i < list.length; i += 500) {
              const chunk = list.slice(i, i + 500);
              const tuple = `(${meta.columns.map(() => '?').join(', ')})`;
              await tc.query(
                `INSERT INTO ${meta.sql.table} (${meta.sql.columns}) VALUES ${chunk.map(() => tuple).join(', ')}`,
                chunk.flatMap((r) => r.map((v) => sqlParam(v as never))),
              );
            }
          } finally {
            await tc.end();
          }
        }
      } finally {
        await c.end();
      }
    }
  }
}

/** Source vs target, byte for byte; and no parked rows left on any target. */
/** Tail every source until caught up, then stop (options as for startTail). */
export async function tailCaughtUp(
  e: Estate,
  opts: Omit<TailOptions, 'ctx' | 'metaDb'> = {},
  timeoutMs = 30_000,
): Promise<void> {
  const ctx = await e.job();
  const tail = await startTail({ ctx, metaDb: e.metaDb, ...opts });
  try {
    await tail.waitCaughtUp({ timeoutMs });
    await tail.stop();
  } finally {
    await tail.stop().catch(() => undefined);
    await ctx.close();
  }
}

export async function expectConverged(
  e: Estate,
  opts: { reverse?: boolean } = {},
): Promise<{ rows: number }> {
  const diff = opts.reverse
    ? await compareEstate({ from: e.to, to: e.from })
    : await compareEstate({ from: e.from, to: e.to });
  if (diff.total !== 0) {
    throw new Error(
      `estate differs: ${JSON.stringify(diff.counts)} ${JSON.stringify(diff.differences.slice(0, 10))}`,
    );
  }
  for (const t of opts.reverse ? e.sources : e.targets) {
    const c = await rootConn2(t.port);
    try {
      const [r] = await c.query<RowDataPacket[]>(
        `SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'parked_rows'`,
        [e.metaDb],
      );
      if (Number(r[0]!.n) > 0) {
        const [p] = await c.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${e.metaDb}\`.parked_rows`);
        if (Number(p[0]!.n) !== 0) throw new Error(`${p[0]!.n} parked rows left on ${t.name}`);
      }
    } finally {
      await c.end();
    }
  }
  return { rows: diff.rows.source };
}

export function sqlOn(p: number, sql: string, database?: string): Promise<void> {
  return exec(p, sql, database);
}

export async function queryOn<T = RowDataPacket>(
  p: number,
  sql: string,
  params: unknown[] = [],
  database?: string,
): Promise<T[]> {
  const c = await rootConn2(p);
  try {
    if (database) await c.query(`USE \`${database}\``);
    const [rows] = await c.query(sql, params);
    return rows as T[];
  } finally {
    await c.end();
  }
}

export type { CliResult };

/** Start `bin/reshard …` as a child process. */
export function startCli(args: string[], env: Record<string, string> = {}) {
  return startReshard(args, env);
}

export function runCli(args: string[], timeoutMs = 120_000): Promise<CliResult> {
  const p = startCli(args);
  const t = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  return p.done.finally(() => clearTimeout(t));
}

/** A free port in the test sandbox's range (20000–29990), never one of the ports left alone. */
async function freeTestPort(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const p = 20000 + Math.floor(Math.random() * 9990);
    const ok = await new Promise<boolean>((res) => {
      const srv = createServer();
      srv.once('error', () => res(false));
      srv.listen(p, '127.0.0.1', () => srv.close(() => res(true)));
    });
    if (ok) return p;
  }
  throw new Error('no free port');
}

/**
 * An estate (copied, start positions recorded) whose control schema lives on a mariadbd of its
 * own, which the test may stop and start again without disturbing other tests.
 */
export async function estateWithPrivateControl(opts: {
  prefix: string;
  rows: number;
  seed: number;
}): Promise<{
  e: Estate;
  port: number;
  stopControl(): Promise<void>;
  startControl(): Promise<void>;
  drop(): Promise<void>;
}> {
  const dir = mkdtempSync(join(tmpdir(), `reshard-${opts.prefix}-ctl-`));
  const port = await freeTestPort();
  const ctl = instanceInfo(dir, { name: 'ctl', port, serverId: 3_000_000 + port });
  await startInstance(findServerBinary(), ctl);
  const base = await makeEstate(opts);
  const controlDsn = `mysql://root@127.0.0.1:${port}/${base.controlDb}`;
  const c = await connectControl(controlDsn);
  try {
    await ensureControlSchema(c);
  } finally {
    await c.close();
  }
  const e: Estate = {
    ...base,
    controlDsn,
    job: () => openJob({ planPath: base.planPath, control: controlDsn, create: true }),
  };
  await recordStarts(e);
  await naiveCopy(e);
  return {
    e,
    port,
    stopControl: async () => {
      await stopInstance(ctl);
    },
    startControl: () => startInstance(findServerBinary(), ctl),
    drop: async () => {
      await e.drop().catch(() => undefined);
      await stopInstance(ctl).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
