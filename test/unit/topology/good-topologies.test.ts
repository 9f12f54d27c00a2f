/**
 * The sandbox topologies load, list every table of the shop schema with an existing shard-key
 * column, and normalize with the documented defaults; topologyHash is stable and covers what
 * routing depends on, and nothing else.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/errors.js';
import { loadTopology, parseTopology, topologyHash } from '../../../src/topology/load.js';

const DIR = 'fixtures/topologies';
const files = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

/** Table name → column names, from the CREATE TABLE statements of the shop schema. */
function shopTables(): Map<string, string[]> {
  const sql = readFileSync('fixtures/shop/schema.sql', 'utf8');
  const tables = new Map<string, string[]>();
  for (const m of sql.matchAll(/CREATE TABLE (`(?:[^`]|``)+`|\w+) \(([\s\S]*?)\n\)/g)) {
    const name = m[1]!.replace(/^`|`$/g, '').replace(/``/g, '`');
    const columns = [...m[2]!.matchAll(/^\s+(`(?:[^`]|``)+`|\w+)\s+(?!KEY\b)/gm)]
      .map((c) => c[1]!.replace(/^`|`$/g, '').replace(/``/g, '`'))
      .filter((c) => !['PRIMARY', 'KEY', 'UNIQUE', 'INDEX', 'CONSTRAINT'].includes(c));
    tables.set(name, columns);
  }
  return tables;
}

const base = readFileSync(join(DIR, 'shop-2-hashmod.yaml'), 'utf8');

describe('sandbox topologies', () => {
  it('includes the expected files', () => {
    expect(files).toEqual([
      'example-production.yaml',
      'shop-2-hashmod.yaml',
      'shop-2-range.yaml',
      'shop-3-hashmod.yaml',
      'shop-3-range.yaml',
      'shop-4-consistent.yaml',
      'shop-6-consistent.yaml',
    ]);
  });

  it('the shop schema parses into the tables the topologies list', () => {
    const tables = shopTables();
    expect([...tables.keys()].sort()).toEqual([
      'coupons',
      'group',
      'order_items',
      'orders',
      'type_corpus',
      'users',
    ]);
    expect(tables.get('group')).toContain('we`ird');
  });

  it.each(files)('%s loads, lists every shop table with an existing shard-key column', (f) => {
    const topo = loadTopology(join(DIR, f));
    const tables = shopTables();
    expect(topo.tables.map((t) => t.name).sort()).toEqual([...tables.keys()].sort());
    for (const t of topo.tables) expect(tables.get(t.name), `${t.name}.${t.shardKey}`).toContain(t.shardKey);
    expect(topo.groups.find((g) => g.name === 'user')?.tables.map((t) => t.name)).toEqual([
      'users',
      'orders',
      'order_items',
    ]);
    // Every table is in exactly one group.
    expect(topo.groups.flatMap((g) => g.tables.map((t) => t.name)).sort()).toEqual([...tables.keys()].sort());
  });

  it('sandbox shards are distinct loopback server+database pairs on the planned ports', () => {
    const ports = new Set<number>();
    for (const f of files.filter((x) => x.startsWith('shop-'))) {
      const topo = loadTopology(join(DIR, f));
      for (const s of topo.shards) {
        expect(s.endpoint).toMatchObject({ host: '127.0.0.1', user: 'root' });
        expect(s.endpoint.password).toBeUndefined();
        ports.add(s.endpoint.port);
      }
    }
    expect([...ports].sort()).toEqual([34401, 34402, 34403, 34404, 34405]);
  });

  it('shop-2-hashmod: slots default to shard order, modulus to the shard count', () => {
    const topo = loadTopology(join(DIR, 'shop-2-hashmod.yaml'));
    expect(topo.scheme).toEqual({ type: 'hash-mod', hash: 'crc32', modulus: 2, slots: ['s0', 's1'] });
    expect(topo.shards.map((s) => [s.name, s.endpoint.port, s.endpoint.database, s.weight])).toEqual([
      ['s0', 34401, 'shop', 1],
      ['s1', 34402, 'shop', 1],
    ]);
    expect(topo.name).toBe('shop-2-hashmod');
  });

  it('shop-3-range: bigint boundaries, unbounded ends', () => {
    const topo = loadTopology(join(DIR, 'shop-3-range.yaml'));
    expect(topo.scheme).toEqual({
      type: 'range',
      keyType: 'int',
      ranges: [
        { shard: 't0', from: null, to: 500000n },
        { shard: 't1', from: 500000n, to: 1000000n },
        { shard: 't2', from: 1000000n, to: null },
      ],
    });
  });

  it('consistent-hash fixtures: 256 vnodes, seed 0, distinct databases on shared servers', () => {
    for (const [f, n] of [
      ['shop-4-consistent.yaml', 4],
      ['shop-6-consistent.yaml', 6],
    ] as const) {
      const topo = loadTopology(join(DIR, f));
      expect(topo.scheme).toEqual({ type: 'consistent-hash', hash: 'xxhash64', vnodes: 256, seed: 0n });
      expect(topo.shards).toHaveLength(n);
      expect(new Set(topo.shards.map((s) => s.endpoint.database))).toEqual(new Set(['shop_a', 'shop_b']));
    }
  });

  it('example-production: DSN split into an endpoint, secret references kept, TLS verifies identity', () => {
    const topo = loadTopology(join(DIR, 'example-production.yaml'));
    const [p0, p1] = topo.shards;
    expect(p0?.endpoint).toEqual({
      host: 'db-shop-0.prod.example.com',
      port: 3306,
      database: 'shop',
      user: 'reshard',
      password: { env: 'RESHARD_SHOP_PASSWORD' },
      tls: {
        ca: '/etc/reshard/tls/ca.pem',
        cert: '/etc/reshard/tls/client.pem',
        key: '/etc/reshard/tls/client-key.pem',
        verifyIdentity: true,
      },
    });
    expect(p1?.endpoint.password).toEqual({ file: '/run/secrets/reshard-shop-password' });
    expect(topo.scheme).toEqual({
      type: 'hash-mod',
      hash: 'crc32',
      modulus: 4,
      slots: ['p0', 'p1', 'p0', 'p1'],
    });
  });
});

describe('normalization defaults', () => {
  const minimal = (scheme: string, shardExtra = '') => `version: 1
shards:
  - { name: a, host: db1, database: shop${shardExtra} }
  - { name: b, host: db2, database: shop }
tables: [{ name: users, shardKey: id }]
scheme: ${scheme}
`;

  it('port 3306, user root, weight 1, no TLS, name = file, ungrouped table = group of one', () => {
    const topo = parseTopology(minimal('{ type: hash-mod, hash: identity }'), 'min.yaml');
    expect(topo.shards[0]).toEqual({
      name: 'a',
      endpoint: { host: 'db1', port: 3306, database: 'shop', user: 'root' },
      weight: 1,
    });
    expect(topo.name).toBe('min.yaml');
    expect(topo.groups).toEqual([{ name: 'users', tables: [{ name: 'users', shardKey: 'id' }] }]);
    expect(topo.scheme).toEqual({ type: 'hash-mod', hash: 'identity', modulus: 2, slots: ['a', 'b'] });
  });

  it('vnodes 256, seed 0; integer weights arrive as numbers', () => {
    const topo = parseTopology(minimal('{ type: consistent-hash }', ', weight: 2'), 'min.yaml');
    expect(topo.scheme).toEqual({ type: 'consistent-hash', hash: 'xxhash64', vnodes: 256, seed: 0n });
    expect(topo.shards.map((s) => s.weight)).toEqual([2, 1]);
  });

  it('seed keeps all 64 bits', () => {
    const topo = parseTopology(minimal('{ type: consistent-hash, seed: 18446744073709551615 }'), 'min.yaml');
    expect(topo.scheme).toMatchObject({ seed: 18446744073709551615n });
  });

  it('tls verifyIdentity defaults to true and can be turned off', () => {
    const on = parseTopology(minimal('{ type: hash-mod, hash: crc32 }', ', tls: { ca: ca.pem }'), 'min.yaml');
    expect(on.shards[0]?.endpoint.tls).toEqual({ ca: 'ca.pem', verifyIdentity: true });
    const off = parseTopology(
      minimal('{ type: hash-mod, hash: crc32 }', ', tls: { verifyIdentity: false }'),
      'min.yaml',
    );
    expect(off.shards[0]?.endpoint.tls).toEqual({ verifyIdentity: false });
  });

  it('a DSN gives host (IPv6 unbracketed), port, database, user and socket', () => {
    const text = minimal('{ type: hash-mod, hash: crc32 }').replace(
      '{ name: a, host: db1, database: shop }',
      '{ name: a, dsn: "mariadb://app@[::1]:3307/shop%2Da?socket=/run/mysqld.sock" }',
    );
    expect(parseTopology(text, 'min.yaml').shards[0]?.endpoint).toEqual({
      host: '::1',
      port: 3307,
      database: 'shop-a',
      user: 'app',
      socket: '/run/mysqld.sock',
    });
  });

  it('string ranges compare as UTF-8 bytes', () => {
    const topo = parseTopology(
      minimal('{ type: range, ranges: [{ shard: a, to: "m" }, { shard: b, from: "m" }] }'),
      'min.yaml',
    );
    expect(topo.scheme).toMatchObject({
      keyType: 'string',
      ranges: [
        { from: null, to: 'm' },
        { from: 'm', to: null },
      ],
    });
  });

  it('a directory file is read relative to the topology file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reshard-topo-'));
    writeFileSync(join(dir, 'keys.csv'), '# key,shard\n1,a\n2,b\nx,y,b\n');
    writeFileSync(join(dir, 'topo.yaml'), minimal('{ type: directory, file: keys.csv, default: a }'));
    const topo = loadTopology(join(dir, 'topo.yaml'));
    expect(topo.scheme.type === 'directory' && [...(topo.scheme.entries ?? [])]).toEqual([
      ['1', 'a'],
      ['2', 'b'],
      ['x,y', 'b'],
    ]);
  });

  it('reports every cross-field problem at once', () => {
    const text = minimal(
      '{ type: range, ranges: [{ shard: a, from: 5, to: 10 }, { shard: c, from: 20, to: 30 }] }',
    );
    const err = (() => {
      try {
        parseTopology(text, 'x.yaml');
      } catch (e) {
        return e as ValidationError;
      }
      throw new Error('no error');
    })();
    expect(err).toBeInstanceOf(ValidationError);
    // All on one line of flow YAML, so compare as a set.
    expect(err.issues.map((i) => i.path).sort()).toEqual([
      'scheme.ranges[0].from',
      'scheme.ranges[1].from',
      'scheme.ranges[1].shard',
      'scheme.ranges[1].to',
      'shards[1]',
    ]);
  });
});

