import { describe, expect, it } from 'vitest';
import { indexPlan } from '../../../src/plan/plan-index.js';
import { plan } from '../../../src/plan/planner.js';
import type { Plan, Segment } from '../../../src/plan/types.js';
import { parseTopology } from '../../../src/topology/load.js';
import { directoryTopology, names, rangeScheme, topology, topologyYaml } from './helpers.js';

const seg = (p: Plan, from: string, to: string): Segment | undefined =>
  p.segments.find((s) => s.from === from && s.to === to);
const moves = (p: Plan) => p.segments.filter((s) => s.moves).map((s) => `${s.from}>${s.to}`);

describe('hash-mod → hash-mod (same hash): residues modulo lcm', () => {
  it('2 → 4 moves half the keys, which is the minimum', () => {
    const p = plan(
      topology(['s0', 's1'], '{ type: hash-mod, hash: crc32 }', 'a.yaml'),
      topology(['s0', 's1', 's2', 's3'], '{ type: hash-mod, hash: crc32 }', 'b.yaml'),
    );
    expect(p.partition).toMatchObject({ kind: 'residue', modulus: 4, space: 2n ** 32n });
    expect(moves(p)).toEqual(['s0>s2', 's1>s3']);
    expect(seg(p, 's0', 's2')?.pieces).toEqual({ kind: 'residues', residues: [2] });
    expect(seg(p, 's0', 's2')?.share).toEqual({ fraction: 0.25, units: 2n ** 30n, exact: true });
    expect(p.movement).toMatchObject({
      fraction: 0.5,
      minimum: 0.5,
      ratio: 1,
      exact: true,
      basis: 'hash-space',
    });
  });

  it('3 → 4 (identity) moves 3/4 of the keys where 1/4 would do', () => {
    const p = plan(
      topology(names('s', 3), '{ type: hash-mod, hash: identity }'),
      topology(names('s', 4), '{ type: hash-mod, hash: identity }'),
    );
    expect(p.partition).toMatchObject({ kind: 'residue', modulus: 12, space: 12n });
    expect(p.movement.fraction).toBe(0.75);
    expect(p.movement.minimum).toBeCloseTo(0.25, 12);
    expect(p.movement.ratio).toBeCloseTo(3, 12);
    // residues r < 3 keep their shard: r mod 3 = r mod 4
    const stays = p.segments
      .filter((s) => !s.moves)
      .flatMap((s) => (s.pieces.kind === 'residues' ? s.pieces.residues : []));
    expect(stays.sort((a, b) => a - b)).toEqual([0, 1, 2]);
  });

  it('counts CRC values exactly when 2^32 is not a multiple of lcm', () => {
    const p = plan(
      topology(names('s', 3), '{ type: hash-mod, hash: crc32 }'),
      topology(names('s', 5), '{ type: hash-mod, hash: crc32 }'),
    );
    const total = p.segments.reduce((n, s) => n + s.share!.units!, 0n);
    expect(total).toBe(2n ** 32n);
    // 2^32 = 286331153 × 15 + 1: residue 0 has one value more
    const r0 = p.segments.find((s) => s.pieces.kind === 'residues' && s.pieces.residues.includes(0))!;
    expect(r0.share!.units! % 286331153n).toBe(1n);
  });

  it('gives SQL selecting a segment', () => {
    const a = topology(['s0', 's1'], '{ type: hash-mod, hash: crc32 }');
    const b = topology(['s0', 's1', 's2', 's3'], '{ type: hash-mod, hash: crc32 }');
    const p = plan(a, b);
    const ix = indexPlan(p, a, b);
    expect(ix.sqlPredicate(seg(p, 's1', 's3')!, '`id`')).toBe('MOD(CRC32(`id`), 4) = 3');
    const c = topology(['s0', 's1', 's2'], '{ type: hash-mod, hash: identity }');
    const d = topology(['s0', 's1', 's2', 's3', 's4', 's5', 's6'], '{ type: hash-mod, hash: identity }');
    const q = plan(c, d);
    // lcm 21: s0 → s1 holds residues {15}; the direct form is shorter than the product
    expect(indexPlan(q, c, d).sqlPredicate(seg(q, 's0', 's1')!, '`k`')).toBe(
      'MOD(MOD(`k`, 21) + 21, 21) = 15',
    );
  });

  it('refuses an overlay beyond maxResidues', () => {
    expect(() =>
      plan(
        topology(names('s', 7), '{ type: hash-mod, hash: crc32 }'),
        topology(names('s', 11), '{ type: hash-mod, hash: crc32 }'),
        { maxResidues: 50 },
      ),
    ).toThrow(expect.objectContaining({ code: 'E_PLAN_TOO_LARGE' }));
  });
});

