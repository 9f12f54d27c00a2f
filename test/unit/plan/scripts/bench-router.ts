/**
 * Router throughput (not a test): `npx tsx test/unit/plan/scripts/bench-router.ts`.
 * Prints keys routed per CPU-second (and per wall-second, which a loaded machine deflates).
 */
import { crc32 } from 'node:zlib';
import { createRouter } from '../../../../src/plan/router.js';
import { parseTopology } from '../../../../src/topology/load.js';

function topo(n: number, scheme: string): string {
  const shards = Array.from(
    { length: n },
    (_, i) => `  - { name: s${i}, host: h${i}, port: 3306, database: d }`,
  ).join('\n');
  return `version: 1\nshards:\n${shards}\ntables:\n  - { name: t, shardKey: id }\nscheme: ${scheme}\n`;
}

function rate(label: string, n: number, fn: (i: number) => unknown): void {
  for (let i = 0; i < 200_000; i++) fn(i); // warm up
  let sink = 0;
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) sink += fn(i) === undefined ? 0 : 1;
  const c = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = (c.user + c.system) / 1e6;
  const m = (x: number) => (n / x / 1e6).toFixed(2).padStart(7);
  console.log(
    `${label.padEnd(46)} ${m(cpu)} M keys/s per CPU-second (${m(wall)} wall)${sink < 0 ? '!' : ''}`,
  );
}

const N = 5_000_000;
const idr = createRouter(parseTopology(topo(64, '{ type: hash-mod, hash: identity }'), 'b.yaml'));
const crr = createRouter(parseTopology(topo(64, '{ type: hash-mod, hash: crc32 }'), 'b.yaml'));
const chr = createRouter(parseTopology(topo(1100, '{ type: consistent-hash, vnodes: 256 }'), 'b.yaml'));
const ranges = Array.from(
  { length: 64 },
  (_, i) =>
    `    - { shard: s${i}${i === 0 ? '' : `, from: ${i * 1_000_000}`}${i === 63 ? '' : `, to: ${(i + 1) * 1_000_000}`} }`,
).join('\n');
const rgr = createRouter(parseTopology(topo(64, `\n  type: range\n  ranges:\n${ranges}`), 'b.yaml'));
const big = 1n << 60n;
rate('hash-mod identity, number', N, (i) => idr.ownerOf(i * 7919));
rate('hash-mod identity, ownerIndexOf(number)', N, (i) => idr.ownerIndexOf(i * 7919));
rate('hash-mod identity, bigint', N, (i) => idr.ownerOf(BigInt(i)));
rate('hash-mod crc32, number', N, (i) => crr.ownerOf(i * 7919));
rate('hash-mod crc32, ownerIndexOf(number)', N, (i) => crr.ownerIndexOf(i * 7919));
rate('hash-mod crc32, bigint > 2^53', N, (i) => crr.ownerOf(big + BigInt(i)));
rate('hash-mod crc32, string', N, (i) => crr.ownerOf(`user-${i}`));
rate('(zlib.crc32(String(k)) alone, for reference)', N, (i) => crc32(String(i * 7919)));
rate('consistent-hash 1100×256, number', N, (i) => chr.ownerOf(i * 7919));
rate('consistent-hash 1100×256, string', N, (i) => chr.ownerOf(`user-${i}`));
rate('range 64, number', N, (i) => rgr.ownerOf(i * 13));
