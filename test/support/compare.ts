/**
 * Compare a whole estate directly, both sides, until `reshard verify` exists: every row of every
 * tracked table on every source must be on exactly its new owner (under the target topology),
 * with identical bytes, and nothing else may be on the targets.
 *
 * `compareEstate({ from: to, to })` checks one topology on its own: every row on the shard that
 * owns it, none twice (after an in-place cleanup, when the old shards no longer hold moved rows).
 *
 * Rows are streamed (never a whole table in memory at once); per table, the source side is kept
 * as primary-key bytes → (row digest, owners), about 100 bytes a row.
 *
 * Canonical row bytes: `tupleBytes` over every stored column as the exact-value driver returns it
 * (BIGINT and DECIMAL as decimal text, temporal types as server text, JSON as text, binary as
 * bytes, NULL tagged apart from ''), so two rows compare equal exactly when every column does.
 */
import { createHash } from 'node:crypto';
import type { Connection } from 'mysql2/promise';
import { loadTableMeta, routeKeyOf, type TableMeta } from '../../src/apply/table.js';
import { type Row, tupleBytes } from '../../src/apply/values.js';
import { connectShard } from '../../src/db/connect.js';
import { createRouter } from '../../src/plan/router.js';
import type { Topology } from '../../src/topology/types.js';

export type DifferenceKind =
  /** A source row is not on its new owner. */
  | 'missing'
  /** A target row no source has. */
  | 'extra'
  /** On its new owner, with other bytes. */
  | 'different'
  /** A copy of a source row on a target that does not own it. */
  | 'misplaced'
  /** A source row on a shard its own topology does not route it to. */
  | 'source-misplaced'
  /** The same primary key on two sources. */
  | 'duplicate-source'
  /** In-place expansion: a moved row still on its old shard (cleanup removes it). */
  | 'leftover';

export interface EstateDifference {
  table: string;
  kind: DifferenceKind;
  /** Where it was found (or, for missing, where it should be). */
  shard: string;
  /** Primary key values, JSON. */
  pk: string;
}

export interface CompareResult {
  /** Up to `limit` differences. */
  differences: EstateDifference[];
  counts: Record<DifferenceKind, number>;
  /** Total of counts, except leftovers when they are ignored. */
  total: number;
  /** source: distinct rows the sources own (their expected rows); target: rows found on targets. */
  rows: { source: number; target: number };
  tables: Record<string, { source: number; target: number }>;
}

export interface CompareOptions {
  from: Topology;
  to: Topology;
  tables?: string[];
  /** 'ignore' (default): moved rows still on an old shard that is also a target are not differences. */
  leftovers?: 'ignore' | 'report';
  limit?: number;
}

interface Expected {
  digest: string;
  from: string;
  to: string;
  seen: boolean;
  pk: Row;
}

function digest(row: Row): string {
  return createHash('sha1').update(tupleBytes(row)).digest('base64');
}

function pkJson(pk: Row): string {
  return JSON.stringify(
    pk.map((v) => (Buffer.isBuffer(v) ? `0x${v.toString('hex')}` : v === null ? null : String(v))),
  );
}

async function* streamRows(conn: Connection, meta: TableMeta): AsyncGenerator<Row> {
  const core = (
    conn as unknown as { connection: { query: (o: object) => { stream: () => AsyncIterable<unknown> } } }
  ).connection;
  const stream = core
    .query({ sql: `SELECT ${meta.sql.columns} FROM ${meta.sql.table}`, rowsAsArray: true })
    .stream();
  for await (const r of stream) yield r as Row;
}

