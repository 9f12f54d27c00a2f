/**
 * Routing test vectors: key → shard for every scheme and hash, plus the raw hashes, so that any
 * other implementation (a proxy, an application's own router, a SQL view) can prove it routes
 * exactly as reshard does. Pure: `routingVectors()` builds everything from the topologies below;
 * fixtures/vectors/routing.json is its output (test/unit/plan/scripts/write-vectors.ts writes it,
 * test/unit/plan/vectors.test.ts checks file, generator and router agree).
 *
 * Keys are written {"int": "<decimal>"} (a bigint; canonical bytes = that text), {"str": "…"}
 * (UTF-8 bytes) or {"hex": "…"} (raw binary).
 */
import { parseTopology } from '../topology/load.js';
import { canonicalKeyBytes, crc32Of, type RouteKey, xxh64Of } from './hash.js';
import { createRouter } from './router.js';

export type VectorKey = { int: string } | { str: string } | { hex: string };

export interface RoutingVectors {
  description: string;
  vectorsVersion: 1;
  hashes: { key: VectorKey; canonicalHex: string; crc32: number; xxh64: Record<string, string> }[];
  cases: {
    name: string;
    /** The topology, as a topology file. */
    topology: string;
    /** Directory entries (canonical string form → shard), for directory schemes. */
    directory?: Record<string, string>;
    routes: { key: VectorKey; shard: string }[];
  }[];
}

const INTS: bigint[] = [
  0n,
  1n,
  -1n,
  2n,
  7n,
  -5n,
  42n,
  100n,
  1000000n,
  2n ** 31n - 1n,
  2n ** 31n,
  -(2n ** 31n),
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  -(2n ** 53n) - 1n,
  2n ** 63n - 1n,
  -(2n ** 63n),
  2n ** 64n - 1n,
  12345678901234567890123n,
];
const STRINGS = ['', 'a', 'A', 'abc', 'MySQL', 'user-1', 'user-2', 'naïve café', 'żółw', '日本語', '🙂', 'Ω'];
const BINARIES = ['00', '00ff10', 'deadbeef', 'c3'];

const SEEDS = [0n, 42n, 0x9e3779b97f4a7c15n];

function encodeKey(k: RouteKey): VectorKey {
  if (typeof k === 'bigint' || typeof k === 'number') return { int: k.toString() };
  if (typeof k === 'string') return { str: k };
  return { hex: k.toString('hex') };
}

export function decodeVectorKey(k: VectorKey): RouteKey {
  if ('int' in k) return BigInt(k.int);
  if ('str' in k) return k.str;
  return Buffer.from(k.hex, 'hex');
}

function shards(names: string[], weights: Record<string, number> = {}): string {
  return names
    .map(
      (n, i) =>
        `  - { name: ${n}, host: 10.0.0.${i + 1}, port: 3306, database: app${weights[n] === undefined ? '' : `, weight: ${weights[n]}`} }`,
    )
    .join('\n');
}

function topologyText(names: string[], scheme: string, weights?: Record<string, number>): string {
  return `version: 1\nname: vectors\nshards:\n${shards(names, weights)}\ntables:\n  - { name: orders, shardKey: customer_id }\nscheme: ${scheme}\n`;
}

const five = ['s0', 's1', 's2', 's3', 's4'];
const allKeys: RouteKey[] = [...INTS, ...STRINGS, ...BINARIES.map((h) => Buffer.from(h, 'hex'))];
const stringKeys: RouteKey[] = [...STRINGS, ...BINARIES.map((h) => Buffer.from(h, 'hex'))];