describe('consistent-hash → consistent-hash (same seed): arcs of the union ring', () => {
  const ch = '{ type: consistent-hash, vnodes: 64 }';
  it('adding shards moves keys only onto the new shards, exactly the minimum', () => {
    const p = plan(topology(names('s', 6), ch), topology(names('s', 8), ch));
    for (const s of p.segments.filter((x) => x.moves)) expect(['s0006', 's0007']).toContain(s.to);
    expect(p.movement.ratio).toBeCloseTo(1, 12);
    expect(p.segments.reduce((n, s) => n + s.share!.units!, 0n)).toBe(2n ** 64n);
    const ix = indexPlan(p, topology(names('s', 6), ch), topology(names('s', 8), ch));
    expect(ix.sqlPredicate(p.segments.find((s) => s.moves)!, '`id`')).toBeUndefined();
  });

  it('removing a shard moves only its keys', () => {
    const p = plan(topology(names('s', 5), ch), topology(names('s', 4), ch));
    for (const s of p.segments.filter((x) => x.moves)) expect(s.from).toBe('s0004');
    expect(p.movement.fraction).toBeCloseTo(p.shares.find((s) => s.shard === 's0004')!.from!, 12);
  });

  it('re-weighting moves keys only onto the heavier shard', () => {
    const p = plan(topology(['a', 'b', 'c'], ch), topology(['a', { name: 'b', weight: 2 }, 'c'], ch));
    for (const s of p.segments.filter((x) => x.moves)) expect(s.to).toBe('b');
  });

  it('changing the vnode count re-cuts the ring', () => {
    const p = plan(
      topology(names('s', 4), ch),
      topology(names('s', 4), '{ type: consistent-hash, vnodes: 128 }'),
    );
    expect(p.partition.kind).toBe('ring');
    expect(p.movement.fraction).toBeGreaterThan(0);
    expect(p.segments.reduce((n, s) => n + s.share!.units!, 0n)).toBe(2n ** 64n);
  });
});

