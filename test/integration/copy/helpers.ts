/**
 * A throw-away estate for copy tests: fresh databases on the sandbox servers (sources s0, s1 →
 * targets t0, t1, t2 by default), the shop schema seeded with N rows, an initialised control
 * schema, topology files and a plan in a temp directory. `drop()` removes all of it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RowDataPacket } from 'mysql2/promise';
import { expect } from 'vitest';
import { writePlanFile } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import { seed } from '../../../src/sandbox/seed.js';
import { connectControl } from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { loadTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';
import { type CliResult, ROOT, startReshard } from '../../support/cli.js';
import { compareEstate } from '../../support/compare.js';
import { port, rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { SHOP_SCHEMA, SHOP_TABLES } from '../../support/shop.js';

export { ROOT, SHOP_SCHEMA, SHOP_TABLES };

export interface ShardSpec {
  name: string;
  /** A sandbox server, or an explicit port (an extra server a test started). */
  server: SandboxName | number;
  database: string;
}

export function yamlFor(
  name: string,
  shards: ShardSpec[],
  tables = SHOP_TABLES,
  scheme = '{ type: hash-mod, hash: crc32 }',
): string {
  const lines = ['version: 1', `name: ${name}`, 'shards:'];
  for (const s of shards) {
    const p = typeof s.server === 'number' ? s.server : port(s.server);
    lines.push(
      `  - { name: ${s.name}, host: 127.0.0.1, port: ${p}, database: ${JSON.stringify(s.database)}, user: root }`,
    );
  }
  lines.push('tables:');
  for (const t of tables)
    lines.push(`  - { name: ${JSON.stringify(t.name)}, shardKey: ${JSON.stringify(t.shardKey)} }`);
  if (tables === SHOP_TABLES)
    lines.push('groups:', '  - { name: user, tables: [users, orders, order_items] }');
  lines.push(`scheme: ${scheme}`);
  return `${lines.join('\n')}\n`;
}

export interface Estate {
  dir: string;
  db: string;
  metaDb: string;
  controlDb: string;
  controlDsn: string;
  planPath: string;
  from: Topology;
  to: Topology;
  drop(): Promise<void>;
}

async function createDb(server: SandboxName | number, db: string): Promise<void> {
  const c = typeof server === 'number' ? await portConn(server) : await rootConn(server);
  try {
    await c.query(`CREATE DATABASE \`${db}\` CHARACTER SET utf8mb4`);
  } finally {
    await c.end();
  }
}

async function dropDbs(server: SandboxName | number, dbs: string[]): Promise<void> {
  let c: Awaited<ReturnType<typeof rootConn>>;
  try {
    c = typeof server === 'number' ? await portConn(server) : await rootConn(server);
  } catch {
    return; // an extra server that is already gone
  }
  try {
    for (const d of dbs) await c.query(`DROP DATABASE IF EXISTS \`${d}\``);
  } finally {
    await c.end();
  }
}

export async function portConn(p: number, database?: string) {
  const mysql = (await import('mysql2/promise')).default;
  const { EXACT_VALUE_OPTIONS } = await import('../../../src/db/connect.js');
  const c = await mysql.createConnection({
    host: '127.0.0.1',
    port: p,
    user: 'root',
    ...(database ? { database } : {}),
    ...EXACT_VALUE_OPTIONS,
    multipleStatements: true,
  });
  await c.query("SET SESSION time_zone = '+00:00'");
  return c;
}

