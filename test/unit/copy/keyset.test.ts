import { describe, expect, it } from 'vitest';
import { decodeKey, encodeKey, pageQuery, rangeCondition } from '../../../src/copy/keyset.js';

describe('keyset pagination SQL', () => {
  const id = [{ name: 'id', integer: true }];
  const composite = [
    { name: 'order_id', integer: true },
    { name: 'line`no', integer: false },
  ];

  it('single column: exclusive lower, inclusive upper, integers as exact literals', () => {
    expect(rangeCondition(id, null, null)).toEqual({ sql: 'TRUE', params: [] });
    const r = rangeCondition(id, ['18446744073709551615'], ['9007199254740993']);
    expect(r.sql).toBe('`id` > ? AND `id` <= ?');
    expect(r.params).toEqual([18446744073709551615n, 9007199254740993n]);
  });

  it('composite keys: row constructors plus a leading-column bound the range optimizer can use', () => {
    const r = rangeCondition(composite, ['5', 'a'], ['9', 'b']);
    expect(r.sql).toBe(
      '(`order_id`, `line``no`) > (?, ?) AND `order_id` >= ? AND (`order_id`, `line``no`) <= (?, ?) AND `order_id` <= ?',
    );
    expect(r.params).toEqual([5n, 'a', 5n, 9n, 'b', 9n]);
  });

  it('pages in key order with a limit and shared locks, the moving filter in parentheses', () => {
    const p = pageQuery({
      table: '`db`.`group`',
      columns: '`id`, `we``ird`',
      key: id,
      lower: ['10'],
      upper: null,
      filter: 'MOD(CRC32(`user_id`), 6) IN (1, 4) OR `user_id` = 0',
      limit: 500,
      lock: true,
    });
    expect(p.sql).toBe(
      'SELECT `id`, `we``ird` FROM `db`.`group` WHERE (`id` > ?) AND (MOD(CRC32(`user_id`), 6) IN (1, 4) OR `user_id` = 0) ORDER BY `id` LIMIT 500 LOCK IN SHARE MODE',
    );
  });

  it('encodes key tuples exactly (binary as base64, big integers as text)', () => {
    const t = ['18446744073709551615', Buffer.from([0, 255, 10]), 'é', null];
    const text = encodeKey(t);
    expect(text).toBe('["18446744073709551615",{"b":"AP8K"},"é",null]');
    expect(decodeKey(text)).toEqual(t);
    expect(encodeKey([780, 5n])).toBe('["780","5"]');
    expect(encodeKey(null)).toBeNull();
    expect(decodeKey(null)).toBeNull();
  });
});