describe('range → range: intervals cut at both sides’ boundaries', () => {
  it('split: a keeps [-∞, 50), c takes [50, 100), b keeps [100, ∞)', () => {
    const a = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: 100n },
        { shard: 'b', from: 100n },
      ]),
    );
    const b = topology(
      ['a', 'b', 'c'],
      rangeScheme([
        { shard: 'a', to: 50n },
        { shard: 'c', from: 50n, to: 100n },
        { shard: 'b', from: 100n },
      ]),
    );
    const p = plan(a, b);
    expect(p.segments.map((s) => [s.from, s.to, s.pieces])).toEqual([
      ['a', 'a', { kind: 'intervals', intervals: [{ from: null, to: 50n }] }],
      ['a', 'c', { kind: 'intervals', intervals: [{ from: 50n, to: 100n }] }],
      ['b', 'b', { kind: 'intervals', intervals: [{ from: 100n, to: null }] }],
    ]);
    expect(p.movement).toMatchObject({
      fraction: null,
      basis: 'data-dependent',
      movingSegments: 1,
      movingPieces: 1,
    });
    expect(indexPlan(p, a, b).sqlPredicate(1, '`id`')).toBe('`id` >= 50 AND `id` < 100');
  });

  it('merge: b and c fold into b, string keys compared as bytes', () => {
    const a = topology(
      ['a', 'b', 'c'],
      rangeScheme([
        { shard: 'a', to: 'h' },
        { shard: 'b', from: 'h', to: 'p' },
        { shard: 'c', from: 'p' },
      ]),
    );
    const b = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: 'h' },
        { shard: 'b', from: 'h' },
      ]),
    );
    const p = plan(a, b);
    expect(moves(p)).toEqual(['c>b']);
    const ix = indexPlan(p, a, b);
    expect(ix.sqlPredicate(seg(p, 'c', 'b')!, '`name`')).toBe("CAST(`name` AS BINARY) >= X'70'");
    expect(ix.segmentOf('q')).toMatchObject({ from: 'c', to: 'b' });
  });

  it('refuses integer boundaries against string ones', () => {
    const a = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: 10n },
        { shard: 'b', from: 10n },
      ]),
    );
    const b = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: 'x' },
        { shard: 'b', from: 'x' },
      ]),
    );
    expect(() => plan(a, b)).toThrow(expect.objectContaining({ code: 'E_PLAN_KEY_TYPE' }));
  });
});

describe('directory → directory: per key and the default', () => {
  it('diffs entries and the default', () => {
    const a = directoryTopology(['a', 'b'], { '1': 'a', '2': 'b', '3': 'b' }, 'a');
    const b = directoryTopology(['a', 'b', 'c'], { '1': 'a', '2': 'c', '4': 'c' }, 'b');
    const p = plan(a, b);
    // 1: a→a; 2: b→c; 3: b→(default b); 4: (default a)→c; rest: a→b
    expect(p.segments.map((s) => [s.from, s.to, s.pieces])).toEqual([
      ['a', 'a', { kind: 'keys', keys: ['1'], rest: false }],
      ['a', 'b', { kind: 'keys', keys: [], rest: true }],
      ['a', 'c', { kind: 'keys', keys: ['4'], rest: false }],
      ['b', 'b', { kind: 'keys', keys: ['3'], rest: false }],
      ['b', 'c', { kind: 'keys', keys: ['2'], rest: false }],
    ]);
    expect(p.movement).toMatchObject({ fraction: 0.5, basis: 'directory-keys' });
    const ix = indexPlan(p, a, b);
    expect(ix.segmentOf(99)).toMatchObject({ from: 'a', to: 'b' });
    expect(ix.sqlPredicate(seg(p, 'a', 'c')!, '`k`')).toBe("CAST(`k` AS BINARY) = X'34'");
    expect(ix.sqlPredicate(seg(p, 'a', 'b')!, '`k`')).toBe(
      "NOT (CAST(`k` AS BINARY) IN (X'31', X'32', X'33', X'34'))",
    );
  });

  it('refuses a target that leaves keys without an owner', () => {
    const a = directoryTopology(['a', 'b'], { '1': 'a' }, 'b');
    const b = directoryTopology(['a', 'b'], { '1': 'a' });
    expect(() => plan(a, b)).toThrow(expect.objectContaining({ code: 'E_PLAN_UNROUTABLE' }));
  });
});

