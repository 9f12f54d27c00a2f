/**
 * One unit of the pass: read one table on one shard, classify every row and add it to its
 * bucket's partial sums. The rows are the table's (or the buckets' the filter selects) in
 * primary-key pages, or — an incremental run with exact changed keys — the rows of those keys,
 * looked up in batches. Runs in the verifier's thread or in a scan worker (scan-pool.ts); its
 * inputs and outputs are plain data so they cross a thread boundary by structured clone.
 */
import type { Connection } from 'mysql2/promise';
import { connectShard } from '../db/connect.js';
import { BucketSums, type BucketSumsData, changeIdOf, pkHashView } from './bucket.js';
import { type BucketFilter, filterSql, maskHas, pkTupleKey } from './diff.js';
import {
  ROLE_MISPLACED,
  ROLE_SOURCE,
  ROLE_STAY,
  ROLE_TARGET,
  type Routing,
  roleOf,
  type ShardRole,
} from './routing.js';
import { type RawRow, RowHasher } from './rowhash.js';
import { type RowView, scanTable, streamRowViews } from './scan.js';
import {
  KEY_BATCH,
  pkIn,
  pkKeyOfView,
  pkOfView,
  routeKeyOfView,
  tableRef,
  type VerifyTable,
} from './table.js';

/** What to check of one table in a run. */
export interface TablePlan {
  table: VerifyTable;
  mode: 'full' | 'incremental' | 'skipped';
  filter: BucketFilter;
  estimatedRows: number;
  /**
   * Incremental by exact keys: the primary keys to re-check, looked up instead of scanning. The
   * filter then selects nothing (bits only place rows in buckets).
   */
  keys?: RawRow[] | undefined;
  /**
   * Where each of `keys` is looked up (changes.ts RecordedKeys): `at` per shard name, plus
   * `everywhere` on every shard. Absent: every key on every shard.
   */
  keysAt?: { at: ReadonlyMap<string, readonly RawRow[]>; everywhere: readonly RawRow[] } | undefined;
}

/** The keys of an exact-keys plan to look up on shard `name`: its own and the everywhere ones. */
export function keysToLookUp(plan: TablePlan, name: string): readonly RawRow[] {
  if (!plan.keysAt) return plan.keys ?? [];
  const here = plan.keysAt.at.get(name) ?? [];
  const all = plan.keysAt.everywhere;
  return here.length === 0 ? all : all.length === 0 ? here : [...all, ...here];
}

export interface ScanPart {
  source: BucketSums;
  target: BucketSums;
  sourceRows: number;
  targetRows: number;
  /** Rows on a target that owns them under neither topology (up to the cap), by primary key. */
  misplaced: { pk: RawRow; bucket: number; segment: number }[];
  misplacedOverflow: number;
  strays: number;
  /**
   * Key lookups: rows returned whose key bytes are none of the keys asked for (equal under the
   * column's collation, e.g. 'AB' for 'ab'). Their buckets are not the keys' buckets, so a drill
   * of such a table looks up all its keys.
   */
  inexact: number;
}

export interface ScanPartData extends Omit<ScanPart, 'source' | 'target'> {
  source: BucketSumsData;
  target: BucketSumsData;
}

export function scanPartData(p: ScanPart): ScanPartData {
  return { ...p, source: p.source.toData(), target: p.target.toData() };
}

export function scanPartFromData(d: ScanPartData): ScanPart {
  return {
    ...d,
    source: BucketSums.fromData(d.source),
    target: BucketSums.fromData(d.target),
    // Buffers arrive as plain Uint8Arrays after a structured clone.
    misplaced: d.misplaced.map((m) => ({
      ...m,
      pk: m.pk.map((v) => (v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength))),
    })),
  };
}

function emptyPart(): ScanPart {
  return {
    source: new BucketSums(true),
    target: new BucketSums(true),
    sourceRows: 0,
    targetRows: 0,
    misplaced: [],
    misplacedOverflow: 0,
    strays: 0,
    inexact: 0,
  };
}

/** Scan one table on shard x (the plan's buckets, or all of it) over a connection of its own. */
export async function scanPart(
  x: ShardRole,
  plan: TablePlan,
  routing: Routing,
  pageSize: number,
  maxMisplaced: number,
  tick: (n: number) => void,
  signal?: AbortSignal | undefined,
): Promise<ScanPart> {
  const part = emptyPart();
  const conn = await connectShard(x.shard);
  let reported = 0;
  try {
    await scanTable({
      conn,
      table: plan.table,
      from: tableRef(x.database, plan.table),
      where: filterSql(plan.table, plan.filter),
      pageSize,
      signal,
      onPage: (total) => {
        tick(total - reported);
        reported = total;
      },
      onRow: classifier(x, plan, routing, part, maxMisplaced),
    });
  } finally {
    await conn.end().catch(() => undefined);
  }
  settle(part);
  return part;
}

