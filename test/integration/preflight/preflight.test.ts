import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReshardError } from '../../../src/errors.js';
import { assertPreflight, runPreflight } from '../../../src/preflight/index.js';
import { createDatabases, port, rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { codes, freePort, type OwnServer, SCHEMA, startOwnServer, TABLES, topology } from './helpers.js';

const shard = (name: string, server: SandboxName, database: string) => ({
  name,
  port: port(server),
  database,
});

describe('preflight on a healthy estate', () => {
  const db = uniqueDb('pf_ok');
  let drop: () => Promise<void>;
  beforeAll(async () => {
    drop = await createDatabases(['s0', 's1', 't0', 't1', 't2'], db, SCHEMA);
  });
  afterAll(async () => drop());

  it('passes a 2→3 reshard with no failures and no warnings', async () => {
    const from = topology('current', [shard('s0', 's0', db), shard('s1', 's1', db)], TABLES).topo;
    const to = topology(
      'target',
      [shard('t0', 't0', db), shard('t1', 't1', db), shard('t2', 't2', db)],
      TABLES,
    ).topo;
    const report = await runPreflight({ from, to });
    expect(report.failures).toEqual([]);
    expect(report.warnings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.shards.map((s) => `${s.side}/${s.shard}`)).toEqual([
      'from/s0',
      'from/s1',
      'to/t0',
      'to/t1',
      'to/t2',
    ]);
    for (const s of report.shards) {
      expect(s.reachable).toBe(true);
      expect(s.flavor).toBe('mariadb');
      expect(s.version).toMatch(/^\d+\.\d+\.\d+$/);
      expect(Object.values(s.checks).every((c) => c === 'ok')).toBe(true);
    }
    expect(report.shards.find((s) => s.shard === 't0')!.roles).toEqual(['target', 'source']);
    expect(new Set(report.shards.map((s) => s.serverId)).size).toBe(5);
    expect(() => assertPreflight(report)).not.toThrow();
  });

  it('does not count shards sharing one server (different databases) as duplicate server_ids', async () => {
    const db2 = uniqueDb('pf_ok2');
    const drop2 = await createDatabases(['s0'], db2, SCHEMA);
    try {
      const from = topology('current', [shard('a', 's0', db), shard('b', 's0', db2)], TABLES).topo;
      const report = await runPreflight({ from });
      expect(report.failures).toEqual([]);
      expect(report.shards.every((s) => s.checks.server_id === 'ok')).toBe(true);
    } finally {
      await drop2();
    }
  });
});

describe('preflight against a misconfigured server', () => {
  const db = uniqueDb('pf_bad');
  let bad: OwnServer;
  let nobinlog: OwnServer;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    // server_id = s0's (the sandbox uses the port as server_id), to catch a duplicate across servers.
    [bad, nobinlog] = await Promise.all([
      startOwnServer('stmt', port('s0'), [
        '--binlog-format=STATEMENT',
        '--binlog-row-image=MINIMAL',
        '--binlog-row-metadata=MINIMAL',
      ]),
      startOwnServer('nobinlog', 1_000_000 + port('s0'), ['--skip-log-bin']),
    ]);
    for (const s of [bad, nobinlog]) {
      const c = await s.conn();
      try {
        // Same charset clause as createDatabases: otherwise the collations differ, which is a real mismatch.
        await c.query(`CREATE DATABASE \`${db}\` CHARACTER SET utf8mb4`);
        await c.query(`USE \`${db}\``);
        await c.query(SCHEMA);
      } finally {
        await c.end();
      }
    }
    drop = await createDatabases(['s0'], db, SCHEMA);
  });
  afterAll(async () => {
    await drop?.();
    await Promise.all([bad?.destroy(), nobinlog?.destroy()]);
  });

  it('reports binlog_format and binlog_row_image together, with the server, setting and exact fix', async () => {
    const from = topology(
      'current',
      [{ name: 'bad', port: bad.port, database: db }, shard('s0', 's0', db)],
      TABLES,
    ).topo;
    const report = await runPreflight({ from });
    const mine = report.failures.filter((f) => f.shard === 'bad');
    expect(codes(mine)).toEqual(['E_BINLOG_FORMAT', 'E_ROW_IMAGE', 'E_SERVER_ID_DUPLICATE']);
    const fmt = mine.find((f) => f.code === 'E_BINLOG_FORMAT')!;
    expect(fmt).toMatchObject({
      setting: 'binlog_format',
      check: 'binlog',
      side: 'from',
      server: `root@127.0.0.1:${bad.port}/${db}`,
    });
    expect(fmt.message).toContain('STATEMENT');
    expect(fmt.message).toContain(`127.0.0.1:${bad.port}`);
    expect(fmt.hint).toContain("SET GLOBAL binlog_format = 'ROW'");
    expect(fmt.hint).toContain('binlog_format=ROW under [mysqld]');
    const img = mine.find((f) => f.code === 'E_ROW_IMAGE')!;
    expect(img.setting).toBe('binlog_row_image');
    expect(img.hint).toContain("SET GLOBAL binlog_row_image = 'FULL'");
    // binlog_row_metadata is a warning (see server.ts for why).
    expect(report.warnings.map((w) => `${w.shard}:${w.code}`)).toEqual(['bad:W_ROW_METADATA']);
    // The duplicate server_id is reported on both servers, each naming the other.
    const dup = report.failures.filter((f) => f.code === 'E_SERVER_ID_DUPLICATE');
    expect(dup.map((f) => f.shard).sort()).toEqual(['bad', 's0']);
    expect(dup.find((f) => f.shard === 's0')!.message).toContain(`127.0.0.1:${bad.port}`);
    // The healthy shard is otherwise fine.
    expect(report.failures.filter((f) => f.shard === 's0').map((f) => f.code)).toEqual([
      'E_SERVER_ID_DUPLICATE',
    ]);

    let err: unknown;
    try {
      assertPreflight(report);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ReshardError);
    const e = err as ReshardError;
    expect(e.code).toBe('E_PREFLIGHT');
    expect(e.exitCode).toBe(3);
    for (const c of ['E_BINLOG_FORMAT', 'E_ROW_IMAGE', 'E_SERVER_ID_DUPLICATE'])
      expect(e.message).toContain(c);
    expect(e.data!.failures as unknown[]).toHaveLength(report.failures.length);
  });

  it('reports a server without a binary log', async () => {
    const from = topology('current', [{ name: 'nolog', port: nobinlog.port, database: db }], TABLES).topo;
    const report = await runPreflight({ from });
    const off = report.failures.find((f) => f.code === 'E_BINLOG_OFF');
    expect(off).toMatchObject({ shard: 'nolog', setting: 'log_bin' });
    expect(off!.hint).toContain('log_bin=binlog');
  });

  it('checks binlog settings of targets too (reverse replication), but not for a reader-only side', async () => {
    const from = topology('current', [shard('s0', 's0', db)], TABLES).topo;
    const to = topology('target', [{ name: 'bad', port: bad.port, database: db }], TABLES).topo;
    const report = await runPreflight({ from, to });
    expect(codes(report.failures.filter((f) => f.side === 'to'))).toContain('E_BINLOG_FORMAT');
    const readOnly = await runPreflight({ from, to, roles: { to: ['reader'] } });
    expect(readOnly.failures.filter((f) => f.side === 'to' && f.check === 'binlog')).toEqual([]);
    expect(readOnly.shards.find((s) => s.side === 'to')!.checks.binlog).toBe('skipped');
  });
});

