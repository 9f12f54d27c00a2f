/**
 * Seeder: fills sandbox shards with deterministic data laid out as a real sharded estate is —
 * every row on the shard the topology routes its shard key to — fast, by LOAD DATA LOCAL
 * INFILE streams generated on the fly (one stream per shard and table, all shards in parallel).
 *
 * The generator reads column types from information_schema, so it works for any schema the
 * topology lists (the shop fixture, the type corpus, a user's own tables). Values come from a
 * seeded PRNG: the same (seed, rows, topology) gives byte-identical data on every run.
 *
 * Seeding writes with sql_log_bin = 0: the data predates the reshard, so it has no business
 * in the binary log the tailer will read later (and loading is faster without it).
 */
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { Connection } from 'mysql2/promise';
import { connect, describeEndpoint } from '../db/connect.js';
import { q } from '../db/quote.js';
import { PreconditionError, UsageError } from '../errors.js';
import { createRouter } from '../plan/router.js';
import type { Shard, ShardKey, TableSpec, Topology } from '../topology/types.js';
import { prng } from '../util/prng.js';

export interface SeedOptions {
  topology: Topology;
  /** Approximate total rows over all tables and shards. 0 creates the schema only. */
  rows: number;
  seed: number;
  /** SQL file with CREATE TABLE statements (run on every shard). */
  schemaSql: string;
  /** Drop and recreate tables that already exist. */
  replace: boolean;
  onProgress?: (e: { table: string; rows: number }) => void;
}

export interface SeedResult {
  rows: number;
  perShard: Record<string, number>;
  perTable: Record<string, number>;
  seconds: number;
}

/** Relative table sizes for the shop fixture; any other table gets weight 1. */
const WEIGHTS: Record<string, number> = { users: 2, orders: 4, order_items: 8 };

interface Column {
  name: string;
  dataType: string;
  columnType: string;
  nullable: boolean;
  charMax: number | null;
  numPrecision: number | null;
  numScale: number | null;
  fsp: number | null;
  isGenerated: boolean;
  autoIncrement: boolean;
  unique: boolean;
  pkPos: number | null;
}

function hashStr(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const WORDS = ['alpha', 'ß-straße', 'café', 'naïve', '東京', 'Zürich', '😀 party', 'São Paulo', 'Ωmega', 'x'];

/** Escape for LOAD DATA's default format (fields by \t, lines by \n, escape \\). */
function esc(s: string): string {
  return s.replace(/[\\\t\n\r\0]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\0',
  );
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

function enumValues(columnType: string): string[] {
  const m = /^(?:enum|set)\((.*)\)$/i.exec(columnType);
  if (!m) return [];
  const vals: string[] = [];
  const re = /'((?:[^']|'')*)'/g;
  let x: RegExpExecArray | null = re.exec(m[1]!);
  while (x) {
    vals.push(x[1]!.replace(/''/g, "'"));
    x = re.exec(m[1]!);
  }
  return vals;
}

type Gen = (row: number, rnd: () => number) => string | Buffer | null;

function intRange(c: Column): [bigint, bigint] {
  const unsigned = /unsigned/i.test(c.columnType);
  const bits: Record<string, number> = {
    tinyint: 8,
    smallint: 16,
    mediumint: 24,
    int: 32,
    integer: 32,
    bigint: 64,
  };
  const b = bits[c.dataType] ?? 32;
  return unsigned ? [0n, (1n << BigInt(b)) - 1n] : [-(1n << BigInt(b - 1)), (1n << BigInt(b - 1)) - 1n];
}

