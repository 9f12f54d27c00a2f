/**
 * A correct 2 → 3 estate for verify tests, built by writing rows directly: every row goes to its
 * owner under the source topology (s0, s1) and, byte-identical, to its owner under the target
 * topology (t0, t1, t2), as a finished copy would leave them. Fresh databases per estate.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { type JobContext, openJob } from '../../../src/job/context.js';
import { writePlanFile } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import { createRouter, type Router } from '../../../src/plan/router.js';
import { connectControl } from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { loadTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';
import {
  createDatabases,
  port,
  rootConn,
  type SandboxName,
  topologyYaml,
  uniqueDb,
} from '../../support/db.js';
import { SHOP_SCHEMA, SHOP_TABLES } from '../../support/shop.js';

export const ROOT = join(import.meta.dirname, '..', '..', '..');
export const SOURCES = ['s0', 's1'] as const;
export const TARGETS = ['t0', 't1', 't2'] as const;
export const ALL: SandboxName[] = [...SOURCES, ...TARGETS];

const TABLES = SHOP_TABLES;

export interface Estate {
  db: string;
  dir: string;
  planPath: string;
  controlDsn: string;
  controlDb: string;
  from: Topology;
  to: Topology;
  routeFrom: Router;
  routeTo: Router;
  /** Root connection to a server, database selected (cached). */
  conn(name: SandboxName): Promise<Connection>;
  /** Open the job context (creating the job on first use). */
  open(): Promise<JobContext>;
  /** Server that owns a shard key under the target topology. */
  targetOf(key: bigint): SandboxName;
  sourceOf(key: bigint): SandboxName;
  /** Run SQL on the source owner of a shard key, on its target owner, or on both (as a copy or the tailer leaves it). */
  onSource(key: number, sql: string, params?: unknown[]): Promise<unknown>;
  onTarget(key: number, sql: string, params?: unknown[]): Promise<unknown>;
  onBoth(key: number, sql: string, params?: unknown[]): Promise<void>;
  cleanup(): Promise<void>;
}