export async function compareEstate(opts: CompareOptions): Promise<CompareResult> {
  const limit = opts.limit ?? 50;
  const fromRouter = createRouter(opts.from);
  const toRouter = createRouter(opts.to);
  const counts: Record<DifferenceKind, number> = {
    missing: 0,
    extra: 0,
    different: 0,
    misplaced: 0,
    'source-misplaced': 0,
    'duplicate-source': 0,
    leftover: 0,
  };
  const differences: EstateDifference[] = [];
  const add = (d: EstateDifference) => {
    counts[d.kind]++;
    if (differences.length < limit) differences.push(d);
  };
  const conns = new Map<string, Connection>();
  const conn = async (side: 'from' | 'to', name: string) => {
    const k = `${side}:${name}`;
    let c = conns.get(k);
    if (!c) {
      const shard = (side === 'from' ? opts.from : opts.to).shards.find((s) => s.name === name)!;
      c = await connectShard(shard);
      conns.set(k, c);
    }
    return c;
  };
  const rows = { source: 0, target: 0 };
  const tables: CompareResult['tables'] = {};
  const fromNames = new Set(opts.from.shards.map((s) => s.name));
  const toNames = new Set(opts.to.shards.map((s) => s.name));
  try {
    for (const spec of opts.from.tables) {
      if (opts.tables && !opts.tables.includes(spec.name)) continue;
      const perTable = { source: 0, target: 0 };
      tables[spec.name] = perTable;
      const expected = new Map<string, Expected>();
      for (const s of opts.from.shards) {
        const c = await conn('from', s.name);
        const meta = await loadTableMeta(c, s.endpoint.database, spec, `compare ${s.name}`);
        for await (const r of streamRows(c, meta)) {
          const key = routeKeyOf(meta, r[meta.shardKey] ?? null);
          const pk = meta.pk.map((i) => r[i] ?? null);
          if (fromRouter.ownerOf(key) !== s.name) {
            // In place, a source is also a target: a row copied here from another source is
            // checked with the targets.
            if (!(toNames.has(s.name) && toRouter.ownerOf(key) === s.name))
              add({ table: spec.name, kind: 'source-misplaced', shard: s.name, pk: pkJson(pk) });
            continue;
          }
          const k = tupleBytes(pk).toString('latin1');
          if (expected.has(k)) {
            add({ table: spec.name, kind: 'duplicate-source', shard: s.name, pk: pkJson(pk) });
            continue;
          }
          expected.set(k, { digest: digest(r), from: s.name, to: toRouter.ownerOf(key), seen: false, pk });
          perTable.source++;
        }
      }
      for (const t of opts.to.shards) {
        const c = await conn('to', t.name);
        const meta = await loadTableMeta(c, t.endpoint.database, spec, `compare ${t.name}`);
        for await (const r of streamRows(c, meta)) {
          perTable.target++;
          const pk = meta.pk.map((i) => r[i] ?? null);
          const e = expected.get(tupleBytes(pk).toString('latin1'));
          if (!e) {
            add({ table: spec.name, kind: 'extra', shard: t.name, pk: pkJson(pk) });
          } else if (e.to === t.name) {
            e.seen = true;
            if (e.digest !== digest(r))
              add({ table: spec.name, kind: 'different', shard: t.name, pk: pkJson(pk) });
          } else if (e.from === t.name && fromNames.has(t.name) && e.digest === digest(r)) {
            if (opts.leftovers === 'report')
              add({ table: spec.name, kind: 'leftover', shard: t.name, pk: pkJson(pk) });
          } else {
            add({ table: spec.name, kind: 'misplaced', shard: t.name, pk: pkJson(pk) });
          }
        }
      }
      for (const e of expected.values())
        if (!e.seen) add({ table: spec.name, kind: 'missing', shard: e.to, pk: pkJson(e.pk) });
      rows.source += perTable.source;
      rows.target += perTable.target;
    }
  } finally {
    for (const c of conns.values()) await c.end().catch(() => c.destroy());
  }
  const total = Object.entries(counts).reduce(
    (a, [k, n]) => a + (k === 'leftover' && opts.leftovers !== 'report' ? 0 : n),
    0,
  );
  return { differences, counts, total, rows, tables };
}
