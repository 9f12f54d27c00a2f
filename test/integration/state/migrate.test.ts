import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReshardError } from '../../../src/errors.js';
import {
  checkControlSchema,
  ensureControlSchema,
  loadMigrations,
  MIGRATIONS_DIR,
  VERSION_TABLE,
} from '../../../src/state/migrate.js';
import { VERSION } from '../../../src/version.js';
import { rootConn } from '../../support/db.js';
import { controls, dropDb, freshControl } from './helpers.js';

const EXPECTED_TABLES = [
  'reshard_binlog_positions',
  'reshard_bloom_filters',
  'reshard_change_epochs',
  'reshard_changed_keys',
  'reshard_copy_checkpoints',
  'reshard_copy_chunks',
  'reshard_copy_control',
  'reshard_cutover_journal',
  'reshard_job_events',
  'reshard_jobs',
  'reshard_plans',
  'reshard_routing_versions',
  'reshard_schema_version',
  'reshard_tail_status',
  'reshard_verify_buckets',
  'reshard_verify_runs',
];

async function rejectCode(p: Promise<unknown>): Promise<string> {
  const e = (await p.then(
    () => undefined,
    (err: unknown) => err,
  )) as ReshardError | undefined;
  expect(e, 'expected a rejection').toBeDefined();
  return e!.code;
}