export interface EstateOptions {
  users?: number;
  ordersPerUser?: number;
  typeCorpus?: boolean;
  /** More tables (created empty on every shard, listed in both topologies; the test fills them). */
  extraTables?: { name: string; shardKey: string; ddl: string }[];
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

/** Deterministic rows for the shop tables, keyed by table name. */
export function shopRows(
  o: Required<Pick<EstateOptions, 'users' | 'ordersPerUser'>>,
): Map<string, unknown[][]> {
  const users: unknown[][] = [];
  const orders: unknown[][] = [];
  const items: unknown[][] = [];
  const coupons: unknown[][] = [];
  const groups: unknown[][] = [];
  const statuses = ['pending', 'paid', 'shipped', 'cancelled'];
  let orderId = 0;
  for (let u = 1; u <= o.users; u++) {
    users.push([
      String(u),
      `u${u}@example.test`,
      u % 5 === 0 ? `Zoë ${u} 😀` : `user ${u}`,
      `${u * 3}.${pad((u * 37) % 10000, 4)}`,
      `2024-01-${pad(1 + (u % 28), 2)} 12:${pad(u % 60, 2)}:00.${pad((u * 7919) % 1_000_000, 6)}`,
      u % 3 === 0 ? null : `2024-02-01 00:00:00.${pad(u, 6)}`,
    ]);
    for (let k = 0; k < o.ordersPerUser; k++) {
      orderId++;
      const oid = orderId * 3 - 1000; // some negative ids
      orders.push([
        String(oid),
        String(u),
        statuses[orderId % 4],
        `${orderId % 997}.${pad(orderId % 100, 2)}00`,
        `2024-03-01 00:00:${pad(orderId % 60, 2)}.${pad(orderId, 6)}`,
        orderId % 4 === 0 ? null : orderId % 4 === 1 ? '' : `note ${orderId}`,
      ]);
      for (let line = 1; line <= 1 + (orderId % 3); line++) {
        items.push([
          String(oid),
          String(line),
          String(u),
          `SKU-${orderId}-${line}`,
          String(line * 2 - 3),
          `${line}.5000`,
        ]);
      }
    }
    if (u % 2 === 0)
      coupons.push([`${u % 4 === 0 ? 'ab' : 'AB'}-${pad(u, 5)}`, String(u), `${u % 100}.25`, null]);
    groups.push([
      String(u),
      String(u),
      u % 7 === 0 ? null : `w${pad(u, 4)}`,
      `k${pad(u, 4)}`,
      String(u % 10),
    ]);
  }
  return new Map([
    ['users', users],
    ['orders', orders],
    ['order_items', items],
    ['coupons', coupons],
    ['group', groups],
  ]);
}

const COLUMNS: Record<string, string> = {
  users: '`id`, `email`, `name`, `balance`, `created_at`, `updated_at`',
  orders: '`id`, `user_id`, `status`, `total`, `created_at`, `note`',
  order_items: '`order_id`, `line_no`, `user_id`, `sku`, `qty`, `price`',
  coupons: '`code`, `user_id`, `discount`, `redeemed_at`',
  group: '`id`, `user_id`, `we``ird`, `key`, `order`',
};
const KEY_INDEX: Record<string, number> = { users: 0, orders: 1, order_items: 2, coupons: 1, group: 1 };

export async function buildEstate(prefix: string, o: EstateOptions = {}): Promise<Estate> {
  const db = uniqueDb(prefix);
  const controlDb = `${db}_ctl`;
  const dir = mkdtempSync(join(tmpdir(), 'reshard-verify-'));
  const extra = o.extraTables ?? [];
  const schema = [SHOP_SCHEMA, ...extra.map((t) => t.ddl)].join('\n');
  const drop = await createDatabases(ALL, db, schema);
  const yaml = (names: readonly string[], name: string) =>
    topologyYaml({
      shards: names.map((n) => ({ name: n, server: n as SandboxName, database: db })),
      tables: [...TABLES, ...extra.map((t) => ({ name: t.name, shardKey: t.shardKey }))],
      groups: [{ name: 'user', tables: ['users', 'orders', 'order_items'] }],
      scheme: '{ type: hash-mod, hash: crc32 }',
    }).replace('version: 1\n', `version: 1\nname: ${name}\n`);
  const fromPath = join(dir, 'from.yaml');
  const toPath = join(dir, 'to.yaml');
  writeFileSync(fromPath, yaml(SOURCES, 'verify-from'));
  writeFileSync(toPath, yaml(TARGETS, 'verify-to'));
  const from = loadTopology(fromPath);
  const to = loadTopology(toPath);
  const planPath = join(dir, 'plan.json');
  writePlanFile(planPath, plan(from, to));
  const controlDsn = `mysql://root@127.0.0.1:${port('ctl')}/${controlDb}`;
  const ctl = await connectControl(controlDsn);
  try {
    await ensureControlSchema(ctl);
  } finally {
    await ctl.close();
  }
  const routeFrom = createRouter(from);
  const routeTo = createRouter(to);
  const conns = new Map<SandboxName, Promise<Connection>>();
  const conn = (name: SandboxName) => {
    let c = conns.get(name);
    if (!c) {
      c = rootConn(name, db);
      conns.set(name, c);
    }
    return c;
  };
  const targetOf = (key: bigint) => routeTo.ownerOf(key) as SandboxName;
  const sourceOf = (key: bigint) => routeFrom.ownerOf(key) as SandboxName;

  // Shop rows, each on its source owner and its target owner.
  const rows = shopRows({ users: o.users ?? 120, ordersPerUser: o.ordersPerUser ?? 3 });
  for (const [table, list] of rows) {
    const per = new Map<SandboxName, unknown[][]>();
    for (const r of list) {
      const key = BigInt(String(r[KEY_INDEX[table]!]));
      for (const s of [sourceOf(key), targetOf(key)]) {
        let l = per.get(s);
        if (!l) {
          l = [];
          per.set(s, l);
        }
        l.push(r);
      }
    }
    for (const [server, l] of per) {
      const c = await conn(server);
      for (let i = 0; i < l.length; i += 500)
        await c.query(`INSERT INTO \`${table}\` (${COLUMNS[table]}) VALUES ?`, [l.slice(i, i + 500)]);
    }
  }
  // The type corpus: the fixture's INSERT on every shard, then each shard keeps only its rows.
  if (o.typeCorpus !== false) {
    const corpus = readFileSync(join(ROOT, 'fixtures/shop/type_corpus.sql'), 'utf8');
    for (const server of ALL) {
      const c = await conn(server);
      await c.query(corpus);
      const [keys] = await c.query<RowDataPacket[]>('SELECT id, user_id FROM type_corpus');
      for (const k of keys) {
        const owner = (SOURCES as readonly string[]).includes(server)
          ? sourceOf(BigInt(k.user_id))
          : targetOf(BigInt(k.user_id));
        if (owner !== server) await c.query('DELETE FROM type_corpus WHERE id = ?', [k.id]);
      }
    }
  }

  let ctx: JobContext | undefined;
  const onSource = async (key: number, sql: string, params: unknown[] = []) =>
    (await conn(sourceOf(BigInt(key)))).query(sql, params);
  const onTarget = async (key: number, sql: string, params: unknown[] = []) =>
    (await conn(targetOf(BigInt(key)))).query(sql, params);
  return {
    db,
    dir,
    planPath,
    controlDsn,
    controlDb,
    from,
    to,
    routeFrom,
    routeTo,
    conn,
    targetOf,
    sourceOf,
    onSource,
    onTarget,
    async onBoth(key, sql, params = []) {
      await onSource(key, sql, params);
      await onTarget(key, sql, params);
    },
    async open() {
      if (!ctx) ctx = await openJob({ planPath, control: controlDsn, create: true });
      return ctx;
    },
    async cleanup() {
      await ctx?.close().catch(() => undefined);
      for (const c of conns.values()) await (await c).end().catch(() => undefined);
      await drop();
      const c = await rootConn('ctl');
      try {
        await c.query(`DROP DATABASE IF EXISTS \`${controlDb}\``);
      } finally {
        await c.end();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Apply a --fix-sql file: each section on its shard's server. */
export async function applyFixSql(sections: Map<string, string>): Promise<void> {
  for (const [shard, sql] of sections) {
    const c = await rootConn(shard as SandboxName);
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }
}