describe('preflight table checks', () => {
  const db = uniqueDb('pf_tables');
  let drop: () => Promise<void>;
  beforeAll(async () => {
    drop = await createDatabases(['s0', 't0', 't1', 't2'], db, SCHEMA);
  });
  afterAll(async () => drop());

  async function exec(server: SandboxName, sql: string) {
    const c = await rootConn(server, db);
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }

  it('reports a table without a primary key, with a suggested key', async () => {
    await exec('s0', 'CREATE TABLE `select` (`k` INT NOT NULL, `v` TEXT, UNIQUE KEY (`k`)) ENGINE=InnoDB');
    const from = topology(
      'current',
      [shard('s0', 's0', db)],
      [...TABLES, { name: 'select', shardKey: 'k' }],
    ).topo;
    const report = await runPreflight({ from });
    expect(report.failures.map((f) => f.code)).toEqual(['E_NO_PRIMARY_KEY']);
    const f = report.failures[0]!;
    expect(f).toMatchObject({ table: 'select', shard: 's0', check: 'tables' });
    expect(f.message).toContain('primary key');
    expect(f.hint).toContain(`ALTER TABLE \`${db}\`.\`select\` ADD PRIMARY KEY (\`k\`)`);
  });

  it('reports a missing shard key column and a non-integer key under identity hash-mod; warns on MyISAM', async () => {
    await exec(
      't0',
      'CREATE TABLE `p` (`id` INT NOT NULL PRIMARY KEY, `code` VARCHAR(10) NOT NULL) ENGINE=MyISAM',
    );
    const from = topology(
      'current',
      [shard('t0', 't0', db)],
      [
        { name: 'p', shardKey: 'code' },
        { name: 'order', shardKey: 'no_such_column' },
      ],
    ).topo;
    const report = await runPreflight({ from });
    expect(codes(report.failures)).toEqual(['E_SHARD_KEY_MISSING', 'E_SHARD_KEY_TYPE']);
    expect(report.failures.find((f) => f.code === 'E_SHARD_KEY_MISSING')).toMatchObject({
      table: 'order',
      column: 'no_such_column',
    });
    expect(report.failures.find((f) => f.code === 'E_SHARD_KEY_TYPE')).toMatchObject({
      table: 'p',
      column: 'code',
      actual: 'varchar(10)',
    });
    expect(report.warnings.map((w) => w.code)).toEqual(['W_ENGINE']);
    // crc32 hashes any key type.
    const crc = topology(
      'current',
      [shard('t0', 't0', db)],
      [{ name: 'p', shardKey: 'code' }],
      '{ type: hash-mod, hash: crc32 }',
    ).topo;
    expect((await runPreflight({ from: crc })).failures).toEqual([]);
  });

  it('reports a target column of another type, naming table, column, both shards and both definitions', async () => {
    await exec('t1', 'ALTER TABLE `order` MODIFY COLUMN `amount` DECIMAL(12,2) NOT NULL DEFAULT 0');
    await exec('t1', "ALTER TABLE `order` MODIFY COLUMN `no``te` VARCHAR(64) NULL DEFAULT 'its'");
    const from = topology('current', [shard('s0', 's0', db)], TABLES).topo;
    const to = topology('target', [shard('t0', 't0', db), shard('t1', 't1', db)], TABLES).topo;
    const report = await runPreflight({ from, to });
    expect(report.failures.map((f) => `${f.shard}:${f.code}:${f.column}`)).toEqual([
      't1:E_SCHEMA_MISMATCH:no`te',
      't1:E_SCHEMA_MISMATCH:amount',
    ]);
    const f = report.failures.find((x) => x.column === 'amount')!;
    expect(f).toMatchObject({ table: 'order', side: 'to', check: 'schema' });
    expect(f.expected).toContain('decimal(19,4)');
    expect(f.actual).toContain('decimal(12,2)');
    for (const s of [
      '`order`',
      '`amount`',
      'shard s0 (from)',
      'shard t1 (to)',
      'decimal(19,4)',
      'decimal(12,2)',
    ])
      expect(f.message).toContain(s);
    expect(f.hint).toContain(
      `ALTER TABLE \`${db}\`.\`order\` MODIFY COLUMN \`amount\` decimal(19,4) NOT NULL DEFAULT 0.0000;`,
    );
    const note = report.failures.find((x) => x.column === 'no`te')!;
    expect(note.expected).toContain("DEFAULT 'it''s'");
    expect(note.hint).toContain('MODIFY COLUMN `no``te`');
  });

  it('reports a table missing on one target', async () => {
    await exec('t2', 'DROP TABLE customers');
    const from = topology('current', [shard('s0', 's0', db)], TABLES).topo;
    const to = topology('target', [shard('t2', 't2', db)], TABLES).topo;
    const report = await runPreflight({ from, to });
    expect(report.failures.map((f) => `${f.side}/${f.shard}:${f.code}:${f.table}`)).toEqual([
      'to/t2:E_TABLE_MISSING:customers',
    ]);
    expect(report.failures[0]!.message).toContain(`\`${db}\`.\`customers\``);
    expect(report.shards.find((s) => s.shard === 't2')!.checks.tables).toBe('fail');
  });
});

