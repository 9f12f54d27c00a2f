/**
 * Bucket math: which bucket a row is in, and the per-bucket partial sums.
 *
 * A bucket is (table, segment, sub):
 *   segment  the plan segment (from shard, to shard) the row's shard key is in; only moving
 *            segments are verified. So a bucket has exactly one source shard and one target shard.
 *   sub      the top `bits` bits of pkHash = CRC32 of the row's primary-key bytes (each column's
 *            canonical bytes, joined by one 0x00 byte). MySQL/MariaDB compute the same with
 *            `CRC32(CONCAT_WS(X'00', …))`, so the server can select one bucket's rows.
 * Bucket id = segment × 2^bits + sub, an integer below 2^32 (the control table's column).
 *
 * A *change id* is the top CHANGE_BITS bits of the same pkHash, independent of the segment and of
 * the bucket bits a run uses: the tailer records change ids (src/verify/changes.ts), and any
 * bucket of `bits` ≤ CHANGE_BITS is the union of the change ids id >>> (CHANGE_BITS − bits) = sub.
 *
 * Partial sums per bucket: row count, and the sum mod 2^64 of the rows' 64-bit hashes. Addition
 * is commutative and associative, so a bucket's total does not depend on the order rows arrive
 * in or on how they are split between scans: the sources' partials and the targets' partials
 * combine bucket by bucket.
 */
import type { Value } from '../apply/values.js';
import { canonicalBytes, type RawValue } from './rowhash.js';
import type { RowView } from './scan.js';

/** Granularity of recorded changes: 2^20 change ids per table. */
export const CHANGE_BITS = 20;

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE, reflected 0xEDB88320: MySQL's CRC32()), incremental over several parts.

const CRC32_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32Run(c: number, buf: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) c = CRC32_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/** pkHash of raw primary-key column bytes (as sent by the server), as a uint32. */
export function pkHashRaw(row: readonly RawValue[], pk: readonly number[]): number {
  let c = -1;
  for (let j = 0; j < pk.length; j++) {
    if (j > 0) c = CRC32_TABLE[c & 0xff]! ^ (c >>> 8); // the 0x00 separator
    const v = row[pk[j]!];
    if (v) c = crc32Run(c, v, 0, v.length);
  }
  return (c ^ -1) >>> 0;
}

/** pkHash of a row given as spans (see scan.ts RowView). */
export function pkHashView(view: RowView, pk: readonly number[]): number {
  const buf = view.buf;
  let c = -1;
  for (let j = 0; j < pk.length; j++) {
    if (j > 0) c = CRC32_TABLE[c & 0xff]! ^ (c >>> 8);
    const s = view.start[pk[j]!]!;
    if (s >= 0) c = crc32Run(c, buf, s, s + view.len[pk[j]!]!);
  }
  return (c ^ -1) >>> 0;
}

/**
 * pkHash of primary-key values as a driver or the binlog gives them (see `canonicalBytes`): what
 * the tailer uses to record a change. Equal to `pkHashRaw` of the same row read by SELECT.
 */
export function pkHashOfValues(pk: readonly Value[]): number {
  let c = -1;
  for (let j = 0; j < pk.length; j++) {
    if (j > 0) c = CRC32_TABLE[c & 0xff]! ^ (c >>> 8);
    const b = canonicalBytes(pk[j] ?? null);
    if (b) c = crc32Run(c, b, 0, b.length);
  }
  return (c ^ -1) >>> 0;
}

/** Top `bits` bits of a pkHash (0 ≤ bits ≤ 32). */
export function subOf(pkHash: number, bits: number): number {
  return bits === 0 ? 0 : pkHash >>> (32 - bits);
}

export function changeIdOf(pkHash: number): number {
  return pkHash >>> (32 - CHANGE_BITS);
}

export function bucketId(segment: number, bits: number, sub: number): number {
  return segment * 2 ** bits + sub;
}

export function splitBucketId(id: number, bits: number): { segment: number; sub: number } {
  const size = 2 ** bits;
  return { segment: Math.floor(id / size), sub: id % size };
}

/** The most bucket bits a plan with `segmentCount` segments can use with ids below 2^32. */
export function maxBitsFor(segmentCount: number): number {
  const segBits = Math.ceil(Math.log2(Math.max(1, segmentCount)));
  return Math.max(0, Math.min(CHANGE_BITS, 32 - segBits));
}

/**
 * Bucket bits for a full verify of one table: about `rowsPerBucket` rows per bucket (small
 * enough to drill into in one pass, large enough that per-bucket bookkeeping stays far below the
 * cost of reading the rows), capped by the id space.
 */
export function chooseBits(
  estimatedRows: number,
  movingSegments: number,
  segmentCount: number,
  rowsPerBucket = 512,
): number {
  const want = Math.ceil(
    Math.log2(Math.max(1, estimatedRows / (Math.max(1, movingSegments) * rowsPerBucket))),
  );
  return Math.max(0, Math.min(16, maxBitsFor(segmentCount), want));
}

/** The SQL bucket of a row: the top `bits` bits of CRC32 of its primary-key expression. */
export function sqlSubExpr(pkHashSql: string, bits: number): string {
  return bits === 0 ? '0' : `(${pkHashSql} >> ${32 - bits})`;
}

// ---------------------------------------------------------------------------------------------
// Partial sums

export interface BucketTotal {
  count: number;
  /** Sum of row hashes mod 2^64, as 16 hex digits. */
  sum: string;
}

/** BucketSums as plain data (crosses a worker boundary by structured clone). */
export interface BucketSumsData {
  ids: number[];
  count: Float64Array;
  hi: Int32Array;
  lo: Int32Array;
}

