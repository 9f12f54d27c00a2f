import { xxh64 } from '@node-rs/xxhash';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalKeyBytes, crc32Of } from '../../../src/plan/hash.js';
import { buildRing, vnodeCount } from '../../../src/plan/ring.js';
import { createRouter, sqlBucketExpr } from '../../../src/plan/router.js';
import type { Shard } from '../../../src/topology/types.js';
import { directoryTopology, names, rangeScheme, topology } from './helpers.js';

const anyInt = fc.oneof(fc.maxSafeInteger(), fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }));
const anyKey = fc.oneof(
  anyInt,
  fc.string({ unit: 'grapheme' }),
  fc.uint8Array().map((u) => Buffer.from(u)),
);

describe('hash-mod identity', () => {
  const t = topology(['a', 'b', 'c'], '{ type: hash-mod, hash: identity }');
  const r = createRouter(t);

  it('uses a non-negative residue, also for negative keys (MySQL MOD(-5,3) = -2)', () => {
    expect(r.ownerOf(-5)).toBe('b'); // ((-5 mod 3) + 3) mod 3 = 1
    expect(r.ownerOf(-5n)).toBe('b');
    expect(r.ownerOf(0)).toBe('a');
    expect(r.ownerOf(5)).toBe('c');
  });

  it('agrees for number, bigint and huge bigint keys', () => {
    fc.assert(
      fc.property(anyInt, (k) => {
        const b = BigInt(k);
        const residue = Number(((b % 3n) + 3n) % 3n);
        expect(r.ownerOf(k)).toBe(['a', 'b', 'c'][residue]);
        expect(r.ownerIndexOf(k)).toBe(residue);
      }),
    );
  });

  it('refuses string and binary keys', () => {
    expect(() => r.ownerOf('7')).toThrow(expect.objectContaining({ code: 'E_KEY_TYPE' }));
    expect(() => r.ownerOf(Buffer.from('7'))).toThrow(expect.objectContaining({ code: 'E_KEY_TYPE' }));
    expect(() => r.ownerOf(1.5)).toThrow(expect.objectContaining({ code: 'E_KEY_TYPE' }));
  });

  it('gives SQL that is non-negative like the router', () => {
    expect(sqlBucketExpr(t.scheme, '`id`')).toBe('MOD(MOD(`id`, 3) + 3, 3)');
  });
});

describe('hash-mod crc32', () => {
  const t = topology(['a', 'b'], '{ type: hash-mod, hash: crc32, modulus: 5, slots: [a, b, a, b, b] }');
  const r = createRouter(t);
  it('routes slots[CRC32(canonical bytes) mod modulus]', () => {
    fc.assert(
      fc.property(anyKey, (k) => {
        expect(r.ownerOf(k)).toBe(['a', 'b', 'a', 'b', 'b'][crc32Of(k) % 5]);
      }),
    );
  });
  it('gives SQL', () => {
    expect(sqlBucketExpr(t.scheme, '`k`')).toBe('MOD(CRC32(`k`), 5)');
  });
});

describe('range', () => {
  it('routes integer keys by [from, to), exactly beyond 2^53', () => {
    const big = 9007199254740993n; // 2^53 + 1: not a double
    const t = topology(
      ['a', 'b', 'c'],
      rangeScheme([
        { shard: 'a', to: -10n },
        { shard: 'b', from: -10n, to: big },
        { shard: 'c', from: big },
      ]),
    );
    const r = createRouter(t);
    expect(r.ownerOf(-11)).toBe('a');
    expect(r.ownerOf(-10)).toBe('b');
    expect(r.ownerOf(Number.MAX_SAFE_INTEGER)).toBe('b');
    expect(r.ownerOf(big - 1n)).toBe('b');
    expect(r.ownerOf(big)).toBe('c');
    expect(r.ownerOf(2n ** 64n)).toBe('c');
    expect(sqlBucketExpr(t.scheme, '`id`')).toBeUndefined();
    expect(() => r.ownerOf('x')).toThrow(expect.objectContaining({ code: 'E_KEY_TYPE' }));
  });

  it('routes string keys by UTF-8 byte order', () => {
    const t = topology(
      ['a', 'b', 'c'],
      rangeScheme([
        { shard: 'a', to: 'm' },
        { shard: 'b', from: 'm', to: 'é' },
        { shard: 'c', from: 'é' },
      ]),
    );
    const r = createRouter(t);
    expect(r.ownerOf('')).toBe('a');
    expect(r.ownerOf('Zebra')).toBe('a');
    expect(r.ownerOf('m')).toBe('b');
    expect(r.ownerOf('zzz')).toBe('b'); // 'z' (0x7a) < 'é' (0xc3 0xa9)
    expect(r.ownerOf('éa')).toBe('c');
    expect(r.ownerOf(Buffer.from([0xff]))).toBe('c');
    expect(() => r.ownerOf(5)).toThrow(expect.objectContaining({ code: 'E_KEY_TYPE' }));
  });

  it('routes any key to a single unbounded range', () => {
    const r = createRouter(topology(['a'], rangeScheme([{ shard: 'a' }])));
    expect(r.ownerOf('x')).toBe('a');
    expect(r.ownerOf(-1)).toBe('a');
  });
});

