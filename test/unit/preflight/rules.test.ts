/**
 * Pure rules of preflight (no server): grant parsing, version support, binlog rules and table
 * definition canonicalization. They live beside the integration tests of the same module.
 */
import { describe, expect, it } from 'vitest';
import { hasPrivilege, parseGrantLine, parseGrants } from '../../../src/preflight/grants.js';
import {
  alterFor,
  canonicalCharset,
  canonicalDefault,
  canonicalGenerationExpression,
  canonicalType,
  columnFromInformationSchema,
  columnSql,
  diffTableDefinitions,
  type TableDefinition,
} from '../../../src/preflight/schema.js';
import {
  judgeBinlogSettings,
  judgeVersion,
  parseServerVersion,
  type ServerInfo,
} from '../../../src/preflight/server.js';

describe('SHOW GRANTS parsing', () => {
  it('reads global, database, table and column grants, and ignores what grants nothing', () => {
    expect(parseGrantLine('GRANT ALL PRIVILEGES ON *.* TO `root`@`127.0.0.1` WITH GRANT OPTION')).toEqual({
      revoke: false,
      privileges: new Set(['ALL']),
    });
    expect(
      parseGrantLine("GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*D51DA1B949C1'")?.privileges,
    ).toEqual(new Set(['USAGE']));
    expect(parseGrantLine('GRANT SELECT (`n`, `we``ird`), INSERT ON `db`.`order` TO `u`@`%`')).toEqual({
      revoke: false,
      privileges: new Set(['INSERT']),
      db: 'db',
      table: 'order',
    });
    expect(parseGrantLine('GRANT SELECT ON `my db`.`we``ird` TO `u`@`%`')).toMatchObject({
      db: 'my db',
      table: 'we`ird',
    });
    expect(parseGrantLine('GRANT SELECT, INSERT ON `shop`.* TO `u`@`%`')).toMatchObject({
      db: 'shop',
      privileges: new Set(['SELECT', 'INSERT']),
    });
    expect(parseGrantLine('GRANT `pf_r1` TO `u`@`%`')).toBeUndefined();
    expect(parseGrantLine('GRANT `r1`@`%`,`r2`@`%` TO `u`@`%`')).toBeUndefined();
    expect(parseGrantLine('GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION')).toBeUndefined();
    expect(parseGrantLine('GRANT EXECUTE ON PROCEDURE `db`.`p` TO `u`@`%`')).toBeUndefined();
    expect(parseGrantLine('SET DEFAULT ROLE `r` FOR `u`@`%`')).toBeUndefined();
  });

  it('maps renamed and synonym privileges to one name', () => {
    const g = parseGrants(['GRANT REPLICATION REPLICA, BINLOG MONITOR, SLAVE MONITOR ON *.* TO `u`@`%`']);
    expect(hasPrivilege(g, 'REPLICATION SLAVE')).toBe(true);
    expect(hasPrivilege(g, 'REPLICATION CLIENT')).toBe(true);
    const all = parseGrants(['GRANT ALL PRIVILEGES ON *.* TO `u`@`%`']);
    expect(hasPrivilege(all, 'REPLICATION SLAVE')).toBe(true);
    expect(hasPrivilege(all, 'DELETE', { db: 'x', table: 'y' })).toBe(true);
  });

  it('matches database patterns with LIKE wildcards and escapes, tables exactly', () => {
    const g = parseGrants(['GRANT SELECT ON `t\\_x%`.* TO `r`', 'GRANT INSERT ON `shop`.`order` TO `u`@`%`']);
    expect(hasPrivilege(g, 'SELECT', { db: 't_x1', table: 'a' })).toBe(true);
    expect(hasPrivilege(g, 'SELECT', { db: 'tax1', table: 'a' })).toBe(false);
    expect(hasPrivilege(g, 'INSERT', { db: 'shop', table: 'order' })).toBe(true);
    expect(hasPrivilege(g, 'INSERT', { db: 'shop', table: 'Order' })).toBe(false);
    expect(hasPrivilege(g, 'INSERT', { db: 'shop', table: 'Order' }, true)).toBe(true);
    expect(hasPrivilege(g, 'INSERT', { db: 'shop', table: 'other' })).toBe(false);
    expect(hasPrivilege(g, 'INSERT')).toBe(false);
  });

  it('honours MySQL partial revokes of global privileges', () => {
    const g = parseGrants([
      'GRANT SELECT, INSERT ON *.* TO `u`@`%`',
      'REVOKE INSERT ON `mysql`.* FROM `u`@`%`',
    ]);
    expect(hasPrivilege(g, 'INSERT', { db: 'shop', table: 't' })).toBe(true);
    expect(hasPrivilege(g, 'INSERT', { db: 'mysql', table: 'user' })).toBe(false);
    expect(hasPrivilege(g, 'SELECT', { db: 'mysql', table: 'user' })).toBe(true);
  });
});

