import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BucketSums,
  bucketId,
  CHANGE_BITS,
  changeIdOf,
  chooseBits,
  maxBitsFor,
  mismatchedBuckets,
  pkHashOfValues,
  pkHashRaw,
  splitBucketId,
  subOf,
} from '../../../src/verify/bucket.js';
import { crc64BigInt } from '../../../src/verify/crc64.js';
import { encodeRow, RowHasher } from '../../../src/verify/rowhash.js';

const hash64 = fc.tuple(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
);
const rowsArb = fc.array(fc.tuple(fc.nat({ max: 40 }), hash64), { maxLength: 300 });

function sumsOf(rows: readonly (readonly [number, readonly [number, number]])[]): BucketSums {
  const s = new BucketSums();
  for (const [id, [hi, lo]] of rows) s.add(id, hi, lo);
  return s;
}

function totals(s: BucketSums): Record<number, string> {
  return Object.fromEntries(
    [...s.keys()].sort((a, b) => a - b).map((id) => [id, `${s.get(id).count}/${s.get(id).sum}`]),
  );
}

describe('bucket sums', () => {
  it('equal the BigInt sum mod 2^64 and the row count', () => {
    fc.assert(
      fc.property(rowsArb, (rows) => {
        const s = sumsOf(rows);
        const ref = new Map<number, [number, bigint]>();
        for (const [id, [hi, lo]] of rows) {
          const v = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
          const [n, sum] = ref.get(id) ?? [0, 0n];
          ref.set(id, [n + 1, (sum + v) & ((1n << 64n) - 1n)]);
        }
        for (const [id, [n, sum]] of ref)
          expect(s.get(id)).toEqual({ count: n, sum: sum.toString(16).padStart(16, '0') });
      }),
    );
  });

  it('equal the same sums whether a bucket id is in the dense index or beyond it, before and after settle', () => {
    // Ids below 2^20 are indexed densely while a scan adds rows, larger ones only in the map.
    const ids = fc.oneof(fc.nat({ max: 40 }), fc.constantFrom(1023, 1024, 2 ** 20 - 1, 2 ** 20, 2 ** 32 - 1));
    fc.assert(
      fc.property(fc.array(fc.tuple(ids, hash64), { maxLength: 200 }), fc.nat({ max: 200 }), (rows, cut) => {
        const dense = new BucketSums(true);
        const plain = sumsOf(rows);
        rows.forEach(([id, [hi, lo]], i) => {
          if (i === cut) dense.settle(); // the rest added after the dense index is dropped
          dense.add(id, hi, lo);
        });
        const again = BucketSums.fromData(dense.toData());
        for (const [id] of rows) {
          expect(dense.get(id)).toEqual(plain.get(id));
          expect(again.get(id)).toEqual(plain.get(id));
          expect(dense.sameAs(plain, id)).toBe(true);
        }
        expect(dense.size).toBe(new Set(rows.map((r) => r[0])).size);
      }),
    );
  });

  it('do not depend on row order or on how rows are split across shards', () => {
    fc.assert(
      fc.property(
        rowsArb,
        fc.array(fc.nat({ max: 4 }), { maxLength: 300 }),
        fc.nat(),
        (rows, split, seed) => {
          const whole = totals(sumsOf(rows));
          // Shuffle deterministically and deal rows to up to 5 "shards", then merge the partials.
          const shuffled = rows
            .map((r, i) => ({ r, k: (i * 2654435761 + seed) % 4294967296 }))
            .sort((a, b) => a.k - b.k);
          const parts = Array.from({ length: 5 }, () => new BucketSums());
          shuffled.forEach(({ r }, i) => {
            parts[split[i] ?? i % 5]!.add(r[0], r[1][0], r[1][1]);
          });
          const merged = new BucketSums();
          for (const p of parts.reverse()) merged.merge(p);
          expect(totals(merged)).toEqual(whole);
          expect(mismatchedBuckets(merged, sumsOf(rows))).toEqual([]);
        },
      ),
    );
  });

  it('flag exactly the buckets whose count or sum differ', () => {
    const a = sumsOf([
      [1, [0, 5]],
      [2, [0, 7]],
      [3, [1, 1]],
    ]);
    const b = sumsOf([
      [1, [0, 5]],
      [2, [0, 8]],
      [4, [0, 0]],
    ]);
    expect(mismatchedBuckets(a, b)).toEqual([2, 3, 4]);
    // An empty bucket equals only an empty bucket: a row of hash 0 still counts.
    expect(mismatchedBuckets(new BucketSums(), sumsOf([[9, [0, 0]]]))).toEqual([9]);
  });

  it('catch two identical corruptions that XOR of CRCs cannot see', () => {
    // Two equal-length rows, the same byte flipped in both: CRC is linear over GF(2), so the XOR of
    // the two CRCs is unchanged; count + sum of the mixed hashes is not.
    const rows = [
      [Buffer.from('61'), Buffer.from('k0061')],
      [Buffer.from('62'), Buffer.from('k0062')],
    ];
    const bad = rows.map(([id, k]) => [id!, Buffer.from(`j${k!.toString().slice(1)}`)]);
    const xorCrc = (rs: Buffer[][]) => rs.map((r) => crc64BigInt(encodeRow(r))).reduce((x, y) => x ^ y);
    expect(xorCrc(bad)).toBe(xorCrc(rows));
    const h = new RowHasher(['int', 'text']);
    const out = new Int32Array(2);
    const sums = (rs: Buffer[][]) => {
      const s = new BucketSums();
      for (const r of rs) {
        h.hash(r, out);
        s.add(0, out[0]!, out[1]!);
      }
      return s;
    };
    expect(mismatchedBuckets(sums(rows), sums(bad))).toEqual([0]);
  });
});

