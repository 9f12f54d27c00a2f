/**
 * Planner timing (not a test): `npx tsx test/unit/plan/scripts/bench-plan.ts`.
 * Plans 1024 → 1100 shards with consistent hashing, 256 vnodes each, and a few other pairs.
 */

import { planHash, serializePlan } from '../../../../src/plan/planfile.js';
import { plan } from '../../../../src/plan/planner.js';
import { parseTopology } from '../../../../src/topology/load.js';

function topo(n: number, scheme: string): ReturnType<typeof parseTopology> {
  const shards = Array.from(
    { length: n },
    (_, i) => `  - { name: s${i}, host: h${i}, port: 3306, database: d }`,
  ).join('\n');
  return parseTopology(
    `version: 1\nshards:\n${shards}\ntables:\n  - { name: t, shardKey: id }\nscheme: ${scheme}\n`,
    `${n}.yaml`,
  );
}

function time(label: string, fn: () => unknown): unknown {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const r = fn();
  const c = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(
    `${label.padEnd(52)} ${((c.user + c.system) / 1000).toFixed(0).padStart(6)} ms CPU (${wall.toFixed(0)} ms wall)`,
  );
  return r;
}

const ch = '{ type: consistent-hash, vnodes: 256 }';
const a = time('parse 1024-shard topology', () => topo(1024, ch)) as ReturnType<typeof topo>;
const b = time('parse 1100-shard topology', () => topo(1100, ch)) as ReturnType<typeof topo>;
for (let run = 0; run < 3; run++) {
  const p = time(`plan consistent-hash 1024 → 1100 × 256 vnodes (run ${run + 1})`, () =>
    plan(a, b),
  ) as ReturnType<typeof plan>;
  if (run === 2) {
    console.log(
      `  segments ${p.segments.length}, moving ${p.movement.movingSegments} (${p.movement.movingPieces} arcs), moved ${p.movement.fraction?.toFixed(6)} vs minimum ${p.movement.minimum?.toFixed(6)}, ideal 76/1100 = ${(76 / 1100).toFixed(6)}`,
    );
    const text = time('  serialize + hash', () => serializePlan(p)) as string;
    console.log(`  plan file ${(text.length / 1e6).toFixed(1)} MB`);
    time('  planHash', () => planHash(p));
  }
}
const hm = '{ type: hash-mod, hash: crc32 }';
time('plan hash-mod crc32 1024 → 1100 (lcm 281600)', () => plan(topo(1024, hm), topo(1100, hm)));
time('plan hash-mod crc32 1024 → 2048', () => plan(topo(1024, hm), topo(2048, hm)));
time('plan hash-mod crc32 64 → consistent 96 (product)', () => plan(topo(64, hm), topo(96, ch)));