export async function makeEstate(opts: {
  prefix: string;
  /** Database name on every shard (default: a fresh unique one). */
  db?: string;
  rows: number;
  seed?: number;
  sources?: ShardSpec[];
  targets?: ShardSpec[];
  schemaSql?: string;
  tables?: { name: string; shardKey: string }[];
  /** Run after seeding the sources, before planning (e.g. to break a table). */
  afterSeed?: (db: string) => Promise<void>;
}): Promise<Estate> {
  const db = opts.db ?? uniqueDb(opts.prefix);
  const metaDb = `${db}_meta`;
  const controlDb = uniqueDb(`${opts.prefix}_ctl`);
  const controlDsn = `mysql://root@127.0.0.1:${port('ctl')}/${controlDb}`;
  const dir = mkdtempSync(join(tmpdir(), `reshard-copy-${opts.prefix}-`));
  const sources = opts.sources ?? [
    { name: 's0', server: 's0', database: db },
    { name: 's1', server: 's1', database: db },
  ];
  const targets = opts.targets ?? [
    { name: 't0', server: 't0', database: db },
    { name: 't1', server: 't1', database: db },
    { name: 't2', server: 't2', database: db },
  ];
  const servers = new Map<string, SandboxName | number>();
  for (const s of [...sources, ...targets]) servers.set(String(s.server), s.server);
  const tables = opts.tables ?? SHOP_TABLES;
  const drop = async () => {
    for (const s of servers.values()) await dropDbs(s, [db, metaDb]);
    await dropDbs('ctl', [controlDb]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const dbsByServer = new Map<string, Set<string>>();
    for (const s of [...sources, ...targets]) {
      const set = dbsByServer.get(String(s.server)) ?? new Set();
      if (!set.has(s.database)) {
        set.add(s.database);
        await createDb(s.server, s.database);
      }
      dbsByServer.set(String(s.server), set);
    }
    const fromPath = join(dir, 'from.yaml');
    const toPath = join(dir, 'to.yaml');
    writeFileSync(fromPath, yamlFor(`${opts.prefix}-from`, sources, tables));
    writeFileSync(toPath, yamlFor(`${opts.prefix}-to`, targets, tables));
    const from = loadTopology(fromPath);
    const to = loadTopology(toPath);
    const schemaSql = opts.schemaSql ?? SHOP_SCHEMA;
    await seed({ topology: from, rows: opts.rows, seed: opts.seed ?? 42, schemaSql, replace: false });
    const fromNames = new Set(sources.map((s) => s.name));
    // Targets that are not also sources get empty tables.
    const fresh = targets.filter((t) => !fromNames.has(t.name));
    if (fresh.length) {
      const yaml = join(dir, 'targets-only.yaml');
      writeFileSync(yaml, yamlFor(`${opts.prefix}-fresh`, fresh, tables));
      await seed({ topology: loadTopology(yaml), rows: 0, seed: 1, schemaSql, replace: false });
    }
    await opts.afterSeed?.(db);
    const ctl = await connectControl(controlDsn);
    try {
      await ensureControlSchema(ctl);
    } finally {
      await ctl.close();
    }
    const planPath = join(dir, 'plan.json');
    writePlanFile(planPath, plan(from, to));
    return { dir, db, metaDb, controlDb, controlDsn, planPath, from, to, drop };
  } catch (e) {
    await drop();
    throw e;
  }
}

export type { CliResult };

/** Start `bin/reshard …` as a child process (logging at info). */
export function spawnReshard(args: string[], env: Record<string, string> = {}) {
  return startReshard(args, env, 'info');
}

/** `command --plan … --control … --meta-db …` for the estate's job, then `extra`. */
export function jobArgs(e: Estate, command: string, ...extra: string[]): string[] {
  return [command, '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb, ...extra];
}

export async function reshard(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return spawnReshard(args, env).done;
}

/** Run the estate's whole copy in this process (no progress output). */
export async function copyAll(e: Estate) {
  const { runCopy } = await import('../../../src/copy/run.js');
  return runCopy({ planPath: e.planPath, control: e.controlDsn, metaDb: e.metaDb, progress: 'none' });
}

/** Copy the estate's job to the end in this process and check every row landed byte for byte. */
export async function copyAllAndCompare(e: Estate): Promise<void> {
  const s = await copyAll(e);
  expect(s.complete).toBe(true);
  expect(s.bulkRows).toBeGreaterThan(0);
  const diff = await compareEstate({ from: e.from, to: e.to });
  expect(diff.differences).toEqual([]);
  expect(diff.rows.target).toBe(diff.rows.source);
}

/** Rows of the control schema's chunk table for the estate's (only) job. */
export async function chunkRows(e: Estate) {
  const c = await rootConn('ctl', e.controlDb);
  try {
    const [rows] = await c.query(
      'SELECT source_shard, table_name, chunk_id, state, worker_id, attempts, rows_copied, lower_pk, upper_pk FROM reshard_copy_chunks ORDER BY source_shard, table_name, chunk_id',
    );
    return rows as {
      source_shard: string;
      table_name: string;
      chunk_id: number;
      state: string;
      worker_id: string | null;
      attempts: number;
      rows_copied: string;
      lower_pk: string | null;
      upper_pk: string | null;
    }[];
  } finally {
    await c.end();
  }
}

export async function jobState(e: Estate): Promise<string | undefined> {
  const c = await rootConn('ctl', e.controlDb);
  try {
    const [rows] = await c.query('SELECT state FROM reshard_jobs');
    return (rows as { state: string }[])[0]?.state;
  } finally {
    await c.end();
  }
}

/** KILL every connection of this test's databases on one server; returns how many. */
export async function killConnections(server: SandboxName, dbs: string[]): Promise<number> {
  const c = await rootConn(server);
  try {
    const [rows] = await c.query<RowDataPacket[]>(
      `SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND DB IN (${dbs.map(() => '?').join(', ')})`,
      dbs,
    );
    let n = 0;
    for (const r of rows) {
      await c.query(`KILL CONNECTION ${Number(r.ID)}`).then(
        () => n++,
        () => undefined, // already gone
      );
    }
    return n;
  } finally {
    await c.end();
  }
}