/** Value generator for one column; `keyDomain` is the shard-key value range for non-PK shard keys. */
function generatorFor(c: Column, role: 'pk1' | 'pk' | 'shardKey' | 'plain', keyDomain: number): Gen {
  const t = c.dataType;
  const isInt = ['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint'].includes(t);
  const isStr = ['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext'].includes(t);
  const isBin = ['binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob'].includes(t);
  const maxLen = Math.max(1, Math.min(c.charMax ?? 32, 48));
  if (role === 'pk1') {
    // First primary-key column: unique per row, dense, so keyset pagination has real work to do.
    if (isInt) return (row) => String(row + 1);
    if (isStr) return (row) => `k${pad(row + 1, 9)}`.slice(0, c.charMax ?? 64);
    if (isBin) return (row) => Buffer.from(`k${pad(row + 1, 9)}`);
  }
  if (role === 'shardKey') {
    if (isInt) return (_row, rnd) => String(1 + Math.floor(rnd() * keyDomain));
    if (isStr) return (_row, rnd) => `u${pad(1 + Math.floor(rnd() * keyDomain), 8)}`;
    if (isBin) return (_row, rnd) => Buffer.from(`u${pad(1 + Math.floor(rnd() * keyDomain), 8)}`);
  }
  const nullable = c.nullable && role === 'plain';
  const withNull = (g: Gen): Gen => (nullable ? (row, rnd) => (rnd() < 0.08 ? null : g(row, rnd)) : g);
  if (isInt) {
    const [lo, hi] = intRange(c);
    const span = hi - lo;
    const small = role === 'pk' ? 1000n : span;
    return withNull((_r, rnd) => {
      if (rnd() < 0.02) return String(rnd() < 0.5 ? lo : hi);
      const v =
        lo < 0n && role !== 'pk'
          ? BigInt(Math.floor((rnd() - 0.5) * 2_000_000))
          : lo + (BigInt(Math.floor(rnd() * 1e9)) % (small + 1n));
      return String(v < lo ? lo : v > hi ? hi : v);
    });
  }
  if (t === 'decimal') {
    const p = c.numPrecision ?? 10;
    const s = c.numScale ?? 0;
    const intDigits = Math.min(p - s, 12);
    return withNull((_r, rnd) => {
      const ip = intDigits > 0 ? String(Math.floor(rnd() * 10 ** intDigits)) : '0';
      let fp = '';
      for (let i = 0; i < s; i++) fp += String(Math.floor(rnd() * 10));
      return `${rnd() < 0.1 && !/unsigned/i.test(c.columnType) ? '-' : ''}${ip}${s > 0 ? `.${fp}` : ''}`;
    });
  }
  if (t === 'float' || t === 'double') return withNull((_r, rnd) => String(Math.round(rnd() * 1e6) / 100));
  if (t === 'date')
    return withNull(
      (_r, rnd) =>
        `20${pad(20 + Math.floor(rnd() * 6), 2)}-${pad(1 + Math.floor(rnd() * 12), 2)}-${pad(1 + Math.floor(rnd() * 28), 2)}`,
    );
  if (t === 'datetime' || t === 'timestamp') {
    const fsp = c.fsp ?? 0;
    return withNull((_r, rnd) => {
      const d = `20${pad(20 + Math.floor(rnd() * 6), 2)}-${pad(1 + Math.floor(rnd() * 12), 2)}-${pad(1 + Math.floor(rnd() * 28), 2)} ${pad(Math.floor(rnd() * 24), 2)}:${pad(Math.floor(rnd() * 60), 2)}:${pad(Math.floor(rnd() * 60), 2)}`;
      return fsp > 0 ? `${d}.${pad(Math.floor(rnd() * 10 ** fsp), fsp)}` : d;
    });
  }
  if (t === 'time')
    return withNull((_r, rnd) => `${pad(Math.floor(rnd() * 24), 2)}:${pad(Math.floor(rnd() * 60), 2)}:00`);
  if (t === 'year') return withNull((_r, rnd) => String(2000 + Math.floor(rnd() * 30)));
  if (t === 'enum') {
    const vals = enumValues(c.columnType);
    return withNull((_r, rnd) => vals[Math.floor(rnd() * vals.length)] ?? '');
  }
  if (t === 'set') {
    const vals = enumValues(c.columnType);
    return withNull((_r, rnd) => vals.filter(() => rnd() < 0.4).join(','));
  }
  if (t === 'bit') {
    const bits = c.numPrecision ?? 1;
    // Loaded through a user variable as a decimal integer (see loadSql).
    return withNull((_r, rnd) => {
      let v = 0n;
      for (let i = 0; i < bits; i++) if (rnd() < 0.5) v |= 1n << BigInt(i);
      return v.toString();
    });
  }
  if (t === 'json')
    return withNull((row, rnd) =>
      JSON.stringify({
        n: row,
        score: Math.floor(rnd() * 1000),
        tag: WORDS[Math.floor(rnd() * WORDS.length)],
      }),
    );
  if (isBin) {
    const fixed = t === 'binary' ? (c.charMax ?? 1) : 0;
    return withNull((_r, rnd) => {
      const len = fixed || 1 + Math.floor(rnd() * Math.min(maxLen, 24));
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = rnd() < 0.15 ? 0 : Math.floor(rnd() * 256);
      return b;
    });
  }
  if (isStr) {
    return withNull((row, rnd) => {
      if (nullable && rnd() < 0.05) return '';
      let s = rnd() < 0.3 ? (WORDS[Math.floor(rnd() * WORDS.length)] ?? '') : '';
      const len = 3 + Math.floor(rnd() * Math.max(1, maxLen - 3));
      while (s.length < len) s += ALNUM[Math.floor(rnd() * ALNUM.length)];
      // Columns under a unique index get the row number appended so values never collide.
      if (c.unique) s = `${s.slice(0, Math.max(0, maxLen - 11))}#${row}`;
      return [...s].slice(0, c.charMax ?? 64).join('');
    });
  }
  return withNull(() => '0');
}

