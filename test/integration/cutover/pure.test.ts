/**
 * The pure parts of cutover, with plain inputs (no server): which servers freeze and which stay
 * frozen, the shared-position guard, the freeze prediction, the journal's attempt reading, the
 * routing classification and the canary.
 */
import { describe, expect, it } from 'vitest';
import {
  canaryPairs,
  classifyActive,
  freezeSet,
  fullRouting,
  type JournalRow,
  lastAttempt,
  movingPairs,
  parseDurationMs,
  predictFreeze,
  readsRouting,
} from '../../../src/cutover/index.js';
import type { Segment } from '../../../src/plan/types.js';
import { parseTopology } from '../../../src/topology/load.js';

const seg = (id: number, from: string, to: string): Segment => ({
  id,
  from,
  to,
  moves: from !== to,
  share: null,
  pieces: { kind: 'cells' },
});

// 2 → 3 by hash-mod: every (s_i, t_j) pair is a segment; t0 is s0 in place (same server).
const segments = [
  seg(0, 's0', 's0'),
  seg(1, 's1', 't1'),
  seg(2, 's0', 't2'),
  seg(3, 's1', 's0'),
  seg(4, 's0', 't1'),
  seg(5, 's1', 't2'),
];
const identity = new Map([
  ['from:s0', { key: 'X', address: 'x:1' }],
  ['from:s1', { key: 'Y', address: 'y:1' }],
  ['to:s0', { key: 'X', address: 'x:1' }],
  ['to:t1', { key: 'Z', address: 'z:1' }],
  ['to:t2', { key: 'W', address: 'w:1' }],
]);

describe('freezeSet', () => {
  it('freezes the old owners of moving segments at cutover; in-place servers are marked', () => {
    const f = freezeSet('cutover', { segments }, identity);
    expect(f.map((s) => [s.address, s.shards, s.inPlace])).toEqual([
      ['x:1', ['s0'], true],
      ['y:1', ['s1'], false],
    ]);
  });
  it('freezes the new owners at rollback; one server with two shards is frozen once', () => {
    const id2 = new Map(identity);
    id2.set('to:t2', { key: 'Z', address: 'z:1' });
    const f = freezeSet('rollback', { segments }, id2);
    expect(f.map((s) => [s.address, s.shards, s.inPlace])).toEqual([
      ['x:1', ['s0'], true],
      ['z:1', ['t1', 't2'], false],
    ]);
  });
});

describe('movingPairs', () => {
  it('lists each moving (source, target) pair once, reversed for the reverse stream', () => {
    expect(movingPairs({ segments }, 'forward').map((p) => `${p.source}>${p.target}`)).toEqual([
      's0>t1',
      's0>t2',
      's1>s0',
      's1>t1',
      's1>t2',
    ]);
    expect(movingPairs({ segments }, 'reverse').map((p) => `${p.source}>${p.target}`)).toEqual([
      's0>s1',
      't1>s0',
      't1>s1',
      't2>s0',
      't2>s1',
    ]);
  });
});

describe('predictFreeze', () => {
  it('adds the worst recent probe (+ a separate tailer’s flush), the verify and the round trips', () => {
    const p = predictFreeze({
      probesMs: [900, 100, 200, 150],
      flushMs: 1000,
      verifyMs: 400,
      rttMs: [2, 5],
      budgetMs: 5000,
    });
    expect(p).toMatchObject({ drainMs: 1200, verifyMs: 400, overheadMs: 230, totalMs: 1830, fits: true });
    expect(predictFreeze({ probesMs: [100], verifyMs: 400, rttMs: [1], budgetMs: 300 }).fits).toBe(false);
  });
  it('is unknown (and does not fit) without a probe or a verify duration', () => {
    expect(predictFreeze({ probesMs: [], verifyMs: 400, rttMs: [1], budgetMs: 5000 })).toMatchObject({
      totalMs: undefined,
      fits: false,
    });
    expect(predictFreeze({ probesMs: [10], verifyMs: undefined, rttMs: [1], budgetMs: 5000 }).fits).toBe(
      false,
    );
  });
  it('parses durations', () => {
    expect([
      parseDurationMs('5s'),
      parseDurationMs('500ms'),
      parseDurationMs('30m'),
      parseDurationMs('1h'),
      parseDurationMs('2'),
    ]).toEqual([5000, 500, 1_800_000, 3_600_000, 2000]);
    expect(parseDurationMs('5 parsecs')).toBeUndefined();
  });
});

