/**
 * readTableDefinitions reads several tables in three information_schema queries. Its `IN (…)`
 * compares names case-insensitively where `TABLE_NAME = ?` looked the table up as the server
 * does: on a server with lower_case_table_names = 0 (Linux's default, the sandbox's), a table
 * asked for as `orders` must not be answered by `Orders`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTableDefinition, readTableDefinitions } from '../../../src/preflight/schema.js';
import { rootConn, uniqueDb } from '../../support/db.js';

describe('readTableDefinitions', () => {
  const db = uniqueDb('defs');
  beforeAll(async () => {
    const c = await rootConn('s0');
    try {
      await c.query(`CREATE DATABASE \`${db}\``);
      await c.query(
        `CREATE TABLE \`${db}\`.Orders (id BIGINT NOT NULL, code VARCHAR(8) NOT NULL, note TEXT, PRIMARY KEY (id), UNIQUE KEY uq_code (code))`,
      );
      await c.query(
        `CREATE TABLE \`${db}\`.items (order_id BIGINT NOT NULL, line INT NOT NULL, qty INT NOT NULL, PRIMARY KEY (order_id, line))`,
      );
    } finally {
      await c.end();
    }
  });
  afterAll(async () => {
    const c = await rootConn('s0');
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  it('reads each table asked for, exactly by name where the server compares names exactly', async () => {
    const c = await rootConn('s0');
    try {
      const [[lc]] = (await c.query('SELECT @@lower_case_table_names AS n')) as unknown as [[{ n: number }]];
      expect(Number(lc.n)).toBe(0);
      const defs = await readTableDefinitions(c, db, ['orders', 'Orders', 'items', 'missing']);
      expect([...defs.keys()].sort()).toEqual(['Orders', 'items']);
      const orders = defs.get('Orders')!;
      expect(orders.columns.map((x) => x.name)).toEqual(['id', 'code', 'note']);
      expect(orders.primaryKey).toEqual(['id']);
      expect(orders.uniqueKeys.map((u) => [u.name, u.columns.map((x) => x.name)])).toEqual([
        ['uq_code', ['code']],
      ]);
      const items = defs.get('items')!;
      expect(items.columns.map((x) => x.name)).toEqual(['order_id', 'line', 'qty']);
      expect(items.primaryKey).toEqual(['order_id', 'line']);
      // The one-table form agrees, and misses the same way.
      expect(await readTableDefinition(c, db, 'Orders')).toEqual(orders);
      expect(await readTableDefinition(c, db, 'orders')).toBeUndefined();
    } finally {
      await c.end();
    }
  });
});
