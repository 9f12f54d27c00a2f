import { describe, expect, it } from 'vitest';
import {
  type Estimate,
  exactUnavailable,
  fmtDuration,
  resolveEstimateMode,
  retentionOf,
  summarizePlan,
} from '../../../src/plan/estimate.js';
import { plan } from '../../../src/plan/planner.js';
import { renderPlanReport } from '../../../src/plan/render.js';
import type { Plan } from '../../../src/plan/types.js';
import { directoryTopology, names, rangeScheme, topology } from './helpers.js';

const crc = '{ type: hash-mod, hash: crc32 }';

/** An estimate as estimatePlan returns it, with `rows(segment)` rows per segment, all exact. */
function fakeEstimate(
  p: Plan,
  rows: (from: string, to: string) => number,
  extra: Partial<Estimate> = {},
): Estimate {
  const segments = p.segments.map((s) => {
    const n = rows(s.from, s.to);
    return { segment: s.id, rows: n, low: n, high: n, bytes: n * 100 };
  });
  const moved = p.segments.filter((s) => s.moves).reduce((n, s) => n + rows(s.from, s.to), 0);
  return {
    mode: 'exact',
    confidence: 1,
    sampleRows: null,
    segments,
    moved: { rows: moved, low: moved, high: moved },
    tables: [],
    sources: [],
    notes: [],
    ...extra,
  };
}

describe('choosing the estimate', () => {
  it('auto counts exactly where SQL routes both sides, and samples for consistent hashing', () => {
    const hm2 = topology(['s0', 's1'], crc, 'a.yaml');
    const hm3 = topology(['s0', 's1', 's2'], crc, 'b.yaml');
    const id3 = topology(['s0', 's1', 's2'], '{ type: hash-mod, hash: identity }', 'c.yaml');
    const range = topology(
      ['s0', 's1'],
      rangeScheme([
        { shard: 's0', to: 10n },
        { shard: 's1', from: 10n },
      ]),
      'd.yaml',
    );
    const dir = directoryTopology(['s0', 's1'], { '1': 's1', abc: 's0' }, 's0', 'e.yaml');
    const ch = topology(['s0', 's1', 's2'], '{ type: consistent-hash }', 'f.yaml');
    for (const to of [hm3, id3, range, dir])
      expect(resolveEstimateMode('auto', hm2, to)).toEqual({ mode: 'exact' });
    expect(resolveEstimateMode('auto', range, dir)).toEqual({ mode: 'exact' });
    const s = resolveEstimateMode('auto', hm2, ch);
    expect(s.mode).toBe('sample');
    expect(s.note).toMatch(/f\.yaml uses consistent hashing/);
    expect(() => resolveEstimateMode('exact', ch, hm2)).toThrow(
      expect.objectContaining({ code: 'E_ESTIMATE_EXACT', kind: 'usage' }),
    );
    expect(resolveEstimateMode('none', hm2, ch)).toEqual({ mode: 'none' });
    expect(resolveEstimateMode('sample', hm2, hm3)).toEqual({ mode: 'sample' });
  });

  it('samples when a directory is too large to list in one statement', () => {
    const entries = Object.fromEntries(
      Array.from({ length: 60_000 }, (_, i) => [`customer-${i}-xxxxxxxx`, i % 2 ? 's1' : 's0']),
    );
    const big = directoryTopology(['s0', 's1'], entries, 's0', 'big.yaml');
    expect(exactUnavailable(topology(['s0', 's1'], crc), big)).toMatch(
      /MiB \(every directory key is listed\)/,
    );
    expect(resolveEstimateMode('auto', topology(['s0', 's1'], crc), big).mode).toBe('sample');
  });
});

describe('binlog retention', () => {
  it('prefers binlog_expire_logs_seconds, falls back to expire_logs_days; 0 = never; absent = unknown', () => {
    const r = (o: Record<string, string>) => retentionOf(new Map(Object.entries(o)));
    expect(r({ binlog_expire_logs_seconds: '604800', expire_logs_days: '7.000000' })).toBe(604800);
    expect(r({ binlog_expire_logs_seconds: '0', expire_logs_days: '3' })).toBe(3 * 86400);
    expect(r({ expire_logs_days: '0.5' })).toBe(43200);
    expect(r({ binlog_expire_logs_seconds: '0', expire_logs_days: '0' })).toBe(0);
    expect(r({})).toBeNull();
  });
});

