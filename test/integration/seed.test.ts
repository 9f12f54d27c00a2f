import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seed } from '../../src/sandbox/seed.js';
import { parseTopology } from '../../src/topology/load.js';
import { createDatabases, rootConn, topologyYaml, uniqueDb } from '../support/db.js';

const SCHEMA = `
CREATE TABLE users (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, email VARCHAR(120) NOT NULL, name VARCHAR(80) NULL,
  balance DECIMAL(19,4) NOT NULL, created_at DATETIME(6) NOT NULL, UNIQUE KEY uq_email (email)) ENGINE=InnoDB;
CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, status ENUM('new','paid','shipped') NOT NULL,
  flags BIT(12) NULL, payload JSON NULL, token VARBINARY(16) NULL, KEY (user_id)) ENGINE=InnoDB;
`;

describe('sandbox seed', () => {
  const db = uniqueDb('seed');
  let drop: () => Promise<void>;
  beforeAll(async () => {
    drop = await createDatabases(['s0', 's1'], db);
  });
  afterAll(async () => drop());

  it('puts every row on the shard the topology routes it to, deterministically', async () => {
    const topo = parseTopology(
      topologyYaml({
        shards: [
          { name: 's0', server: 's0', database: db },
          { name: 's1', server: 's1', database: db },
        ],
        tables: [
          { name: 'users', shardKey: 'id' },
          { name: 'orders', shardKey: 'user_id' },
        ],
        groups: [{ name: 'user', tables: ['users', 'orders'] }],
        scheme: '{ type: hash-mod, hash: crc32 }',
      }),
      'seed.yaml',
    );
    const result = await seed({ topology: topo, rows: 20_000, seed: 7, schemaSql: SCHEMA, replace: true });
    expect(result.rows).toBe(20_000);
    let total = 0;
    const digests: string[] = [];
    for (const [i, name] of (['s0', 's1'] as const).entries()) {
      const c = await rootConn(name, db);
      try {
        // Independent check by the server's own CRC32: no row sits on a shard that does not own it.
        const [bad] = await c.query(
          `SELECT (SELECT COUNT(*) FROM users WHERE MOD(CRC32(id), 2) <> ?) + (SELECT COUNT(*) FROM orders WHERE MOD(CRC32(user_id), 2) <> ?) AS n`,
          [i, i],
        );
        expect(Number((bad as { n: string }[])[0]!.n)).toBe(0);
        const [cnt] = await c.query(
          'SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM orders) AS n',
        );
        const n = Number((cnt as { n: string }[])[0]!.n);
        expect(n).toBeGreaterThan(0);
        total += n;
        const [cs] = await c.query('CHECKSUM TABLE users, orders EXTENDED');
        digests.push(JSON.stringify(cs));
      } finally {
        await c.end();
      }
    }
    expect(total).toBe(20_000);
    // Same seed → byte-identical data.
    await seed({ topology: topo, rows: 20_000, seed: 7, schemaSql: SCHEMA, replace: true });
    for (const [i, name] of (['s0', 's1'] as const).entries()) {
      const c = await rootConn(name, db);
      try {
        const [cs] = await c.query('CHECKSUM TABLE users, orders EXTENDED');
        expect(JSON.stringify(cs)).toBe(digests[i]);
      } finally {
        await c.end();
      }
    }
  });

  it('refuses to overwrite existing tables without --replace, naming shard and table', async () => {
    const topo = parseTopology(
      topologyYaml({
        shards: [{ name: 's0', server: 's0', database: db }],
        tables: [{ name: 'users', shardKey: 'id' }],
        scheme: '{ type: hash-mod, hash: identity }',
      }),
      'seed.yaml',
    );
    await expect(
      seed({ topology: topo, rows: 10, seed: 1, schemaSql: SCHEMA, replace: false }),
    ).rejects.toMatchObject({
      code: 'E_SEED_EXISTS',
      message: expect.stringContaining(`${db}.users`),
    });
  });
});
