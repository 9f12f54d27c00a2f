/**
 * Found by review G: source/target schema differences that preflight's table comparison (schema.ts,
 * diffTableDefinitions over columnSql) lets through, or reports with an ALTER that does not fix
 * them. Every test sets up one source shard (s0) and one target shard (t0) whose table differs
 * in exactly one way and runs the real preflight (which copy and verify run first).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPreflight } from '../../../src/preflight/index.js';
import type { PreflightIssue } from '../../../src/preflight/types.js';
import { createDatabases, port, rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { topology } from './helpers.js';

const db = uniqueDb('rg_schema');
let drop: () => Promise<void>;
let n = 0;

beforeAll(async () => {
  drop = await createDatabases(['s0', 't0'], db);
});
afterAll(async () => drop?.());

async function exec(server: SandboxName, sql: string, params: unknown[] = []) {
  const c = await rootConn(server, db);
  try {
    const [rows] = await c.query(sql, params);
    return rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

/** Table `name` created from `sourceCols` on s0 and `targetCols` on t0; the preflight's schema issues for it. */
async function schemaIssues(
  sourceCols: string,
  targetCols: string,
): Promise<{ table: string; issues: PreflightIssue[] }> {
  const table = `rg${++n}`;
  await exec(
    's0',
    `CREATE TABLE \`${table}\` (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, ${sourceCols}) ENGINE=InnoDB`,
  );
  await exec(
    't0',
    `CREATE TABLE \`${table}\` (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, ${targetCols}) ENGINE=InnoDB`,
  );
  const tables = [{ name: table, shardKey: 'id' }];
  const from = topology('current', [{ name: 's0', port: port('s0'), database: db }], tables).topo;
  const to = topology('target', [{ name: 't0', port: port('t0'), database: db }], tables).topo;
  const report = await runPreflight({ from, to });
  return { table, issues: report.failures.filter((f) => f.table === table) };
}

describe('preflight lets these source/target differences through', () => {
  it('ZEROFILL display width: INT(5) ZEROFILL on the source, INT(10) ZEROFILL on the target', async () => {
    const { table, issues } = await schemaIssues(
      'z INT(5) UNSIGNED ZEROFILL NOT NULL',
      'z INT(10) UNSIGNED ZEROFILL NOT NULL',
    );
    // What is at stake: the same stored number reads back as other text on the target, which is
    // what every client (and CONCAT, CAST, LIKE, generated columns) sees.
    await exec('s0', `INSERT INTO ${table} VALUES (1, 42)`);
    await exec('t0', `INSERT INTO ${table} VALUES (1, 42)`);
    const [s] = await exec('s0', `SELECT CONCAT(z) AS v FROM ${table}`);
    const [t] = await exec('t0', `SELECT CONCAT(z) AS v FROM ${table}`);
    expect([s!.v, t!.v]).toEqual(['00042', '0000000042']);
    // Must be refused before anything is written, with the fix.
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
    expect(issues.find((i) => i.code === 'E_SCHEMA_MISMATCH')?.hint).toMatch(
      /MODIFY COLUMN `z` int\(5\) unsigned zerofill/,
    );
  });

  it('generated column reading another column: CASE c_1 … on the source, CASE c_2 … on the target', async () => {
    // canonicalGenerationExpression drops `_<alnum>` before every string literal (meant for a
    // charset introducer such as _utf8mb4'x'), so `c_1 when 'x'` and `c_2 when 'x'` both read `cwhen'x'`.
    const { table, issues } = await schemaIssues(
      "c_1 VARCHAR(10) NULL, c_2 VARCHAR(10) NULL, g INT AS (CASE c_1 WHEN 'x' THEN 1 ELSE 0 END) STORED",
      "c_1 VARCHAR(10) NULL, c_2 VARCHAR(10) NULL, g INT AS (CASE c_2 WHEN 'x' THEN 1 ELSE 0 END) STORED",
    );
    await exec('s0', `INSERT INTO ${table} (id, c_1, c_2) VALUES (1, 'x', 'y')`);
    await exec('t0', `INSERT INTO ${table} (id, c_1, c_2) VALUES (1, 'x', 'y')`);
    const [s] = await exec('s0', `SELECT g FROM ${table}`);
    const [t] = await exec('t0', `SELECT g FROM ${table}`);
    expect([s!.g, t!.g]).toEqual([1, 0]);
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
    expect(issues.find((i) => i.code === 'E_SCHEMA_MISMATCH')?.column).toBe('g');
  });

  it("generated column with LIKE: c_1 LIKE 'x%' on the source, c_2 LIKE 'x%' on the target", async () => {
    const { issues } = await schemaIssues(
      "c_1 VARCHAR(10) NULL, c_2 VARCHAR(10) NULL, g TINYINT AS (c_1 LIKE 'x%') VIRTUAL",
      "c_1 VARCHAR(10) NULL, c_2 VARCHAR(10) NULL, g TINYINT AS (c_2 LIKE 'x%') VIRTUAL",
    );
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
  });

  it("expression default whose string literal differs only in letter case: concat('Ab','c') vs concat('ab','c')", async () => {
    // canonicalExpressionDefault lowercases the whole expression, string literals included.
    const { table, issues } = await schemaIssues(
      "d VARCHAR(20) NULL DEFAULT (concat('Ab','c'))",
      "d VARCHAR(20) NULL DEFAULT (concat('ab','c'))",
    );
    // At stake: every row inserted without `d` after cutover gets another value.
    await exec('s0', `INSERT INTO ${table} (id) VALUES (1)`);
    await exec('t0', `INSERT INTO ${table} (id) VALUES (1)`);
    const [s] = await exec('s0', `SELECT d FROM ${table}`);
    const [t] = await exec('t0', `SELECT d FROM ${table}`);
    expect([s!.d, t!.d]).toEqual(['Abc', 'abc']);
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
  });

  it('literal default: a newline on the source, a backslash and n on the target', async () => {
    // MariaDB prints a newline in COLUMN_DEFAULT as \n and a backslash as \\; canonicalDefault
    // un-doubles \\ but leaves \n, so both read `a\nb`.
    const { table, issues } = await schemaIssues(
      "d VARCHAR(20) NULL DEFAULT 'a\\nb'",
      "d VARCHAR(20) NULL DEFAULT 'a\\\\nb'",
    );
    await exec('s0', `INSERT INTO ${table} (id) VALUES (1)`);
    await exec('t0', `INSERT INTO ${table} (id) VALUES (1)`);
    const [s] = await exec('s0', `SELECT HEX(d) AS h FROM ${table}`);
    const [t] = await exec('t0', `SELECT HEX(d) AS h FROM ${table}`);
    expect([s!.h, t!.h]).toEqual(['610A62', '615C6E62']);
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
  });

  it('CHECK constraint on the target only (rows the source holds are refused mid-copy)', async () => {
    const { issues } = await schemaIssues('qty INT NOT NULL', 'qty INT NOT NULL CHECK (qty > 0)');
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
  });

  it('CHECK constraint on the source only (MariaDB JSON = LONGTEXT COLLATE utf8mb4_bin + CHECK json_valid)', async () => {
    // The application's JSON validation is gone on the target after cutover.
    const { issues } = await schemaIssues(
      'doc JSON NULL',
      'doc LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL',
    );
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
  });
});