/** Reference consistent-hash router: the contract in ring.ts, written the slow obvious way. */
function referenceOwner(
  shards: Shard[],
  vnodes: number,
  seed: bigint,
  key: Parameters<typeof canonicalKeyBytes>[0],
): string {
  const points: { v: bigint; name: string }[] = [];
  for (const s of shards) {
    for (let i = 0; i < vnodeCount(s, vnodes); i++)
      points.push({ v: xxh64(Buffer.from(`${s.name}#${i}`), seed), name: s.name });
  }
  points.sort((a, b) => (a.v < b.v ? -1 : a.v > b.v ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const h = xxh64(canonicalKeyBytes(key), seed);
  return (points.find((p) => p.v >= h) ?? points[0]!).name;
}

describe('consistent-hash', () => {
  it('matches the reference definition (weights, seeds, all key kinds)', () => {
    const t = topology(
      [{ name: 'a' }, { name: 'b', weight: 2 }, { name: 'c', weight: 0.5 }, { name: 'd', weight: 0.001 }],
      '{ type: consistent-hash, vnodes: 16, seed: 7 }',
    );
    const r = createRouter(t);
    fc.assert(
      fc.property(anyKey, (k) => {
        expect(r.ownerOf(k)).toBe(referenceOwner(t.shards, 16, 7n, k));
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps a shard with a tiny weight on the ring (at least one vnode)', () => {
    const t = topology(
      [{ name: 'a' }, { name: 'd', weight: 0.001 }],
      '{ type: consistent-hash, vnodes: 16 }',
    );
    expect(buildRing(t.shards, t.scheme as never).size).toBe(17);
  });

  it('routes keys near the wrap-around to the smallest point', () => {
    const t = topology(names('s', 8), '{ type: consistent-hash, vnodes: 4 }');
    const ring = buildRing(t.shards, t.scheme as never);
    const r = createRouter(t);
    // The key whose hash is above the largest point wraps to point 0's owner.
    let found = 0;
    for (let k = 0; k < 5000 && found < 3; k++) {
      const h = xxh64(Buffer.from(String(k)), 0n);
      const last = (BigInt(ring.hi[ring.size - 1]!) << 32n) | BigInt(ring.lo[ring.size - 1]!);
      if (h > last) {
        found++;
        expect(r.ownerIndexOf(k)).toBe(ring.owner[0]);
      }
    }
    expect(found).toBeGreaterThan(0);
  });
});

describe('directory', () => {
  it('looks up the canonical string form, else the default', () => {
    const t = directoryTopology(['a', 'b'], { '1': 'b', x: 'b', ü: 'b' }, 'a');
    const r = createRouter(t);
    expect(r.ownerOf(1)).toBe('b');
    expect(r.ownerOf(1n)).toBe('b');
    expect(r.ownerOf('x')).toBe('b');
    expect(r.ownerOf(Buffer.from('ü'))).toBe('b');
    expect(r.ownerOf(2)).toBe('a');
    expect(r.ownerOf(Buffer.from([0xff]))).toBe('a');
  });

  it('throws E_DIRECTORY_MISS without a default', () => {
    const r = createRouter(directoryTopology(['a', 'b'], { '1': 'b' }));
    expect(() => r.ownerOf(2)).toThrow(expect.objectContaining({ code: 'E_DIRECTORY_MISS' }));
  });

  it('refuses entries naming unknown shards', () => {
    expect(() => createRouter(directoryTopology(['a', 'b'], { '1': 'zz' }, 'a'))).toThrow(
      expect.objectContaining({ code: 'E_TOPOLOGY_UNKNOWN_SHARD' }),
    );
  });
});
