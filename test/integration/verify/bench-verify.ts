/**
 * By-hand measurement of verify on the dev sandbox (not a test; bench/verify.ts is the official
 * one, through the CLI, once copy and tail exist):
 *
 *   RESHARD_TEST_SANDBOX_DIR=/tmp/reshard-dev-sandbox npx tsx test/integration/verify/bench-verify.ts [rows]
 *
 * Seeds the shop fixture (`rows` in total, default 1 000 000) into s0, s1 (2-shard topology) and,
 * with the same seed, into t0, t1, t2 (3-shard topology): the seeder's rows do not depend on the
 * topology, so the targets hold exactly what a finished copy would. Then times, in this order:
 *   - reshard full verify (in process, runVerify);
 *   - pt-table-checksum's chunk query and the 64-bit MD5 one over the same rows on the same five
 *     servers, one connection per server, all servers at once, primary-key chunks of 20 000 rows;
 *   - incremental verify after 1% of every table's rows changed on both sides and were recorded.
 * Databases `vbench` (shards) and `vbench_ctl` (control) are left in place; pass --reseed to rebuild.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql, { type Connection, type RowDataPacket } from 'mysql2/promise';
import { EXACT_VALUE_OPTIONS } from '../../../src/db/connect.js';
import { openJob } from '../../../src/job/context.js';
import { writePlanFile } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import { readManifest } from '../../../src/sandbox/instances.js';
import { seed } from '../../../src/sandbox/seed.js';
import { connectControl } from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { loadTopology } from '../../../src/topology/load.js';
import { type ChangedRow, recordChanges, runVerify } from '../../../src/verify/index.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const DB = 'vbench';
const rows = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 1_000_000);
const reseed = process.argv.includes('--reseed');
const dir = process.env.RESHARD_TEST_SANDBOX_DIR ?? '/tmp/reshard-dev-sandbox';
const manifest = readManifest(dir);
if (!manifest) throw new Error(`no sandbox in ${dir}`);
const ports = Object.fromEntries(manifest.instances.map((i) => [i.name, i.port])) as Record<string, number>;
const SOURCES = ['s0', 's1'];
const TARGETS = ['t0', 't1', 't2'];
const TABLES = ['users', 'orders', 'order_items', 'coupons', 'group', 'type_corpus'];
const KEYS: Record<string, string> = { users: 'id' };

const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const q = (s: string) => `\`${s.replace(/`/g, '``')}\``;

function yaml(names: string[], name: string): string {
  return [
    'version: 1',
    `name: ${name}`,
    'shards:',
    ...names.map(
      (n) => `  - { name: ${n}, host: 127.0.0.1, port: ${ports[n]}, database: ${DB}, user: root }`,
    ),
    'tables:',
    ...TABLES.map((t) => `  - { name: ${JSON.stringify(t)}, shardKey: ${KEYS[t] ?? 'user_id'} }`),
    'groups:',
    '  - { name: user, tables: [users, orders, order_items] }',
    'scheme: { type: hash-mod, hash: crc32 }',
    '',
  ].join('\n');
}

function conn(name: string, database?: string): Promise<Connection> {
  return mysql.createConnection({
    host: '127.0.0.1',
    port: ports[name],
    user: 'root',
    ...(database ? { database } : {}),
    ...EXACT_VALUE_OPTIONS,
  });
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'reshard-vbench-'));
  writeFileSync(join(work, 'from.yaml'), yaml(SOURCES, 'vbench-from'));
  writeFileSync(join(work, 'to.yaml'), yaml(TARGETS, 'vbench-to'));
  const from = loadTopology(join(work, 'from.yaml'));
  const to = loadTopology(join(work, 'to.yaml'));
  const planPath = join(work, 'plan.json');
  writePlanFile(planPath, plan(from, to));

  const c0 = await conn('s0');
  const [have] = await c0.query<RowDataPacket[]>(
    'SELECT COALESCE(SUM(TABLE_ROWS), 0) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?',
    [DB],
  );
  await c0.end();
  if (reseed || Number(have[0]?.n) === 0) {
    const schemaSql = readFileSync(join(ROOT, 'fixtures/shop/schema.sql'), 'utf8');
    log(`seeding ${rows} rows into the sources and the same rows into the targets`);
    await seed({ topology: from, rows, seed: 7, schemaSql, replace: true });
    await seed({ topology: to, rows, seed: 7, schemaSql, replace: true });
    for (const s of [...SOURCES, ...TARGETS]) {
      const c = await conn(s, DB);
      for (const t of TABLES) await c.query(`ANALYZE TABLE ${q(t)}`);
      await c.end();
    }
  }
  const dsn = `mysql://root@127.0.0.1:${ports.ctl}/${DB}_ctl`;
  const ctlc = await conn('ctl');
  await ctlc.query(`DROP DATABASE IF EXISTS ${q(`${DB}_ctl`)}`);
  await ctlc.end();
  const ctl = await connectControl(dsn);
  await ensureControlSchema(ctl);
  await ctl.close();
  const ctx = await openJob({ planPath, control: dsn, create: true });

  // Rows in the data set (each counted once) and the server list.
  let total = 0;
  for (const s of SOURCES) {
    const c = await conn(s, DB);
    for (const t of TABLES) {
      const [r] = await c.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${q(t)}`);
      total += Number(r[0]!.n);
    }
    await c.end();
  }
  log(`data set: ${total} rows on the sources (and the same on the targets)`);

  // Warm the buffer pools equally for everyone.
  await Promise.all(
    [...SOURCES, ...TARGETS].map(async (s) => {
      const c = await conn(s, DB);
      for (const t of TABLES) await c.query(`SELECT COUNT(*) FROM ${q(t)} FORCE INDEX (PRIMARY)`);
      await c.end();
    }),
  );

  const results: Record<string, number> = {};
  for (let round = 1; round <= 2; round++) {
    let t0 = performance.now();
    const full = await runVerify({ ctx, preflight: false });
    const fullS = (performance.now() - t0) / 1000;
    if (!full.ok) throw new Error('full verify found differences in the bench data');
    log(
      `round ${round}: full verify ${fullS.toFixed(2)} s (${Math.round(total / fullS)} rows/s of the data set; scan read ${full.totals.sourceRows + full.totals.targetRows} rows in ${full.scanSeconds.toFixed(2)} s)`,
    );
    results[`full_${round}`] = fullS;

    for (const kind of ['crc32', 'md5'] as const) {
      t0 = performance.now();
      const chunks = await Promise.all([...SOURCES, ...TARGETS].map((s) => checksumServer(s, kind)));
      const s = (performance.now() - t0) / 1000;
      log(
        `round ${round}: ${kind} chunk queries ${s.toFixed(2)} s (${Math.round(total / s)} rows/s, ${chunks.reduce((a, b) => a + b, 0)} chunks)`,
      );
      results[`${kind}_${round}`] = s;
    }
  }

  // Incremental: 1% of every table's rows change on both sides (as the tailer would apply them)
  // and are recorded as the tailer would record them.
  const changes = new Map<string, ChangedRow[]>();
  let changed = 0;
  for (const s of [...SOURCES, ...TARGETS]) {
    const c = await conn(s, DB);
    for (const t of TABLES) {
      const pk = await pkOf(c, t);
      const where = `MOD(CRC32(CONCAT_WS('#', ${pk.map(q).join(', ')})), 100) = 0`;
      if (SOURCES.includes(s)) {
        const [keys] = await c.query({
          sql: `SELECT ${pk.map(q).join(', ')} FROM ${q(t)} WHERE ${where}`,
          rowsAsArray: true,
        });
        const list = changes.get(s) ?? [];
        for (const k of keys as unknown as unknown[][]) list.push({ table: t, pk: k as ChangedRow['pk'] });
        changes.set(s, list);
        changed += (keys as unknown[]).length;
      }
      await c.query(`UPDATE ${q(t)} SET ${CHANGES[t]} WHERE ${where}`);
    }
    await c.end();
  }
  for (const [s, list] of changes) await recordChanges(ctx.control, ctx.job.id, s, list);
  log(`changed and recorded ${changed} rows (${((100 * changed) / total).toFixed(2)}%)`);
  const t0 = performance.now();
  const inc = await runVerify({ ctx, preflight: false, incremental: true });
  const incS = (performance.now() - t0) / 1000;
  log(
    `incremental verify ${incS.toFixed(2)} s, ok=${inc.ok}, read ${inc.totals.sourceRows + inc.totals.targetRows} rows; ${((100 * incS) / Math.min(results.full_1!, results.full_2!)).toFixed(1)}% of the full verify`,
  );
  const best = (k: string) => Math.min(results[`${k}_1`]!, results[`${k}_2`]!);
  const out = {
    rows: total,
    fullSeconds: best('full'),
    fullRowsPerSecond: Math.round(total / best('full')),
    crc32ChunkSeconds: best('crc32'),
    md5ChunkSeconds: best('md5'),
    ratioVsMd5: best('md5') / best('full'),
    ratioVsCrc32: best('crc32') / best('full'),
    changedRows: changed,
    incrementalSeconds: incS,
    incrementalShare: incS / best('full'),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  await ctx.close();
}

const CHANGES: Record<string, string> = {
  users: 'balance = IF(balance > 0, balance - 1, balance + 1)',
  orders: 'total = IF(total > 0, total - 1, total + 1)',
  order_items: 'qty = IF(qty > 0, qty - 1, qty + 1)',
  coupons: "redeemed_at = '2001-02-03 04:05:06.000007'",
  group: '`order` = IF(`order` > 0, `order` - 1, `order` + 1)',
  type_corpus: "maybe_empty = IF(maybe_empty = 'bench', 'bench2', 'bench')",
};

async function pkOf(c: Connection, t: string): Promise<string[]> {
  const [r] = await c.query<RowDataPacket[]>(
    "SELECT COLUMN_NAME AS n FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
    [DB, t],
  );
  return r.map((x) => String(x.n));
}

/** pt-table-checksum's row expression (default options) for a table. */
async function rowExpr(c: Connection, t: string): Promise<string> {
  const [cols] = await c.query<RowDataPacket[]>(
    'SELECT COLUMN_NAME AS n, DATA_TYPE AS t, IS_NULLABLE AS nul FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
    [DB, t],
  );
  const parts = cols.map((x) => {
    const col = q(String(x.n));
    const type = String(x.t).toLowerCase();
    if (type === 'timestamp') return `UNIX_TIMESTAMP(${col})`;
    if (/blob|text|binary/.test(type)) return `CRC32(${col})`;
    if (/^(var)?char$|^enum$|^set$/.test(type)) return `convert(${col} using utf8mb4)`;
    return col;
  });
  const nulls = cols.filter((x) => x.nul === 'YES').map((x) => `ISNULL(${q(String(x.n))})`);
  if (nulls.length) parts.push(`CONCAT(${nulls.join(', ')})`);
  return `CONCAT_WS('#', ${parts.join(', ')})`;
}

