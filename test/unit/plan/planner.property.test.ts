/**
 * Property tests of the planner over random topology pairs of every scheme family.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ReshardError } from '../../../src/errors.js';
import { indexPlan, keyInPieces } from '../../../src/plan/plan-index.js';
import { parsePlan, planHash, serializePlan } from '../../../src/plan/planfile.js';
import { plan } from '../../../src/plan/planner.js';
import { additionTolerance } from '../../../src/plan/ring.js';
import type { RouteKey } from '../../../src/plan/router.js';
import { parseTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';
import { directoryTopology, rangeScheme, topology, topologyYaml } from './helpers.js';

const POOL = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];

/** A topology description that can be built twice (to check determinism from fresh inputs). */
type Spec = { family: 'int' | 'string' | 'any'; build: (file: string) => Topology; label: string };

const shardSet = fc.subarray(POOL, { minLength: 1, maxLength: 6 });

function hashModSpec(hash: 'crc32' | 'identity'): fc.Arbitrary<Spec> {
  return fc.tuple(shardSet, fc.array(fc.nat(), { maxLength: 5 }), fc.nat()).map(([shards, extra, rot]) => {
    const slots = [...shards, ...extra.map((i) => shards[i % shards.length]!)];
    const r = rot % slots.length;
    const rotated = [...slots.slice(r), ...slots.slice(0, r)];
    const scheme = `{ type: hash-mod, hash: ${hash}, modulus: ${rotated.length}, slots: [${rotated.join(', ')}] }`;
    return {
      family: hash === 'identity' ? 'int' : 'any',
      build: (f) => topology(shards, scheme, f),
      label: scheme,
    } satisfies Spec;
  });
}

function consistentSpec(seed: bigint): fc.Arbitrary<Spec> {
  return fc
    .tuple(
      shardSet,
      fc.integer({ min: 1, max: 24 }),
      fc.array(fc.constantFrom(0.5, 1, 2), { minLength: 8, maxLength: 8 }),
    )
    .map(([shards, vnodes, weights]) => {
      const list = shards.map((name, i) => ({ name, weight: weights[i]! }));
      const scheme = `{ type: consistent-hash, vnodes: ${vnodes}, seed: ${seed} }`;
      return {
        family: 'any',
        build: (f) => topology(list, scheme, f),
        label: `${scheme} ${JSON.stringify(list)}`,
      } satisfies Spec;
    });
}

function rangeSpec<B extends bigint | string>(
  bounds: fc.Arbitrary<B[]>,
  cmp: (x: B, y: B) => number,
): fc.Arbitrary<Spec> {
  return fc
    .tuple(bounds, fc.array(fc.constantFrom(...POOL), { minLength: 8, maxLength: 8 }))
    .map(([bs, owners]) => {
      const sorted = [...bs].sort(cmp);
      const ranges = [...sorted, undefined].map((to, i) => ({
        shard: owners[i]!,
        ...(i > 0 ? { from: sorted[i - 1]! } : {}),
        ...(to !== undefined ? { to } : {}),
      }));
      const shards = [...new Set(ranges.map((r) => r.shard))];
      const scheme = rangeScheme(ranges);
      const family = typeof sorted[0] === 'string' ? 'string' : 'int';
      return { family, build: (f) => topology(shards, scheme, f), label: scheme } satisfies Spec;
    });
}

const intRange = rangeSpec(fc.uniqueArray(fc.bigInt({ min: -300n, max: 300n }), { maxLength: 7 }), (x, y) =>
  x < y ? -1 : x > y ? 1 : 0,
);
const STRINGS = ['B', 'a', 'b', 'ab', 'm', 'z', 'zz', 'é', 'ü', 'Ω', '日本'];
const byteOrder = (x: string, y: string) => Buffer.compare(Buffer.from(x), Buffer.from(y));
const strRange = rangeSpec(fc.uniqueArray(fc.constantFrom(...STRINGS), { maxLength: 7 }), byteOrder);

const DIR_KEYS = ['0', '1', '2', '3', '4', '5', '-7', '12345678901234567890', 'x', 'é'];
function directorySpec(needDefault: boolean): fc.Arbitrary<Spec> {
  return fc
    .tuple(
      shardSet,
      fc.dictionary(fc.constantFrom(...DIR_KEYS), fc.nat(), { maxKeys: 8 }),
      fc.option(fc.nat(), { nil: undefined }),
      fc.nat(),
    )
    .map(([shards, raw, def, forced]) => {
      const entries = Object.fromEntries(
        Object.entries(raw).map(([k, i]) => [k, shards[i % shards.length]!]),
      );
      const d = def === undefined && !needDefault ? undefined : shards[(def ?? forced) % shards.length]!;
      return {
        family: 'any',
        build: (f) => directoryTopology(shards, entries, d, f),
        label: `directory ${JSON.stringify(entries)} default ${d}`,
      } satisfies Spec;
    });
}