describe('the suggested ALTER does not make the target match', () => {
  /** Run every E_SCHEMA_MISMATCH hint's ALTER on t0, in report order. */
  async function applyHints(issues: PreflightIssue[]): Promise<void> {
    for (const i of issues.filter((x) => x.code === 'E_SCHEMA_MISMATCH')) {
      const alter = /run (ALTER TABLE .*;)$/s.exec(i.hint)?.[1];
      expect(alter, i.hint).toBeDefined();
      await exec('t0', alter!);
    }
  }

  it('a default holding a newline: the hint writes a backslash and n instead', async () => {
    const { table, issues } = await schemaIssues(
      "d VARCHAR(20) NOT NULL DEFAULT 'a\\nb'",
      "d VARCHAR(20) NOT NULL DEFAULT 'zz'",
    );
    expect(issues.map((i) => i.code)).toEqual(['E_SCHEMA_MISMATCH']);
    await applyHints(issues);
    await exec('s0', `INSERT INTO ${table} (id) VALUES (1)`);
    await exec('t0', `INSERT INTO ${table} (id) VALUES (1)`);
    const [s] = await exec('s0', `SELECT HEX(d) AS h FROM ${table}`);
    const [t] = await exec('t0', `SELECT HEX(d) AS h FROM ${table}`);
    expect(t!.h).toBe(s!.h); // 610A62
  });

  it('a column named with other letter case: the hint ADDs a column the server says exists', async () => {
    const { table, issues } = await schemaIssues('Amount INT NULL', 'amount INT NULL');
    expect(issues.map((i) => i.code)).toContain('E_SCHEMA_MISMATCH');
    // Column names are case-insensitive: ADD COLUMN `Amount` fails with 1060 Duplicate column name.
    await applyHints(issues);
    const cols = await exec(
      't0',
      'SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
      [db, table],
    );
    expect(cols.map((r) => r.c)).toEqual(['id', 'Amount']);
  });
});
