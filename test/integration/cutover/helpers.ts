/**
 * Estates for cutover tests. Freezing is server-wide (`read_only`), so every test that freezes
 * runs on its OWN mariadbd instances (never the shared sandbox). The usual layout uses four:
 *   A: s0          — an old shard only: stays read-only after the cutover
 *   B: s1, t0      — old and new shard on one server (in place): writable again after the flip
 *   C: t1, D: t2
 * (each shard is its own database `<db>_<shard>`). Shards that receive the same stream are on
 * different servers: `<metaDb>.apply_positions` is keyed by source only (see the cutover README).
 * The control schema lives on the shared `ctl` server, which is never frozen. An application
 * account `app` (SELECT, INSERT, UPDATE, DELETE only: no READ_ONLY ADMIN, so read_only refuses its
 * writes with errno 1290 on MariaDB 10.11) drives the load; reshard connects as root.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql, { type Connection, type RowDataPacket } from 'mysql2/promise';
import { runCopy } from '../../../src/copy/run.js';
import { EXACT_VALUE_OPTIONS } from '../../../src/db/connect.js';
import { openJob } from '../../../src/job/context.js';
import { writePlanFile } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import {
  findServerBinary,
  type InstanceInfo,
  instanceInfo,
  startInstance,
  stopInstance,
} from '../../../src/sandbox/instances.js';
import { seed } from '../../../src/sandbox/seed.js';
import { connectControl } from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { loadTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';
import { runVerify } from '../../../src/verify/index.js';
import { type CliResult, ROOT, startReshard } from '../../support/cli.js';
import { compareEstate } from '../../support/compare.js';
import { port, uniqueDb } from '../../support/db.js';
import { SHOP_SCHEMA, SHOP_TABLES } from '../../support/shop.js';

export { ROOT };

const SCHEMA = SHOP_SCHEMA;
const TABLES = SHOP_TABLES;

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => res(p));
    });
  });
}

export interface OwnServer {
  port: number;
  info: InstanceInfo;
  destroy(): Promise<void>;
}

/** A private mariadbd (own temp dir, free port, small buffer pool). */
export async function startServer(name: string): Promise<OwnServer> {
  const dir = mkdtempSync(join(tmpdir(), `reshard-cutover-${name}-`));
  const p = await freePort();
  const info = instanceInfo(dir, {
    name,
    port: p,
    serverId: 100_000 + (p % 1_000_000),
    extraArgs: ['--innodb-buffer-pool-size=64M', '--innodb-log-file-size=48M'],
  });
  try {
    await startInstance(findServerBinary(), info);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const c = await portConn(p);
  try {
    await c.query("CREATE USER IF NOT EXISTS 'app'@'%'");
  } finally {
    await c.end();
  }
  return {
    port: p,
    info,
    destroy: async () => {
      try {
        await stopInstance(info);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export async function portConn(p: number, user = 'root'): Promise<Connection> {
  const c = await mysql.createConnection({
    host: '127.0.0.1',
    port: p,
    user,
    ...EXACT_VALUE_OPTIONS,
    multipleStatements: true,
  });
  await c.query("SET SESSION time_zone = '+00:00'");
  return c;
}

export async function readOnly(p: number): Promise<boolean> {
  const c = await portConn(p);
  try {
    const [r] = await c.query<RowDataPacket[]>('SELECT @@GLOBAL.read_only AS ro');
    return Number(r[0]?.ro) === 1;
  } finally {
    await c.end();
  }
}

export async function setReadOnly(p: number, on: boolean): Promise<void> {
  const c = await portConn(p);
  try {
    await c.query(`SET GLOBAL read_only = ${on ? 'ON' : 'OFF'}`);
  } finally {
    await c.end();
  }
}

export interface Estate {
  db: string;
  metaDb: string;
  controlDb: string;
  controlDsn: string;
  dir: string;
  planPath: string;
  from: Topology;
  to: Topology;
  /** The same shards as the application account sees them (for the load). */
  appFrom: Topology;
  appTo: Topology;
  /** Port of each shard's server. */
  ports: Record<ShardName, number>;
  drop(): Promise<void>;
}

export type ShardName = 's0' | 's1' | 't0' | 't1' | 't2';

/** The four-server layout of the header: [A, B, C, D] → shard → port. */
export function layout(servers: readonly OwnServer[]): Record<ShardName, number> {
  const [a, b, c, d] = servers;
  return { s0: a!.port, s1: b!.port, t0: b!.port, t1: c!.port, t2: d!.port };
}

function yaml(name: string, shards: { name: string; port: number; db: string }[], user: string): string {
  const lines = ['version: 1', `name: ${name}`, 'shards:'];
  for (const s of shards)
    lines.push(
      `  - { name: ${s.name}, host: 127.0.0.1, port: ${s.port}, database: ${JSON.stringify(s.db)}, user: ${user} }`,
    );
  lines.push('tables:');
  for (const t of TABLES) lines.push(`  - { name: ${JSON.stringify(t.name)}, shardKey: ${t.shardKey} }`);
  lines.push('groups:', '  - { name: user, tables: [users, orders, order_items] }');
  lines.push('scheme: { type: hash-mod, hash: crc32 }');
  return `${lines.join('\n')}\n`;
}

/**
 * 2 → 3 shop estate on the given servers, seeded with `rows` rows, an initialised control schema
 * and a plan. Nothing is copied yet.
 */
export async function makeEstate(opts: {
  prefix: string;
  rows: number;
  seed?: number;
  ports: Record<ShardName, number>;
  /** Grant the application account (on own servers, where `startServer` created it). Default true. */
  appUser?: boolean;
}): Promise<Estate> {
  const db = uniqueDb(opts.prefix);
  const metaDb = `${db}_meta`;
  const controlDb = `${db}_ctl`;
  const controlDsn = `mysql://root@127.0.0.1:${port('ctl')}/${controlDb}`;
  const dir = mkdtempSync(join(tmpdir(), `reshard-${opts.prefix}-`));
  const src = (['s0', 's1'] as const).map((n) => ({ name: n, port: opts.ports[n], db: `${db}_${n}` }));
  const dst = (['t0', 't1', 't2'] as const).map((n) => ({ name: n, port: opts.ports[n], db: `${db}_${n}` }));
  const drop = async () => {
    for (const s of [...src, ...dst]) {
      const c = await portConn(s.port).catch(() => undefined);
      if (!c) continue;
      try {
        await c.query(`DROP DATABASE IF EXISTS \`${s.db}\``);
        await c.query(`DROP DATABASE IF EXISTS \`${metaDb}\``);
      } finally {
        await c.end();
      }
    }
    const c = await portConn(port('ctl'));
    try {
      await c.query(`DROP DATABASE IF EXISTS \`${controlDb}\``);
    } finally {
      await c.end();
    }
    rmSync(dir, { recursive: true, force: true });
  };
  for (const s of [...src, ...dst]) {
    const c = await portConn(s.port);
    try {
      await c.query(`CREATE DATABASE \`${s.db}\` CHARACTER SET utf8mb4`);
      if (opts.appUser !== false)
        await c.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON \`${s.db}\`.* TO 'app'@'%'`);
    } finally {
      await c.end();
    }
  }
  const w = (file: string, text: string) => {
    writeFileSync(join(dir, file), text);
    return loadTopology(join(dir, file));
  };
  const from = w('from.yaml', yaml('from', src, 'root'));
  const to = w('to.yaml', yaml('to', dst, 'root'));
  const appFrom = w('app-from.yaml', yaml('from', src, 'app'));
  const appTo = w('app-to.yaml', yaml('to', dst, 'app'));
  await seed({ topology: from, rows: opts.rows, seed: opts.seed ?? 7, schemaSql: SCHEMA, replace: false });
  await seed({ topology: to, rows: 0, seed: 1, schemaSql: SCHEMA, replace: false });
  const ctl = await connectControl(controlDsn);
  try {
    await ensureControlSchema(ctl);
  } finally {
    await ctl.close();
  }
  const planPath = join(dir, 'plan.json');
  writePlanFile(planPath, plan(from, to));
  return {
    db,
    metaDb,
    controlDb,
    controlDsn,
    dir,
    planPath,
    from,
    to,
    appFrom,
    appTo,
    ports: opts.ports,
    drop,
  };
}

export function openCtx(e: Estate) {
  return openJob({ planPath: e.planPath, control: e.controlDsn, create: false });
}

/** Copy (records the forward start positions; no tailer) and a full verify once quiescent. */
export async function copyAndVerify(e: Estate, opts: { verify?: boolean } = {}): Promise<void> {
  const r = await runCopy({
    planPath: e.planPath,
    control: e.controlDsn,
    metaDb: e.metaDb,
    progress: 'none',
    concurrency: 2,
  });
  if (!r.complete) throw new Error('copy did not complete');
  if (opts.verify === false) return;
  const ctx = await openCtx(e);
  try {
    // The copy ran on a quiet estate; a hand-made tail is not needed for a clean verify.
    const report = await runVerify({ ctx, preflight: false });
    if (!report.ok) throw new Error(`verify after copy: ${JSON.stringify(report.totals)}`);
  } finally {
    await ctx.close();
  }
}

export async function ctlQuery<T = RowDataPacket>(
  e: Estate,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = await portConn(port('ctl'));
  try {
    await c.query(`USE \`${e.controlDb}\``);
    const [rows] = await c.query(sql, params);
    return rows as T[];
  } finally {
    await c.end();
  }
}

export async function activeRoutings(
  e: Estate,
): Promise<{ version: number; writesHash: string; readsHash: string }[]> {
  const rows = await ctlQuery<{ version: number; routing: string }>(
    e,
    'SELECT version, routing FROM reshard_routing_versions WHERE active = 1',
  );
  return rows.map((r) => {
    const d = JSON.parse(r.routing) as {
      writes: { topology: { topologyHash: string } };
      reads: { topology: { topologyHash: string } };
    };
    return {
      version: Number(r.version),
      writesHash: d.writes.topology.topologyHash,
      readsHash: d.reads.topology.topologyHash,
    };
  });
}

export async function jobState(e: Estate): Promise<string> {
  const rows = await ctlQuery<{ state: string }>(e, 'SELECT state FROM reshard_jobs');
  return String(rows[0]?.state);
}

/** Old shards vs new shards, byte for byte (every row of a moving segment on its new owner and back). */
export async function differences(e: Estate): Promise<{ total: number; detail: string }> {
  const d = await compareEstate({ from: e.from, to: e.to });
  return {
    total: d.total,
    detail: `${JSON.stringify(d.counts)} ${JSON.stringify(d.differences.slice(0, 5))}`,
  };
}

/** An INSERT as the application account on `p`/`database`: undefined when accepted, else the errno. */
export async function appWrite(p: number, database: string): Promise<number | undefined> {
  const c = await portConn(p, 'app');
  try {
    await c.query(`USE \`${database}\``);
    await c.query('START TRANSACTION');
    await c.query('UPDATE `users` SET `name` = `name` WHERE `id` = 0');
    await c.query("INSERT INTO `coupons` (`code`, `user_id`, `discount`) VALUES ('probe', 0, 1.00)");
    await c.query('ROLLBACK');
    return undefined;
  } catch (err) {
    return (err as { errno?: number }).errno ?? -1;
  } finally {
    await c.end();
  }
}

export type { CliResult };

export function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 150_000,
): Promise<CliResult> {
  const p = startReshard(args, env);
  const t = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  return p.done.finally(() => clearTimeout(t));
}

/**
 * The application side of `--on-flip`: the hook (run by reshard after the flip, before in-place
 * servers are unfrozen) reports the flip and waits until the application has acknowledged it —
 * here: `onFlip` stops the load that routes by the old topology. Without it, a load still routing
 * by the old topology would write to an in-place old shard once it is writable again, which is the
 * documented straggler limit, not something reshard can detect. Idempotent (hooks run at least once).
 */
export function flipHandshake(dir: string, onFlip: () => Promise<void>): { hook: string; close(): void } {
  const flipped = join(dir, 'flipped');
  const ack = join(dir, 'ack');
  const hook = `touch '${flipped}'; i=0; while [ ! -f '${ack}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; [ -f '${ack}' ]`;
  let done = false;
  const timer = setInterval(() => {
    if (done || !existsSync(flipped)) return;
    done = true;
    onFlip().finally(() => writeFileSync(ack, 'ok'));
  }, 20);
  return { hook, close: () => clearInterval(timer) };
}
