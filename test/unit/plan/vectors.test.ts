import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { xxh64 } from '@node-rs/xxhash';
import { describe, expect, it } from 'vitest';
import { createRouter } from '../../../src/plan/router.js';
import { decodeVectorKey, type RoutingVectors, routingVectors } from '../../../src/plan/vectors.js';
import { parseTopology } from '../../../src/topology/load.js';

const file = JSON.parse(
  readFileSync(new URL('../../../fixtures/vectors/routing.json', import.meta.url), 'utf8'),
) as RoutingVectors;

describe('routing vectors (fixtures/vectors/routing.json)', () => {
  it('are what the generator produces (regenerate deliberately with test/unit/plan/scripts/write-vectors.ts)', () => {
    expect(routingVectors()).toEqual(file);
  });

  it('cover every scheme, negative and > 2^53 integers, non-ASCII strings and binary keys', () => {
    const text = JSON.stringify(file);
    for (const s of [
      'hash-mod, hash: identity',
      'hash-mod, hash: crc32',
      'type: range',
      'consistent-hash',
      'directory',
    ])
      expect(text).toContain(s);
    const keys = file.hashes.map((h) => h.key);
    expect(keys).toContainEqual({ int: '-1' });
    expect(keys).toContainEqual({ int: '9007199254740993' });
    expect(keys).toContainEqual({ str: 'żółw' });
    expect(keys.some((k) => 'hex' in k)).toBe(true);
  });

  it('route as the router does', () => {
    for (const c of file.cases) {
      const topo = parseTopology(c.topology, `${c.name}.yaml`);
      if (c.directory && topo.scheme.type === 'directory')
        topo.scheme.entries = new Map(Object.entries(c.directory));
      const router = createRouter(topo);
      const got = c.routes.map((r) => ({ key: r.key, shard: router.ownerOf(decodeVectorKey(r.key)) }));
      expect(got, c.name).toEqual(c.routes);
      // Every shard of a case owns at least one vector, so a swapped owner cannot go unnoticed.
      if (!c.name.includes('slots') && !c.name.includes('range')) {
        expect(new Set(c.routes.map((r) => r.shard)).size, c.name).toBe(topo.shards.length);
      }
    }
  });

  it('record hashes equal to zlib.crc32 and the reference xxh64', () => {
    for (const h of file.hashes) {
      const bytes = Buffer.from(h.canonicalHex, 'hex');
      expect(h.crc32).toBe(crc32(bytes));
      for (const [seed, v] of Object.entries(h.xxh64)) expect(v).toBe(xxh64(bytes, BigInt(seed)).toString());
    }
  });
});
