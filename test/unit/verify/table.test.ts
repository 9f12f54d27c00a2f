import { describe, expect, it } from 'vitest';
import type { TableDefinition } from '../../../src/preflight/schema.js';
import { renderFixSql, splitFixSql } from '../../../src/verify/fixsql.js';
import type { ShardRole } from '../../../src/verify/routing.js';
import {
  displayPk,
  literal,
  pkAfter,
  pkAtMost,
  pkEquals,
  routeKeyOfRaw,
  type VerifyColumn,
  verifyTableFrom,
} from '../../../src/verify/table.js';

const b = (s: string) => Buffer.from(s, 'utf8');

function def(columns: [string, string][], pk: string[]): TableDefinition {
  return {
    database: 'app',
    table: 'order items',
    tableType: 'BASE TABLE',
    engine: 'InnoDB',
    columns: columns.map(([name, dataType], i) => ({
      name,
      position: i + 1,
      type: dataType,
      dataType,
      nullable: true,
      default: { kind: 'none' },
      charset: null,
      collation: null,
      generated: null,
      autoIncrement: false,
      onUpdate: null,
      invisible: false,
    })),
    primaryKey: pk,
    primaryKeyPrefixes: pk.map(() => null),
    uniqueKeys: [],
  };
}

const col = (kind: VerifyColumn['kind'], dataType = kind): VerifyColumn => ({
  name: 'c',
  kind,
  dataType,
  character: false,
});

describe('verify table', () => {
  const t = verifyTableFrom(
    def(
      [
        ['order_id', 'bigint'],
        ['line`no', 'varchar'],
        ['user_id', 'bigint'],
        ['payload', 'blob'],
      ],
      ['order_id', 'line`no'],
    ),
    { name: 'order items', shardKey: 'user_id' },
  );

  it('takes a primary key as byte-exact only when every column is an integer without ZEROFILL', () => {
    const spec = { name: 't', shardKey: 'k' };
    const withType = (d: TableDefinition, name: string, type: string): TableDefinition => ({
      ...d,
      columns: d.columns.map((c) => (c.name === name ? { ...c, type } : c)),
    });
    const exact = (cols: [string, string][], pk: string[]) => verifyTableFrom(def(cols, pk), spec).exactPk;
    expect(
      exact(
        [
          ['k', 'bigint'],
          ['id', 'bigint'],
        ],
        ['id'],
      ),
    ).toBe(true);
    expect(
      exact(
        [
          ['k', 'bigint'],
          ['a', 'int'],
          ['b', 'smallint'],
        ],
        ['a', 'b'],
      ),
    ).toBe(true);
    // YEAR prints 0000, ZEROFILL 00005: not the recorded text of the number.
    expect(
      exact(
        [
          ['k', 'bigint'],
          ['y', 'year'],
        ],
        ['y'],
      ),
    ).toBe(false);
    const zf = withType(
      def(
        [
          ['k', 'bigint'],
          ['id', 'int'],
        ],
        ['id'],
      ),
      'id',
      'int unsigned zerofill',
    );
    expect(verifyTableFrom(zf, spec).exactPk).toBe(false);
    expect(
      exact(
        [
          ['k', 'bigint'],
          ['id', 'bigint'],
          ['s', 'varchar'],
        ],
        ['id', 's'],
      ),
    ).toBe(false);
    expect(
      exact(
        [
          ['k', 'bigint'],
          ['b', 'varbinary'],
        ],
        ['b'],
      ),
    ).toBe(false);
  });

  it('builds quoted SQL and the pkHash expression the server computes', () => {
    expect(t.sql.columns).toBe('`order_id`, `line``no`, `user_id`, `payload`');
    expect(t.sql.orderBy).toBe('`order_id`, `line``no`');
    expect(t.sql.pkHash).toBe("CRC32(CONCAT_WS(X'00', `order_id`, CONVERT(`line``no` USING utf8mb4)))");
    expect(t.keyKind).toBe('int');
  });

  it('writes exact literals: numbers bare, binary and non-ASCII text as hex', () => {
    expect(literal(col('int'), b('-9223372036854775808'))).toBe('-9223372036854775808');
    expect(literal(col('decimal'), b('1.50'))).toBe('1.50');
    expect(literal(col('float'), b('1.5e300'))).toBe('1.5e300');
    expect(literal(col('binary'), Buffer.from([0, 0xff]))).toBe("X'00ff'");
    expect(literal(col('binary'), Buffer.alloc(0))).toBe("X''");
    expect(literal(col('bit'), Buffer.from([0x80]))).toBe("X'80'");
    expect(literal(col('text'), b('2024-01-01 00:00:00.000001'))).toBe("'2024-01-01 00:00:00.000001'");
    expect(literal(col('text'), b("it's"))).toBe("_utf8mb4 X'69742773'");
    expect(literal(col('text'), b('a\\b'))).toBe("_utf8mb4 X'615c62'");
    expect(literal(col('text'), b('é'))).toBe("_utf8mb4 X'c3a9'");
    expect(literal(col('text'), b('a '))).toBe("'a '");
    expect(literal(col('json'), b('{"a": 1}'))).toBe('\'{"a": 1}\'');
    expect(literal(col('text'), null)).toBe('NULL');
    expect(() => literal(col('int'), b('1; DROP TABLE x'))).toThrow();
  });

  it('expands keyset comparisons over composite keys', () => {
    const pk = [b('5'), b('x')];
    expect(pkAfter(t, pk)).toBe("(`order_id` > 5 OR (`order_id` = 5 AND `line``no` > 'x'))");
    expect(pkAtMost(t, pk)).toBe("(`order_id` < 5 OR (`order_id` = 5 AND `line``no` <= 'x'))");
    expect(pkEquals(t, pk)).toBe("`order_id` = 5 AND `line``no` = 'x'");
    expect(displayPk(t, pk)).toEqual({ order_id: '5', 'line`no': 'x' });
  });

  it('turns raw shard-key bytes into routing keys', () => {
    expect(routeKeyOfRaw(t, b('42'))).toBe(42);
    expect(routeKeyOfRaw(t, b('-7'))).toBe(-7);
    expect(routeKeyOfRaw(t, b('18446744073709551615'))).toBe(18446744073709551615n);
    expect(() => routeKeyOfRaw(t, null)).toThrow(/NULL shard key/);
  });

  it('renders repair SQL per shard: deletes, then inserts, foreign-key checks off', () => {
    const role = (name: string): ShardRole => ({
      name,
      shard: { name, weight: 1, endpoint: { host: 'h', port: 3306, database: `db_${name}`, user: 'u' } },
      database: `db_${name}`,
      fromIdx: -1,
      toIdx: 0,
      verified: true,
    });
    const shards = new Map([
      ['t0', role('t0')],
      ['t1', role('t1')],
    ]);
    const segment = {
      id: 0,
      from: 's0',
      to: 't0',
      moves: true,
      share: null,
      pieces: { kind: 'cells' as const },
    };
    const row = [b('5'), b('x'), b('9'), Buffer.from([1, 2])];
    const other = [b('5'), b('x'), b('9'), Buffer.from([1, 3])];
    const base = { table: t, bucket: 0, bits: 0, segment };
    const fix = renderFixSql({
      jobName: 'j',
      runId: 3,
      generatedAt: 'now',
      shards,
      truncated: false,
      diffs: [
        {
          ...base,
          kind: 'missing',
          shard: 't0',
          source: 's0',
          pk: [b('6'), b('y')],
          sourceRow: [b('6'), b('y'), b('9'), null],
        },
        {
          ...base,
          kind: 'different',
          shard: 't0',
          pk: [b('5'), b('x')],
          columns: ['payload'],
          sourceRow: row,
          targetRow: other,
        },
        { ...base, kind: 'extra', shard: 't0', pk: [b('7'), b('z')], targetRow: row },
        { ...base, kind: 'misplaced', shard: 't1', owner: 't0', pk: [b('5'), b('x')], targetRow: row },
      ],
    });
    expect(fix.statements).toBe(5);
    const parts = splitFixSql(fix.text);
    expect([...parts.keys()]).toEqual(['t0', 't1']);
    // A different row is deleted and inserted whole (an UPDATE of the differing columns lets an
    // ON UPDATE column take the repair's time, and rows that swapped UNIQUE values clash).
    expect(parts.get('t0')!.trim().split('\n').slice(1)).toEqual([
      "SET time_zone = '+00:00';",
      'SET foreign_key_checks = 0;',
      'START TRANSACTION;',
      "DELETE FROM `db_t0`.`order items` WHERE `order_id` = 5 AND `line``no` = 'x';",
      "DELETE FROM `db_t0`.`order items` WHERE `order_id` = 7 AND `line``no` = 'z';",
      "INSERT INTO `db_t0`.`order items` (`order_id`, `line``no`, `user_id`, `payload`) VALUES (6, 'y', 9, NULL);",
      "INSERT INTO `db_t0`.`order items` (`order_id`, `line``no`, `user_id`, `payload`) VALUES (5, 'x', 9, X'0102');",
      'COMMIT;',
      'SET foreign_key_checks = 1;',
    ]);
    expect(parts.get('t1')).toContain(
      "DELETE FROM `db_t1`.`order items` WHERE `order_id` = 5 AND `line``no` = 'x';",
    );
  });
});