describe('preflight connectivity and grants', () => {
  const db = uniqueDb('pf_grants');
  const user = `pf_${randomBytes(4).toString('hex')}`;
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const envVar = `RESHARD_TEST_PF_PASSWORD_${randomBytes(3).toString('hex').toUpperCase()}`;
  let drop: () => Promise<void>;

  async function asRoot(server: SandboxName, sql: string) {
    const c = await rootConn(server);
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    drop = await createDatabases(['s0', 't0'], db, SCHEMA);
    process.env[envVar] = password;
    for (const s of ['s0', 't0'] as const)
      await asRoot(s, `CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`);
    await asRoot('s0', `GRANT SELECT, INSERT, UPDATE, DELETE ON \`${db}\`.* TO '${user}'@'%'`);
    await asRoot('t0', `GRANT SELECT ON \`${db}\`.* TO '${user}'@'%'`);
  });
  afterAll(async () => {
    for (const s of ['s0', 't0'] as const) await asRoot(s, `DROP USER IF EXISTS '${user}'@'%'`);
    delete process.env[envVar];
    await drop();
  });

  const topologies = () => ({
    from: topology(
      'current',
      [{ name: 's0', port: port('s0'), database: db, user, passwordEnv: envVar }],
      TABLES,
    ).topo,
    to: topology(
      'target',
      [{ name: 't0', port: port('t0'), database: db, user, passwordEnv: envVar }],
      TABLES,
    ).topo,
  });

  it('reports missing replication and write privileges with the exact GRANT, never the password', async () => {
    const report = await runPreflight(topologies());
    expect(report.failures.map((f) => `${f.side}/${f.shard}:${f.code}`)).toEqual([
      'from/s0:E_GRANTS',
      'to/t0:E_GRANTS',
    ]);
    const [src, tgt] = report.failures as [(typeof report.failures)[0], (typeof report.failures)[0]];
    expect(src.message).toContain(`'${user}'@'%'`);
    expect(src.message).toContain(`127.0.0.1:${port('s0')}`);
    expect(src.message).toContain('REPLICATION SLAVE, BINLOG MONITOR');
    expect(src.hint).toContain(`GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '${user}'@'%';`);
    // Table rights are granted on s0; the meta database there (reverse replication) is not.
    expect(src.hint).not.toContain(`ON \`${db}\``);
    expect(src.message).toContain('old shard for reverse replication');
    expect(src.hint).toContain(
      `GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON \`_reshard\`.* TO '${user}'@'%';`,
    );
    expect(tgt.message).toContain('INSERT, UPDATE, DELETE');
    expect(tgt.hint).toContain(`GRANT INSERT, UPDATE, DELETE ON \`${db}\`.* TO '${user}'@'%';`);
    expect(report.shards.find((s) => s.shard === 's0')!.user).toBe(`${user}@%`);
    let message = '';
    try {
      assertPreflight(report);
    } catch (e) {
      message = (e as Error).message + JSON.stringify((e as ReshardError).toJSON());
    }
    expect(message).toContain('E_GRANTS');
    expect(JSON.stringify(report)).not.toContain(password);
    expect(message).not.toContain(password);
  });

  it('accepts replication privileges under either name and table-level grants', async () => {
    await asRoot('s0', `GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${user}'@'%'`);
    await asRoot('t0', `GRANT REPLICA MONITOR, REPLICATION REPLICA, BINLOG MONITOR ON *.* TO '${user}'@'%'`);
    for (const t of ['order', 'customers'])
      await asRoot('t0', `GRANT INSERT, UPDATE, DELETE ON \`${db}\`.\`${t}\` TO '${user}'@'%'`);
    // reshard's own database on the target (positions, parked rows, the copy fence).
    await asRoot('t0', `GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON \`_reshard\`.* TO '${user}'@'%'`);
    // And on the old shard: reverse replication writes there after cutover.
    await asRoot('s0', `GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON \`_reshard\`.* TO '${user}'@'%'`);
    const report = await runPreflight(topologies());
    expect(report.failures).toEqual([]);
  });

  it('reports an unreachable shard as E_CONNECT and still checks the others', async () => {
    const closed = await freePort();
    const from = topology(
      'current',
      [shard('s0', 's0', db), { name: 'gone', port: closed, database: db }],
      TABLES,
    ).topo;
    const report = await runPreflight({ from });
    expect(report.failures.map((f) => `${f.shard}:${f.code}`)).toEqual(['gone:E_CONNECT']);
    expect(report.failures[0]!.message).toContain('shard gone');
    expect(report.failures[0]!.message).toContain(`127.0.0.1:${closed}`);
    const gone = report.shards.find((s) => s.shard === 'gone')!;
    expect(gone.reachable).toBe(false);
    expect(gone.checks).toMatchObject({ connect: 'fail', binlog: 'skipped', tables: 'skipped' });
    expect(report.shards.find((s) => s.shard === 's0')!.checks.tables).toBe('ok');
  });

  it('reports a wrong password as E_AUTH and a missing database as E_NO_DATABASE', async () => {
    const other = `${envVar}_WRONG`;
    process.env[other] = 'definitely-wrong';
    try {
      const from = topology(
        'current',
        [
          { name: 'auth', port: port('s0'), database: db, user, passwordEnv: other },
          { name: 'nodb', port: port('s0'), database: `${db}_absent` },
        ],
        TABLES,
      ).topo;
      const report = await runPreflight({ from });
      expect(report.failures.map((f) => `${f.shard}:${f.code}`)).toEqual([
        'auth:E_AUTH',
        'nodb:E_NO_DATABASE',
      ]);
    } finally {
      delete process.env[other];
    }
  });
});