/** Partials outlive their scan until combined: without the dense index, at Map size. */
function settle(part: ScanPart): void {
  part.source.settle();
  part.target.settle();
}

/** Per exact-keys plan: its lookup conditions, one per batch, and its keys as map keys (built once for all shards). */
const lookups = new WeakMap<TablePlan, { conds: string[]; wanted: Set<string> | undefined }>();

function lookupsOf(
  plan: TablePlan,
  keys: readonly RawRow[],
): { conds: string[]; wanted: Set<string> | undefined } {
  // Without keysAt every shard looks up the same keys: built once.
  let l = plan.keysAt ? undefined : lookups.get(plan);
  if (!l) {
    const conds: string[] = [];
    for (let i = 0; i < keys.length; i += KEY_BATCH)
      conds.push(pkIn(plan.table, keys.slice(i, i + KEY_BATCH)));
    l = { conds, wanted: plan.table.exactPk ? undefined : new Set(keys.map((k) => pkTupleKey(k))) };
    if (!plan.keysAt) lookups.set(plan, l);
  }
  return l;
}

/**
 * Exact keys: look up the plan's keys on shard x, batch by batch over `conn` (the caller's; one
 * per shard serves every table), and classify the rows found as a scan would.
 */
export async function lookupPart(
  conn: Connection,
  x: ShardRole,
  plan: TablePlan,
  routing: Routing,
  maxMisplaced: number,
  tick: (n: number) => void,
  signal?: AbortSignal | undefined,
): Promise<ScanPart> {
  const t = plan.table;
  const part = emptyPart();
  const classify = classifier(x, plan, routing, part, maxMisplaced);
  const { conds, wanted } = lookupsOf(plan, keysToLookUp(plan, x.name));
  const head = `SELECT ${t.sql.select} FROM ${tableRef(x.database, t)} WHERE `;
  // Each row once, though two keys equal under the collation (not byte for byte) would return it
  // in two batches.
  const seen = new Set<string>();
  const onRow = wanted
    ? (view: RowView) => {
        const k = pkKeyOfView(t, view);
        if (seen.has(k)) return;
        seen.add(k);
        if (!wanted.has(k)) part.inexact++;
        classify(view);
      }
    : classify;
  for (const cond of conds) {
    signal?.throwIfAborted();
    tick(await streamRowViews(conn, head + cond, t.columns.length, onRow));
  }
  settle(part);
  return part;
}

/** Route one row read on shard x, and add it to its bucket (or count it misplaced or stray). */
function classifier(
  x: ShardRole,
  plan: TablePlan,
  routing: Routing,
  part: ScanPart,
  maxMisplaced: number,
): (row: RowView) => void {
  const t = plan.table;
  const { bits, mask } = plan.filter;
  const hasher = new RowHasher(t.columns.map((c) => c.kind));
  const h = new Int32Array(2);
  const ra = routing.from;
  const rb = routing.to;
  const nTo = routing.nTo;
  const segByPair = routing.segByPair;
  const segSize = 2 ** bits;
  const shift = 32 - bits;
  const pk = t.pk;
  const ncols = t.columns.length;
  const src = part.source;
  const tgt = part.target;
  return (row) => {
    const key = routeKeyOfView(t, row);
    const fi = ra.ownerIndexOf(key);
    const ti = rb.ownerIndexOf(key);
    const role = roleOf(x, fi, ti);
    if (role === ROLE_STAY) return;
    const ph = pkHashView(row, pk);
    if (mask !== undefined && !maskHas(mask, changeIdOf(ph))) return;
    const seg = segByPair[fi * nTo + ti]!;
    const id = seg * segSize + (bits === 0 ? 0 : ph >>> shift);
    if (role === ROLE_SOURCE) {
      hasher.hashView(row, ncols, h);
      src.add(id, h[0]!, h[1]!);
      part.sourceRows++;
    } else if (role === ROLE_TARGET) {
      hasher.hashView(row, ncols, h);
      tgt.add(id, h[0]!, h[1]!);
      part.targetRows++;
    } else if (role === ROLE_MISPLACED) {
      if (part.misplaced.length < maxMisplaced)
        part.misplaced.push({ pk: pkOfView(t, row), bucket: id, segment: seg });
      else part.misplacedOverflow++;
    } else {
      part.strays++;
    }
  };
}
