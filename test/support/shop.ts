/** The shop fixture (fixtures/shop) as the integration suites use it. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';

export const SHOP_SCHEMA = readFileSync(join(ROOT, 'fixtures/shop/schema.sql'), 'utf8');

/** Every fixture table with its shard key (a user's rows share one). */
export const SHOP_TABLES = [
  { name: 'users', shardKey: 'id' },
  { name: 'orders', shardKey: 'user_id' },
  { name: 'order_items', shardKey: 'user_id' },
  { name: 'coupons', shardKey: 'user_id' },
  { name: 'group', shardKey: 'user_id' },
  { name: 'type_corpus', shardKey: 'user_id' },
];
