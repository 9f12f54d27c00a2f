/**
 * Found by review G: schema differences preflight lets through (see schema-differences.test.ts), carried on
 * through the real `copy` and `verify`: the copy writes, the target holds other values, and
 * verify calls the estate clean. One source (s0) → one target (t0): every row moves to t0.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { openJob } from '../../../src/job/context.js';
import { runVerify } from '../../../src/verify/verifier.js';
import { rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { copyAll, type Estate, makeEstate } from '../copy/helpers.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

async function sql(server: SandboxName, db: string, text: string, params: unknown[] = []) {
  const c = await rootConn(server, db);
  try {
    const [rows] = await c.query(text, params);
    return rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

/** s0 → t0 with one table `schemaSql` on both; `sourceRows` inserted on s0, `targetAlter` run on t0. */
async function estate(
  prefix: string,
  schemaSql: string,
  table: string,
  sourceRows: string,
  targetAlter: string,
) {
  const db = uniqueDb(prefix);
  const e = await makeEstate({
    prefix,
    db,
    rows: 0,
    schemaSql,
    tables: [{ name: table, shardKey: 'id' }],
    sources: [{ name: 's0', server: 's0', database: db }],
    targets: [{ name: 't0', server: 't0', database: db }],
    afterSeed: async () => {
      await sql('s0', db, sourceRows);
      await sql('t0', db, targetAlter);
    },
  });
  estates.push(e);
  return e;
}

/** The verdict of a full verify run: 'clean', 'mismatch', or the code it was refused with. */
async function verdict(e: Estate): Promise<string> {
  const ctx = await openJob({ planPath: e.planPath, control: e.controlDsn, create: true });
  await ctx.close();
  return runVerify({ planPath: e.planPath, control: e.controlDsn, recheck: { rounds: 1, pauseMs: 0 } }).then(
    (r) => (r.ok ? 'clean' : 'mismatch'),
    (err: { code?: string }) => err.code ?? String(err),
  );
}

const GEN_SCHEMA = `CREATE TABLE gx (
  id  BIGINT UNSIGNED NOT NULL,
  c_1 VARCHAR(10) NULL,
  c_2 VARCHAR(10) NULL,
  g   INT AS (CASE c_1 WHEN 'x' THEN 1 ELSE 0 END) STORED,
  PRIMARY KEY (id)
) ENGINE=InnoDB`;
const GEN_ROWS = "INSERT INTO gx (id, c_1, c_2) VALUES (1, 'x', 'y'), (2, 'y', 'x'), (3, 'x', 'x')";
const GEN_ALTER = "ALTER TABLE gx MODIFY g INT AS (CASE c_2 WHEN 'x' THEN 1 ELSE 0 END) STORED";

describe('a generated column computed from another column on the target', () => {
  it('copy refuses it before writing a row', async () => {
    const e = await estate('rgcopygen', GEN_SCHEMA, 'gx', GEN_ROWS, GEN_ALTER);
    const err = await copyAll(e).then(
      () => undefined,
      (x: unknown) => x as { code?: string },
    );
    const rows = await sql('t0', e.db, 'SELECT id, g FROM gx ORDER BY id');
    // Now: the copy completes and t0 holds g = 0, 1, 1 where s0 holds 1, 0, 1.
    expect({ code: err?.code, rows }).toEqual({ code: 'E_PREFLIGHT', rows: [] });
  });

  it('verify does not call it clean', async () => {
    const e = await estate('rgvergen', GEN_SCHEMA, 'gx', GEN_ROWS, GEN_ALTER);
    // As a finished copy leaves it: every written column byte-identical.
    await sql('t0', e.db, GEN_ROWS);
    const s = await sql('s0', e.db, 'SELECT id, g FROM gx ORDER BY id');
    const t = await sql('t0', e.db, 'SELECT id, g FROM gx ORDER BY id');
    expect(s.map((r) => r.g)).toEqual([1, 0, 1]);
    expect(t.map((r) => r.g)).toEqual([0, 1, 1]);
    expect(await verdict(e)).not.toBe('clean');
  });
});

describe('a ZEROFILL column of another display width on the target', () => {
  const SCHEMA =
    'CREATE TABLE zf (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, z INT(5) UNSIGNED ZEROFILL NOT NULL) ENGINE=InnoDB';
  const ROWS = 'INSERT INTO zf VALUES (1, 42), (2, 7), (3, 12345)';
  const ALTER = 'ALTER TABLE zf MODIFY z INT(10) UNSIGNED ZEROFILL NOT NULL';

  it('copy refuses it before writing a row', async () => {
    const e = await estate('rgcopyzf', SCHEMA, 'zf', ROWS, ALTER);
    const err = await copyAll(e).then(
      () => undefined,
      (x: unknown) => x as { code?: string },
    );
    const rows = await sql('t0', e.db, 'SELECT id, CONCAT(z) AS z FROM zf ORDER BY id');
    // Now: copied; every client reads 0000000042 on t0 where s0 says 00042.
    expect({ code: err?.code, rows }).toEqual({ code: 'E_PREFLIGHT', rows: [] });
  });

  // Passes today (kept as coverage): verify reads the zero-padded text and reports the rows different.
  it('verify does not call it clean', async () => {
    const e = await estate('rgverzf', SCHEMA, 'zf', ROWS, ALTER);
    await sql('t0', e.db, ROWS);
    const s = await sql('s0', e.db, 'SELECT CONCAT(z) AS z FROM zf ORDER BY id');
    const t = await sql('t0', e.db, 'SELECT CONCAT(z) AS z FROM zf ORDER BY id');
    expect(s.map((r) => r.z)).toEqual(['00042', '00007', '12345']);
    expect(t.map((r) => r.z)).toEqual(['0000000042', '0000000007', '0000012345']);
    expect(await verdict(e)).not.toBe('clean');
  });
});

describe('a CHECK constraint on the target only', () => {
  it('copy refuses it before writing a row (not midway, at the first row the target rejects)', async () => {
    const SCHEMA =
      'CREATE TABLE ck (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, qty INT NOT NULL) ENGINE=InnoDB';
    // 20000 valid rows, then one the target's CHECK refuses.
    const ROWS = 'INSERT INTO ck SELECT seq, 1 FROM seq_1_to_20000; INSERT INTO ck VALUES (20001, 0)';
    const e = await estate(
      'rgcopyck',
      SCHEMA,
      'ck',
      ROWS,
      'ALTER TABLE ck ADD CONSTRAINT qty_positive CHECK (qty > 0)',
    );
    const err = await copyAll(e).then(
      () => undefined,
      (x: unknown) => x as { code?: string; message?: string },
    );
    const [n] = await sql('t0', e.db, 'SELECT COUNT(*) AS n FROM ck');
    // Now: 15000 rows written, then the copy dies on the target's error 4025 (CONSTRAINT
    // `qty_positive` failed), which mysql2 labels ER_INNODB_AUTOEXTEND_SIZE_OUT_OF_RANGE.
    expect({ code: err?.code, written: Number(n!.n), message: err?.message }).toEqual({
      code: 'E_PREFLIGHT',
      written: 0,
      message: expect.stringContaining('qty_positive'),
    });
  });
});