/** Chunked checksum of every table on one server (primary-key chunks of 20 000 rows). */
async function checksumServer(server: string, kind: 'crc32' | 'md5'): Promise<number> {
  const c = await conn(server, DB);
  let chunks = 0;
  try {
    for (const t of TABLES) {
      const pk = await pkOf(c, t);
      const expr = await rowExpr(c, t);
      const agg =
        kind === 'crc32'
          ? `COALESCE(LOWER(CONV(BIT_XOR(CAST(CRC32(${expr}) AS UNSIGNED)), 10, 16)), 0)`
          : `COALESCE(SUM(CAST(CONV(LEFT(MD5(${expr}), 16), 16, 10) AS UNSIGNED)), 0)`;
      const cols = pk.map(q).join(', ');
      const ge = (op: '>=' | '<=' | '>') =>
        `(${pk
          .map(
            (_, i) =>
              `(${[...pk.slice(0, i).map((x) => `${q(x)} = ?`), `${q(pk[i]!)} ${i === pk.length - 1 ? op : op[0]} ?`].join(' AND ')})`,
          )
          .join(' OR ')})`;
      const params = (v: unknown[]) => pk.flatMap((_, i) => v.slice(0, i + 1));
      let lower: unknown[] | undefined;
      for (;;) {
        const [b] = await c.query<RowDataPacket[]>({
          sql: `SELECT ${cols} FROM ${q(t)} ${lower ? `WHERE ${ge('>')}` : ''} ORDER BY ${cols} LIMIT 19999, 1`,
          values: lower ? params(lower) : [],
          rowsAsArray: true,
        });
        const upper = b[0] as unknown as unknown[] | undefined;
        const conds = [lower ? ge('>') : '', upper ? ge('<=') : ''].filter(Boolean);
        const vals = [...(lower ? params(lower) : []), ...(upper ? params(upper) : [])];
        await c.query(
          `SELECT COUNT(*), ${agg} FROM ${q(t)} FORCE INDEX (PRIMARY)${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}`,
          vals,
        );
        chunks++;
        if (!upper) break;
        lower = upper;
      }
    }
  } finally {
    await c.end();
  }
  return chunks;
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
