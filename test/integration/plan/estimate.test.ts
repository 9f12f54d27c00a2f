import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { q, qt } from '../../../src/db/quote.js';
import { estimatePlan, resolveEstimateMode, summarizePlan } from '../../../src/plan/estimate.js';
import { crc32Of } from '../../../src/plan/hash.js';
import { indexPlan } from '../../../src/plan/plan-index.js';
import { plan } from '../../../src/plan/planner.js';
import { seed } from '../../../src/sandbox/seed.js';
import { parseTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';
import { createDatabases, rootConn, type SandboxName, topologyYaml, uniqueDb } from '../../support/db.js';
import { SHOP_GROUPS, SHOP_SCHEMA, SHOP_TABLES, truth } from './helpers.js';

function topo(
  dir: string,
  file: string,
  shards: { name: string; server: SandboxName; database: string }[],
  scheme: string,
): Topology {
  return parseTopology(
    topologyYaml({ shards, tables: SHOP_TABLES, groups: SHOP_GROUPS, scheme }),
    join(dir, file),
  );
}

describe('estimate exact: the seeded 2-source shop fixture (hash-mod crc32)', () => {
  const db = uniqueDb('plan_exact');
  const dir = mkdtempSync(join(tmpdir(), 'reshard-plan-exact-'));
  const servers: Record<string, SandboxName> = { s0: 's0', s1: 's1' };
  let drop: () => Promise<void>;
  let from: Topology;
  let seeded = 0;

  beforeAll(async () => {
    drop = await createDatabases(['s0', 's1'], db);
    from = topo(
      dir,
      'from.yaml',
      [
        { name: 's0', server: 's0', database: db },
        { name: 's1', server: 's1', database: db },
      ],
      '{ type: hash-mod, hash: crc32 }',
    );
    // seed() spreads about 20,000 rows over the tables; r.rows is the exact total.
    seeded = (await seed({ topology: from, rows: 20_000, seed: 5, schemaSql: SHOP_SCHEMA, replace: true }))
      .rows;
    // Directory for one of the targets: keys 1..400 listed, every third on the default.
    const csv = Array.from({ length: 400 }, (_, i) => `${i + 1},${['t0', 't1', 't2'][i % 3]}`).join('\n');
    writeFileSync(join(dir, 'dir.csv'), `${csv}\n`);
  });
  afterAll(async () => {
    await drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const three = () => [
    { name: 't0', server: 't0' as const, database: db },
    { name: 't1', server: 't1' as const, database: db },
    { name: 't2', server: 't2' as const, database: db },
  ];
  const cases: [string, () => Topology][] = [
    [
      'hash-mod crc32 to three new shards (residues mod 6)',
      () => topo(dir, 'a.yaml', three(), '{ type: hash-mod, hash: crc32 }'),
    ],
    [
      'hash-mod crc32 in place: s0, s1 stay, t2 is added (stays and moves)',
      () =>
        topo(
          dir,
          'b.yaml',
          [
            { name: 's0', server: 's0', database: db },
            { name: 's1', server: 's1', database: db },
            { name: 't2', server: 't2', database: db },
          ],
          '{ type: hash-mod, hash: crc32 }',
        ),
    ],
    [
      'hash-mod identity (a change of hash: both residues in SQL)',
      () => topo(dir, 'c.yaml', three(), '{ type: hash-mod, hash: identity }'),
    ],
    [
      'range (CASE over each shard’s intervals)',
      () =>
        topo(
          dir,
          'd.yaml',
          three(),
          '\n  type: range\n  ranges:\n    - { shard: t0, to: 700 }\n    - { shard: t1, from: 700, to: 1500 }\n    - { shard: t2, from: 1500 }',
        ),
    ],
    [
      'directory with a default (CASE over listed keys)',
      () => topo(dir, 'e.yaml', three(), '{ type: directory, file: dir.csv, default: t0 }'),
    ],
  ];

  it.each(cases)('%s: per-move row counts equal the rows that actually move', async (_name, target) => {
    const to = target();
    const p = plan(from, to);
    expect(resolveEstimateMode('auto', from, to).mode).toBe('exact');
    const e = await estimatePlan({ plan: p, from, to, mode: 'exact' });
    const t = await truth(from, to, (s) => servers[s]!);
    expect(t.misplaced).toBe(0);
    const got = Object.fromEntries(p.segments.map((s) => [`${s.from}>${s.to}`, e.segments[s.id]!]));
    for (const [pair, rows] of t.pairs) {
      expect(got[pair], `${pair} is a segment of the plan`).toBeDefined();
      expect({ pair, rows: got[pair]!.rows, low: got[pair]!.low, high: got[pair]!.high }).toEqual({
        pair,
        rows,
        low: rows,
        high: rows,
      });
    }
    for (const [pair, g] of Object.entries(got))
      if (!t.pairs.has(pair)) expect({ pair, rows: g.rows }).toEqual({ pair, rows: 0 });
    expect(e.confidence).toBe(1);
    expect(e.tables.every((x) => x.method === 'exact' && x.nullKeyRows === 0 && x.strayRows === 0)).toBe(
      true,
    );
    expect(e.tables.reduce((n, x) => n + x.rows, 0)).toBe(seeded);
    const moved = [...t.pairs]
      .filter(([k]) => k.split('>')[0] !== k.split('>')[1])
      .reduce((n, [, v]) => n + v, 0);
    expect(e.moved).toEqual({ rows: moved, low: moved, high: moved });
    expect(e.sources.map((s) => s.shard)).toEqual(['s0', 's1']);
    expect(e.sources.every((s) => s.logBin === true && s.retentionSeconds !== null)).toBe(true);
    const report = summarizePlan(p, to, e, {
      requested: 'auto',
      mode: 'exact',
      copyRate: 1000,
      planFile: null,
    });
    expect(report.movement.rows).toMatchObject({ moved, total: seeded });
    expect(report.eta.seconds).toBeCloseTo(moved / 1000, 9);
    expect(report.warnings).toEqual([]);
  });

  it('copy’s per-segment SQL predicates select the same rows the estimate counted', async () => {
    const to = cases[3]![1]();
    const p = plan(from, to);
    const e = await estimatePlan({ plan: p, from, to, mode: 'exact', skipPreflight: true });
    const index = indexPlan(p, from, to);
    for (const shard of from.shards) {
      const c = await rootConn(shard.name as SandboxName);
      try {
        for (const s of p.segments.filter((x) => x.from === shard.name)) {
          let n = 0;
          for (const t of from.tables) {
            const pred = index.sqlPredicate(s, q(t.shardKey))!;
            const [r] = await c.query({
              sql: `SELECT COUNT(*) FROM ${qt(db, t.name)} WHERE ${pred}`,
              rowsAsArray: true,
            });
            n += Number((r as unknown[][])[0]![0]);
          }
          expect({ segment: `${s.from}>${s.to}`, rows: n }).toEqual({
            segment: `${s.from}>${s.to}`,
            rows: e.segments[s.id]!.rows,
          });
        }
      } finally {
        await c.end();
      }
    }
  });

  it('reports rows with a NULL or misplaced shard key instead of counting them as moving', async () => {
    const to = cases[0]![1]();
    const c = await rootConn('s0', db);
    try {
      // A user_id that crc32 routes to s1, put on s0; and a nullable shard key set to NULL.
      let misplaced = 1;
      while (crc32Of(misplaced) % 2 !== 1) misplaced++;
      await c.query(`ALTER TABLE coupons MODIFY user_id BIGINT UNSIGNED NULL`);
      await c.query(
        `INSERT INTO coupons (code, user_id, discount) VALUES ('zz-misplaced', ${misplaced}, 1), ('zz-null', NULL, 1)`,
      );
      const p = plan(from, to);
      const e = await estimatePlan({ plan: p, from, to, mode: 'exact', skipPreflight: true });
      const coupons = e.tables.find((x) => x.source === 's0' && x.table === 'coupons')!;
      expect(coupons).toMatchObject({ nullKeyRows: 1, strayRows: 1 });
      const report = summarizePlan(p, to, e, {
        requested: 'exact',
        mode: 'exact',
        copyRate: 50_000,
        planFile: null,
      });
      expect(report.warnings.join('\n')).toMatch(/s0\.coupons: 1 row\(s\) have a NULL shard key/);
      expect(report.warnings.join('\n')).toMatch(/s0\.coupons: 1 row\(s\) are not routed to s0/);
    } finally {
      await c.query(`DELETE FROM coupons WHERE code IN ('zz-misplaced', 'zz-null')`);
      await c.query(`ALTER TABLE coupons MODIFY user_id BIGINT UNSIGNED NOT NULL`);
      await c.end();
    }
  });
});

describe('estimate sample: consistent hash 4 → 6 (fixture-like: two shards per server)', () => {
  const dbA = uniqueDb('plan_ch_a');
  const dbB = uniqueDb('plan_ch_b');
  const dir = mkdtempSync(join(tmpdir(), 'reshard-plan-sample-'));
  const servers: Record<string, SandboxName> = { s0: 's0', s1: 's0', s2: 's1', s3: 's1', s4: 't0', s5: 't0' };
  const shards = [
    { name: 's0', server: 's0' as const, database: dbA },
    { name: 's1', server: 's0' as const, database: dbB },
    { name: 's2', server: 's1' as const, database: dbA },
    { name: 's3', server: 's1' as const, database: dbB },
  ];
  const ch = '{ type: consistent-hash, hash: xxhash64, vnodes: 256 }';
  let dropA: () => Promise<void>;
  let dropB: () => Promise<void>;
  let from: Topology;
  let to: Topology;
  let seeded = 0;

  beforeAll(async () => {
    dropA = await createDatabases(['s0', 's1'], dbA);
    dropB = await createDatabases(['s0', 's1'], dbB);
    from = topo(dir, 'from.yaml', shards, ch);
    to = topo(
      dir,
      'to.yaml',
      [...shards, { name: 's4', server: 't0', database: dbA }, { name: 's5', server: 't0', database: dbB }],
      ch,
    );
    seeded = (await seed({ topology: from, rows: 40_000, seed: 9, schemaSql: SHOP_SCHEMA, replace: true }))
      .rows;
  });
  afterAll(async () => {
    await dropA();
    await dropB();
    rmSync(dir, { recursive: true, force: true });
  });

  it('auto samples (no xxhash64 in SQL); exact is refused as a usage error', () => {
    const r = resolveEstimateMode('auto', from, to);
    expect(r.mode).toBe('sample');
    expect(r.note).toMatch(/consistent hashing/);
    expect(() => resolveEstimateMode('exact', from, to)).toThrow(
      expect.objectContaining({ code: 'E_ESTIMATE_EXACT' }),
    );
  });

  it('every segment’s true row count lies within its stated interval, and so does the moved total', async () => {
    const p = plan(from, to);
    const e = await estimatePlan({ plan: p, from, to, mode: 'sample', sampleRows: 500 });
    const t = await truth(from, to, (s) => servers[s]!);
    expect(t.misplaced).toBe(0);
    expect(e.confidence).toBe(0.99);
    const methods = new Set(e.tables.map((x) => x.method));
    expect(methods).toEqual(new Set(['sample', 'census']));
    // Row counts are exact whatever the method; the sample is a small part of each sampled table.
    expect(e.tables.reduce((n, x) => n + x.rows, 0)).toBe(seeded);
    for (const x of e.tables.filter((y) => y.method === 'sample'))
      expect(x.sampledRows!).toBeLessThan(x.rows / 2);
    const lines: string[] = [];
    let inside = 0;
    for (const s of p.segments) {
      const want = t.pairs.get(`${s.from}>${s.to}`) ?? 0;
      const g = e.segments[s.id]!;
      lines.push(`${s.from}>${s.to}: truth ${want}, estimate ${g.rows} [${g.low}, ${g.high}]`);
      if (g.low <= want && want <= g.high) inside++;
    }
    expect(inside, lines.join('\n')).toBe(p.segments.length);
    const moved = [...t.pairs]
      .filter(([k]) => k.split('>')[0] !== k.split('>')[1])
      .reduce((n, [, v]) => n + v, 0);
    expect(e.moved.low).toBeLessThanOrEqual(moved);
    expect(e.moved.high).toBeGreaterThanOrEqual(moved);
    expect(e.moved.high - e.moved.low).toBeLessThan(moved / 4);
    const report = summarizePlan(p, to, e, {
      requested: 'auto',
      mode: 'sample',
      copyRate: 50_000,
      planFile: null,
    });
    expect(report.movement.rows!.low).toBe(e.moved.low);
    expect(report.estimate.method).toMatch(/^sample: up to 500 rows per table per source/);
  });

  it('tables no larger than twice --sample-rows are read in full, so the counts are exact', async () => {
    const p = plan(from, to);
    const e = await estimatePlan({
      plan: p,
      from,
      to,
      mode: 'sample',
      sampleRows: 100_000,
      skipPreflight: true,
    });
    const t = await truth(from, to, (s) => servers[s]!);
    expect(e.confidence).toBe(1);
    expect(e.tables.every((x) => x.method === 'census')).toBe(true);
    for (const s of p.segments) {
      const want = t.pairs.get(`${s.from}>${s.to}`) ?? 0;
      expect(e.segments[s.id]).toMatchObject({ rows: want, low: want, high: want });
    }
  });
});