/**
 * Pairs of the same family (the fine overlays) and of mixed families (the product). `symmetric`:
 * both directories have a default, so the plan is also valid backwards.
 */
function samePairs(symmetric: boolean): fc.Arbitrary<[Spec, Spec]> {
  return fc.oneof(
    fc
      .constantFrom<'crc32' | 'identity'>('crc32', 'identity')
      .chain((h) => fc.tuple(hashModSpec(h), hashModSpec(h))),
    fc
      .bigInt({ min: 0n, max: (1n << 64n) - 1n })
      .chain((seed) => fc.tuple(consistentSpec(seed), consistentSpec(seed))),
    fc.tuple(intRange, intRange),
    fc.tuple(strRange, strRange),
    fc.tuple(directorySpec(symmetric), directorySpec(true)),
  );
}
const samePair = samePairs(false);
const anySpec = fc.oneof(hashModSpec('crc32'), consistentSpec(0n), consistentSpec(99n), directorySpec(true));
const intSpec = fc.oneof(hashModSpec('identity'), intRange);
const mixedPair: fc.Arbitrary<[Spec, Spec]> = fc.oneof(
  fc.tuple(anySpec, anySpec),
  fc.tuple(intSpec, intSpec),
  fc.tuple(intSpec, anySpec),
);

function keysFor(family: 'int' | 'string' | 'any'): fc.Arbitrary<RouteKey[]> {
  const ints = fc.oneof(
    fc.integer({ min: -400, max: 400 }),
    fc.maxSafeInteger(),
    fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
  );
  const strs = fc.oneof(fc.constantFrom(...STRINGS, ...DIR_KEYS), fc.string({ unit: 'grapheme' }));
  const arb =
    family === 'int'
      ? ints
      : family === 'string'
        ? strs
        : fc.oneof(ints, strs, fc.constantFrom(...DIR_KEYS.filter((k) => /^-?\d+$/.test(k)).map(BigInt)));
  return fc.array(arb as fc.Arbitrary<RouteKey>, { minLength: 20, maxLength: 60 });
}

function family(a: Spec, b: Spec): 'int' | 'string' | 'any' {
  if (a.family === 'string' || b.family === 'string') return 'string';
  if (a.family === 'int' || b.family === 'int') return 'int';
  return 'any';
}

function directoryKeys(...ts: Topology[]): Set<string> {
  const s = new Set<string>();
  for (const t of ts)
    if (t.scheme.type === 'directory') for (const k of t.scheme.entries?.keys() ?? []) s.add(k);
  return s;
}

const isMiss = (e: unknown) => (e as ReshardError).code === 'E_DIRECTORY_MISS';

/** For one pair and some keys: one owner per side, exactly one segment, pieces agree. */
function checkPartition(spec: [Spec, Spec], keys: RouteKey[]): void {
  const from = spec[0].build('from.yaml');
  const to = spec[1].build('to.yaml');
  const p = plan(from, to);
  const ix = indexPlan(p, from, to);
  const dir = directoryKeys(from, to);
  const space = 'space' in p.partition ? p.partition.space : undefined;
  if (space !== undefined && p.partition.kind !== 'directory') {
    expect(p.segments.reduce((n, s) => n + s.share!.units!, 0n)).toBe(space);
  }
  // (Directory shares count listed keys: with none listed there is nothing to sum.)
  if (
    p.movement.basis !== 'data-dependent' &&
    !(p.partition.kind === 'directory' && p.partition.space === 0n)
  ) {
    expect(p.segments.reduce((n, s) => n + s.share!.fraction, 0)).toBeCloseTo(1, 9);
  }
  const pairs = new Set(p.segments.map((s) => `${s.from}>${s.to}`));
  expect(pairs.size).toBe(p.segments.length);
  for (const key of keys) {
    let of: string;
    try {
      of = ix.ownerOf('from', key);
    } catch (e) {
      // Only a directory without a default has unroutable keys; they hold no rows and are in no segment.
      expect(isMiss(e)).toBe(true);
      continue;
    }
    const ot = ix.ownerOf('to', key);
    const s = ix.segmentOf(key);
    expect([s.from, s.to]).toEqual([of, ot]);
    const hits = p.segments.filter((x) => keyInPieces(p, x.pieces, key, dir) === true);
    if (p.partition.kind === 'product') {
      expect(hits).toEqual([]);
    } else if (s.pieces.kind === 'cells') {
      // Ring stays list no arcs: the key must be in no moving arc.
      expect(s.moves).toBe(false);
      expect(hits).toEqual([]);
    } else {
      expect(hits.map((h) => h.id)).toEqual([s.id]);
    }
  }
}