describe('server versions and binlog rules', () => {
  it('parses MySQL and MariaDB version strings', () => {
    expect(parseServerVersion('10.11.19-MariaDB-0+deb12u1-log')).toEqual({
      flavor: 'mariadb',
      major: 10,
      minor: 11,
      patch: 19,
      text: '10.11.19',
    });
    expect(parseServerVersion('8.0.36', 'MySQL Community Server - GPL')).toMatchObject({
      flavor: 'mysql',
      major: 8,
    });
    expect(parseServerVersion('5.5.5-10.6.12-MariaDB')).toMatchObject({
      flavor: 'mariadb',
      major: 10,
      minor: 6,
    });
  });

  it('supports MySQL 5.7/8.x and MariaDB 10.5+ only', () => {
    const v = (s: string) => judgeVersion(parseServerVersion(s)!);
    expect(v('10.4.30-MariaDB').ok).toBe(false);
    expect(v('10.5.0-MariaDB').ok).toBe(true);
    expect(v('11.4.2-MariaDB').ok).toBe(true);
    expect(v('5.6.51').ok).toBe(false);
    expect(v('5.7.44-log').ok).toBe(true);
    expect(v('8.4.0')).toEqual({ ok: true });
    expect(v('9.1.0')).toMatchObject({ ok: true, untested: expect.stringContaining('9.1.0') });
  });

  const info = (over: Partial<ServerInfo>): ServerInfo => ({
    version: parseServerVersion('8.0.36')!,
    versionString: '8.0.36',
    serverId: 1,
    logBin: true,
    binlogFormat: 'ROW',
    binlogRowImage: 'FULL',
    binlogRowMetadata: 'FULL',
    binlogRowValueOptions: '',
    lowerCaseTableNames: 0,
    currentUser: 'u@%',
    identity: 'x',
    address: 'db1:3306',
    ...over,
  });

  it('requires ROW/FULL, warns on row metadata only where it exists, refuses partial JSON', () => {
    expect(judgeBinlogSettings(info({}))).toEqual([]);
    expect(
      judgeBinlogSettings(info({ binlogRowMetadata: undefined, binlogRowValueOptions: undefined })),
    ).toEqual([]);
    expect(
      judgeBinlogSettings(info({ binlogRowMetadata: 'MINIMAL' })).map((p) => `${p.severity}:${p.code}`),
    ).toEqual(['warning:W_ROW_METADATA']);
    expect(judgeBinlogSettings(info({ binlogRowValueOptions: 'PARTIAL_JSON' })).map((p) => p.code)).toEqual([
      'E_ROW_VALUE_OPTIONS',
    ]);
    const all = judgeBinlogSettings(info({ logBin: false, binlogFormat: 'MIXED', binlogRowImage: 'NOBLOB' }));
    expect(all.map((p) => p.code)).toEqual(['E_BINLOG_OFF', 'E_BINLOG_FORMAT', 'E_ROW_IMAGE']);
    expect(all.every((p) => p.message.includes('db1:3306'))).toBe(true);
  });
});

