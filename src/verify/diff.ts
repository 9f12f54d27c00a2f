/**
 * Drill-down: find the rows behind mismatched buckets, with exact primary keys.
 *
 * For one segment (one source shard, one target shard) and a set of its mismatched buckets, the
 * bucket's rows are walked on both shards in primary-key ranges:
 *
 *   S = source rows with pk > lo in the buckets, ORDER BY pk LIMIT P;   hi = last pk of S
 *   T = target rows with lo < pk ≤ hi in the buckets, LIMIT P + 1
 *       (more than P: the target holds extra rows here; hi moves down to T's P-th key and S is
 *        re-read up to it)
 *   compare the range: rows matched by primary-key bytes → missing / extra / different columns
 *   lo = hi, until S runs out (the last range is unbounded above, so trailing target rows count)
 *
 * The range bounds are SQL predicates, so the server's collation decides the order and both
 * sides are cut at the same keys. Each row is read once per side, memory is two pages, and the
 * server selects the buckets' rows itself (`CRC32(pk …) >> s IN (…)`), so a drill-down costs a
 * server-side scan of the table but ships only the buckets' rows. (Hashing is done by the client,
 * so recursively bisecting ranges by their checksums would read the rows again at every level;
 * a single ordered walk reads them once and finds every difference.)
 *
 * An incremental run by exact keys (DrillInput.keys) drills differently: its buckets hold only the
 * rows of its keys, so those keys are looked up on both shards, batch by batch, and compared the
 * same way — no scan at all.
 */
import type { Connection } from 'mysql2/promise';
import type { Segment } from '../plan/types.js';
import { bucketId, CHANGE_BITS, changeIdOf, pkHashRaw, sqlSubExpr, subOf } from './bucket.js';
import { ownersOf, type Routing, type ShardRole } from './routing.js';
import { type RawRow, type RawValue, RowHasher } from './rowhash.js';
import { fetchRows } from './scan.js';
import {
  KEY_BATCH,
  pkAfter,
  pkAtMost,
  pkEquals,
  pkIn,
  pkKey,
  pkOf,
  routeKeyOfRaw,
  type VerifyTable,
} from './table.js';

export type DiffKind = 'missing' | 'extra' | 'different' | 'misplaced';

export interface RowDiff {
  kind: DiffKind;
  table: VerifyTable;
  /** Bucket id and segment of the row (for misplaced rows: the segment its key belongs to). */
  bucket: number;
  /** Bucket bits of the run (bucket = segment × 2^bits + sub). */
  bits: number;
  segment: Segment;
  /** The shard the row is on (extra, different, misplaced) or should be on (missing). */
  shard: string;
  /** The source shard holding the row (missing, different). */
  source?: string | undefined;
  /** Misplaced: the target shard that owns the row. */
  owner?: string | undefined;
  pk: RawRow;
  /** Different: names of the columns that differ. */
  columns?: string[] | undefined;
  sourceRow?: RawRow | undefined;
  targetRow?: RawRow | undefined;
}

export interface BucketFilter {
  bits: number;
  /** Change-id mask (2^CHANGE_BITS bits) of an incremental run, with its ids for SQL. */
  mask?: Uint8Array | undefined;
  maskIds?: readonly number[] | undefined;
  /** The server computes pkHash like the client (checked per table); else filter client-side only. */
  sql: boolean;
}

export function maskHas(mask: Uint8Array, id: number): boolean {
  return (mask[id >>> 3]! & (1 << (id & 7))) !== 0;
}

export function maskOf(ids: Iterable<number>): Uint8Array {
  const m = new Uint8Array(2 ** CHANGE_BITS / 8);
  for (const id of ids) m[id >>> 3]! |= 1 << (id & 7);
  return m;
}

/** SQL restricting a scan to change ids (incremental) and/or bucket subs. */
export function filterSql(t: VerifyTable, f: BucketFilter, subs?: readonly number[]): string | undefined {
  if (!f.sql) return undefined;
  const conds: string[] = [];
  if (f.maskIds) conds.push(`${sqlSubExpr(t.sql.pkHash, CHANGE_BITS)} IN (${f.maskIds.join(', ')})`);
  if (subs && f.bits > 0) conds.push(`${sqlSubExpr(t.sql.pkHash, f.bits)} IN (${subs.join(', ')})`);
  return conds.length ? conds.join(' AND ') : undefined;
}

export interface DrillInput {
  table: VerifyTable;
  segment: Segment;
  subs: readonly number[];
  filter: BucketFilter;
  routing: Routing;
  source: { conn: Connection; ref: string; role: ShardRole };
  target: { conn: Connection; ref: string; role: ShardRole };
  pageSize: number;
  /** The run checks these primary keys only (incremental by exact keys): look them up, no walk. */
  keys?: readonly RawRow[] | undefined;
  signal?: AbortSignal | undefined;
}

function copyRow(r: RawRow): RawRow {
  return r.map((v) => (v === null ? null : Buffer.from(v)));
}

function sameValue(a: RawValue, b: RawValue): boolean {
  if (a === null || b === null) return a === b;
  return a.equals(b);
}

