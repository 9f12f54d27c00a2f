import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { q } from '../../../src/db/quote.js';
import { loadPlanContext } from '../../../src/job/context.js';
import { seed } from '../../../src/sandbox/seed.js';
import { parseTopology } from '../../../src/topology/load.js';
import { createDatabases, rootConn, type SandboxName, topologyYaml, uniqueDb } from '../../support/db.js';
import { ROOT, SHOP_GROUPS, SHOP_SCHEMA, SHOP_TABLES, truth } from './helpers.js';

function reshard(args: string[], cwd = ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [join(ROOT, 'bin', 'reshard'), ...args], { cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 70) : 0;
      res({ code, stdout, stderr });
    });
  });
}

describe('reshard plan (CLI)', () => {
  const db = uniqueDb('plan_cli');
  const base = mkdtempSync(join(tmpdir(), 'reshard-plan-cli-'));
  const topoDir = join(base, 'topologies');
  const planDir = join(base, 'plans', 'june');
  const elsewhere = join(base, 'elsewhere');
  const servers: Record<string, SandboxName> = { s0: 's0', s1: 's1' };
  let drop: () => Promise<void>;
  const yaml = (shards: [string, SandboxName][], scheme: string, tables = SHOP_TABLES) =>
    topologyYaml({
      shards: shards.map(([name, server]) => ({ name, server, database: db })),
      tables,
      groups: SHOP_GROUPS,
      scheme,
    });

  beforeAll(async () => {
    for (const d of [topoDir, planDir, elsewhere]) mkdirSync(d, { recursive: true });
    drop = await createDatabases(['s0', 's1'], db);
    const crc = '{ type: hash-mod, hash: crc32 }';
    writeFileSync(
      join(topoDir, 'current.yaml'),
      yaml(
        [
          ['s0', 's0'],
          ['s1', 's1'],
        ],
        crc,
      ),
    );
    writeFileSync(
      join(topoDir, 'target.yaml'),
      yaml(
        [
          ['s0', 's0'],
          ['s1', 's1'],
          ['t2', 't2'],
        ],
        crc,
      ),
    );
    writeFileSync(
      join(topoDir, 'consistent.yaml'),
      yaml(
        [
          ['s0', 's0'],
          ['s1', 's1'],
          ['t2', 't2'],
        ],
        '{ type: consistent-hash, vnodes: 64 }',
      ),
    );
    writeFileSync(
      join(topoDir, 'fewer-tables.yaml'),
      yaml(
        [
          ['s0', 's0'],
          ['t2', 't2'],
        ],
        crc,
        SHOP_TABLES.filter((t) => t.name !== 'coupons'),
      ),
    );
    writeFileSync(
      join(topoDir, 'other-key.yaml'),
      yaml(
        [
          ['s0', 's0'],
          ['t2', 't2'],
        ],
        crc,
        SHOP_TABLES.map((t) => (t.name === 'orders' ? { ...t, shardKey: 'id' } : t)),
      ),
    );
    writeFileSync(
      join(topoDir, 'missing-db.yaml'),
      topologyYaml({
        shards: [{ name: 's0', server: 's0', database: `${db}_absent` }],
        tables: SHOP_TABLES,
        groups: SHOP_GROUPS,
        scheme: crc,
      }),
    );
    await seed({
      topology: parseTopology(readFileSync(join(topoDir, 'current.yaml'), 'utf8'), 'current.yaml'),
      rows: 3000,
      seed: 3,
      schemaSql: SHOP_SCHEMA,
      replace: true,
    });
    // Byte counts come from InnoDB statistics, which the server refreshes in the background after
    // a bulk load: settle them, so two runs see the same server state.
    for (const server of ['s0', 's1'] as const) {
      const c = await rootConn(server, db);
      try {
        await c.query(`ANALYZE TABLE ${SHOP_TABLES.map((t) => q(t.name)).join(', ')}`);
      } finally {
        await c.end();
      }
    }
  });
  afterAll(async () => {
    await drop();
    rmSync(base, { recursive: true, force: true });
  });

  it('writes the plan file, records topology paths relative to it, and loads from any working directory', async () => {
    const out = join(planDir, 'plan.json');
    const r = await reshard([
      'plan',
      '--from',
      join(topoDir, 'current.yaml'),
      '--to',
      join(topoDir, 'target.yaml'),
      '--out',
      out,
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(readFileSync(out, 'utf8'));
    expect(doc.from.file).toBe(join('..', '..', 'topologies', 'current.yaml'));
    expect(doc.to.file).toBe(join('..', '..', 'topologies', 'target.yaml'));
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({
      ok: true,
      plan: { file: out, hash: doc.hash },
      estimate: { mode: 'exact' },
    });
    const t = await truth(
      parseTopology(readFileSync(join(topoDir, 'current.yaml'), 'utf8'), 'a'),
      parseTopology(readFileSync(join(topoDir, 'target.yaml'), 'utf8'), 'b'),
      (s) => servers[s]!,
    );
    for (const m of [...report.moves, ...report.stays])
      expect(m.rows).toBe(t.pairs.get(`${m.from}>${m.to}`) ?? 0);
    // hash-mod 2 → 3: residues mod 6 move s0→t2 and s1→t2, but also s0→s1 and s1→s0
    expect(report.moves.map((m: { from: string; to: string }) => `${m.from}>${m.to}`)).toEqual([
      's0>s1',
      's0>t2',
      's1>s0',
      's1>t2',
    ]);

    const cwd = process.cwd();
    try {
      process.chdir(elsewhere);
      const ctx = loadPlanContext({ planPath: join('..', 'plans', 'june', 'plan.json') });
      expect(ctx.plan.segments.length).toBe(doc.segments.length);
      expect(ctx.from.shards.map((s) => s.name)).toEqual(['s0', 's1']);
      expect(ctx.to.shards.map((s) => s.name)).toEqual(['s0', 's1', 't2']);
      expect(`sha256:${ctx.planHash}`).toBe(doc.hash);
    } finally {
      process.chdir(cwd);
    }
  });

  it('relative paths given from the topology directory still resolve from the plan’s directory', async () => {
    const r = await reshard(
      [
        'plan',
        '--from',
        'current.yaml',
        '--to',
        'target.yaml',
        '--out',
        '../plans/june/rel.json',
        '--estimate',
        'none',
      ],
      topoDir,
    );
    expect(r.code).toBe(0);
    const doc = JSON.parse(readFileSync(join(planDir, 'rel.json'), 'utf8'));
    expect(doc.from.file).toBe(join('..', '..', 'topologies', 'current.yaml'));
    const cwd = process.cwd();
    try {
      process.chdir(tmpdir());
      expect(loadPlanContext({ planPath: join(planDir, 'rel.json') }).to.shards.length).toBe(3);
    } finally {
      process.chdir(cwd);
    }
  });

  it('--json is stable across runs; the human summary is plain text without a TTY', async () => {
    const args = [
      'plan',
      '--from',
      join(topoDir, 'current.yaml'),
      '--to',
      join(topoDir, 'target.yaml'),
      '--json',
    ];
    const [a, b] = [await reshard(args), await reshard(args)];
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const human = await reshard(args.slice(0, -1).concat(['--copy-rate', '2k']));
    expect(human.code).toBe(0);
    expect(human.stdout).not.toMatch(/\x1b\[/);
    for (const s of [
      'Moves (4)',
      'Stays, not copied (2)',
      'Movement',
      'Balance after (3 target shards)',
      'at 2,000 rows/s (--copy-rate)',
    ])
      expect(human.stdout).toContain(s);
    expect(human.stdout).toMatch(
      /keys {3}66\.7% of the key space move; minimum for this change 33\.3% \(2\.00× the minimum\)/,
    );
    expect(human.stdout).toMatch(/binlog retention: 127\.0\.0\.1:\d+ (\d+d|never purged)/);
  });

  it('samples for consistent hashing by default, and refuses --estimate exact for it (exit 2)', async () => {
    const common = [
      'plan',
      '--from',
      join(topoDir, 'current.yaml'),
      '--to',
      join(topoDir, 'consistent.yaml'),
    ];
    const auto = await reshard([...common, '--json', '--sample-rows', '100']);
    expect(auto.code).toBe(0);
    const report = JSON.parse(auto.stdout);
    expect(report.estimate).toMatchObject({ requested: 'auto', mode: 'sample', sampleRows: 100 });
    expect(report.notes.join('\n')).toMatch(/estimate by sampling: .*consistent hashing/);
    const out = join(planDir, 'never.json');
    const exact = await reshard([...common, '--estimate', 'exact', '--out', out]);
    expect(exact.code).toBe(2);
    expect(exact.stderr).toMatch(/E_ESTIMATE_EXACT/);
    expect(existsSync(out)).toBe(false);
  });

  const bad: [string, string[], string][] = [
    ['tables differ', ['--to', 'fewer-tables.yaml'], 'E_PLAN_TABLES_DIFFER'],
    ['a shard key differs', ['--to', 'other-key.yaml'], 'E_PLAN_TABLES_DIFFER'],
    [
      'an empty shard list',
      ['--to', join(ROOT, 'fixtures', 'bad-topologies', '02-empty-shards.yaml')],
      'E_TOPOLOGY_INVALID',
    ],
    [
      'a range gap',
      ['--to', join(ROOT, 'fixtures', 'bad-topologies', '10-range-gap.yaml')],
      'E_TOPOLOGY_INVALID',
    ],
    ['an unknown --estimate', ['--to', 'target.yaml', '--estimate', 'guess'], 'E_USAGE'],
    ['a zero --copy-rate', ['--to', 'target.yaml', '--copy-rate', '0'], 'E_USAGE'],
    ['no --to', [], 'E_USAGE'],
  ];
  it.each(bad)('%s: exit 2, a clear error, nothing written', async (_name, args, code) => {
    const out = join(planDir, `bad-${code}-${args.length}.json`);
    const r = await reshard(['plan', '--from', 'current.yaml', ...args, '--out', out], topoDir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`reshard: error ${code}`);
    expect(r.stderr).toMatch(/fix: /);
    expect(existsSync(out)).toBe(false);
    const json = await reshard(['plan', '--from', 'current.yaml', ...args, '--out', out, '--json'], topoDir);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code } });
    expect(existsSync(out)).toBe(false);
  });

  it('--out in a directory that does not exist: exit 2 before any server is contacted', async () => {
    const out = join(base, 'no', 'such', 'dir', 'plan.json');
    const r = await reshard(['plan', '--from', 'current.yaml', '--to', 'target.yaml', '--out', out], topoDir);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/E_PLAN_OUT/);
    expect(existsSync(join(base, 'no'))).toBe(false);
  });

  it('an unreadable source fails the estimate (exit 3, nothing written); --estimate none plans without servers', async () => {
    const out = join(planDir, 'unreachable.json');
    const args = ['plan', '--from', 'missing-db.yaml', '--to', 'missing-db.yaml', '--out', out];
    const r = await reshard(args, topoDir);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/E_PREFLIGHT/);
    expect(r.stderr).toMatch(/--estimate none/);
    expect(existsSync(out)).toBe(false);
    const none = await reshard([...args, '--estimate', 'none'], topoDir);
    expect(none.code).toBe(0);
    expect(existsSync(out)).toBe(true);
  });

  it('--suggest compares hash-mod and consistent hashing for --shards M (no servers)', async () => {
    const r = await reshard(
      ['plan', '--suggest', '--from', 'current.yaml', '--shards', '4', '--json'],
      topoDir,
    );
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ ok: true, shards: 4, added: ['s2', 's3'], recommended: 'hash-mod' });
    // hash-mod crc32 2 → 4: half the keys move, which is the minimum
    expect(s.candidates[0]).toMatchObject({ id: 'hash-mod', hash: 'crc32', movementExact: true, ratio: 1 });
    expect(s.candidates[0].movement).toBeCloseTo(0.5, 9);
    const human = await reshard(['plan', '--suggest', '--from', 'current.yaml', '--shards', '4'], topoDir);
    expect(human.stdout).toMatch(/^\* hash-mod /m);
    expect(human.stdout).toMatch(/recommended: hash-mod — moves 50\.0% of the key space \(minimum 50\.0%\)/);
    const noShards = await reshard(['plan', '--suggest', '--from', 'current.yaml'], topoDir);
    expect(noShards.code).toBe(2);
    expect(noShards.stderr).toMatch(/--suggest needs --shards/);
  });
});