describe('table definition canonicalization', () => {
  it('removes display widths and keyword case, never ENUM members', () => {
    expect(canonicalType('int(11) unsigned')).toBe('int unsigned');
    expect(canonicalType('INT UNSIGNED ZEROFILL')).toBe('int unsigned zerofill');
    expect(canonicalType('bigint(20)')).toBe('bigint');
    expect(canonicalType('tinyint(1)')).toBe('tinyint');
    expect(canonicalType('year(4)')).toBe('year');
    expect(canonicalType('DECIMAL(10, 2)')).toBe('decimal(10,2)');
    expect(canonicalType('varchar(64)')).toBe('varchar(64)');
    expect(canonicalType("enum('A','b', 'it''s')")).toBe("enum('A','b', 'it''s')");
    expect(canonicalType('datetime(6)')).toBe('datetime(6)');
    expect(canonicalCharset('utf8_general_ci')).toBe('utf8mb3_general_ci');
    expect(canonicalCharset('utf8mb4_bin')).toBe('utf8mb4_bin');
  });

  it('reads MariaDB and MySQL spellings of the same default as equal', () => {
    expect(canonicalDefault("'it''s'", true, '', 'mariadb', false)).toEqual(
      canonicalDefault("it's", true, '', 'mysql', false),
    );
    expect(canonicalDefault('current_timestamp()', false, '', 'mariadb', false)).toEqual(
      canonicalDefault('CURRENT_TIMESTAMP', false, 'DEFAULT_GENERATED', 'mysql', false),
    );
    expect(canonicalDefault('current_timestamp(6)', false, '', 'mariadb', false)).toEqual(
      canonicalDefault('CURRENT_TIMESTAMP(6)', false, '', 'mysql', false),
    );
    expect(canonicalDefault('NULL', true, '', 'mariadb', false)).toEqual({ kind: 'null' });
    expect(canonicalDefault(null, true, '', 'mysql', false)).toEqual({ kind: 'null' });
    expect(canonicalDefault(null, false, '', 'mysql', false)).toEqual({ kind: 'none' });
    expect(canonicalDefault('0', false, '', 'mariadb', false)).toEqual(
      canonicalDefault('0', false, '', 'mysql', false),
    );
    expect(canonicalDefault("'0'", false, '', 'mariadb', false)).toEqual({ kind: 'literal', value: '0' });
  });

  it('compares generation expressions modulo spacing, quotes, introducers and outer parentheses', () => {
    expect(canonicalGenerationExpression('`id` + 1')).toBe(canonicalGenerationExpression('(`id` + 1)'));
    expect(canonicalGenerationExpression("concat(`a`,' x')")).toBe(
      canonicalGenerationExpression("concat(`a`,_utf8mb4' x')"),
    );
    expect(canonicalGenerationExpression("concat(`a`,' x')")).not.toBe(
      canonicalGenerationExpression("concat(`a`,'x')"),
    );
    expect(canonicalGenerationExpression('(`a` + 1) * (`b` + 2)')).toBe('(a+1)*(b+2)');
  });

  const maria = (over: Record<string, unknown> = {}) =>
    columnFromInformationSchema(
      {
        name: 'amount',
        position: '2',
        dflt: '0.0000',
        nullable: 'NO',
        dataType: 'decimal',
        columnType: 'decimal(19,4)',
        charset: null,
        collation: null,
        extra: '',
        genExpr: null,
        ...over,
      },
      'mariadb',
    );
  const table = (columns: ReturnType<typeof maria>[], primaryKey = ['id']): TableDefinition => ({
    database: 'shop',
    table: 'order',
    tableType: 'BASE TABLE',
    engine: 'InnoDB',
    columns,
    primaryKey,
    primaryKeyPrefixes: primaryKey.map(() => null),
    uniqueKeys: [],
  });
  const id = (flavor: 'mysql' | 'mariadb', type: string) =>
    columnFromInformationSchema(
      {
        name: 'id',
        position: 1,
        dflt: null,
        nullable: 'NO',
        dataType: 'bigint',
        columnType: type,
        charset: null,
        collation: null,
        extra: 'auto_increment',
        genExpr: null,
      },
      flavor,
    );

  it('finds no difference between the same table on MariaDB and MySQL 8', () => {
    const mysqlTs = columnFromInformationSchema(
      {
        name: 'ts',
        position: 3,
        dflt: 'CURRENT_TIMESTAMP(6)',
        nullable: 'NO',
        dataType: 'timestamp',
        columnType: 'timestamp(6)',
        charset: null,
        collation: null,
        extra: 'DEFAULT_GENERATED on update CURRENT_TIMESTAMP(6)',
        genExpr: null,
      },
      'mysql',
    );
    const mariaTs = columnFromInformationSchema(
      {
        name: 'ts',
        position: 3,
        dflt: 'current_timestamp(6)',
        nullable: 'NO',
        dataType: 'timestamp',
        columnType: 'timestamp(6)',
        charset: null,
        collation: null,
        extra: 'on update current_timestamp(6)',
        genExpr: null,
      },
      'mariadb',
    );
    const a = table([id('mariadb', 'bigint(20) unsigned'), maria(), mariaTs]);
    const b = table([id('mysql', 'bigint unsigned'), maria(), mysqlTs]);
    expect(diffTableDefinitions(a, b)).toEqual([]);
    expect(columnSql(mariaTs)).toBe(
      'timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)',
    );
  });

  it('reports type, signedness, missing/extra columns, order and primary key, with the ALTER that fixes each', () => {
    const ref = table([
      id('mariadb', 'bigint(20) unsigned'),
      maria(),
      maria({
        name: 'no`te',
        position: 3,
        dataType: 'varchar',
        columnType: 'varchar(8)',
        dflt: 'NULL',
        nullable: 'YES',
        charset: 'utf8mb4',
        collation: 'utf8mb4_bin',
      }),
    ]);
    const other = table(
      [
        maria({ position: 1, columnType: 'decimal(12,2)', dflt: '0.00' }),
        id('mariadb', 'bigint(20)'),
        maria({ name: 'extra', position: 3, columnType: 'int(11)', dataType: 'int', dflt: null }),
      ],
      ['amount'],
    );
    const diffs = diffTableDefinitions(ref, other);
    expect(diffs.map((d) => `${d.kind}:${'column' in d ? d.column : ''}`)).toEqual([
      'column-definition:id',
      'column-definition:amount',
      'column-missing:no`te',
      'column-extra:extra',
      'column-order:id',
      'primary-key:',
    ]);
    const byKind = Object.fromEntries(
      diffs.map((d) => [`${d.kind}:${'column' in d ? d.column : ''}`, alterFor(d, ref, 'shop')]),
    );
    expect(byKind['column-definition:id']).toBe(
      'ALTER TABLE `shop`.`order` MODIFY COLUMN `id` bigint unsigned NOT NULL AUTO_INCREMENT;',
    );
    expect(byKind['column-definition:amount']).toBe(
      'ALTER TABLE `shop`.`order` MODIFY COLUMN `amount` decimal(19,4) NOT NULL DEFAULT 0.0000;',
    );
    expect(byKind['column-missing:no`te']).toBe(
      'ALTER TABLE `shop`.`order` ADD COLUMN `no``te` varchar(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL DEFAULT NULL AFTER `amount`;',
    );
    expect(byKind['column-extra:extra']).toBe('ALTER TABLE `shop`.`order` DROP COLUMN `extra`;');
    expect(byKind['primary-key:']).toBe(
      'ALTER TABLE `shop`.`order` DROP PRIMARY KEY, ADD PRIMARY KEY (`id`);',
    );
  });
});