async function readColumns(conn: Connection, database: string, table: string): Promise<Column[]> {
  const [rows] = await conn.query(
    `SELECT c.COLUMN_NAME AS name, c.DATA_TYPE AS dataType, c.COLUMN_TYPE AS columnType, c.IS_NULLABLE AS nullable,
            c.CHARACTER_MAXIMUM_LENGTH AS charMax, c.NUMERIC_PRECISION AS numPrecision, c.NUMERIC_SCALE AS numScale,
            c.DATETIME_PRECISION AS fsp, c.EXTRA AS extra, c.GENERATION_EXPRESSION AS gen,
            (SELECT MIN(s.SEQ_IN_INDEX) FROM information_schema.STATISTICS s WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA
               AND s.TABLE_NAME = c.TABLE_NAME AND s.COLUMN_NAME = c.COLUMN_NAME AND s.INDEX_NAME = 'PRIMARY') AS pkPos,
            (SELECT COUNT(*) FROM information_schema.STATISTICS s WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA
               AND s.TABLE_NAME = c.TABLE_NAME AND s.COLUMN_NAME = c.COLUMN_NAME AND s.NON_UNIQUE = 0 AND s.INDEX_NAME <> 'PRIMARY') AS uniq
       FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION`,
    [database, table],
  );
  // MariaDB's JSON is LONGTEXT plus a json_valid() CHECK constraint: recognise it by the check.
  const jsonCols = new Set<string>();
  try {
    const [checks] = await conn.query(
      'SELECT CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?',
      [database, table],
    );
    for (const c of checks as { clause: string }[]) {
      const m = /json_valid\(`((?:[^`]|``)+)`\)/i.exec(c.clause);
      if (m) jsonCols.add(m[1]!.replace(/``/g, '`'));
    }
  } catch {
    // MySQL 5.7 has no CHECK_CONSTRAINTS view, and no JSON-as-LONGTEXT either.
  }
  return (rows as Record<string, unknown>[]).map((r) => ({
    name: String(r.name),
    dataType: jsonCols.has(String(r.name)) ? 'json' : String(r.dataType).toLowerCase(),
    columnType: String(r.columnType),
    nullable: r.nullable === 'YES',
    charMax: r.charMax === null ? null : Number(r.charMax),
    numPrecision: r.numPrecision === null ? null : Number(r.numPrecision),
    numScale: r.numScale === null ? null : Number(r.numScale),
    fsp: r.fsp === null ? null : Number(r.fsp),
    isGenerated: /GENERATED/i.test(String(r.extra ?? '')) || (r.gen !== null && String(r.gen) !== ''),
    autoIncrement: /auto_increment/i.test(String(r.extra ?? '')),
    unique: Number(r.uniq) > 0,
    pkPos: r.pkPos === null ? null : Number(r.pkPos),
  }));
}

function splitStatements(sql: string): string[] {
  // Schema files keep one statement per `;` at end of line (no procedures), so this is safe.
  return sql
    .split(/;\s*$/m)
    .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
    .filter(Boolean);
}

function keyOf(c: Column, text: string | Buffer): ShardKey {
  if (Buffer.isBuffer(text)) return text;
  if (['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint'].includes(c.dataType))
    return BigInt(text);
  return text;
}

