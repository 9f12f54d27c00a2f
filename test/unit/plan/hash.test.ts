import { crc32 } from 'node:zlib';
import { xxh64 } from '@node-rs/xxhash';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalKeyBytes,
  canonicalKeyString,
  crc32Of,
  xxh64Bytes,
  xxh64Of,
} from '../../../src/plan/hash.js';

const seeds = fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));

describe('canonical key forms', () => {
  it('writes integers as decimal text, strings as UTF-8, Buffers raw', () => {
    expect(canonicalKeyBytes(0).toString()).toBe('0');
    expect(canonicalKeyBytes(-0).toString()).toBe('0');
    expect(canonicalKeyBytes(-42).toString()).toBe('-42');
    expect(canonicalKeyBytes(Number.MAX_SAFE_INTEGER).toString()).toBe('9007199254740991');
    expect(canonicalKeyBytes(-(2n ** 63n)).toString()).toBe('-9223372036854775808');
    expect(canonicalKeyBytes(2n ** 64n - 1n).toString()).toBe('18446744073709551615');
    expect(canonicalKeyBytes('żółw')).toEqual(Buffer.from('żółw', 'utf8'));
    expect(canonicalKeyBytes(Buffer.from([0, 255, 1]))).toEqual(Buffer.from([0, 255, 1]));
  });

  it('gives a number and the equal bigint the same bytes', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        expect(canonicalKeyBytes(n)).toEqual(canonicalKeyBytes(BigInt(n)));
        expect(canonicalKeyBytes(n).toString()).toBe(String(n));
      }),
    );
  });

  it('refuses numbers that are not safe integers', () => {
    for (const bad of [1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => canonicalKeyBytes(bad)).toThrow(expect.objectContaining({ code: 'E_KEY_TYPE' }));
    }
  });

  it('string form: directory keys', () => {
    expect(canonicalKeyString(12n)).toBe('12');
    expect(canonicalKeyString(Buffer.from('abc'))).toBe('abc');
    expect(canonicalKeyString(Buffer.from([0xff, 0xfe]))).toBeUndefined();
  });
});

describe('CRC-32 (MySQL CRC32())', () => {
  it('matches known MySQL values', () => {
    // SELECT CRC32('MySQL') = 3259397556, CRC32('') = 0, CRC32(123) = CRC32('123') = 2286445522
    expect(crc32Of('MySQL')).toBe(3259397556);
    expect(crc32Of('')).toBe(0);
    expect(crc32Of(123)).toBe(2286445522);
  });

  it('equals zlib.crc32 of the canonical bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.maxSafeInteger(), fc.bigInt(), fc.string({ unit: 'binary' }), fc.uint8Array()),
        (k) => {
          const key = k instanceof Uint8Array ? Buffer.from(k) : k;
          expect(crc32Of(key)).toBe(crc32(canonicalKeyBytes(key)));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('xxHash64', () => {
  it('equals @node-rs/xxhash for every length around the 4/8/32-byte steps', () => {
    for (let n = 0; n <= 100; n++) {
      const b = Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + n * 7) & 0xff));
      for (const seed of [0n, 1n, 0x9e3779b185ebca87n, (1n << 64n) - 1n])
        expect(xxh64Bytes(b, seed)).toBe(xxh64(b, seed));
    }
  });

  it('equals @node-rs/xxhash on random input and seeds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), seeds, (bytes, seed) => {
        expect(xxh64Bytes(bytes, seed)).toBe(xxh64(bytes, seed));
      }),
      { numRuns: 3000 },
    );
  });

  it('hashes keys by their canonical bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.maxSafeInteger(), fc.bigInt(), fc.string({ unit: 'binary' })),
        seeds,
        (k, seed) => {
          expect(xxh64Of(k, seed)).toBe(xxh64(canonicalKeyBytes(k), seed));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('stays exact when keys repeat (the last-key cache) and when a Buffer key is reused mutated', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b', ''), fc.constantFrom(1n, 2n)),
          {
            maxLength: 50,
          },
        ),
        (keys) => {
          for (const key of keys) expect(crc32Of(key)).toBe(crc32(canonicalKeyBytes(key)));
        },
      ),
    );
    expect(crc32Of(-0)).toBe(crc32(Buffer.from('0')));
    const buf = Buffer.from('abc');
    const before = crc32Of(buf);
    buf[0] = 0x7a; // 'zbc'
    expect(crc32Of(buf)).toBe(crc32(Buffer.from('zbc')));
    expect(crc32Of(buf)).not.toBe(before);
  });
});
