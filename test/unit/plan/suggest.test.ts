import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gcd, ringShares } from '../../../src/plan/overlay.js';
import { plan } from '../../../src/plan/planner.js';
import { renderSuggestion } from '../../../src/plan/render.js';
import { additionTolerance, buildRing } from '../../../src/plan/ring.js';
import {
  BALANCE_TARGET,
  GrowingRing,
  residueMovement,
  suggest,
  targetShardNames,
  VNODE_CANDIDATES,
} from '../../../src/plan/suggest.js';
import type { HashModScheme, Shard } from '../../../src/topology/types.js';
import { names, rangeScheme, topology } from './helpers.js';

const hashMod = (hash: 'crc32' | 'identity', slots: string[]): HashModScheme => ({
  type: 'hash-mod',
  hash,
  modulus: slots.length,
  slots,
});

/** The definition, by brute force over every residue class modulo lcm. */
function bruteMovement(a: HashModScheme, b: HashModScheme): number {
  const l = (a.modulus / gcd(a.modulus, b.modulus)) * b.modulus;
  let kept = 0;
  for (let r = 0; r < l; r++) {
    if (a.slots[r % a.modulus] !== b.slots[r % b.modulus]) continue;
    kept += a.hash === 'crc32' ? Math.floor((2 ** 32 - 1 - r) / l) + 1 : 1;
  }
  const space = a.hash === 'crc32' ? 2 ** 32 : l;
  return (space - kept) / space;
}

const shard = (name: string, weight = 1): Shard => ({
  name,
  endpoint: { host: `${name}.db`, port: 3306, database: 'app', user: 'root' },
  weight,
});

/** max over shards of share ÷ (weight ÷ Σ weights), from ring.ts and overlay.ts directly. */
function maxOverMean(shards: Shard[], vnodes: number): number {
  const ring = buildRing(shards, { type: 'consistent-hash', hash: 'xxhash64', vnodes, seed: 0n });
  const total = shards.reduce((n, s) => n + s.weight, 0);
  const units = ringShares(ring, shards.length);
  return Math.max(...units.map((u, i) => Number(u) / 2 ** 64 / (shards[i]!.weight / total)));
}