async function prepareShard(shard: Shard, opts: SeedOptions, conn: Connection): Promise<void> {
  const db = shard.endpoint.database;
  await conn.query(`CREATE DATABASE IF NOT EXISTS ${q(db)} CHARACTER SET utf8mb4`);
  await conn.query(`USE ${q(db)}`);
  for (const t of opts.topology.tables) {
    const [rows] = await conn.query(
      'SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
      [db, t.name],
    );
    const exists = Number((rows as { n: unknown }[])[0]?.n) > 0;
    if (exists && !opts.replace) {
      throw new PreconditionError(
        'E_SEED_EXISTS',
        `table ${db}.${t.name} already exists on shard ${shard.name} (${describeEndpoint(shard.endpoint)})`,
        {
          hint: 'pass --replace to drop and recreate the fixture tables (this deletes their data)',
        },
      );
    }
    if (exists) await conn.query(`DROP TABLE ${q(t.name)}`);
  }
  for (const stmt of splitStatements(opts.schemaSql)) await conn.query(stmt);
}

/** Create the schema on every shard and fill it. */
export async function seed(opts: SeedOptions): Promise<SeedResult> {
  const started = Date.now();
  const { topology } = opts;
  const router = createRouter(topology);
  const conns = new Map<string, Connection>();
  try {
    for (const s of topology.shards) {
      const c = await connect(s.endpoint, `shard ${s.name}`, { withDatabase: false });
      conns.set(s.name, c);
      await c.query('SET SESSION sql_log_bin = 0, SESSION unique_checks = 0, SESSION foreign_key_checks = 0');
    }
    for (const s of topology.shards) await prepareShard(s, opts, conns.get(s.name)!);
    const perShard: Record<string, number> = Object.fromEntries(topology.shards.map((s) => [s.name, 0]));
    const perTable: Record<string, number> = {};
    if (opts.rows <= 0) return { rows: 0, perShard, perTable, seconds: (Date.now() - started) / 1000 };

    const first = topology.shards[0]!;
    const totalWeight = topology.tables.reduce((a, t) => a + (WEIGHTS[t.name] ?? 1), 0);
    // Shard-key domain: as many distinct keys as rows of the largest "entity" table (users).
    const keyDomain = Math.max(100, Math.round((opts.rows * (WEIGHTS.users ?? 1)) / totalWeight));
    let total = 0;
    for (const t of topology.tables) {
      const n = Math.round((opts.rows * (WEIGHTS[t.name] ?? 1)) / totalWeight);
      const cols = await readColumns(conns.get(first.name)!, first.endpoint.database, t.name);
      const count = await loadTable(t, cols, n, keyDomain, opts, router, conns);
      for (const [s, k] of Object.entries(count)) perShard[s] = (perShard[s] ?? 0) + k;
      perTable[t.name] = n;
      total += n;
      opts.onProgress?.({ table: t.name, rows: n });
    }
    return { rows: total, perShard, perTable, seconds: (Date.now() - started) / 1000 };
  } finally {
    await Promise.all([...conns.values()].map((c) => c.end().catch(() => undefined)));
  }
}

