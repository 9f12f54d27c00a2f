/**
 * The routing document: round trips through its stored text for every scheme, routes exactly
 * like createRouter on the topology it was made from, applies a segment canary and split
 * reads/writes, and refuses a document of another format.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRouter } from '../../../src/plan/router.js';
import {
  createRoutingRouter,
  parseRouting,
  type RoutingDocument,
  routingFromTopology,
  routingHash,
  routingTopologyOf,
  serializeRouting,
} from '../../../src/status/routing.js';
import type { Topology } from '../../../src/topology/types.js';
import { directoryTopology, names, rangeScheme, topology } from '../plan/helpers.js';

const TOPOLOGIES: [string, () => Topology][] = [
  ['hash-mod crc32', () => topology(names('s', 3), '{ type: hash-mod, hash: crc32 }')],
  ['hash-mod identity', () => topology(names('s', 4), '{ type: hash-mod, hash: identity }')],
  [
    'consistent-hash',
    () =>
      topology(
        [{ name: 'a' }, { name: 'b', weight: 2 }, 'c'],
        '{ type: consistent-hash, vnodes: 64, seed: 18446744073709551615 }',
      ),
  ],
  [
    'range int beyond 2^53',
    () =>
      topology(
        ['a', 'b', 'c'],
        rangeScheme([
          { shard: 'a', to: 9007199254740993n },
          { shard: 'b', from: 9007199254740993n, to: 2n ** 62n },
          { shard: 'c', from: 2n ** 62n },
        ]),
      ),
  ],
  [
    'range string',
    () =>
      topology(
        ['a', 'b'],
        rangeScheme([
          { shard: 'a', to: 'm' },
          { shard: 'b', from: 'm' },
        ]),
      ),
  ],
  ['directory', () => directoryTopology(['a', 'b'], { '1': 'a', x: 'b', '42': 'b' }, 'a')],
];

const keyArb = fc.oneof(
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.integer({ min: 0, max: 1000 }).map(BigInt),
  fc.string({ maxLength: 12 }),
);

describe('routing document', () => {
  for (const [label, make] of TOPOLOGIES) {
    it(`${label}: survives its stored text and routes like createRouter`, () => {
      const topo = make();
      const doc = routingFromTopology(topo, 'job-1');
      const text = serializeRouting(doc);
      const back = parseRouting(text);
      expect(back).toEqual(doc);
      expect(serializeRouting(back)).toBe(text);
      expect(routingHash(back)).toMatch(/^[0-9a-f]{64}$/);
      expect(routingHash(back)).toBe(routingHash(doc));
      const direct = createRouter(topo);
      const viaDoc = createRoutingRouter(back);
      const intOnly = topo.scheme.type === 'hash-mod' && topo.scheme.hash === 'identity';
      const intRange = topo.scheme.type === 'range' && topo.scheme.keyType === 'int';
      const strRange = topo.scheme.type === 'range' && topo.scheme.keyType === 'string';
      fc.assert(
        fc.property(keyArb, (k) => {
          if ((intOnly || intRange) && typeof k === 'string') return;
          if (strRange && typeof k !== 'string') return;
          expect(viaDoc.ownerOf(k)).toBe(direct.ownerOf(k));
          expect(viaDoc.readOwnerOf(k)).toBe(direct.ownerOf(k));
        }),
        { numRuns: 300 },
      );
    });
  }

  it('holds no credentials: endpoints are host, port, database (and socket)', () => {
    const t = topology(['a'], '{ type: hash-mod, hash: crc32 }');
    t.shards[0]!.endpoint.password = { env: 'SECRET_PW' };
    t.shards[0]!.endpoint.user = 'app';
    const text = serializeRouting(routingFromTopology(t));
    expect(text).not.toContain('SECRET_PW');
    expect(text).not.toContain('"user"');
    expect(createRoutingRouter(parseRouting(text)).endpointOf('a')).toEqual({
      name: 'a',
      host: 'a.db',
      port: 3306,
      database: 'app',
      weight: 1,
    });
  });

  it('a segment canary moves only the flipped (from, to) pairs; reads may differ from writes', () => {
    const from = topology(['s0', 's1'], '{ type: hash-mod, hash: crc32 }');
    const to = topology(['t0', 't1', 't2'], '{ type: hash-mod, hash: crc32 }');
    const rf = createRouter(from);
    const rt = createRouter(to);
    const doc: RoutingDocument = {
      format: 1,
      job: 'j',
      writes: {
        topology: routingTopologyOf(from),
        canary: { next: routingTopologyOf(to), flipped: [{ from: 's0', to: 't1' }] },
      },
      reads: { topology: routingTopologyOf(to) },
    };
    const r = createRoutingRouter(parseRouting(serializeRouting(doc)));
    let flipped = 0;
    for (let k = 0n; k < 2000n; k++) {
      const a = rf.ownerOf(k);
      const b = rt.ownerOf(k);
      const expected = a === 's0' && b === 't1' ? b : a;
      if (expected === b) flipped++;
      expect(r.ownerOf(k)).toBe(expected);
      expect(r.readOwnerOf(k)).toBe(b);
    }
    expect(flipped).toBeGreaterThan(100);
    expect(r.shards).toEqual(['s0', 's1', 't0', 't1', 't2']);
  });

  it('refuses a document of another format, and malformed ones, with stable codes', () => {
    const doc = routingFromTopology(topology(['a'], '{ type: hash-mod, hash: crc32 }'));
    expect(() => parseRouting(serializeRouting({ ...doc, format: 2 as 1 }))).toThrow(
      expect.objectContaining({ code: 'E_ROUTING_FORMAT' }),
    );
    expect(() => parseRouting('{')).toThrow(expect.objectContaining({ code: 'E_ROUTING_INVALID' }));
    const bad = JSON.parse(serializeRouting(doc)) as { writes: { topology: { scheme: { slots: unknown } } } };
    bad.writes.topology.scheme.slots = 'a';
    expect(() => parseRouting(JSON.stringify(bad))).toThrow(
      expect.objectContaining({ code: 'E_ROUTING_INVALID' }),
    );
  });
});
