/**
 * Identifiers that must be quoted everywhere: a database name with a space, a dot and non-ASCII
 * letters; tables named like a number, with a dot, a space, a backtick and a reserved word;
 * columns likewise. Copy, verify, --fix-sql (which must repair exactly) and the tailer.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitFixSql } from '../../../src/verify/fixsql.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn, type SandboxName } from '../../support/db.js';
import { type Estate, makeEstate, reshard } from './helpers.js';

const TABLES = [
  { name: '1e5', shardKey: 'user id' },
  { name: 'ta.ble `x`', shardKey: 'ключ' },
];
const SCHEMA = `
CREATE TABLE \`1e5\` (\`select\` BIGINT NOT NULL, \`user id\` BIGINT UNSIGNED NOT NULL, \`we\`\`ird.col\` VARCHAR(32) NULL, \`123\` INT NOT NULL DEFAULT 0, PRIMARY KEY (\`select\`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE \`ta.ble \`\`x\`\`\` (\`ключ\` BIGINT UNSIGNED NOT NULL, \`line no\` INT NOT NULL, \`from\` VARCHAR(32) NOT NULL, PRIMARY KEY (\`ключ\`, \`line no\`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
`;

describe('quoted identifiers end to end', () => {
  let e: Estate;
  beforeAll(async () => {
    const db = `rev a.ü 1e3 ${randomBytes(3).toString('hex')}`;
    e = await makeEstate({
      prefix: 'rev_a_ident',
      db,
      rows: 600,
      seed: 7,
      tables: TABLES,
      schemaSql: SCHEMA,
    });
  });
  afterAll(async () => e?.drop());

  const ctl = () => ['--plan', e.planPath, '--control', e.controlDsn];

  it('copies, verifies, and repairs with --fix-sql', async () => {
    const c = await reshard(['copy', ...ctl(), '--meta-db', e.metaDb, '--execute', '--json']);
    expect(c.code, c.stderr).toBe(0);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    const v = await reshard(['verify', ...ctl(), '--json']);
    expect(v.code, v.stderr).toBe(0);

    // Break one target row of each table, then repair with the generated SQL.
    for (const t of ['t0', 't1', 't2'] as SandboxName[]) {
      const conn = await rootConn(t, e.db);
      try {
        await conn.query(
          "UPDATE `1e5` SET `we``ird.col` = CONCAT('x', `we``ird.col`), `123` = `123` + 1 LIMIT 1",
        );
        await conn.query('DELETE FROM `ta.ble ``x``` LIMIT 1');
      } finally {
        await conn.end();
      }
    }
    const fix = join(e.dir, 'fix.sql');
    const bad = await reshard(['verify', ...ctl(), '--fix-sql', fix, '--json']);
    expect(bad.code, bad.stderr).toBe(4);
    const sections = splitFixSql(readFileSync(fix, 'utf8'));
    expect(sections.size).toBeGreaterThan(0);
    for (const [shard, sql] of sections) {
      const conn = await rootConn(shard as SandboxName, undefined, { multipleStatements: true });
      try {
        await conn.query(sql);
      } finally {
        await conn.end();
      }
    }
    const again = await reshard(['verify', ...ctl(), '--json']);
    expect(again.code, again.stderr).toBe(0);
  });

  it('the tailer applies inserts, updates and deletes on those tables', async () => {
    for (const s of ['s0', 's1'] as SandboxName[]) {
      const conn = await rootConn(s, e.db);
      try {
        await conn.query("UPDATE `1e5` SET `we``ird.col` = 'tailed', `123` = 42 ORDER BY `select` LIMIT 3");
        await conn.query('DELETE FROM `ta.ble ``x``` ORDER BY `ключ` LIMIT 2');
        await conn.query("UPDATE `ta.ble ``x``` SET `from` = 'to' ORDER BY `ключ` DESC LIMIT 2");
      } finally {
        await conn.end();
      }
    }
    const t = await reshard(['tail', ...ctl(), '--meta-db', e.metaDb, '--until-caught-up', '--json']);
    expect(t.code, t.stderr).toBe(0);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
  });
});
