/**
 * The cost model of a plan: how many rows and bytes each segment holds, read from the source
 * shards; and the summary `reshard plan` prints (moves, stays, movement, balance after, ETA,
 * binlog retention). Everything here is pure except `estimatePlan`, which only reads.
 *
 * Lifecycle: resolveEstimateMode(requested, from, to) → estimatePlan(…) → summarizePlan(…) →
 * render.ts (or --json). With mode `none` the servers are never contacted.
 *
 * Modes (default `auto`: exact where SQL can compute both sides' owners, else sample):
 *   exact   one statement per table per source groups every row by its owner on each side,
 *           computed by the server: `MOD(CRC32(k), n)` / `MOD(MOD(k, n) + n, n)` for hash-mod
 *           (router.ts sqlResidueExpr, what copy's predicates use), a CASE over each shard's
 *           predicate for range and directory (plan-index.ts sidePredicate). Both sides hash-mod
 *           with one hash: a single residue modulo lcm(N, M). Rows are mapped to segments by
 *           (from owner, to owner), which is what a segment is. One scan per table per source,
 *           O(1) expressions per row for hash-mod, only group rows travel.
 *   sample  consistent hashing (MySQL and MariaDB have no xxhash64): one statement per table per
 *           source reads a Bernoulli sample of rows, chosen by MD5 of the primary key (so it is
 *           deterministic, and independent of the routing hashes), grouped by shard key, with the
 *           table's exact row count in the same scan; the client routes the sampled keys. Each
 *           (source, table) is a stratum: a segment's rows are estimated as N·x/n with variance
 *           N²·(1 − n/N)·p̃(1 − p̃)/(n + z²) (Agresti–Coull p̃, so a segment with no sampled row
 *           still gets an honest interval), summed over strata; the interval is the estimate
 *           ± z·sd at 99%, clamped to [rows seen, rows possible]. Tables whose row count is
 *           within twice --sample-rows are read in full (census: exact).
 * Bytes: a segment's rows × DATA_LENGTH ÷ rows of that table on that source (information_schema:
 *   the clustered index as stored, page fill included; secondary indexes not counted). Not
 *   SUM(LENGTH(…)), which would read every off-page BLOB.
 * Server cost: either mode reads each table once (the narrowest index holding the columns), in
 *   READ ONLY sessions, a few sources at a time. Before that, a `reader` preflight of the sources
 *   (connect, version, SELECT grant, tables, primary keys, shard-key columns, equal definitions):
 *   binlog settings are not required to plan, and targets are not contacted (they may not exist
 *   yet). Retention is read and compared with the ETA.
 */
import type { Connection } from 'mysql2/promise';
import pLimit from 'p-limit';
import { connectShard, describeEndpoint } from '../db/connect.js';
import { q, qt } from '../db/quote.js';
import { PreconditionError, ReshardError, UsageError } from '../errors.js';
import type { Shard, TableSpec, Topology } from '../topology/types.js';
import { thousands } from '../util/format.js';
import { sidePredicate, sqlBytes } from './plan-index.js';
import { planHash } from './planfile.js';
import { createRouter, type RouteKey, sqlResidueExpr } from './router.js';
import type { Movement, Plan } from './types.js';

export type EstimateRequest = 'auto' | 'exact' | 'sample' | 'none';
export type EstimateMode = 'exact' | 'sample' | 'none';

export const DEFAULT_COPY_RATE = 50_000;
export const DEFAULT_SAMPLE_ROWS = 10_000;
export const CONFIDENCE = 0.99;
/** Two-sided normal quantile for CONFIDENCE. */
const Z = 2.5758293035489004;
/** Longest counting statement sent (MySQL 5.7's default max_allowed_packet is 4 MiB). */
export const MAX_COUNT_SQL = 1 << 20;
const CONCURRENCY = 8;

// ---------------------------------------------------------------------------------------------
// Results

/** How one table on one source was counted. */
export interface TableCount {
  source: string;
  table: string;
  /** exact: grouped by SQL; census: every key read and routed; sample: a sample routed. */
  method: 'exact' | 'census' | 'sample';
  /** Rows in the table (always counted exactly). */
  rows: number;
  /** Rows whose shard key is NULL: no shard owns them, copy never moves them. */
  nullKeyRows: number;
  /**
   * Rows the current topology does not route to this source (misplaced, or a key no side
   * routes): copying from this source never selects them. An estimate for `sample`.
   */
  strayRows: number;
  /** Rows in the sample (sample only). */
  sampledRows: number | null;
  /** information_schema DATA_LENGTH of the table on this source. */
  dataBytes: number;
}

export interface SegmentEstimate {
  segment: number;
  /** Point estimate (exact when low = high). */
  rows: number;
  low: number;
  high: number;
  bytes: number;
}

export interface SourceServer {
  shard: string;
  /** user@host:port/database (never a password). */
  server: string;
  /** host:port or unix:socket: shards on one server share a binlog. */
  address: string;
  logBin: boolean | null;
  /** Binlog retention in seconds; 0 = never purged; null = unknown. */
  retentionSeconds: number | null;
}

