/**
 * Plan: the planner on 1024 → 1100 shards × 256 vnodes (consistent hashing), and the router's
 * ownerOf rate on integer keys — in process (best of 3, wall clock), as in
 * test/unit/plan/scripts/bench-plan.ts and bench-router.ts — plus `reshard plan` end to end on the
 * same topologies (parse, plan, serialize, write) when the command exists, for its time and RSS.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { plan } from '../src/plan/planner.js';
import { createRouter } from '../src/plan/router.js';
import { parseTopology } from '../src/topology/load.js';
import { failureNote, log, type ReshardCli } from './harness.js';
import { missing, type Row, row } from './report.js';

const CONSISTENT = '{ type: consistent-hash, vnodes: 256 }';

function topologyText(n: number, scheme: string): string {
  const shards = Array.from(
    { length: n },
    (_, i) => `  - { name: s${i}, host: h${i}, port: 3306, database: d }`,
  );
  return `version: 1\nshards:\n${shards.join('\n')}\ntables:\n  - { name: t, shardKey: id }\nscheme: ${scheme}\n`;
}

function best<T>(runs: number, fn: () => T): { seconds: number; cpuSeconds: number; result: T } {
  let out: { seconds: number; cpuSeconds: number; result: T } | undefined;
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const result = fn();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    if (!out || seconds < out.seconds) out = { seconds, cpuSeconds: (c.user + c.system) / 1e6, result };
  }
  return out!;
}

const KEYS = 2_000_000;

/** ownerOf rate (best of 3, wall clock) and, since the machine may be shared, per CPU-second. */
function routingRate(scheme: string, shards: number): { wall: number; cpu: number } {
  const router = createRouter(parseTopology(topologyText(shards, scheme), `${shards}.yaml`));
  for (let i = 0; i < 200_000; i++) router.ownerOf(i * 7919); // warm up (JIT)
  const r = best(3, () => {
    let sink = 0;
    for (let i = 0; i < KEYS; i++) sink += router.ownerOf(i * 7919).length;
    return sink;
  });
  return { wall: Math.round(KEYS / r.seconds), cpu: Math.round(KEYS / Math.max(r.cpuSeconds, 1e-6)) };
}

function routingRow(metric: string, scheme: string, shards: number, label: string): Row {
  const r = routingRate(scheme, shards);
  return row(
    'plan',
    'reshard',
    metric,
    r.wall,
    KEYS,
    `${label}; ${(r.cpu / 1e6).toFixed(2)}M per CPU-second`,
  );
}

export async function benchPlan(cli: ReshardCli, workDir: string, rows: Row[]): Promise<void> {
  log('plan: 1024 → 1100 shards × 256 vnodes (in process, best of 3)');
  const fromText = topologyText(1024, CONSISTENT);
  const toText = topologyText(1100, CONSISTENT);
  const a = parseTopology(fromText, '1024.yaml');
  const b = parseTopology(toText, '1100.yaml');
  const p = best(3, () => plan(a, b));
  const m = p.result.movement;
  rows.push(
    row(
      'plan',
      'reshard',
      'seconds',
      p.seconds,
      0,
      `planner only, ${p.result.segments.length} segments, moves ${((m.fraction ?? 0) * 100).toFixed(2)}% (minimum ${((m.minimum ?? 0) * 100).toFixed(2)}%); ${p.cpuSeconds.toFixed(2)} s CPU`,
    ),
  );

  log('plan: ownerOf on integer keys');
  rows.push(
    routingRow('keys_per_s', '{ type: hash-mod, hash: crc32 }', 64, 'hash-mod crc32, 64 shards'),
    routingRow(
      'keys_per_s_identity',
      '{ type: hash-mod, hash: identity }',
      64,
      'hash-mod identity, 64 shards',
    ),
    routingRow('keys_per_s_consistent', CONSISTENT, 1100, 'consistent-hash 1100 × 256 vnodes'),
  );

  const why = cli.unavailable('plan', ['--from', '--to', '--out']);
  if (why) {
    rows.push(missing('plan', 'reshard', 'cli_seconds', why));
    return;
  }
  const from = join(workDir, 'plan-1024.yaml');
  const to = join(workDir, 'plan-1100.yaml');
  writeFileSync(from, fromText);
  writeFileSync(to, toText);
  const args = ['plan', '--from', from, '--to', to, '--out', join(workDir, 'plan-1024-1100.json')];
  if (cli.command('plan').help.includes('--estimate')) args.push('--estimate', 'none');
  const r = await cli.run(args, { memoryLabel: 'plan (1024 → 1100)', rows: 0 });
  rows.push(
    r.code === 0
      ? row('plan', 'reshard', 'cli_seconds', r.seconds, 0, '`reshard plan` end to end: parse, plan, write')
      : missing('plan', 'reshard', 'cli_seconds', failureNote('reshard plan', r)),
  );
}