describe('change of strategy or hash: (current cell) ∧ (target cell)', () => {
  it('hash-mod → consistent-hash: every pair, shares estimated as independent', () => {
    const a = topology(names('s', 4), '{ type: hash-mod, hash: crc32 }');
    const b = topology(names('s', 6), '{ type: consistent-hash, vnodes: 256 }');
    const p = plan(a, b);
    expect(p.partition).toEqual({ kind: 'product', basis: 'independent-hashes' });
    expect(p.segments).toHaveLength(24);
    expect(p.segments.reduce((n, s) => n + s.share!.fraction, 0)).toBeCloseTo(1, 12);
    expect(p.movement).toMatchObject({ exact: false, basis: 'estimate' });
    // about 1 − 4 × (1/4 × 1/6) of the keys move
    expect(p.movement.fraction).toBeCloseTo(1 - 1 / 6, 1);
    const ix = indexPlan(p, a, b);
    expect(ix.sqlPredicate(0, '`id`')).toBeUndefined();
    expect(ix.segmentOf(12345)).toMatchObject({
      from: ix.ownerOf('from', 12345),
      to: ix.ownerOf('to', 12345),
    });
  });

  it('crc32 → identity keeps the modulus but still re-cuts everything', () => {
    const a = topology(names('s', 2), '{ type: hash-mod, hash: crc32 }');
    const b = topology(names('s', 2), '{ type: hash-mod, hash: identity }');
    const p = plan(a, b);
    expect(p.partition.kind).toBe('product');
    expect(indexPlan(p, a, b).sqlPredicate(seg(p, 's0000', 's0001')!, '`id`')).toBe(
      '(MOD(CRC32(`id`), 2) = 0) AND (MOD(MOD(`id`, 2) + 2, 2) = 1)',
    );
  });

  it('hash-mod → range: data-dependent pairs', () => {
    const a = topology(['a', 'b'], '{ type: hash-mod, hash: identity }');
    const b = topology(
      ['a', 'b'],
      rangeScheme([
        { shard: 'a', to: 0n },
        { shard: 'b', from: 0n },
      ]),
    );
    const p = plan(a, b);
    expect(p.movement.basis).toBe('data-dependent');
    expect(indexPlan(p, a, b).sqlPredicate(seg(p, 'a', 'b')!, '`id`')).toBe(
      '(MOD(MOD(`id`, 2) + 2, 2) = 0) AND (`id` >= 0)',
    );
  });
});

describe('compatibility', () => {
  const scheme = '{ type: hash-mod, hash: crc32 }';
  const withTables = (tables: string, file: string, groups = '') =>
    parseTopology(topologyYaml(['a', 'b'], scheme, tables) + groups, file);

  it('refuses different tables, shard keys or groups, naming both files', () => {
    const base = withTables('  - { name: t, shardKey: id }\n  - { name: u, shardKey: id }', 'cur.yaml');
    expect(() => plan(base, withTables('  - { name: t, shardKey: id }', 'tgt.yaml'))).toThrow(
      expect.objectContaining({
        code: 'E_PLAN_TABLES_DIFFER',
        message: expect.stringMatching(/'u'.*cur\.yaml vs tgt\.yaml/),
      }),
    );
    expect(() =>
      plan(base, withTables('  - { name: t, shardKey: id }\n  - { name: u, shardKey: uid }', 'tgt.yaml')),
    ).toThrow(
      expect.objectContaining({
        code: 'E_PLAN_TABLES_DIFFER',
        hint: expect.stringContaining('shardKey: id'),
      }),
    );
    const grouped = withTables(
      '  - { name: t, shardKey: id }\n  - { name: u, shardKey: id }',
      'tgt.yaml',
      'groups:\n  - { name: g, tables: [t, u] }\n',
    );
    expect(() => plan(base, grouped)).toThrow(expect.objectContaining({ code: 'E_PLAN_TABLES_DIFFER' }));
  });

  it('refuses a shard name that changed server, and a server that changed name', () => {
    const a = topology(['a', 'b'], scheme);
    const moved = parseTopology(topologyYaml(['a', 'b'], scheme).replace('b.db', 'elsewhere.db'), 'tgt.yaml');
    expect(() => plan(a, moved)).toThrow(expect.objectContaining({ code: 'E_PLAN_SHARD_MOVED' }));
    const renamed = parseTopology(topologyYaml(['a', 'c'], scheme).replace('c.db', 'b.db'), 'tgt.yaml');
    expect(() => plan(a, renamed)).toThrow(expect.objectContaining({ code: 'E_PLAN_SHARD_ALIAS' }));
  });
});
