/**
 * Review: preflight gaps found by reading src/preflight/run.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertPreflight, runPreflight } from '../../../src/preflight/index.js';
import { parseTopology } from '../../../src/topology/load.js';
import { createDatabases, port, uniqueDb } from '../../support/db.js';
import { SCHEMA } from './helpers.js';

describe('preflight: one database, one shard; hints (found by review I)', () => {
  const db = uniqueDb('pf_rvi');
  let drop: () => Promise<void>;
  beforeAll(async () => {
    drop = await createDatabases(['s0', 's1'], db, SCHEMA);
  });
  afterAll(async () => drop());

  it('E_SHARD_KEY_TYPE for a range scheme gives a fix the topology file accepts', async () => {
    // Integer boundaries, a VARCHAR shard key.
    const scheme = (extra: string) =>
      `scheme:\n  type: range\n${extra}  ranges:\n    - { shard: s0, to: 100 }\n    - { shard: s1, from: 100 }\n`;
    const head =
      'version: 1\nshards:\n' +
      `  - { name: s0, host: 127.0.0.1, port: ${port('s0')}, database: ${db} }\n` +
      `  - { name: s1, host: 127.0.0.1, port: ${port('s1')}, database: ${db} }\n` +
      'tables:\n  - { name: customers, shardKey: name }\n';
    const topo = parseTopology(head + scheme(''), 'range.yaml');
    const report = await runPreflight({ from: topo });
    const f = report.failures.find((x) => x.code === 'E_SHARD_KEY_TYPE');
    expect(f, JSON.stringify(report.failures)).toBeDefined();
    // The hint says "set keyType: string in range.yaml". Doing so must not make the file invalid.
    const m = /set keyType: (\w+)/.exec(f!.hint);
    if (m) {
      expect(() => parseTopology(head + scheme(`  keyType: ${m[1]}\n`), 'range.yaml')).not.toThrow();
    }
  });

  it('refuses two shards that are one database reached by two host names (127.0.0.1 and localhost)', async () => {
    const yaml =
      'version: 1\nshards:\n' +
      `  - { name: a, host: 127.0.0.1, port: ${port('s0')}, database: ${db} }\n` +
      `  - { name: b, host: localhost, port: ${port('s0')}, database: ${db} }\n` +
      'tables:\n  - { name: customers, shardKey: id }\n' +
      'scheme: { type: hash-mod, hash: identity }\n';
    const topo = parseTopology(yaml, 'alias.yaml');
    const report = await runPreflight({ from: topo });
    expect(report.shards.every((s) => s.reachable)).toBe(true);
    // Both shards are the same rows: routing would give every row two owners.
    expect(report.ok, JSON.stringify(report.failures)).toBe(false);
    expect(() => assertPreflight(report)).toThrow(/same (server and )?database|a.*b|b.*a/);
  });

  it('refuses a target shard that is a source database under another host name', async () => {
    const from = parseTopology(
      'version: 1\nshards:\n' +
        `  - { name: s0, host: 127.0.0.1, port: ${port('s0')}, database: ${db} }\n` +
        `  - { name: s1, host: 127.0.0.1, port: ${port('s1')}, database: ${db} }\n` +
        'tables:\n  - { name: customers, shardKey: id }\nscheme: { type: hash-mod, hash: identity }\n',
      'from.yaml',
    );
    // t9 is s0's database under another name: copying "to t9" writes s0's own rows.
    const to = parseTopology(
      'version: 1\nshards:\n' +
        `  - { name: s0, host: 127.0.0.1, port: ${port('s0')}, database: ${db} }\n` +
        `  - { name: s1, host: 127.0.0.1, port: ${port('s1')}, database: ${db} }\n` +
        `  - { name: t9, host: localhost, port: ${port('s0')}, database: ${db} }\n` +
        'tables:\n  - { name: customers, shardKey: id }\nscheme: { type: hash-mod, hash: identity }\n',
      'to.yaml',
    );
    const report = await runPreflight({ from, to });
    expect(report.ok, JSON.stringify(report.failures)).toBe(false);
  });
});