export interface Estimate {
  mode: 'exact' | 'sample';
  /** 1 when every count is exact (exact mode, or every sampled table read in full). */
  confidence: number;
  sampleRows: number | null;
  /** Indexed by segment id. */
  segments: SegmentEstimate[];
  /** All moves together, with their own interval (not the sum of the segments' bounds). */
  moved: { rows: number; low: number; high: number };
  tables: TableCount[];
  sources: SourceServer[];
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Choosing the mode

type SideBucket = { sql: string; owner: (v: number) => number };

/** SQL giving a row's owner on one side (as something `owner` maps to a shard index), or undefined. */
function sideBucket(t: Topology, col: string): SideBucket | undefined {
  const s = t.scheme;
  const index = new Map(t.shards.map((x, i) => [x.name, i]));
  switch (s.type) {
    case 'hash-mod': {
      const slot = Int32Array.from(s.slots, (n) => index.get(n) ?? -1);
      return { sql: sqlResidueExpr(s.hash, col, s.modulus), owner: (v) => slot[v] ?? -1 };
    }
    case 'range': {
      const owners = [...new Set(s.ranges.map((r) => r.shard))];
      const whens = owners.map((n) => `WHEN ${sidePredicate(t, n, col)} THEN ${index.get(n)}`);
      return { sql: `CASE WHEN ${col} IS NULL THEN NULL ${whens.join(' ')} END`, owner: (v) => v };
    }
    case 'directory': {
      const byShard = new Map<string, string[]>();
      for (const [k, n] of s.entries ?? []) {
        if (n === s.default) continue;
        const list = byShard.get(n) ?? [];
        list.push(sqlBytes(k));
        byShard.set(n, list);
      }
      const c = `CAST(${col} AS BINARY)`;
      const whens = [...byShard].map(([n, keys]) => `WHEN ${c} IN (${keys.join(', ')}) THEN ${index.get(n)}`);
      const otherwise = s.default === undefined ? 'NULL' : String(index.get(s.default));
      return {
        sql: `CASE WHEN ${col} IS NULL THEN NULL ${whens.join(' ')} ELSE ${otherwise} END`,
        owner: (v) => v,
      };
    }
    case 'consistent-hash':
      return undefined;
  }
}

/** What one exact counting statement selects, and how its group values become owners. */
interface Counting {
  exprs: string[];
  /** (from index, to index), or undefined when a side routes the key nowhere. */
  owners(values: number[]): [number, number] | undefined;
}

function counting(from: Topology, to: Topology, col: string): Counting | undefined {
  const a = from.scheme;
  const b = to.scheme;
  if (a.type === 'hash-mod' && b.type === 'hash-mod' && a.hash === b.hash) {
    const g = gcd(a.modulus, b.modulus);
    const l = (a.modulus / g) * b.modulus;
    const ia = new Map(from.shards.map((x, i) => [x.name, i]));
    const ib = new Map(to.shards.map((x, i) => [x.name, i]));
    const sa = Int32Array.from(a.slots, (n) => ia.get(n) ?? -1);
    const sb = Int32Array.from(b.slots, (n) => ib.get(n) ?? -1);
    return {
      exprs: [sqlResidueExpr(a.hash, col, l)],
      owners: ([r]) => [sa[r! % a.modulus]!, sb[r! % b.modulus]!],
    };
  }
  const fa = sideBucket(from, col);
  const fb = sideBucket(to, col);
  if (!fa || !fb) return undefined;
  return {
    exprs: [fa.sql, fb.sql],
    owners: ([x, y]) => {
      const f = fa.owner(x!);
      const t = fb.owner(y!);
      return f < 0 || t < 0 ? undefined : [f, t];
    },
  };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Why rows cannot be counted exactly by SQL for this pair, or undefined when they can. */
export function exactUnavailable(from: Topology, to: Topology): string | undefined {
  for (const t of [from, to]) {
    if (t.scheme.type === 'consistent-hash')
      return `${t.file} uses consistent hashing, and MySQL/MariaDB cannot compute xxhash64`;
  }
  // The statement grows with the column name (it is repeated per shard): check the longest.
  const table = from.tables.reduce<TableSpec | undefined>(
    (x, t) => (x === undefined || q(t.shardKey).length > q(x.shardKey).length ? t : x),
    undefined,
  );
  const c = table ? counting(from, to, q(table.shardKey)) : undefined;
  const size = c ? c.exprs.reduce((n, e) => n + e.length, 0) : 0;
  if (table && size > MAX_COUNT_SQL) {
    return `the counting statement for ${table.name} would be ${(size / 2 ** 20).toFixed(1)} MiB (every directory key is listed), more than ${MAX_COUNT_SQL / 2 ** 20} MiB`;
  }
  return undefined;
}

export function resolveEstimateMode(
  requested: EstimateRequest,
  from: Topology,
  to: Topology,
): { mode: EstimateMode; note?: string } {
  if (requested === 'none' || requested === 'sample') return { mode: requested };
  const why = exactUnavailable(from, to);
  if (requested === 'exact' && why) {
    throw new UsageError('E_ESTIMATE_EXACT', `--estimate exact is not possible: ${why}`, {
      hint: 'use --estimate sample (or leave --estimate out: it samples when counting exactly is not possible)',
    });
  }
  if (why) return { mode: 'sample', note: `estimate by sampling: ${why}` };
  return { mode: 'exact' };
}

// ---------------------------------------------------------------------------------------------
// Reading the sources

export interface EstimateOptions {
  plan: Plan;
  from: Topology;
  to: Topology;
  mode: 'exact' | 'sample';
  /** Sample size per table per source (sample mode). */
  sampleRows?: number;
  /** Skip the reader preflight (tests that check it separately). */
  skipPreflight?: boolean;
  onProgress?: (e: { done: number; total: number; source: string; table: string }) => void;
}

/** One (source, table) result before it is spread over segments. */
interface Stratum {
  source: number;
  /** Non-NULL-key rows in the table. */
  population: number;
  /** Non-NULL-key rows looked at (= population unless sampled). */
  looked: number;
  /** segment id → rows (exact) or sampled rows. */
  counts: Map<number, number>;
  stray: number;
  sampled: boolean;
  bytesPerRow: number;
}

export async function estimatePlan(opts: EstimateOptions): Promise<Estimate> {
  const { plan, from, to, mode } = opts;
  const sampleRows = opts.sampleRows ?? DEFAULT_SAMPLE_ROWS;
  if (mode === 'exact') {
    const why = exactUnavailable(from, to);
    if (why) throw new UsageError('E_ESTIMATE_EXACT', `--estimate exact is not possible: ${why}`);
  }
  if (!opts.skipPreflight) await preflightSources(from);

  const segmentOf = segmentLookup(plan, from, to);
  const routers = mode === 'sample' ? { a: createRouter(from), b: createRouter(to) } : undefined;
  const total = from.shards.length * from.tables.length;
  let done = 0;
  const strata: Stratum[] = [];
  const tables: TableCount[] = [];
  const sources: SourceServer[] = [];
  const notes: string[] = [];
  const limit = pLimit(CONCURRENCY);
  // After the first failure no further source is opened: the command is about to exit.
  let failed = false;
  await Promise.all(
    from.shards.map((shard, f) =>
      limit(async () => {
        if (failed) return;
        const conn = await connectShard(shard).catch((e) => {
          failed = true;
          throw e;
        });
        try {
          await conn.query('SET SESSION TRANSACTION READ ONLY');
          // MySQL 8 caches table statistics for a day by default; we want today's.
          await conn.query('SET SESSION information_schema_stats_expiry = 0').catch(() => undefined);
          const retention = await readRetention(conn);
          sources.push({ shard: shard.name, ...where(shard), ...retention });
          const stats = await readTableStats(conn, shard.endpoint.database);
          const cols = mode === 'sample' ? await readColumns(conn, shard.endpoint.database) : undefined;
          for (const spec of from.tables) {
            const st = statsFor(stats, spec.name);
            const label = `${shard.name}.${spec.name}`;
            const table = qt(shard.endpoint.database, spec.name);
            const col = q(spec.shardKey);
            let r: { stratum: Stratum; count: TableCount };
            if (mode === 'exact') {
              r = await countExact(conn, table, col, from, to, f, segmentOf);
            } else {
              const info = cols!.get(spec.name) ?? cols!.get(spec.name.toLowerCase());
              if (!info?.types.has(spec.shardKey)) {
                throw new PreconditionError(
                  'E_SHARD_KEY_MISSING',
                  `${label}: column ${col} not found in ${table}`,
                  { hint: 'run `reshard preflight` for the full list of problems' },
                );
              }
              r = await countSample(conn, table, col, {
                keyKind: keyKindOf(info.types.get(spec.shardKey)!),
                pk: info.pk.length > 0 ? info.pk : [spec.shardKey],
                sampleRows,
                tableRows: st.tableRows,
                source: f,
                routers: routers!,
                segmentOf,
              });
              if (info.pk.length === 0)
                notes.push(
                  `${label} has no primary key: sampled by shard key, so its interval is too narrow`,
                );
            }
            r.count.source = shard.name;
            r.count.table = spec.name;
            r.count.dataBytes = st.dataBytes;
            r.stratum.bytesPerRow = r.count.rows > 0 ? st.dataBytes / r.count.rows : 0;
            strata.push(r.stratum);
            tables.push(r.count);
            opts.onProgress?.({ done: ++done, total, source: shard.name, table: spec.name });
          }
        } catch (e) {
          failed = true;
          throw wrapQueryError(e, shard);
        } finally {
          await conn.end().catch(() => undefined);
        }
      }),
    ),
  );
  // Workers finish in any order; results are listed in topology order.
  const order = new Map(from.shards.map((s, i) => [s.name, i]));
  const tableOrder = new Map(from.tables.map((t, i) => [t.name, i]));
  sources.sort((x, y) => order.get(x.shard)! - order.get(y.shard)!);
  tables.sort(
    (x, y) =>
      order.get(x.source)! - order.get(y.source)! || tableOrder.get(x.table)! - tableOrder.get(y.table)!,
  );
  strata.sort((x, y) => x.source - y.source);
  const sampled = strata.some((s) => s.sampled);
  return {
    mode,
    confidence: sampled ? CONFIDENCE : 1,
    sampleRows: mode === 'sample' ? sampleRows : null,
    ...combine(plan, from, strata),
    tables,
    sources,
    notes,
  };
}

function where(shard: Shard): { server: string; address: string } {
  const ep = shard.endpoint;
  return { server: describeEndpoint(ep), address: ep.socket ? `unix:${ep.socket}` : `${ep.host}:${ep.port}` };
}

function wrapQueryError(e: unknown, shard: Shard): unknown {
  if (e instanceof ReshardError) return e;
  const err = e as { code?: string; message?: string };
  return new PreconditionError(
    'E_ESTIMATE_QUERY',
    `estimating rows on shard ${shard.name} (${describeEndpoint(shard.endpoint)}) failed: ${err.code ? `${err.code}: ` : ''}${err.message ?? String(e)}`,
    {
      where: `shard ${shard.name}`,
      hint: 'check that the server stays reachable, or plan without row counts: --estimate none',
      cause: e,
    },
  );
}

async function preflightSources(from: Topology): Promise<void> {
  const { runPreflight, assertPreflight } = await import('../preflight/index.js');
  const report = await runPreflight({ from, roles: { from: ['reader'] } });
  try {
    assertPreflight(report);
  } catch (e) {
    if (!(e instanceof PreconditionError)) throw e;
    throw new PreconditionError('E_PREFLIGHT', e.message, {
      hint: 'fix each problem as shown (the estimate reads every source table), or plan without contacting servers: --estimate none',
      ...(e.data ? { data: e.data } : {}),
    });
  }
}

/** Maps (from owner index, to owner index) to a segment id, as plan-index.ts does. */
function segmentLookup(plan: Plan, from: Topology, to: Topology): (f: number, t: number) => number {
  const fi = new Map(from.shards.map((s, i) => [s.name, i]));
  const ti = new Map(to.shards.map((s, i) => [s.name, i]));
  const n = to.shards.length;
  const byPair = new Map<number, number>();
  for (const s of plan.segments) byPair.set(fi.get(s.from)! * n + ti.get(s.to)!, s.id);
  return (f, t) => {
    const id = byPair.get(f * n + t);
    if (id === undefined) {
      throw new ReshardError(
        'bug',
        'E_BUG',
        `rows route to (${from.shards[f]?.name}, ${to.shards[t]?.name}), a pair the plan does not list`,
        { hint: 'the planner missed a non-empty segment: this is a defect in reshard, please report it' },
      );
    }
    return id;
  };
}

async function readRetention(conn: Connection): Promise<Omit<SourceServer, 'shard' | 'server' | 'address'>> {
  const [rows] = await conn.query(
    "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_expire_logs_seconds', 'expire_logs_days')",
  );
  const v = new Map(
    (rows as { Variable_name: string; Value: string }[]).map((r) => [r.Variable_name.toLowerCase(), r.Value]),
  );
  return {
    logBin: v.has('log_bin') ? /^(ON|1)$/i.test(v.get('log_bin') ?? '') : null,
    retentionSeconds: retentionOf(v),
  };
}

/**
 * Binlog retention from server variables: binlog_expire_logs_seconds when set (MySQL 8, MariaDB
 * 10.6+), else expire_logs_days (may be fractional on MariaDB); 0 in both = never purged.
 */
export function retentionOf(vars: ReadonlyMap<string, string>): number | null {
  const seconds = vars.get('binlog_expire_logs_seconds');
  const days = vars.get('expire_logs_days');
  if (seconds === undefined && days === undefined) return null;
  const s = Number(seconds ?? 0);
  if (s > 0) return s;
  const d = Number(days ?? 0);
  return d > 0 ? Math.round(d * 86400) : 0;
}

async function readTableStats(
  conn: Connection,
  database: string,
): Promise<Map<string, { tableRows: number; dataBytes: number }>> {
  const [rows] = await conn.query(
    'SELECT TABLE_NAME AS name, TABLE_ROWS AS tableRows, DATA_LENGTH AS dataBytes FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?',
    [database],
  );
  return new Map(
    (rows as { name: string; tableRows: unknown; dataBytes: unknown }[]).map((r) => [
      r.name,
      { tableRows: Number(r.tableRows ?? 0), dataBytes: Number(r.dataBytes ?? 0) },
    ]),
  );
}

function statsFor(
  stats: Map<string, { tableRows: number; dataBytes: number }>,
  name: string,
): { tableRows: number; dataBytes: number } {
  const hit = stats.get(name);
  if (hit) return hit;
  // lower_case_table_names: the server may list the table in another case.
  for (const [k, v] of stats) if (k.toLowerCase() === name.toLowerCase()) return v;
  return { tableRows: 0, dataBytes: 0 };
}

async function readColumns(
  conn: Connection,
  database: string,
): Promise<Map<string, { types: Map<string, string>; pk: string[] }>> {
  const [cols] = await conn.query(
    'SELECT TABLE_NAME AS t, COLUMN_NAME AS c, DATA_TYPE AS d FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?',
    [database],
  );
  const [pk] = await conn.query(
    "SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX",
    [database],
  );
  const out = new Map<string, { types: Map<string, string>; pk: string[] }>();
  const at = (t: string) => {
    let e = out.get(t);
    if (!e) {
      e = { types: new Map(), pk: [] };
      out.set(t, e);
      out.set(t.toLowerCase(), e);
    }
    return e;
  };
  for (const r of cols as { t: string; c: string; d: string }[])
    at(r.t).types.set(r.c, String(r.d).toLowerCase());
  for (const r of pk as { t: string; c: string }[]) at(r.t).pk.push(r.c);
  return out;
}

type KeyKind = 'int' | 'string' | 'binary';

const INTEGER_TYPES = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint']);
const BINARY_TYPES = new Set(['binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob']);

/** As apply/table.ts classifies shard keys: what the copier routes a value as. */
function keyKindOf(dataType: string): KeyKind {
  return INTEGER_TYPES.has(dataType) ? 'int' : BINARY_TYPES.has(dataType) ? 'binary' : 'string';
}

/**
 * The shard key as selected for routing: integers as they are; character data as its UTF-8 bytes
 * (so GROUP BY separates keys a case- or pad-insensitive collation would merge, and the client
 * sees the same text the copier's driver decodes); binary as it is.
 */
function keySql(col: string, kind: KeyKind): string {
  return kind === 'string' ? `CAST(CONVERT(${col} USING utf8mb4) AS BINARY)` : col;
}

function routeKey(v: unknown, kind: KeyKind): RouteKey {
  if (kind === 'int') return BigInt(Buffer.isBuffer(v) ? v.toString() : String(v));
  if (kind === 'binary') return Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8');
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
}

async function countExact(
  conn: Connection,
  table: string,
  col: string,
  from: Topology,
  to: Topology,
  source: number,
  segmentOf: (f: number, t: number) => number,
): Promise<{ stratum: Stratum; count: TableCount }> {
  const c = counting(from, to, col);
  if (!c) throw new ReshardError('bug', 'E_BUG', 'exact counting requested for a scheme SQL cannot route');
  const groups = c.exprs.map((_, i) => i + 2).join(', ');
  const sql = `SELECT ${col} IS NULL AS z, ${c.exprs.map((e, i) => `${e} AS b${i}`).join(', ')}, COUNT(*) AS n FROM ${table} GROUP BY 1, ${groups}`;
  const [rows] = await conn.query({ sql, rowsAsArray: true });
  const counts = new Map<number, number>();
  let all = 0;
  let nulls = 0;
  let stray = 0;
  for (const r of rows as unknown[][]) {
    const n = Number(r[r.length - 1]);
    all += n;
    if (Number(r[0]) === 1) {
      nulls += n;
      continue;
    }
    const values = r.slice(1, -1);
    const owners = values.some((v) => v === null) ? undefined : c.owners(values.map(Number));
    if (!owners || owners[0] !== source) {
      stray += n;
      continue;
    }
    const id = segmentOf(owners[0], owners[1]);
    counts.set(id, (counts.get(id) ?? 0) + n);
  }
  return {
    stratum: {
      source,
      population: all - nulls,
      looked: all - nulls,
      counts,
      stray,
      sampled: false,
      bytesPerRow: 0,
    },
    count: {
      source: '',
      table: '',
      method: 'exact',
      rows: all,
      nullKeyRows: nulls,
      strayRows: stray,
      sampledRows: null,
      dataBytes: 0,
    },
  };
}

async function countSample(
  conn: Connection,
  table: string,
  col: string,
  o: {
    keyKind: KeyKind;
    pk: string[];
    sampleRows: number;
    tableRows: number;
    source: number;
    routers: { a: ReturnType<typeof createRouter>; b: ReturnType<typeof createRouter> };
    segmentOf: (f: number, t: number) => number;
  },
): Promise<{ stratum: Stratum; count: TableCount }> {
  const key = keySql(col, o.keyKind);
  // information_schema's row count is itself an estimate: trust it only to choose the rate.
  let guess = o.tableRows;
  if (guess < 10 * o.sampleRows) {
    const [r] = await conn.query({ sql: `SELECT COUNT(*) FROM ${table}`, rowsAsArray: true });
    guess = Number((r as unknown[][])[0]?.[0] ?? 0);
  }
  let census = guess <= 2 * o.sampleRows;
  let result = await sampleQuery(conn, table, col, key, o.pk, census ? 1 : o.sampleRows / guess);
  const population = result.all - result.nulls;
  if (!census && population <= 2 * o.sampleRows) {
    // The statistics overstated the table: read it in full instead.
    census = true;
    result = await sampleQuery(conn, table, col, key, o.pk, 1);
  }
  const counts = new Map<number, number>();
  let looked = 0;
  let stray = 0;
  const { a, b } = o.routers;
  for (const [k, n] of result.keys) {
    looked += n;
    const rk = routeKey(k, o.keyKind);
    const f = a.ownerIndexOf(rk);
    if (f !== o.source) {
      stray += n;
      continue;
    }
    const id = o.segmentOf(f, b.ownerIndexOf(rk));
    counts.set(id, (counts.get(id) ?? 0) + n);
  }
  const pop = result.all - result.nulls;
  return {
    stratum: { source: o.source, population: pop, looked, counts, stray, sampled: !census, bytesPerRow: 0 },
    count: {
      source: '',
      table: '',
      method: census ? 'census' : 'sample',
      rows: result.all,
      nullKeyRows: result.nulls,
      strayRows: census || looked === 0 ? stray : Math.round((stray * pop) / looked),
      sampledRows: census ? null : looked,
      dataBytes: 0,
    },
  };
}

/**
 * One scan: rows whose primary key's MD5 falls under the rate are grouped by shard key; all
 * others fall into the NULL group, whose NULL-key count (`z`) is exact because NULL keys land
 * there whether sampled or not. So the table's row count and NULL-key count are exact too.
 */
async function sampleQuery(
  conn: Connection,
  table: string,
  col: string,
  key: string,
  pk: string[],
  rate: number,
): Promise<{ all: number; nulls: number; keys: [unknown, number][] }> {
  let sql: string;
  if (rate >= 1) {
    sql = `SELECT ${key} AS k, COUNT(*) AS n, SUM(${col} IS NULL) AS z FROM ${table} GROUP BY 1`;
  } else {
    const threshold = Math.max(1, Math.floor(rate * 2 ** 32));
    const pick = `CONV(LEFT(MD5(CONCAT_WS(',', ${pk.map(q).join(', ')})), 8), 16, 10) < ${threshold}`;
    sql = `SELECT IF(${pick}, ${key}, NULL) AS k, COUNT(*) AS n, SUM(${col} IS NULL) AS z FROM ${table} GROUP BY 1`;
  }
  const [rows] = await conn.query({ sql, rowsAsArray: true });
  let all = 0;
  let nulls = 0;
  const keys: [unknown, number][] = [];
  for (const [k, n, z] of rows as [unknown, unknown, unknown][]) {
    const count = Number(n);
    all += count;
    if (k === null) nulls += Number(z);
    else keys.push([k, count]);
  }
  return { all, nulls, keys };
}

/**
 * Spread strata over segments: exact counts add up; a sample adds N·x/n and its variance. The
 * moves together get their own interval: within a stratum the moving share is one binomial
 * proportion, so summing the segments' bounds would overstate it.
 */
function combine(
  plan: Plan,
  from: Topology,
  strata: Stratum[],
): { segments: SegmentEstimate[]; moved: Estimate['moved'] } {
  const n = plan.segments.length;
  const est = new Float64Array(n);
  const variance = new Float64Array(n);
  const seen = new Float64Array(n);
  const cap = new Float64Array(n);
  const bytes = new Float64Array(n);
  const fi = new Map(from.shards.map((s, i) => [s.name, i]));
  const bySource: number[][] = from.shards.map(() => []);
  for (const s of plan.segments) bySource[fi.get(s.from)!]!.push(s.id);
  const moving = plan.segments.map((s) => s.moves);
  const all = { est: 0, variance: 0, seen: 0, cap: 0 };
  const z2 = Z * Z;
  /** Estimate and variance of the rows behind x of m sampled rows out of N. */
  const draw = (x: number, m: number, N: number, prior: number): [number, number] => {
    if (m === 0) return [N * prior, (N * N) / 4];
    const fpc = N > 1 ? Math.max(0, (N - m) / (N - 1)) : 0;
    const pt = (x + z2 / 2) / (m + z2);
    return [(N * x) / m, (N * N * fpc * pt * (1 - pt)) / (m + z2)];
  };
  for (const st of strata) {
    const segs = bySource[st.source]!;
    if (!st.sampled) {
      for (const [id, x] of st.counts) {
        est[id]! += x;
        seen[id]! += x;
        cap[id]! += x;
        bytes[id]! += x * st.bytesPerRow;
        if (moving[id]) {
          all.est += x;
          all.seen += x;
          all.cap += x;
        }
      }
      continue;
    }
    const N = st.population;
    let xm = 0;
    let movingSegs = 0;
    for (const id of segs) {
      const x = st.counts.get(id) ?? 0;
      const [e, v] = draw(x, st.looked, N, 1 / segs.length);
      est[id]! += e;
      variance[id]! += v;
      seen[id]! += x;
      cap[id]! += N;
      bytes[id]! += e * st.bytesPerRow;
      if (moving[id]) {
        xm += x;
        movingSegs++;
      }
    }
    if (movingSegs > 0) {
      const [e, v] = draw(xm, st.looked, N, movingSegs / segs.length);
      all.est += e;
      all.variance += v;
      all.seen += xm;
      all.cap += N;
    }
  }
  const bounds = (e: number, v: number, lo: number, hi: number) => {
    const sd = Math.sqrt(v);
    const rows = Math.round(e);
    return {
      rows,
      low: Math.min(rows, Math.max(lo, Math.floor(e - Z * sd))),
      high: Math.max(rows, Math.min(hi, Math.ceil(e + Z * sd))),
    };
  };
  return {
    segments: plan.segments.map((s) => ({
      segment: s.id,
      ...bounds(est[s.id]!, variance[s.id]!, seen[s.id]!, cap[s.id]!),
      bytes: Math.round(bytes[s.id]!),
    })),
    moved: bounds(all.est, all.variance, all.seen, all.cap),
  };
}

// ---------------------------------------------------------------------------------------------
// Summary (pure)

export interface PairSummary {
  from: string;
  to: string;
  /** Share of the key space; null when it depends on the data. */
  share: number | null;
  /** false: the share is an estimate (a change of hash). */
  shareExact: boolean;
  rows: number | null;
  rowsLow: number | null;
  rowsHigh: number | null;
  bytes: number | null;
}

export interface Spread {
  /** max over targets of share ÷ (weight ÷ Σ weights): max/mean for equal weights. */
  maxOverMean: number;
  maxShard: string;
  max: number;
  min: number;
}

export interface TargetSummary {
  shard: string;
  weight: number;
  keyShare: number | null;
  rows: number | null;
  rowShare: number | null;
  /** Rows this target receives (moves in). */
  incomingRows: number | null;
}

export interface PlanReport {
  plan: {
    /** The plan file written, or null. */
    file: string | null;
    hash: string;
    from: { file: string; name: string; scheme: string; shards: number };
    to: { file: string; name: string; scheme: string; shards: number };
    partition: string;
    segments: number;
  };
  estimate: {
    requested: EstimateRequest;
    mode: EstimateMode;
    /** 1: exact; 0.99: the row intervals of a sample; null: no estimate. */
    confidence: number | null;
    sampleRows: number | null;
    method: string;
  };
  movement: {
    keys: Pick<Movement, 'fraction' | 'minimum' | 'ratio' | 'exact' | 'basis'>;
    rows: { moved: number; low: number; high: number; total: number; fraction: number | null } | null;
    bytes: { moved: number; total: number } | null;
  };
  moves: PairSummary[];
  stays: PairSummary[];
  balance: { targets: TargetSummary[]; keys: Spread | null; rows: Spread | null; weighted: boolean };
  eta: { copyRate: number; seconds: number | null; secondsHigh: number | null };
  sources: SourceServer[];
  tables: TableCount[];
  warnings: string[];
  notes: string[];
}

export interface SummaryOptions {
  requested: EstimateRequest;
  mode: EstimateMode;
  copyRate: number;
  /** The plan file written (as given on the command line), or null. */
  planFile: string | null;
  /** Extra notes (e.g. why the estimate samples). */
  notes?: string[];
  /** The plan's content hash when already computed (writePlanFile returns it): saves a pass. */
  hash?: string;
}

export function summarizePlan(
  plan: Plan,
  to: Topology,
  estimate: Estimate | undefined,
  opts: SummaryOptions,
): PlanReport {
  const seg = estimate?.segments;
  const pair = (s: Plan['segments'][number]): PairSummary => {
    const e = seg?.[s.id];
    return {
      from: s.from,
      to: s.to,
      share: s.share?.fraction ?? null,
      shareExact: s.share?.exact ?? false,
      rows: e ? e.rows : null,
      rowsLow: e ? e.low : null,
      rowsHigh: e ? e.high : null,
      bytes: e ? e.bytes : null,
    };
  };
  const moves = plan.segments.filter((s) => s.moves).map(pair);
  const stays = plan.segments.filter((s) => !s.moves).map(pair);
  const sum = (xs: PairSummary[], f: (p: PairSummary) => number | null) =>
    xs.reduce((n, p) => n + (f(p) ?? 0), 0);

  let rows: PlanReport['movement']['rows'] = null;
  let bytes: PlanReport['movement']['bytes'] = null;
  if (seg) {
    const total = sum(moves, (p) => p.rows) + sum(stays, (p) => p.rows);
    const moved = sum(moves, (p) => p.rows);
    rows = {
      moved,
      low: Math.min(moved, estimate!.moved.low),
      high: Math.max(moved, estimate!.moved.high),
      total,
      fraction: total > 0 ? moved / total : null,
    };
    bytes = {
      moved: sum(moves, (p) => p.bytes),
      total: sum(moves, (p) => p.bytes) + sum(stays, (p) => p.bytes),
    };
  }

  // Balance after the move, over the target's shards.
  const weighted = to.scheme.type === 'consistent-hash' && to.shards.some((s) => s.weight !== 1);
  const weightOf = (s: Shard) => (to.scheme.type === 'consistent-hash' ? s.weight : 1);
  const keyShare = new Map(plan.shares.map((s) => [s.shard, s.to]));
  const rowsTo = new Map<string, number>();
  const incoming = new Map<string, number>();
  for (const p of [...moves, ...stays]) {
    rowsTo.set(p.to, (rowsTo.get(p.to) ?? 0) + (p.rows ?? 0));
    if (p.from !== p.to) incoming.set(p.to, (incoming.get(p.to) ?? 0) + (p.rows ?? 0));
  }
  const totalRows = rows?.total ?? 0;
  const targets: TargetSummary[] = to.shards.map((s) => ({
    shard: s.name,
    weight: weightOf(s),
    keyShare: keyShare.get(s.name) ?? null,
    rows: seg ? (rowsTo.get(s.name) ?? 0) : null,
    rowShare: seg && totalRows > 0 ? (rowsTo.get(s.name) ?? 0) / totalRows : null,
    incomingRows: seg ? (incoming.get(s.name) ?? 0) : null,
  }));
  const spread = (get: (t: TargetSummary) => number | null): Spread | null => {
    if (targets.length === 0 || targets.some((t) => get(t) === null)) return null;
    const tw = targets.reduce((n, t) => n + t.weight, 0);
    let best: Spread = { maxOverMean: 0, maxShard: '', max: 0, min: Number.POSITIVE_INFINITY };
    for (const t of targets) {
      const x = get(t)!;
      const r = x / (t.weight / tw);
      if (r > best.maxOverMean) best = { ...best, maxOverMean: r, maxShard: t.shard };
      best.max = Math.max(best.max, x);
      best.min = Math.min(best.min, x);
    }
    return best;
  };

  const seconds = rows ? rows.moved / opts.copyRate : null;
  const secondsHigh = rows ? rows.high / opts.copyRate : null;
  const warnings: string[] = [];
  const sources = estimate?.sources ?? [];
  const tables = estimate?.tables ?? [];
  for (const t of tables) {
    if (t.nullKeyRows > 0) {
      warnings.push(
        `${t.source}.${t.table}: ${fmtInt(t.nullKeyRows)} row(s) have a NULL shard key; no shard owns them and reshard will not copy them (give them a key, or delete them, before resharding)`,
      );
    }
    if (t.strayRows > 0) {
      warnings.push(
        `${t.source}.${t.table}: ${t.method === 'sample' ? '≈' : ''}${fmtInt(t.strayRows)} row(s) are not routed to ${t.source} by ${plan.from.file}: reshard copies from each source only the keys it owns, so these would be left behind (move them to their owner, or fix the topology, before resharding)`,
      );
    }
  }
  for (const s of sources) {
    if (s.logBin === false)
      warnings.push(
        `the binary log is off on ${s.address} (shard ${s.shard}): copy and tail need it; see \`reshard preflight\``,
      );
  }
  const eta = secondsHigh ?? seconds;
  if (eta !== null && eta > 0) {
    const short = new Map<string, { retention: number; shards: string[] }>();
    for (const s of sources) {
      if (s.retentionSeconds === null || s.retentionSeconds === 0 || s.retentionSeconds >= eta) continue;
      const e = short.get(s.address) ?? { retention: s.retentionSeconds, shards: [] };
      e.shards.push(s.shard);
      short.set(s.address, e);
    }
    for (const [address, e] of short) {
      warnings.push(
        `the copy ETA ${fmtDuration(seconds ?? eta)}${secondsHigh !== null && secondsHigh !== seconds ? ` (up to ${fmtDuration(secondsHigh)})` : ''} at ${fmtInt(opts.copyRate)} rows/s exceeds the binlog retention of ${address} (${fmtDuration(e.retention)}; shard${e.shards.length === 1 ? '' : 's'} ${e.shards.join(', ')}): binlogs written after the copy starts could be purged before they are applied. Raise binlog_expire_logs_seconds there to at least twice the ETA, or copy faster`,
      );
    }
  }
  const notes = [...plan.notes, ...(opts.notes ?? []), ...(estimate?.notes ?? [])];
  if (opts.mode !== 'none')
    notes.push(
      `ETA assumes ${fmtInt(opts.copyRate)} rows/s over all sources together (--copy-rate); stays are not copied`,
    );
  else
    notes.push(
      'no row counts (--estimate none): rows, bytes and ETA are unknown; shares are of the key space',
    );
  return {
    plan: {
      file: opts.planFile,
      hash: opts.hash ?? planHash(plan),
      from: {
        file: plan.from.file,
        name: plan.from.name,
        scheme: plan.from.scheme,
        shards: plan.from.shards.length,
      },
      to: { file: plan.to.file, name: plan.to.name, scheme: plan.to.scheme, shards: plan.to.shards.length },
      partition: plan.partition.kind,
      segments: plan.segments.length,
    },
    estimate: {
      requested: opts.requested,
      mode: opts.mode,
      confidence: estimate ? estimate.confidence : null,
      sampleRows: estimate?.sampleRows ?? null,
      method: methodOf(plan, opts.mode, estimate),
    },
    movement: {
      keys: {
        fraction: plan.movement.fraction,
        minimum: plan.movement.minimum,
        ratio: plan.movement.ratio,
        exact: plan.movement.exact,
        basis: plan.movement.basis,
      },
      rows,
      bytes,
    },
    moves,
    stays,
    balance: {
      targets,
      keys: spread((t) => t.keyShare),
      rows: seg && totalRows > 0 ? spread((t) => t.rowShare) : null,
      weighted,
    },
    eta: { copyRate: opts.copyRate, seconds, secondsHigh },
    sources,
    tables,
    warnings,
    notes,
  };
}

function methodOf(plan: Plan, mode: EstimateMode, e: Estimate | undefined): string {
  if (mode === 'none' || !e) return 'none: the servers were not contacted';
  const bytes = 'bytes = rows × DATA_LENGTH ÷ rows of the table on its source';
  if (mode === 'exact') {
    const p = plan.partition;
    const how =
      p.kind === 'residue'
        ? `rows grouped by ${p.hash === 'crc32' ? 'MOD(CRC32(key)' : 'MOD(key'}, ${p.modulus}) on each source`
        : 'rows grouped by their owner on each side, computed by SQL on each source';
    return `exact: ${how}; ${bytes}`;
  }
  const censused = e.tables.every((t) => t.method !== 'sample');
  return censused
    ? `sample: every table was small enough to read in full, so counts are exact; ${bytes}`
    : `sample: up to ${fmtInt(e.sampleRows ?? 0)} rows per table per source (MD5 of the primary key), routed here; ${Math.round(CONFIDENCE * 100)}% intervals; ${bytes}`;
}

// ---------------------------------------------------------------------------------------------
// Formatting shared with render.ts

export function fmtInt(n: number): string {
  return thousands(n);
}

export function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'never';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  const d = Math.floor(h / 24);
  return h % 24 === 0 ? `${d}d` : `${d}d ${h % 24}h`;
}