async function loadTable(
  t: TableSpec,
  cols: Column[],
  n: number,
  keyDomain: number,
  opts: SeedOptions,
  router: ReturnType<typeof createRouter>,
  conns: Map<string, Connection>,
): Promise<Record<string, number>> {
  if (cols.length === 0) {
    throw new UsageError(
      'E_SEED_TABLE',
      `table ${t.name} is listed in ${opts.topology.file} but the schema file does not create it`,
      {
        hint: 'add it to the schema SQL or remove it from the topology',
      },
    );
  }
  const loadCols = cols.filter((c) => !c.isGenerated);
  const pk = loadCols.filter((c) => c.pkPos !== null).sort((a, b) => (a.pkPos ?? 0) - (b.pkPos ?? 0));
  const keyIdx = loadCols.findIndex((c) => c.name === t.shardKey);
  if (keyIdx < 0) {
    throw new UsageError(
      'E_SEED_TABLE',
      `table ${t.name} has no column ${t.shardKey} (its shardKey in ${opts.topology.file})`,
      {
        hint: 'fix shardKey in the topology',
      },
    );
  }
  const gens = loadCols.map((c) => {
    const role = c === pk[0] ? 'pk1' : c.name === t.shardKey ? 'shardKey' : c.pkPos !== null ? 'pk' : 'plain';
    return generatorFor(c, role, keyDomain);
  });
  const rnd = prng((opts.seed ^ hashStr(t.name)) >>> 0);
  const shardNames = opts.topology.shards.map((s) => s.name);
  const streams = new Map<string, Readable>();
  const counts: Record<string, number> = Object.fromEntries(shardNames.map((s) => [s, 0]));
  for (const s of shardNames) streams.set(s, new Readable({ read() {} }));

  // BIT arrives as a decimal integer and binary strings as hex, both through user variables,
  // so every line is plain UTF-8 text and can be built as one string.
  const viaVar = (c: Column) => c.dataType === 'bit' || BINARY_TYPES.has(c.dataType);
  const vars = loadCols.map((c, i) => (viaVar(c) ? `@v${i}` : q(c.name)));
  const sets = loadCols.flatMap((c, i) =>
    c.dataType === 'bit'
      ? [`${q(c.name)} = CAST(@v${i} AS UNSIGNED)`]
      : BINARY_TYPES.has(c.dataType)
        ? [`${q(c.name)} = UNHEX(@v${i})`]
        : [],
  );
  const sql = `LOAD DATA LOCAL INFILE 'reshard-seed' INTO TABLE ${q(t.name)} CHARACTER SET utf8mb4 (${vars.join(', ')})${sets.length ? ` SET ${sets.join(', ')}` : ''}`;
  const loads = shardNames.map((s) => {
    const conn = conns.get(s)!;
    const stream = streams.get(s)!;
    const shard = opts.topology.shards.find((x) => x.name === s)!;
    return conn
      .query(`USE ${q(shard.endpoint.database)}`)
      .then(() => conn.query({ sql, infileStreamFactory: () => stream } as unknown as string));
  });

  // Generate in batches and push to each shard's stream; yield between batches so the
  // connections drain (bounded memory, whatever the row count).
  const BATCH = 20_000;
  const pending = new Map<string, string[]>(shardNames.map((s) => [s, []]));
  const flush = () => {
    for (const [s, lines] of pending) {
      if (lines.length) streams.get(s)!.push(Buffer.from(lines.join(''), 'utf8'));
      pending.set(s, []);
    }
  };
  const fields: string[] = new Array(loadCols.length);
  for (let row = 0; row < n; row++) {
    let key: ShardKey | undefined;
    for (let i = 0; i < loadCols.length; i++) {
      const v = gens[i]!(row, rnd);
      if (i === keyIdx) key = v === null ? undefined : keyOf(loadCols[i]!, v);
      fields[i] = v === null ? '\\N' : Buffer.isBuffer(v) ? v.toString('hex') : esc(v);
    }
    if (key === undefined)
      throw new UsageError('E_SEED_TABLE', `shard key ${t.name}.${t.shardKey} generated NULL`, {
        hint: 'make the shard key NOT NULL',
      });
    const owner = router.ownerOf(key);
    pending.get(owner)!.push(`${fields.join('\t')}\n`);
    counts[owner] = (counts[owner] ?? 0) + 1;
    if ((row + 1) % BATCH === 0) {
      flush();
      await new Promise((r) => setImmediate(r));
    }
  }
  flush();
  for (const st of streams.values()) st.push(null);
  const results = await Promise.all(loads);
  for (const [i, r] of results.entries()) {
    const info = r[0] as unknown as { warningStatus?: number };
    if (info.warningStatus && info.warningStatus > 0) {
      // Warnings mean truncated or converted values: the fixture would not be what we generated.
      const [w] = await conns.get(shardNames[i]!)!.query('SHOW WARNINGS LIMIT 3');
      const first = (w as { Message: string }[]).map((x) => x.Message).join('; ');
      throw new PreconditionError(
        'E_SEED_WARNINGS',
        `loading ${t.name} produced ${info.warningStatus} warnings (values changed by the server): ${first}`,
        {
          hint: 'this is a defect in the seed generator for this column type; please report the table definition',
        },
      );
    }
  }
  return counts;
}

const BINARY_TYPES = new Set(['binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob']);

export function readSchemaFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError('E_SEED_SCHEMA', `cannot read schema file ${path}`, {
      hint: 'pass --schema <file.sql>',
      cause: e,
    });
  }
}