/** Walk the buckets `subs` of one segment on its source and target; report every differing row. */
export async function drillDown(d: DrillInput, onDiff: (diff: RowDiff) => void): Promise<void> {
  const t = d.table;
  const f = d.filter;
  const seg = d.segment;
  const segFrom = d.routing.shards.get(seg.from)!.fromIdx;
  const segTo = d.routing.shards.get(seg.to)!.toIdx;
  const subSet = new Set(d.subs);
  const hasher = new RowHasher(t.columns.map((c) => c.kind));
  const where = filterSql(t, f, d.subs);

  /** Bucket id of a row when it belongs to the drilled buckets of this segment, else -1. */
  const bucketOfRow = (row: RawRow): number => {
    const [fi, ti] = ownersOf(d.routing, routeKeyOfRaw(t, row[t.shardKey]!));
    if (fi !== segFrom || ti !== segTo) return -1;
    const ph = pkHashRaw(row, t.pk);
    if (f.mask && !maskHas(f.mask, changeIdOf(ph))) return -1;
    const sub = subOf(ph, f.bits);
    return subSet.has(sub) ? bucketId(seg.id, f.bits, sub) : -1;
  };

  const page = async (
    side: { conn: Connection; ref: string },
    lo: RawRow | undefined,
    hi: RawRow | undefined,
    limit: number,
  ): Promise<RawRow[]> => {
    const conds: string[] = [];
    if (lo) conds.push(pkAfter(t, lo));
    if (hi) conds.push(pkAtMost(t, hi));
    if (where) conds.push(`(${where})`);
    const sql = `SELECT ${t.sql.select} FROM ${side.ref}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${t.sql.orderBy} LIMIT ${limit}`;
    return fetchRows(side.conn, sql);
  };

  const compare = (src: RawRow[], tgt: RawRow[]): void => {
    const byPk = new Map<string, { row: RawRow; bucket: number }>();
    for (const r of src) {
      const b = bucketOfRow(r);
      if (b >= 0) byPk.set(pkKey(t, r), { row: r, bucket: b });
    }
    for (const r of tgt) {
      const b = bucketOfRow(r);
      if (b < 0) continue;
      const k = pkKey(t, r);
      const s = byPk.get(k);
      if (!s) {
        onDiff({
          kind: 'extra',
          table: t,
          bits: f.bits,
          bucket: b,
          segment: seg,
          shard: seg.to,
          pk: copyRow(pkOf(t, r)),
          targetRow: copyRow(r),
        });
        continue;
      }
      byPk.delete(k);
      const cols: string[] = [];
      for (let i = 0; i < t.columns.length; i++) {
        if (!sameValue(hasher.canonical(s.row, i), hasher.canonical(r, i))) cols.push(t.columns[i]!.name);
      }
      if (cols.length > 0) {
        onDiff({
          kind: 'different',
          table: t,
          bits: f.bits,
          bucket: s.bucket,
          segment: seg,
          shard: seg.to,
          source: seg.from,
          pk: copyRow(pkOf(t, r)),
          columns: cols,
          sourceRow: copyRow(s.row),
          targetRow: copyRow(r),
        });
      }
    }
    for (const s of byPk.values()) {
      onDiff({
        kind: 'missing',
        table: t,
        bits: f.bits,
        bucket: s.bucket,
        segment: seg,
        shard: seg.to,
        source: seg.from,
        pk: copyRow(pkOf(t, s.row)),
        sourceRow: copyRow(s.row),
      });
    }
  };

  if (d.keys) {
    // Each row once per side, though keys equal under the collation return it in two batches.
    const once = (seen: Set<string>) => (r: RawRow) => {
      const k = pkKey(t, r);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    };
    const [newSrc, newTgt] = [once(new Set()), once(new Set())];
    for (let i = 0; i < d.keys.length; i += KEY_BATCH) {
      d.signal?.throwIfAborted();
      const cond = pkIn(t, d.keys.slice(i, i + KEY_BATCH));
      const read = (side: { conn: Connection; ref: string }) =>
        fetchRows(side.conn, `SELECT ${t.sql.select} FROM ${side.ref} WHERE ${cond}`);
      compare((await read(d.source)).filter(newSrc), (await read(d.target)).filter(newTgt));
    }
    return;
  }

  const P = d.pageSize;
  let lo: RawRow | undefined;
  for (;;) {
    d.signal?.throwIfAborted();
    let src = await page(d.source, lo, undefined, P);
    let hi = src.length === P ? pkOf(t, src[src.length - 1]!) : undefined;
    let tgt = await page(d.target, lo, hi, P + 1);
    if (tgt.length > P) {
      hi = pkOf(t, tgt[P - 1]!);
      tgt = tgt.slice(0, P);
      src = await page(d.source, lo, hi, P);
    }
    compare(src, tgt);
    if (!hi) return;
    lo = copyRow(hi);
  }
}

/** Current rows for some primary keys (re-checks of misplaced rows), matched back by pk bytes. */
export async function lookupRows(
  conn: Connection,
  ref: string,
  t: VerifyTable,
  pks: readonly RawRow[],
): Promise<Map<string, RawRow>> {
  const out = new Map<string, RawRow>();
  for (let i = 0; i < pks.length; i += 200) {
    const batch = pks.slice(i, i + 200);
    const where = batch.map((pk) => `(${pkEquals(t, pk)})`).join(' OR ');
    for (const r of await fetchRows(conn, `SELECT ${t.sql.select} FROM ${ref} WHERE ${where}`)) {
      out.set(pkKey(t, r), copyRow(r));
    }
  }
  return out;
}

/** Map key of a bare primary-key tuple (same as pkKey of a row holding it). */
export function pkTupleKey(pk: readonly RawValue[]): string {
  let s = '';
  for (const v of pk) s += v ? `${v.length}:${v.toString('latin1')}` : 'N';
  return s;
}
