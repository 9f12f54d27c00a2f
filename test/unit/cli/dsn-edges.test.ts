/**
 * Review: DSN parsing consistency between the control DSN and a topology shard's `dsn:`.
 */
import { describe, expect, it } from 'vitest';
import { parseControlDsn } from '../../../src/db/connect.js';
import { parseTopology } from '../../../src/topology/load.js';

describe('DSN edges (found by review I)', () => {
  it('a control DSN with an IPv6 literal connects to the bare address (as a topology dsn does)', () => {
    const topo = parseTopology(
      'version: 1\nshards:\n  - { name: s0, dsn: "mysql://root@[::1]:3306/shop" }\ntables:\n  - { name: t, shardKey: id }\nscheme: { type: hash-mod, hash: crc32 }\n',
      'v6.yaml',
    );
    expect(topo.shards[0]!.endpoint.host).toBe('::1');
    // The control DSN keeps the brackets: the driver then looks up the host name "[::1]".
    expect(parseControlDsn('mysql://root@[::1]:3306/reshard_control').host).toBe('::1');
  });

  it('a shard dsn with port 0 is refused like `port: 0` is', () => {
    const yaml = (shard: string) =>
      `version: 1\nshards:\n  - ${shard}\ntables:\n  - { name: t, shardKey: id }\nscheme: { type: hash-mod, hash: crc32 }\n`;
    expect(() => parseTopology(yaml('{ name: s0, host: h, port: 0, database: shop }'), 'p.yaml')).toThrow(
      /port/,
    );
    expect(() => parseTopology(yaml('{ name: s0, dsn: "mysql://root@h:0/shop" }'), 'p.yaml')).toThrow(
      /shards\[0\]\.dsn/,
    );
  });

  it('a control DSN with port 0 is refused naming the control DSN', () => {
    expect(() => parseControlDsn('mysql://root@127.0.0.1:0/reshard_control')).toThrow(/control DSN/);
  });
});