const CASES: { name: string; topology: string; directory?: Record<string, string>; keys: RouteKey[] }[] = [
  {
    name: 'hash-mod identity, 5 shards',
    topology: topologyText(five, '{ type: hash-mod, hash: identity }'),
    keys: INTS,
  },
  {
    name: 'hash-mod identity, modulus 8 over 3 shards (slots)',
    topology: topologyText(
      ['a', 'b', 'c'],
      '{ type: hash-mod, hash: identity, modulus: 8, slots: [a, b, c, a, b, c, a, b] }',
    ),
    keys: INTS,
  },
  {
    name: 'hash-mod crc32, 7 shards',
    topology: topologyText(['s0', 's1', 's2', 's3', 's4', 's5', 's6'], '{ type: hash-mod, hash: crc32 }'),
    keys: allKeys,
  },
  {
    name: 'hash-mod crc32, modulus 16 over 3 shards (slots)',
    topology: topologyText(
      ['a', 'b', 'c'],
      '{ type: hash-mod, hash: crc32, modulus: 16, slots: [a, a, b, c, a, b, c, c, b, a, c, b, a, b, c, a] }',
    ),
    keys: allKeys,
  },
  {
    name: 'range, integer boundaries beyond 2^53',
    topology: topologyText(
      ['lo', 'mid', 'hi'],
      '\n  type: range\n  ranges:\n    - { shard: lo, to: -5 }\n    - { shard: mid, from: -5, to: 9007199254740993 }\n    - { shard: hi, from: 9007199254740993 }',
    ),
    keys: INTS,
  },
  {
    name: 'range, string boundaries (UTF-8 byte order)',
    topology: topologyText(
      ['r0', 'r1', 'r2', 'r3'],
      '\n  type: range\n  ranges:\n    - { shard: r0, to: "N" }\n    - { shard: r1, from: "N", to: "u" }\n    - { shard: r2, from: "u", to: "ż" }\n    - { shard: r3, from: "ż" }',
    ),
    keys: stringKeys,
  },
  {
    name: 'consistent-hash, 5 shards, 256 vnodes, seed 0',
    topology: topologyText(five, '{ type: consistent-hash, vnodes: 256 }'),
    keys: allKeys,
  },
  {
    name: 'consistent-hash, weighted, 64 vnodes, seed 0x9e3779b97f4a7c15',
    topology: topologyText(
      ['w1', 'w2', 'w3'],
      '{ type: consistent-hash, vnodes: 64, seed: 11400714819323198485 }',
      { w1: 0.5, w3: 2 },
    ),
    keys: allKeys,
  },
  {
    name: 'consistent-hash, 1 vnode each (wrap-around)',
    topology: topologyText(['p', 'q', 'r'], '{ type: consistent-hash, vnodes: 1, seed: 42 }'),
    keys: allKeys,
  },
  {
    name: 'directory with default',
    topology: topologyText(
      ['d0', 'd1', 'd2'],
      '{ type: directory, table: { shard: d0, name: directory, keyColumn: k, shardColumn: shard }, default: d0 }',
    ),
    directory: { '1': 'd1', '-5': 'd2', '12345678901234567890123': 'd1', żółw: 'd2', abc: 'd1', Ω: 'd2' },
    keys: allKeys,
  },
];

export function routingVectors(): RoutingVectors {
  return {
    description:
      'reshard routing vectors: for each topology, the shard each key routes to; and the canonical bytes, CRC32 and xxh64 (per seed) of each key. See src/plan/ring.ts and src/plan/router.ts for the definitions.',
    vectorsVersion: 1,
    hashes: allKeys.map((k) => ({
      key: encodeKey(k),
      canonicalHex: canonicalKeyBytes(k).toString('hex'),
      crc32: crc32Of(k),
      xxh64: Object.fromEntries(SEEDS.map((s) => [s.toString(), xxh64Of(k, s).toString()])),
    })),
    cases: CASES.map((c) => {
      const topo = parseTopology(c.topology, 'vectors.yaml');
      if (c.directory && topo.scheme.type === 'directory')
        topo.scheme.entries = new Map(Object.entries(c.directory));
      const router = createRouter(topo);
      return {
        name: c.name,
        topology: c.topology,
        ...(c.directory ? { directory: c.directory } : {}),
        routes: c.keys.map((k) => ({ key: encodeKey(k), shard: router.ownerOf(k) })),
      };
    }),
  };
}