describe('bucket ids', () => {
  it('pkHash is CRC32 of the key columns joined by 0x00, from raw bytes or driver values alike', () => {
    const part = fc.oneof(
      fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
      fc.string({ maxLength: 20 }),
      fc.uint8Array({ maxLength: 12 }).map((u) => Buffer.from(u)),
    );
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 4 }), (pk) => {
        const bytes = pk.map((v) => (Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8')));
        const joined = Buffer.concat(bytes.flatMap((x, i) => (i === 0 ? [x] : [Buffer.from([0]), x])));
        const expected = crc32(joined) >>> 0;
        expect(pkHashOfValues(pk)).toBe(expected);
        expect(
          pkHashRaw(
            bytes,
            bytes.map((_, i) => i),
          ),
        ).toBe(expected);
      }),
    );
    // MariaDB 10.11: SELECT CRC32(CONCAT_WS(X'00', 5, 'abc')) → 1703303227
    expect(pkHashOfValues([5, 'abc'])).toBe(1703303227);
  });

  it('nest: a bucket of b bits is the union of the change ids with the same top b bits', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: CHANGE_BITS }), (h, bits) => {
        expect(subOf(h, bits)).toBe(changeIdOf(h) >>> (CHANGE_BITS - bits));
      }),
    );
    expect(subOf(0xffffffff, 0)).toBe(0);
    expect(subOf(0xffffffff, 32)).toBe(0xffffffff);
  });

  it('pack (segment, sub) below 2^32 and unpack them', () => {
    fc.assert(
      fc.property(fc.nat({ max: 4095 }), fc.nat({ max: 2 ** 20 - 1 }), (seg, sub) => {
        const id = bucketId(seg, 20, sub);
        expect(id).toBeLessThan(2 ** 32);
        expect(splitBucketId(id, 20)).toEqual({ segment: seg, sub });
      }),
    );
    expect(maxBitsFor(6)).toBe(20);
    expect(maxBitsFor(65536)).toBe(16);
  });

  it('choose bits for about 512 rows per bucket', () => {
    expect(chooseBits(0, 6, 6)).toBe(0);
    expect(chooseBits(100, 6, 6)).toBe(0);
    expect(chooseBits(1_000_000, 6, 6)).toBe(9); // 1e6 / (6 · 512) = 325 → 2^9 subs, ~325 rows each
    expect(chooseBits(1e12, 6, 6)).toBe(16);
  });
});