/** Bucket ids below this get a dense index (4 MiB at most). */
const DENSE_IDS = 1 << 20;

/**
 * count and sum64 per bucket id. Storage grows on demand; a bucket absent from the map has
 * count 0 and sum 0 (so an empty side compares equal only to an empty side).
 */
export class BucketSums {
  private readonly slot = new Map<number, number>();
  private ids: number[] = [];
  private count = new Float64Array(64);
  private hi = new Int32Array(64);
  private lo = new Int32Array(64);

  get size(): number {
    return this.ids.length;
  }

  /**
   * slot + 1 for ids below DENSE_IDS (0: none yet): a typed-array read instead of a Map lookup
   * per row, for the usual id space (segments × 2^bits well below a million). Larger ids use the
   * Map alone. Only for sums that rows are added to one by one while a part is scanned (a few
   * at a time, up to 4 MiB each): partials kept until they are combined, and the per-table
   * totals, use the Map alone, so memory does not grow with shards × tables.
   */
  private dense = new Int32Array(0);

  /** `dense`: index ids densely (for the sums of a scan in progress; see `settle`). */
  constructor(private useDense = false) {}

  /** The scan is over: drop the dense index (the Map keeps every id). */
  settle(): void {
    this.useDense = false;
    this.dense = new Int32Array(0);
  }

  private slotOf(id: number): number {
    if (this.useDense && id < this.dense.length) {
      const d = this.dense[id]!;
      if (d !== 0) return d - 1;
    }
    let s = this.slot.get(id);
    if (s === undefined) {
      s = this.ids.length;
      if (s === this.count.length) {
        const n = s * 2;
        const c = new Float64Array(n);
        c.set(this.count);
        const h = new Int32Array(n);
        h.set(this.hi);
        const l = new Int32Array(n);
        l.set(this.lo);
        this.count = c;
        this.hi = h;
        this.lo = l;
      }
      this.slot.set(id, s);
      this.ids.push(id);
    }
    if (this.useDense && id < DENSE_IDS) {
      if (id >= this.dense.length) {
        const d = new Int32Array(Math.min(DENSE_IDS, Math.max(1024, 2 ** Math.ceil(Math.log2(id + 1)))));
        d.set(this.dense);
        this.dense = d;
      }
      this.dense[id] = s + 1;
    }
    return s;
  }

  /** Add one row's 64-bit hash (int32 halves) to bucket `id`. */
  add(id: number, hi: number, lo: number): void {
    const s = this.slotOf(id);
    this.count[s]! += 1;
    this.addAt(s, hi, lo);
  }

  private addAt(s: number, hi: number, lo: number): void {
    const a = this.lo[s]! >>> 0;
    const b = lo >>> 0;
    const sum = a + b;
    this.lo[s] = sum | 0;
    this.hi[s] = (this.hi[s]! + hi + (sum > 0xffffffff ? 1 : 0)) | 0;
  }

  /** Add another partial (another shard's, another page's) into this one. */
  merge(other: BucketSums): void {
    for (let i = 0; i < other.ids.length; i++) {
      const s = this.slotOf(other.ids[i]!);
      this.count[s]! += other.count[i]!;
      this.addAt(s, other.hi[i]!, other.lo[i]!);
    }
  }

  has(id: number): boolean {
    return this.slot.has(id);
  }

  get(id: number): BucketTotal {
    const s = this.slot.get(id);
    if (s === undefined) return { count: 0, sum: '0000000000000000' };
    return {
      count: this.count[s]!,
      sum:
        (this.hi[s]! >>> 0).toString(16).padStart(8, '0') + (this.lo[s]! >>> 0).toString(16).padStart(8, '0'),
    };
  }

  /** Equal count and sum in bucket `id`. */
  sameAs(other: BucketSums, id: number): boolean {
    const a = this.slot.get(id);
    const b = other.slot.get(id);
    const ca = a === undefined ? 0 : this.count[a]!;
    const cb = b === undefined ? 0 : other.count[b]!;
    if (ca !== cb) return false;
    const ha = a === undefined ? 0 : this.hi[a]!;
    const la = a === undefined ? 0 : this.lo[a]!;
    const hb = b === undefined ? 0 : other.hi[b]!;
    const lb = b === undefined ? 0 : other.lo[b]!;
    return ha === hb && la === lb;
  }

  /** Bucket ids present (in insertion order). */
  keys(): readonly number[] {
    return this.ids;
  }

  toData(): BucketSumsData {
    const n = this.ids.length;
    return {
      ids: [...this.ids],
      count: this.count.slice(0, n),
      hi: this.hi.slice(0, n),
      lo: this.lo.slice(0, n),
    };
  }

  static fromData(d: BucketSumsData): BucketSums {
    const s = new BucketSums();
    for (let i = 0; i < d.ids.length; i++) {
      const slot = s.slotOf(d.ids[i]!);
      s.count[slot] = d.count[i]!;
      s.hi[slot] = d.hi[i]!;
      s.lo[slot] = d.lo[i]!;
    }
    return s;
  }

  totalRows(): number {
    let n = 0;
    for (let i = 0; i < this.ids.length; i++) n += this.count[i]!;
    return n;
  }
}

/** Ids of buckets whose count or sum differ between the two sides, ascending. */
export function mismatchedBuckets(source: BucketSums, target: BucketSums): number[] {
  const ids = new Set<number>([...source.keys(), ...target.keys()]);
  const out: number[] = [];
  for (const id of ids) if (!source.sameAs(target, id)) out.push(id);
  return out.sort((a, b) => a - b);
}