describe('control schema migrator', () => {
  let db: string;
  let dsn: string;
  const ctls = controls();

  beforeEach(() => {
    ({ db, dsn } = freshControl('init'));
  });
  afterEach(async () => {
    await ctls.closeAll();
    await dropDb(db);
  });

  it('creates the database and every table, InnoDB utf8mb4, and records each migration', async () => {
    const res = await ensureControlSchema(await ctls.open(dsn));
    const known = loadMigrations();
    expect(res.version).toBe(known.length);
    expect(res.applied.map((m) => m.version)).toEqual(known.map((m) => m.version));

    const c = await rootConn('ctl');
    try {
      const [tables] = await c.query(
        'SELECT TABLE_NAME AS name, ENGINE AS engine, TABLE_COLLATION AS coll FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME',
        [db],
      );
      const rows = tables as { name: string; engine: string; coll: string }[];
      expect(rows.map((r) => r.name).sort()).toEqual(EXPECTED_TABLES);
      for (const r of rows) {
        expect(r.engine).toBe('InnoDB');
        expect(r.coll).toMatch(/^utf8mb4_/);
      }
      const [versions] = await c.query(
        `SELECT version, name, checksum, reshard_version, applied_at FROM \`${db}\`.${VERSION_TABLE} ORDER BY version`,
      );
      expect(versions).toEqual(
        known.map((m) => ({
          version: m.version,
          name: m.name,
          checksum: m.checksum,
          reshard_version: VERSION,
          applied_at: expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/),
        })),
      );
    } finally {
      await c.end();
    }
  });

  it('is a no-op the second time', async () => {
    await ensureControlSchema(await ctls.open(dsn));
    const again = await ensureControlSchema(await ctls.open(dsn));
    expect(again.applied).toEqual([]);
    expect(again.version).toBe(loadMigrations().length);
    expect(await checkControlSchema(await ctls.open(dsn))).toEqual({ database: db, version: again.version });
  });

  it('lets concurrent inits serialize on the lock: all succeed, each migration applied once', async () => {
    const conns = await Promise.all([1, 2, 3, 4].map(() => ctls.open(dsn)));
    const results = await Promise.all(conns.map((c) => ensureControlSchema(c)));
    const known = loadMigrations();
    expect(results.flatMap((r) => r.applied.map((m) => m.version)).sort()).toEqual(
      known.map((m) => m.version),
    );
    for (const r of results) expect(r.version).toBe(known.length);
    const c = await rootConn('ctl');
    try {
      const [rows] = await c.query(`SELECT COUNT(*) AS n FROM \`${db}\`.${VERSION_TABLE}`);
      expect(Number((rows as { n: string }[])[0]!.n)).toBe(known.length);
    } finally {
      await c.end();
    }
  });

  it('re-runs a migration whose version row is missing (crash between its DDL and its record)', async () => {
    const { version } = await ensureControlSchema(await ctls.open(dsn));
    const c = await rootConn('ctl');
    try {
      await c.query(`DELETE FROM \`${db}\`.${VERSION_TABLE} WHERE version = ?`, [version]);
    } finally {
      await c.end();
    }
    const res = await ensureControlSchema(await ctls.open(dsn));
    expect(res.applied.map((m) => m.version)).toEqual([loadMigrations().length]);
  });

  it('refuses a control schema written by a newer reshard (E_CONTROL_TOO_NEW), in init and in other commands', async () => {
    await ensureControlSchema(await ctls.open(dsn));
    const c = await rootConn('ctl');
    try {
      await c.query(
        `INSERT INTO \`${db}\`.${VERSION_TABLE} (version, name, checksum, reshard_version) VALUES (9999, 'from_the_future', REPEAT('a', 64), '99.0.0')`,
      );
    } finally {
      await c.end();
    }
    const err = await ensureControlSchema(await ctls.open(dsn)).catch((e: ReshardError) => e);
    expect((err as ReshardError).code).toBe('E_CONTROL_TOO_NEW');
    expect((err as ReshardError).exitCode).toBe(3);
    expect((err as ReshardError).message).toMatch(/version 9999/);
    expect((err as ReshardError).message).toMatch(/newer reshard/);
    expect((err as ReshardError).hint).toMatch(/99\.0\.0/);
    expect(await rejectCode(checkControlSchema(await ctls.open(dsn)))).toBe('E_CONTROL_TOO_NEW');
  });

  it('refuses an applied migration whose checksum differs from the shipped file (E_CONTROL_MIGRATION_CHANGED)', async () => {
    await ensureControlSchema(await ctls.open(dsn));
    const c = await rootConn('ctl');
    try {
      await c.query(`UPDATE \`${db}\`.${VERSION_TABLE} SET checksum = REPEAT('0', 64) WHERE version = 1`);
    } finally {
      await c.end();
    }
    expect(await rejectCode(ensureControlSchema(await ctls.open(dsn)))).toBe('E_CONTROL_MIGRATION_CHANGED');
    expect(await rejectCode(checkControlSchema(await ctls.open(dsn)))).toBe('E_CONTROL_MIGRATION_CHANGED');
  });

  describe('with a newer set of migration files', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'reshard-migrations-'));
      cpSync(fileURLToPath(MIGRATIONS_DIR), dir, { recursive: true });
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('applies only the new file; the older binary then refuses the schema as too new', async () => {
      await ensureControlSchema(await ctls.open(dsn));
      const n = loadMigrations().length;
      const next = String(n + 1).padStart(4, '0');
      writeFileSync(
        join(dir, `${next}_extra.sql`),
        '-- a later issue adds a table\nCREATE TABLE IF NOT EXISTS reshard_extra (\n  id INT NOT NULL PRIMARY KEY\n) ENGINE=InnoDB;\n',
      );
      const newer = loadMigrations(dir);

      expect(await rejectCode(checkControlSchema(await ctls.open(dsn), { migrations: newer }))).toBe(
        'E_CONTROL_OUTDATED',
      );
      const res = await ensureControlSchema(await ctls.open(dsn), { migrations: newer });
      expect(res.applied.map((m) => m.name)).toEqual(['extra']);
      expect(res.version).toBe(n + 1);

      expect(await rejectCode(checkControlSchema(await ctls.open(dsn)))).toBe('E_CONTROL_TOO_NEW');
      expect(await rejectCode(ensureControlSchema(await ctls.open(dsn)))).toBe('E_CONTROL_TOO_NEW');
    });

    it('refuses when a shipped file was edited after it was applied', async () => {
      await ensureControlSchema(await ctls.open(dsn));
      writeFileSync(
        join(dir, '0001_core.sql'),
        '-- edited\nCREATE TABLE IF NOT EXISTS reshard_x (id INT PRIMARY KEY);\n',
      );
      expect(
        await rejectCode(ensureControlSchema(await ctls.open(dsn), { migrations: loadMigrations(dir) })),
      ).toBe('E_CONTROL_MIGRATION_CHANGED');
    });
  });

  it('checkControlSchema refuses a database that was never initialised, with an init hint', async () => {
    // Neither the database …
    const err = await checkControlSchema(await ctls.open(dsn)).catch((e: ReshardError) => e);
    expect((err as ReshardError).code).toBe('E_CONTROL_NOT_INITIALIZED');
    expect((err as ReshardError).hint).toContain(`reshard init --control ${dsn}`);
    // … nor an existing but empty one.
    const c = await rootConn('ctl');
    try {
      await c.query(`CREATE DATABASE \`${db}\``);
    } finally {
      await c.end();
    }
    expect(await rejectCode(checkControlSchema(await ctls.open(dsn)))).toBe('E_CONTROL_NOT_INITIALIZED');
  });
});
