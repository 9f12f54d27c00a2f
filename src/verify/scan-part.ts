/**
 * One unit of the full pass: read one table on one shard, classify every row and add it to its
 * bucket's partial sums. Runs in the verifier's thread or in a scan worker (scan-pool.ts); its
 * inputs and outputs are plain data so they cross a thread boundary by structured clone.
 */
import { connectShard } from '../db/connect.js';
import { BucketSums, type BucketSumsData, changeIdOf, pkHashView } from './bucket.js';
import { type BucketFilter, filterSql, maskHas } from './diff.js';
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
import { scanTable } from './scan.js';
import { pkOfView, routeKeyOfView, tableRef, type VerifyTable } from './table.js';

/** What to check of one table in a run. */
export interface TablePlan {
  table: VerifyTable;
  mode: 'full' | 'incremental' | 'skipped';
  filter: BucketFilter;
  estimatedRows: number;
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

export async function scanPart(
  x: ShardRole,
  plan: TablePlan,
  routing: Routing,
  pageSize: number,
  maxMisplaced: number,
  tick: (n: number) => void,
  signal?: AbortSignal | undefined,
): Promise<ScanPart> {
  const t = plan.table;
  const { bits, mask } = plan.filter;
  const part: ScanPart = {
    source: new BucketSums(),
    target: new BucketSums(),
    sourceRows: 0,
    targetRows: 0,
    misplaced: [],
    misplacedOverflow: 0,
    strays: 0,
  };
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
  const conn = await connectShard(x.shard);
  let reported = 0;
  try {
    await scanTable({
      conn,
      table: t,
      from: tableRef(x.database, t),
      where: filterSql(t, plan.filter),
      pageSize,
      signal,
      onPage: (n) => {
        tick(n - reported);
        reported = n;
      },
      onRow: (row) => {
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
      },
    });
  } finally {
    await conn.end().catch(() => undefined);
  }
  return part;
}