describe('planner properties', () => {
  it('same-family overlays: one owner per side, each key in exactly one segment, pieces and shares partition the space', () => {
    fc.assert(
      fc.property(
        samePair.chain((pair) => fc.tuple(fc.constant(pair), keysFor(family(...pair)))),
        ([pair, keys]) => {
          checkPartition(pair, keys);
        },
      ),
      { numRuns: 250 },
    );
  });

  it('changes of strategy or hash: each key in exactly one (current, target) segment', () => {
    fc.assert(
      fc.property(
        mixedPair.chain((pair) => fc.tuple(fc.constant(pair), keysFor(family(...pair)))),
        ([pair, keys]) => {
          checkPartition(pair, keys);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('A → B then B → A restores every key’s owner, and moves the same share', () => {
    fc.assert(
      fc.property(
        fc
          .oneof(samePairs(true), mixedPair)
          .chain((pair) => fc.tuple(fc.constant(pair), keysFor(family(...pair)))),
        ([[sa, sb], keys]) => {
          const a = sa.build('a.yaml');
          const b = sb.build('b.yaml');
          const ab = indexPlan(plan(a, b), a, b);
          const ba = indexPlan(plan(b, a), b, a);
          for (const key of keys) {
            let s: { from: string; to: string };
            try {
              s = ab.segmentOf(key);
            } catch (e) {
              expect(isMiss(e)).toBe(true);
              continue;
            }
            const back = ba.segmentOf(key);
            expect(back.from).toBe(s.to);
            expect(back.to).toBe(s.from);
          }
          const fa = ab.plan.movement.fraction;
          const fb = ba.plan.movement.fraction;
          if (fa !== null && fb !== null && ab.plan.movement.basis === 'hash-space') expect(fb).toBe(fa);
          else if (fa !== null && fb !== null && ab.plan.movement.basis === 'estimate')
            expect(fb).toBeCloseTo(fa, 12);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('is deterministic: the same inputs, built afresh, give the same plan hash; the plan file round-trips', () => {
    fc.assert(
      fc.property(fc.oneof(samePair, mixedPair), ([sa, sb]) => {
        const p1 = plan(sa.build('a.yaml'), sb.build('b.yaml'));
        const a = sa.build('a.yaml');
        const b = sb.build('b.yaml');
        const p2 = plan(a, b);
        expect(planHash(p2)).toBe(planHash(p1));
        const text = serializePlan(p2);
        const back = parsePlan(text, 'plan.json', a, b);
        expect(back).toEqual(p2);
        expect(serializePlan(back)).toBe(text);
      }),
      { numRuns: 150 },
    );
  });
});

/** The tolerance and its proof: `additionTolerance` in src/plan/ring.ts. */
describe('consistent hashing moves about k/(N + k) when adding k shards to N', () => {
  it('within the proven tolerance for 256 vnodes, and never more than the minimum', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 48 }),
        fc.integer({ min: 1, max: 16 }),
        fc.stringMatching(/^[a-z]{1,4}$/),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (n, k, prefix, seed) => {
          const name = (i: number) => `${prefix}${i}`;
          const yaml = (count: number) =>
            topologyYaml(
              Array.from({ length: count }, (_, i) => name(i)),
              `{ type: consistent-hash, vnodes: 256, seed: ${seed} }`,
            );
          const p = plan(parseTopology(yaml(n), 'a.yaml'), parseTopology(yaml(n + k), 'b.yaml'));
          const newShards = new Set(Array.from({ length: k }, (_, i) => name(n + i)));
          for (const s of p.segments) if (s.moves) expect(newShards.has(s.to)).toBe(true);
          expect(Math.abs(p.movement.fraction! - k / (n + k))).toBeLessThanOrEqual(
            additionTolerance(n, k, 256),
          );
          expect(p.movement.ratio).toBeCloseTo(1, 9);
        },
      ),
      { numRuns: 40 },
    );
  });
});