describe('topologyHash', () => {
  const hash = (text: string, file = 'a.yaml') => topologyHash(parseTopology(text, file));

  it('is a stable sha256 of the content, not of the path or layout', () => {
    const h = hash(base);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(hash(base)).toBe(h);
    expect(hash(base, 'elsewhere/other.yaml')).toBe(h);
    expect(topologyHash(loadTopology(join(DIR, 'shop-2-hashmod.yaml')))).toBe(h);
    // Comments, key order and flow vs block style do not matter.
    const reordered = base
      .replace(/#.*$/gm, '')
      .replace(
        '{ name: s0, host: 127.0.0.1, port: 34401, database: shop, user: root }',
        '{ database: shop, port: 34401, user: root, host: 127.0.0.1, name: s0 }',
      )
      .replace('  type: hash-mod\n  hash: crc32', '  hash: crc32\n  type: hash-mod');
    expect(reordered).not.toBe(base);
    expect(hash(reordered)).toBe(h);
  });

  it('ignores credentials and TLS file paths', () => {
    const h = hash(base);
    const s0 = '{ name: s0, host: 127.0.0.1, port: 34401, database: shop, user: root }';
    expect(base).toContain(s0);
    const withSecrets = (extra: string) => base.replace(s0, s0.replace(' }', `, ${extra} }`));
    expect(hash(withSecrets('password: { env: SHOP_PW }'))).toBe(h);
    expect(hash(withSecrets('password: { file: /run/secrets/pw }'))).toBe(h);
    expect(hash(withSecrets('tls: { ca: /etc/ca.pem, cert: c.pem, key: k.pem }'))).toBe(h);
    expect(hash(base.replace(s0, s0.replace('user: root', 'user: reshard')))).toBe(h);
  });

  it('changes when routing could change', () => {
    const h = hash(base);
    expect(hash(base.replace('port: 34402', 'port: 34499'))).not.toBe(h);
    expect(hash(base.replace('port: 34401, database: shop', 'port: 34401, database: shop2'))).not.toBe(h);
    expect(hash(base.replace('hash: crc32', 'hash: identity'))).not.toBe(h);
    expect(
      hash(base.replace('{ name: orders, shardKey: user_id }', '{ name: orders, shardKey: id }')),
    ).not.toBe(h);
    expect(hash(base.replace('[users, orders, order_items]', '[users, orders]'))).not.toBe(h);
    // Same endpoints, shards listed in the other order: residues move.
    const swapped = base
      .replace('name: s0, host: 127.0.0.1, port: 34401', 'name: sX, host: 127.0.0.1, port: 34401')
      .replace('name: s1, host: 127.0.0.1, port: 34402', 'name: s0, host: 127.0.0.1, port: 34402')
      .replace('name: sX', 'name: s1');
    expect(hash(swapped)).not.toBe(h);
  });

  it('differs between every sandbox topology', () => {
    const hashes = files.map((f) => topologyHash(loadTopology(join(DIR, f))));
    expect(new Set(hashes).size).toBe(files.length);
  });
});