// Key-range pages over an ENUM key skip or repeat rows (sorted by member number, compared by
// label), and text in cp932/eucjpms reads the same for different bytes: refused up front.
describe('verify table: columns reshard cannot check exactly', () => {
  it('refuses an ENUM or SET in the primary key', () => {
    const d = def(
      [
        ['user_id', 'bigint'],
        ['kind', 'enum'],
      ],
      ['user_id', 'kind'],
    );
    expect(() => verifyTableFrom(d, { name: 'order items', shardKey: 'user_id' })).toThrow(
      /primary key column `kind` of `app`.`order items` is enum/,
    );
    const ok = def(
      [
        ['user_id', 'bigint'],
        ['kind', 'enum'],
      ],
      ['user_id'],
    );
    expect(() => verifyTableFrom(ok, { name: 'order items', shardKey: 'user_id' })).not.toThrow();
  });

  it('refuses text in a character set where different bytes read as the same text', () => {
    const d = def(
      [
        ['user_id', 'bigint'],
        ['name', 'varchar'],
      ],
      ['user_id'],
    );
    d.columns[1]!.charset = 'cp932';
    expect(() => verifyTableFrom(d, { name: 'order items', shardKey: 'user_id' })).toThrow(
      /uses character set cp932, in which different stored bytes read as the same text/,
    );
    d.columns[1]!.charset = 'utf8mb4';
    expect(() => verifyTableFrom(d, { name: 'order items', shardKey: 'user_id' })).not.toThrow();
  });
});
