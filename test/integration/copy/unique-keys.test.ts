/**
 * Shards merging into one target: a secondary UNIQUE key must not let one source row overwrite
 * another. The applier's INSERT … ON DUPLICATE KEY UPDATE, on a clash of a new row's unique
 * value, updated the other row — primary key included — so a copy exited 0 with a source row
 * gone. Preflight now compares UNIQUE keys, and a clash between sources stops the copy with
 * E_UNIQUE_CONFLICT before anything of that transaction is written.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRouter } from '../../../src/plan/router.js';
import { rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { type Estate, jobArgs, makeEstate, reshard } from './helpers.js';

const TABLES = [{ name: 'acct', shardKey: 'id' }];

async function q(server: SandboxName, db: string, sql: string, params: unknown[] = []) {
  const c = await rootConn(server, db);
  try {
    const [rows] = await c.query(sql, params);
    return rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

/** Two source rows with different ids but the same `code`, one on each source. */
async function seedCollision(e: Estate): Promise<[number, number]> {
  const r = createRouter(e.from);
  let a: number | undefined;
  let b: number | undefined;
  for (let id = 1; id < 100 && (a === undefined || b === undefined); id++) {
    const owner = r.ownerOf(BigInt(id));
    if (owner === 's0' && a === undefined) a = id;
    if (owner === 's1' && b === undefined) b = id;
  }
  await q('s0', e.db, 'INSERT INTO acct (id, code, balance) VALUES (?, ?, ?)', [a, 'ACME', '100.00']);
  await q('s1', e.db, 'INSERT INTO acct (id, code, balance) VALUES (?, ?, ?)', [b, 'ACME', '250.00']);
  return [a!, b!];
}

/** One table `acct` (with `index`), merged from s0 and s1 into t0 alone. */
function acctEstate(
  prefix: string,
  index: string,
  afterSeed?: (db: string) => Promise<void>,
): Promise<Estate> {
  const db = uniqueDb(prefix);
  return makeEstate({
    prefix,
    db,
    rows: 0,
    tables: TABLES,
    schemaSql: `CREATE TABLE acct (id BIGINT NOT NULL PRIMARY KEY, code VARCHAR(16) NOT NULL, balance DECIMAL(19,2) NOT NULL, ${index}) ENGINE=InnoDB;`,
    targets: [{ name: 't0', server: 't0', database: db }],
    ...(afterSeed ? { afterSeed } : {}),
  });
}

async function runCopy(e: Estate) {
  return reshard(jobArgs(e, 'copy', '--execute', '--json'));
}

describe('copy into a target with a secondary UNIQUE key', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.drop();
    e = undefined;
  });

  it('an extra UNIQUE index on the target only is refused before any write', async () => {
    e = await acctEstate('uq_extra', 'KEY ix_code (code)', async (db) => {
      // The target's definition differs from the sources': ix_code is UNIQUE there.
      await q('t0', db, 'ALTER TABLE acct DROP INDEX ix_code, ADD UNIQUE KEY ix_code (code)');
    });
    await seedCollision(e);
    const r = await runCopy(e);
    const target = await q('t0', e.db, 'SELECT id, code, balance FROM acct ORDER BY id');
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toContain('E_SCHEMA_MISMATCH');
    expect(r.stdout).toContain('UNIQUE KEY `ix_code`');
    expect(r.stdout).toContain('DROP INDEX `ix_code`');
    expect(target).toEqual([]);
  });

  it('a UNIQUE key whose values collide across sources stops the copy instead of overwriting a row', async () => {
    // The same definition everywhere: preflight has nothing to object to. Each source enforces
    // the key for its own rows only, so two sources may hold the same code.
    e = await acctEstate('uq_same', 'UNIQUE KEY uq_code (code)');
    await seedCollision(e);
    const r = await runCopy(e);
    // Whatever copy does, it must not report success with a source row gone, and no target row
    // may carry another row's values under its key.
    const target = await q('t0', e.db, 'SELECT id, code, balance FROM acct ORDER BY id');
    const sources = [
      ...(await q('s0', e.db, 'SELECT id, code, balance FROM acct')),
      ...(await q('s1', e.db, 'SELECT id, code, balance FROM acct')),
    ];
    expect(r.code, r.stderr).toBe(3);
    const error = JSON.parse(r.stdout).error as { code: string; message: string; hint: string };
    expect(error.code).toBe('E_UNIQUE_CONFLICT');
    expect(error.message).toContain('uq_code');
    expect(error.message).toContain('(ACME)');
    expect(error.hint).toContain('each source enforces UNIQUE key uq_code for its own rows only');
    // At most one of the two rows arrived, exactly as its source holds it: none was merged.
    expect(target.length).toBeLessThanOrEqual(1);
    for (const t of target) expect(sources).toContainEqual(t);
  });
});