describe('lastAttempt', () => {
  const row = (
    id: number,
    step: string,
    state: JournalRow['state'],
    detail: Record<string, unknown> = {},
  ): JournalRow => ({
    id,
    step,
    state,
    detail,
    at: `t${id}`,
  });
  it('reads the last attempt of an op: steps, open/ended, what the freeze recorded', () => {
    const rows = [
      row(1, 'cutover.begin', 'started'),
      row(2, 'cutover.freeze', 'started', { servers: [{ address: 'a' }] }),
      row(3, 'cutover.freeze', 'undone'),
      row(4, 'cutover.end', 'aborted'),
      row(5, 'cutover.begin', 'started'),
      row(6, 'cutover.freeze', 'started', { servers: [{ address: 'b' }] }),
      row(7, 'cutover.freeze', 'done', { frozenAtMs: 1 }),
      row(8, 'rollback.begin', 'started'),
      row(9, 'cutover.flip', 'started'),
      row(10, 'cutover.flip', 'done', { version: 3 }),
    ];
    const a = lastAttempt(rows, 'cutover')!;
    expect(a.number).toBe(2);
    expect(a.open).toBe(true);
    expect(a.steps.get('freeze')).toMatchObject({ state: 'done', started: { servers: [{ address: 'b' }] } });
    expect(a.steps.get('flip')?.done).toEqual({ version: 3 });
    expect(lastAttempt(rows.slice(0, 4), 'cutover')).toMatchObject({
      open: false,
      endState: 'aborted',
      number: 1,
    });
    expect(lastAttempt(rows, 'rollback')).toMatchObject({ open: true, number: 1 });
    expect(lastAttempt(rows, 'reads')).toBeUndefined();
  });
});

describe('routing documents', () => {
  const topo = (name: string, shards: string[]) =>
    parseTopology(
      [
        'version: 1',
        `name: ${name}`,
        'shards:',
        ...shards.map(
          (s, i) => `  - { name: ${s}, host: 127.0.0.1, port: ${3306 + i}, database: d, user: u }`,
        ),
        'tables:',
        '  - { name: users, shardKey: id }',
        'scheme: { type: hash-mod, hash: crc32 }',
      ].join('\n'),
      `${name}.yaml`,
    );
  const from = topo('from', ['s0', 's1']);
  const to = topo('to', ['t0', 't1', 't2']);
  it('classifies the active routing relative to a job', () => {
    expect(classifyActive(undefined, from, to, 'j')).toBe('none');
    expect(classifyActive(fullRouting(from, 'other'), from, to, 'j')).toBe('from');
    expect(classifyActive(fullRouting(to, 'j'), from, to, 'j')).toBe('to');
    expect(classifyActive(readsRouting(from, to, 'j'), from, to, 'j')).toBe('reads');
    expect(classifyActive(readsRouting(from, to, 'j', [{ from: 's0', to: 't1' }]), from, to, 'j')).toBe(
      'reads',
    );
    expect(classifyActive(readsRouting(from, to, 'other'), from, to, 'j')).toBe('foreign');
    expect(classifyActive(fullRouting(topo('x', ['a']), 'j'), from, to, 'j')).toBe('foreign');
  });
  it('a canary flips the first ⌈F·n⌉ moving pairs, at least one', () => {
    expect(canaryPairs({ segments }, 0.01)).toEqual([{ from: 's1', to: 't1' }]);
    expect(canaryPairs({ segments }, 0.5)).toEqual([
      { from: 's1', to: 't1' },
      { from: 's0', to: 't2' },
      { from: 's1', to: 's0' },
    ]);
    expect(canaryPairs({ segments }, 1)).toHaveLength(5);
    expect(() => canaryPairs({ segments }, 0)).toThrow(/fraction/);
  });
});
