import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BloomFilter, bloomSize, falsePositiveRate } from '../../../src/verify/bloom.js';
import { CHANGE_BITS } from '../../../src/verify/bucket.js';
import { addChanges, ChangeSet, changeIdOfPk } from '../../../src/verify/changes.js';

describe('Bloom filter', () => {
  it('sizes m and k by the standard optimum', () => {
    expect(bloomSize(1000, 0.01)).toEqual({ m: 9592, k: 7 }); // 9585.06… bits → whole bytes
    expect(bloomSize(65_536, 0.01)).toEqual({ m: 628_168, k: 7 });
    expect(bloomSize(1000, 0.001).k).toBe(10);
    expect(falsePositiveRate(9592, 7, 1000)).toBeLessThan(0.0101);
  });

  it('never gives a false negative', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 24 })), { minLength: 1, maxLength: 400 }),
        fc.integer({ min: 1, max: 2000 }),
        (keys, n) => {
          const f = BloomFilter.create(n, 0.05);
          for (const k of keys) f.add(k);
          for (const k of keys) expect(f.mayContain(k)).toBe(true);
          // Still none after a round trip and a union.
          const g = BloomFilter.fromBuffer(f.toBuffer());
          const u = BloomFilter.create(n, 0.05);
          u.unionWith(g);
          for (const k of keys) expect(u.mayContain(k)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('keeps the false-positive rate within its bound at the design load', () => {
    for (const p of [0.01, 0.05]) {
      const n = 20_000;
      const f = BloomFilter.create(n, p);
      for (let i = 0; i < n; i++) f.add(`in-${i}`);
      let fp = 0;
      const trials = 100_000;
      for (let i = 0; i < trials; i++) if (f.mayContain(`out-${i}`)) fp++;
      // Binomial: 4.5 standard deviations above p never happens by chance.
      const bound = p + 4.5 * Math.sqrt((p * (1 - p)) / trials);
      expect(fp / trials).toBeLessThan(bound);
      expect(f.falsePositiveRate()).toBeLessThan(p * 1.05);
    }
  });

  it('serializes to a self-describing buffer and back', () => {
    const f = BloomFilter.create(100, 0.01);
    f.add('a');
    f.add('b');
    const buf = f.toBuffer();
    expect(buf.subarray(0, 4).toString()).toBe('RBF1');
    const g = BloomFilter.fromBuffer(buf);
    expect([g.m, g.k, g.inserted]).toEqual([f.m, f.k, 2]);
    expect(Buffer.from(g.bits).equals(Buffer.from(f.bits))).toBe(true);
    expect(() => BloomFilter.fromBuffer(buf.subarray(0, buf.length - 1))).toThrow(/truncated/);
    expect(() => BloomFilter.fromBuffer(Buffer.from('nope'))).toThrow();
    expect(() => g.unionWith(BloomFilter.create(1000, 0.01))).toThrow(/cannot union/);
  });
});

describe('change sets', () => {
  it('list every recorded change id of a table (no false negatives), few others', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.constantFrom('users', 'orders', 'group'), fc.bigInt({ min: 1n, max: 10n ** 12n })),
          {
            minLength: 1,
            maxLength: 60,
          },
        ),
        (changes) => {
          const f = BloomFilter.create(1000, 0.01);
          addChanges(
            f,
            changes.map(([table, id]) => ({ table, pk: [id] })),
          );
          const set = new ChangeSet([f]);
          for (const table of ['users', 'orders', 'group']) {
            const want = new Set(changes.filter(([t]) => t === table).map(([, id]) => changeIdOfPk([id])));
            const flagged = new Set(set.flaggedIds(table));
            for (const id of want) expect(flagged.has(id)).toBe(true);
            for (const id of want) expect(set.mayHaveChanged(table, id)).toBe(true);
            // 2^20 ids tested: at ~0.01% fill the false positives stay a small fraction.
            expect(flagged.size).toBeLessThan(want.size + 2 ** CHANGE_BITS / 100);
          }
        },
      ),
      { numRuns: 10 },
    );
  });

  it('an empty union flags nothing', () => {
    const set = new ChangeSet([BloomFilter.create(100, 0.01)]);
    expect(set.empty).toBe(true);
    expect(set.flaggedIds('users')).toEqual([]);
  });
});