describe('hash-mod movement', () => {
  it('equals 1 − (residues that keep their owner) / lcm, for any slots (identity: exactly)', () => {
    const slotsArb = fc
      .integer({ min: 1, max: 36 })
      .chain((n) => fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), { minLength: n, maxLength: n }));
    fc.assert(
      fc.property(
        slotsArb,
        slotsArb,
        fc.constantFrom('identity' as const, 'crc32' as const),
        (sa, sb, hash) => {
          const a = hashMod(hash, sa);
          const b = hashMod(hash, sb);
          expect(residueMovement(a, b)).toBe(bruteMovement(a, b));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('N → M with shards s0… kept in place moves 1 − gcd(N, M)/max(N, M) (identity), as the planner says', () => {
    for (const [n, m] of [
      [2, 4],
      [3, 4],
      [4, 6],
      [10, 12],
      [7, 5],
      [1024, 1100],
    ] as const) {
      const a = hashMod('identity', names('s', n));
      const b = hashMod('identity', names('s', m));
      expect(residueMovement(a, b)).toBeCloseTo(1 - gcd(n, m) / Math.max(n, m), 14);
      if (m > 100) continue; // suggest() also searches vnodes: slow for 1100 shards, and not what this checks
      const s = suggest(topology(names('s', n), '{ type: hash-mod, hash: identity }'), m);
      expect(s.candidates[0]).toMatchObject({
        id: 'hash-mod',
        hash: 'identity',
        modulus: m,
        movementExact: true,
      });
      expect(s.candidates[0]!.movement).toBeCloseTo(1 - gcd(n, m) / Math.max(n, m), 14);
      if (n * m <= 1 << 16) {
        const p = plan(
          topology(names('s', n), '{ type: hash-mod, hash: identity }'),
          topology(names('s', m), '{ type: hash-mod, hash: identity }'),
        );
        expect(s.candidates[0]!.movement).toBeCloseTo(p.movement.fraction!, 14);
        expect(s.candidates[0]!.minimum).toBeCloseTo(p.movement.minimum!, 12);
      }
    }
  });

  it('crc32 counts CRC values exactly (2^32 is no multiple of lcm(3, 5))', () => {
    const a = hashMod('crc32', names('s', 3));
    const b = hashMod('crc32', names('s', 5));
    const p = plan(
      topology(names('s', 3), '{ type: hash-mod, hash: crc32 }'),
      topology(names('s', 5), '{ type: hash-mod, hash: crc32 }'),
    );
    expect(residueMovement(a, b)).toBe(p.movement.fraction);
  });
});

describe('consistent-hash movement and vnodes', () => {
  it('adding k shards to N moves k/(N + k) of the key space, within the proven tolerance, exactly as planned', () => {
    for (const [n, k] of [
      [4, 2],
      [10, 2],
      [32, 8],
    ] as const) {
      const from = topology(names('s', n), '{ type: consistent-hash, vnodes: 256 }');
      const s = suggest(from, n + k);
      const c = s.candidates.find((x) => x.id === 'consistent-hash@256')!;
      expect(c.movementExact).toBe(true);
      expect(Math.abs(c.movement! - k / (n + k))).toBeLessThanOrEqual(additionTolerance(n, k, 256));
      const p = plan(from, topology(names('s', n + k), '{ type: consistent-hash, vnodes: 256 }'));
      expect(c.movement).toBeCloseTo(p.movement.fraction!, 12);
      // adding shards: the ring moves the minimum
      expect(c.ratio).toBeCloseTo(1, 9);
    }
  });

  it('removing a shard moves only its share', () => {
    const from = topology(names('s', 4), '{ type: consistent-hash, vnodes: 128 }');
    const s = suggest(from, 3);
    expect(s.removed).toEqual(['s0003']);
    const c = s.candidates.find((x) => x.id === 'consistent-hash@128')!;
    const p = plan(from, topology(names('s', 3), '{ type: consistent-hash, vnodes: 128 }'));
    expect(c.movement).toBeCloseTo(p.movement.fraction!, 12);
    expect(c.ratio).toBeCloseTo(1, 9);
  });

  it('a grown ring has exactly the shares of a ring built at that vnode count (weights included)', () => {
    const shards = [shard('a'), shard('b', 0.5), shard('c', 2), shard('d'), shard('e', 1.3)];
    const g = new GrowingRing(shards, 42n);
    for (const v of [1, 3, 64, 100, 256]) {
      g.grow(v);
      const ring = buildRing(shards, { type: 'consistent-hash', hash: 'xxhash64', vnodes: v, seed: 42n });
      expect(g.size).toBe(ring.size);
      expect(Array.from(g.hi)).toEqual(Array.from(ring.hi));
      expect(Array.from(g.owner)).toEqual(Array.from(ring.owner));
      expect(g.shares()).toEqual(ringShares(ring, shards.length));
    }
  });

  it('recommends the smallest candidate vnode count whose ring keeps every shard within 5% of the mean', () => {
    for (const m of [3, 6, 12, 40]) {
      const s = suggest(topology(names('s', 2), '{ type: hash-mod, hash: crc32 }'), m);
      const v = s.vnodes.recommended!;
      expect(VNODE_CANDIDATES).toContain(v);
      const shards = names('s', m).map((n) => shard(n));
      // checked independently, from buildRing + ringShares
      expect(maxOverMean(shards, v)).toBeLessThanOrEqual(BALANCE_TARGET);
      const before = VNODE_CANDIDATES[VNODE_CANDIDATES.indexOf(v) - 1];
      if (before !== undefined) expect(maxOverMean(shards, before)).toBeGreaterThan(BALANCE_TARGET);
      expect(s.vnodes.tried.at(-1)).toEqual({ vnodes: v, maxOverMean: maxOverMean(shards, v) });
      const c = s.candidates.find((x) => x.id === `consistent-hash@${v}`)!;
      expect(c.meetsBalance).toBe(true);
      expect(c.yaml).toBe(`scheme: { type: consistent-hash, vnodes: ${v} }`);
    }
  });

  it('keeps the current vnode count as a candidate, and says why a different one moves more', () => {
    const s = suggest(topology(names('s', 4), '{ type: consistent-hash, vnodes: 64 }'), 6);
    const ids = s.candidates.map((c) => c.id);
    expect(ids[0]).toBe('hash-mod');
    expect(ids[1]).toBe('consistent-hash@64');
    const keep = s.candidates[1]!;
    const other = s.candidates[2]!;
    expect(other.vnodes).toBe(s.vnodes.recommended);
    expect(other.movement!).toBeGreaterThan(keep.movement!);
    expect(other.notes.join(' ')).toMatch(/changing vnodes from 64/);
    // hash-mod from a ring: a change of hash, estimated
    expect(s.candidates[0]).toMatchObject({ hash: 'crc32', movementExact: false });
    // every current shard keeps its name, and crc32 gives each target 1/6: 1 − Σ s_i · 1/6 = 5/6
    expect(s.candidates[0]!.movement).toBeCloseTo(5 / 6, 6);
  });

  it('is deterministic, and renders a table with the recommendation marked', () => {
    const from = topology(names('s', 5), '{ type: consistent-hash, vnodes: 256, seed: 7 }');
    const a = suggest(from, 8);
    expect(suggest(from, 8)).toEqual(a);
    const text = renderSuggestion(a, { tty: false });
    expect(text).toContain(`* ${a.recommended}`);
    expect(text).toMatch(/vnodes for max\/mean ≤ 1\.05: \d+/);
    expect(text).not.toMatch(/\x1b\[/);
  });

  it('from a range scheme movement depends on the data; balance and vnodes are still given', () => {
    const from = topology(
      ['r0', 'r1'],
      rangeScheme([
        { shard: 'r0', to: 100n },
        { shard: 'r1', from: 100n },
      ]),
    );
    const s = suggest(from, 3);
    expect(s.added).toEqual(['r2']);
    expect(s.candidates.every((c) => c.movement === null && c.minimum === null)).toBe(true);
    expect(s.notes.join(' ')).toMatch(/depend on the data/);
    expect(s.vnodes.recommended).not.toBeNull();
  });
});

describe('target shard names', () => {
  it('continue the numbering of the current shards', () => {
    expect(targetShardNames(['s0', 's1', 's2', 's3'], 6)).toEqual({
      names: ['s0', 's1', 's2', 's3', 's4', 's5'],
      added: ['s4', 's5'],
      removed: [],
    });
    expect(targetShardNames(['db01', 'db02'], 4).added).toEqual(['db03', 'db04']);
    expect(targetShardNames(['shard-7', 'shard-9'], 3).added).toEqual(['shard-10']);
    expect(targetShardNames(['alpha', 'beta'], 3).added).toEqual(['shard2']);
  });

  it('shrink by removing the highest-numbered shards', () => {
    expect(targetShardNames(['s3', 's0', 's2', 's1'], 2)).toEqual({
      names: ['s0', 's1'],
      added: [],
      removed: ['s3', 's2'],
    });
    expect(targetShardNames(['alpha', 'beta', 'gamma'], 2).removed).toEqual(['gamma']);
  });

  it('refuse a shard count below 1', () => {
    expect(() => suggest(topology(['s0'], '{ type: hash-mod, hash: crc32 }'), 0)).toThrow(
      expect.objectContaining({ code: 'E_USAGE' }),
    );
  });
});
