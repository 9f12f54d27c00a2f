import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Value } from '../../../src/apply/values.js';
import { BloomFilter } from '../../../src/verify/bloom.js';
import {
  CHANGE_FILTER_FP,
  CHANGE_FILTER_KEYS,
  decodePk,
  encodePk,
  encodeSparseBits,
  orSparseBits,
} from '../../../src/verify/changes.js';
import { canonicalBytes, textRowPayload } from '../../../src/verify/rowhash.js';

describe('recorded primary keys', () => {
  const keys: Value[][] = [
    ['5'],
    [5],
    [5n],
    ['18446744073709551615'],
    [18446744073709551615n, '2024-02-29 23:59:59.999999'],
    ['12345678901234.500001', Buffer.from([0x00, 0xff, 0x27, 0x5c]), null],
    ['ab-00016'],
    ['Zoë 😀'],
    ['x'.repeat(83)],
    ['é'.repeat(83)],
    ['x'.repeat(300)],
    ['😀'.repeat(70)],
    [Buffer.alloc(70_000, 1)],
    [''],
    [-0],
    [0],
    [7],
    [-2147483648],
    [9007199254740991],
    [1.5],
    [-12n],
  ];

  it('are stored as the text-protocol payload of their canonical bytes, and read back exactly', () => {
    for (const pk of keys) {
      const stored = encodePk(pk);
      const canonical = pk.map(canonicalBytes);
      expect(
        stored.equals(textRowPayload(canonical)),
        JSON.stringify(pk, (_, v) => String(v)),
      ).toBe(true);
      expect(decodePk(stored)).toEqual(canonical);
    }
  });

  it('are read back exactly from inside a packed list (a range of a larger buffer), each on its own', () => {
    // The loader decodes keys in place from the stored list: lenenc(length) · key, one after another.
    const stored = keys.map((pk) => encodePk(pk));
    const parts: Buffer[] = [];
    const ranges: [number, number][] = [];
    let off = 0;
    for (const s of stored) {
      const head =
        s.length < 251
          ? Buffer.from([s.length])
          : Buffer.from([0xfd, s.length & 0xff, (s.length >>> 8) & 0xff, s.length >>> 16]);
      parts.push(head, s);
      ranges.push([off + head.length, off + head.length + s.length]);
      off += head.length + s.length;
    }
    const packed = Buffer.concat(parts);
    keys.forEach((pk, i) => {
      const [from, to] = ranges[i]!;
      expect(decodePk(packed, from, to)).toEqual(pk.map(canonicalBytes));
    });
    // A key cut short is refused, not read into its neighbour.
    const [from, to] = ranges[ranges.length - 1]!;
    expect(() => decodePk(packed, from, to - 1)).toThrow(/truncated/);
  });

  it('number 5, text 5 and bigint 5 are one key', () => {
    expect(encodePk([5]).equals(encodePk(['5']))).toBe(true);
    expect(encodePk([5n]).equals(encodePk(['5']))).toBe(true);
    expect(encodePk(['ab', 'c']).equals(encodePk(['a', 'bc']))).toBe(false);
    expect(encodePk([null]).equals(encodePk(['']))).toBe(false);
  });
});

describe('sparse change filters (the tailer writes deltas)', () => {
  it('encode exactly the set bits, and OR back into any filter without losing or adding one', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.array(fc.nat(), { maxLength: 600 }),
        fc.array(fc.nat(), { maxLength: 50 }),
        (bytes, setA, setB) => {
          const m = bytes * 8;
          const a = new Uint8Array(bytes);
          for (const p of setA) a[(p % m) >>> 3]! |= 1 << ((p % m) & 7);
          const b = new Uint8Array(bytes);
          for (const p of setB) b[(p % m) >>> 3]! |= 1 << ((p % m) & 7);
          const expected = a.map((x, i) => x | b[i]!);
          orSparseBits(encodeSparseBits(a), b);
          expect(Buffer.from(b).equals(Buffer.from(expected))).toBe(true);
        },
      ),
    );
  });

  it('encode the same list whatever the offset of the array in its buffer and its length mod 4', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 1, max: 300 }),
        fc.array(fc.nat(), { maxLength: 60 }),
        (offset, bytes, set) => {
          const m = bytes * 8;
          const big = new Uint8Array(offset + bytes + 5).fill(0xff);
          const view = big.subarray(offset, offset + bytes);
          view.fill(0);
          for (const p of set) view[(p % m) >>> 3]! |= 1 << ((p % m) & 7);
          const alone = Uint8Array.from(view);
          expect(encodeSparseBits(view).equals(encodeSparseBits(alone))).toBe(true);
          const back = new Uint8Array(bytes);
          orSparseBits(encodeSparseBits(view), back);
          expect(Buffer.from(back).equals(Buffer.from(alone))).toBe(true);
        },
      ),
    );
  });

  it('take about two bytes per set bit for a delta, and nothing for an empty filter', () => {
    const f = BloomFilter.create(CHANGE_FILTER_KEYS, CHANGE_FILTER_FP);
    expect(encodeSparseBits(f.bits).length).toBe(0);
    for (let i = 0; i < 500; i++) f.add(`key ${i}`);
    let set = 0;
    for (const x of f.bits) for (let j = 0; j < 8; j++) set += (x >> j) & 1;
    const sparse = encodeSparseBits(f.bits);
    expect(sparse.length).toBeLessThan(set * 2.2);
    expect(sparse.length).toBeLessThan(f.bits.length / 8);
  });

  it('refuse a corrupt list instead of setting arbitrary bits', () => {
    const bits = new Uint8Array(8);
    expect(() => orSparseBits(Uint8Array.from([0x80]), bits)).toThrow(/corrupt/);
    expect(() => orSparseBits(Uint8Array.from([65]), bits)).toThrow(/corrupt/);
    expect(() => orSparseBits(Uint8Array.from([1, 0]), bits)).toThrow(/corrupt/);
  });
});