describe('summary', () => {
  const from = topology(['s0', 's1'], crc, 'a.yaml');
  const to = topology(['s0', 's1', 't2'], crc, 'b.yaml');
  const p = plan(from, to);
  // 100 rows per segment, except 300 on s0→t2
  const rows = (f: string, t: string) => (f === 's0' && t === 't2' ? 300 : 100);

  it('moves, stays, movement, balance after and ETA from the counts', () => {
    const r = summarizePlan(p, to, fakeEstimate(p, rows), {
      requested: 'auto',
      mode: 'exact',
      copyRate: 100,
      planFile: 'plan.json',
    });
    expect(r.moves.map((m) => `${m.from}>${m.to}:${m.rows}`)).toEqual([
      's0>s1:100',
      's0>t2:300',
      's1>s0:100',
      's1>t2:100',
    ]);
    expect(r.stays.map((m) => `${m.from}>${m.to}:${m.rows}`)).toEqual(['s0>s0:100', 's1>s1:100']);
    expect(r.movement.rows).toEqual({ moved: 600, low: 600, high: 600, total: 800, fraction: 0.75 });
    expect(r.movement.bytes).toEqual({ moved: 60_000, total: 80_000 });
    expect(r.movement.keys).toMatchObject({ exact: true, basis: 'hash-space' });
    expect(r.movement.keys.fraction).toBeCloseTo(2 / 3, 9);
    expect(r.balance.targets.map((t) => [t.shard, t.rows, t.incomingRows])).toEqual([
      ['s0', 200, 100],
      ['s1', 200, 100],
      ['t2', 400, 400],
    ]);
    expect(r.balance.rows).toMatchObject({ maxShard: 't2', max: 0.5, min: 0.25 });
    expect(r.balance.rows!.maxOverMean).toBeCloseTo(1.5, 12);
    expect(r.balance.keys!.maxOverMean).toBeCloseTo(1, 6);
    expect(r.eta).toEqual({ copyRate: 100, seconds: 6, secondsHigh: 6 });
    expect(r.plan).toMatchObject({ file: 'plan.json', segments: p.segments.length, partition: 'residue' });
    expect(r.plan.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(r.warnings).toEqual([]);
    expect(r.notes.join('\n')).toMatch(/ETA assumes 100 rows\/s over all sources together \(--copy-rate\)/);
  });

  it('warns when the ETA outlives a source’s binlog retention, once per server', () => {
    const e = fakeEstimate(p, rows, {
      sources: [
        { shard: 's0', server: 'root@h:3306/a', address: 'h:3306', logBin: true, retentionSeconds: 3 },
        { shard: 's1', server: 'root@h:3306/b', address: 'h:3306', logBin: true, retentionSeconds: 3 },
        { shard: 'x', server: 'root@k:3306/a', address: 'k:3306', logBin: true, retentionSeconds: 0 },
        { shard: 'y', server: 'root@l:3306/a', address: 'l:3306', logBin: false, retentionSeconds: 86400 },
      ],
    });
    const r = summarizePlan(p, to, e, { requested: 'auto', mode: 'exact', copyRate: 100, planFile: null });
    const retention = r.warnings.filter((w) => /binlog retention/.test(w));
    expect(retention).toHaveLength(1);
    expect(retention[0]).toMatch(
      /ETA 6s at 100 rows\/s exceeds the binlog retention of h:3306 \(3s; shards s0, s1\)/,
    );
    expect(r.warnings.join('\n')).toMatch(/binary log is off on l:3306/);
    const fast = summarizePlan(p, to, e, {
      requested: 'auto',
      mode: 'exact',
      copyRate: 1000,
      planFile: null,
    });
    expect(fast.warnings.filter((w) => /binlog retention/.test(w))).toEqual([]);
  });

  it('a sample’s upper bound decides the retention warning and is shown with the ETA', () => {
    const e = fakeEstimate(p, rows, {
      mode: 'sample',
      confidence: 0.99,
      moved: { rows: 600, low: 500, high: 900 },
    });
    e.sources = [{ shard: 's0', server: 's', address: 'h:1', logBin: true, retentionSeconds: 8 }];
    const r = summarizePlan(p, to, e, { requested: 'sample', mode: 'sample', copyRate: 100, planFile: null });
    expect(r.eta).toEqual({ copyRate: 100, seconds: 6, secondsHigh: 9 });
    expect(r.warnings.join('\n')).toMatch(/ETA 6s \(up to 9s\)/);
    const text = renderPlanReport(r, { tty: false });
    expect(text).toMatch(/ETA 6s \(up to 9s at 99%\) to copy the moving rows at 100 rows\/s/);
    expect(text).toMatch(/rows {3}≈600 \(500–900\) of 800 move/);
  });

  it('NULL and misplaced shard keys become warnings', () => {
    const e = fakeEstimate(p, rows, {
      tables: [
        {
          source: 's0',
          table: 'orders',
          method: 'exact',
          rows: 10,
          nullKeyRows: 2,
          strayRows: 0,
          sampledRows: null,
          dataBytes: 0,
        },
        {
          source: 's1',
          table: 'users',
          method: 'sample',
          rows: 10,
          nullKeyRows: 0,
          strayRows: 40,
          sampledRows: 5,
          dataBytes: 0,
        },
      ],
    });
    const w = summarizePlan(p, to, e, {
      requested: 'auto',
      mode: 'exact',
      copyRate: 100,
      planFile: null,
    }).warnings;
    expect(w[0]).toMatch(/^s0\.orders: 2 row\(s\) have a NULL shard key/);
    expect(w[1]).toMatch(/^s1\.users: ≈40 row\(s\) are not routed to s1 by a\.yaml/);
  });

  it('without an estimate: shares only, and says so', () => {
    const r = summarizePlan(p, to, undefined, {
      requested: 'none',
      mode: 'none',
      copyRate: 50_000,
      planFile: null,
    });
    expect(r.moves.every((m) => m.rows === null && m.bytes === null)).toBe(true);
    expect(r.movement.rows).toBeNull();
    expect(r.eta.seconds).toBeNull();
    expect(r.balance.rows).toBeNull();
    expect(r.notes.join('\n')).toMatch(/no row counts \(--estimate none\)/);
    const text = renderPlanReport(r, { tty: false });
    expect(text).toContain('ETA unknown (no row counts)');
    expect(text).not.toMatch(/^ {2}bytes {2}/m);
    expect(text).toMatch(/^ {2}from {2}to +keys$/m);
  });

  it('is the same for the same inputs (no clock, no randomness)', () => {
    const opts = { requested: 'auto' as const, mode: 'exact' as const, copyRate: 100, planFile: null };
    expect(JSON.stringify(summarizePlan(p, to, fakeEstimate(p, rows), opts))).toBe(
      JSON.stringify(summarizePlan(plan(from, to), to, fakeEstimate(p, rows), opts)),
    );
  });
});

describe('rendering', () => {
  it('bold headings only on a TTY; long lists show their largest entries and how many more', () => {
    const from = topology(names('s', 40), '{ type: consistent-hash, vnodes: 16 }');
    const to = topology(names('s', 48), '{ type: consistent-hash, vnodes: 16 }');
    const p = plan(from, to);
    const r = summarizePlan(p, to, undefined, {
      requested: 'none',
      mode: 'none',
      copyRate: 50_000,
      planFile: null,
    });
    const plain = renderPlanReport(r, { tty: false });
    expect(plain).not.toMatch(/\x1b\[/);
    expect(renderPlanReport(r, { tty: true })).toMatch(/\x1b\[1mMoves/);
    expect(p.movement.movingSegments).toBeGreaterThan(30);
    expect(plain).toMatch(
      new RegExp(`… ${p.movement.movingSegments - 30} more moves \\(largest shown; all in --json\\)`),
    );
    expect(plain).toMatch(/… 38 more \(the 10 most loaded shown; all in --json\)/);
  });

  it('durations read like a person would write them', () => {
    expect([0.4, 59, 61, 3600, 3661, 86400 * 3, 86400 * 3 + 7200].map(fmtDuration)).toEqual([
      '0s',
      '59s',
      '1m 01s',
      '1h 00m',
      '1h 01m',
      '3d',
      '3d 2h',
    ]);
  });
});
