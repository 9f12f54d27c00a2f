/**
 * Cases a review of the copy path found (each failed before its fix): an ENUM in the primary key
 * (pages skipped rows, now refused before anything is written), FLOAT values rounded in transit
 * (the server prints FLOAT with 6 digits), and a worker started while the job is paused.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { setCopyControl } from '../../../src/copy/control.js';
import { runCopy } from '../../../src/copy/run.js';
import { openJob } from '../../../src/job/context.js';
import { createRouter } from '../../../src/plan/router.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { copyAll, type Estate, makeEstate } from './helpers.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

/** One source (s0, owner of every key) → two targets (t0, t1): every row moves. */
async function oneSourceEstate(prefix: string, schemaSql: string, table: string, shardKey: string) {
  const db = uniqueDb(prefix);
  const e = await makeEstate({
    prefix,
    db,
    rows: 0,
    schemaSql,
    tables: [{ name: table, shardKey }],
    sources: [{ name: 's0', server: 's0', database: db }],
    targets: [
      { name: 't0', server: 't0', database: db },
      { name: 't1', server: 't1', database: db },
    ],
  });
  estates.push(e);
  return e;
}

async function query<T>(server: SandboxName, db: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = await rootConn(server, db);
  try {
    const [rows] = await c.query(sql, params);
    return rows as T[];
  } finally {
    await c.end();
  }
}

describe('reshard copy: keys it cannot page', () => {
  // ORDER BY an ENUM sorts by member number, but `enum_col > 'z'` compares labels: key-range
  // pages disagreed with their own order and a copy "completed" with half the rows. Refused now,
  // by copy and verify alike (test/unit/verify/table.test.ts), before anything is written.
  it('refuses a table whose primary key has an ENUM column, before writing a row', async () => {
    const e = await oneSourceEstate(
      'cpenum',
      `CREATE TABLE ek (
         kind ENUM('z','a') NOT NULL,
         id   INT NOT NULL,
         sk   BIGINT NOT NULL,
         PRIMARY KEY (kind, id)
       ) ENGINE=InnoDB`,
      'ek',
      'sk',
    );
    await query('s0', e.db, "INSERT INTO ek (kind, id, sk) VALUES ('z', 1, 1), ('a', 1, 10001)");
    const err = await copyAll(e).then(
      () => undefined,
      (x: unknown) => x as { code?: string; message?: string; hint?: string },
    );
    // Copy runs the preflight first: its report names the problem.
    expect(err?.code).toBe('E_PREFLIGHT');
    expect(JSON.stringify(err)).toMatch(/E_PK_ENUM/);
    expect(String(err?.message)).toMatch(/primary key column `kind` of `.*`\.`ek` is enum\('z','a'\)/);
    for (const t of ['t0', 't1'] as const) {
      const has = await query<{ n: string }>(
        t,
        'information_schema',
        'SELECT COUNT(*) AS n FROM TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
        [e.db, 'ek'],
      );
      if (Number(has[0]!.n) > 0)
        expect(Number((await query<{ n: string }>(t, e.db, 'SELECT COUNT(*) AS n FROM ek'))[0]!.n)).toBe(0);
    }
  });
});

describe('reshard copy: exact FLOAT values', () => {
  // MariaDB's text protocol prints FLOAT with 6 significant digits (16777215 → "16777200",
  // 1.2345678 → "1.23457"); the copy wrote that text back. It reads them as DOUBLE now.
  for (const bulk of [true, false]) {
    it(`keeps FLOAT values exact (${bulk ? 'LOAD DATA raw path' : 'applier path'})`, async () => {
      const e = await oneSourceEstate(
        `cpfloat${bulk ? 'b' : 'a'}`,
        `CREATE TABLE fl (
           id BIGINT NOT NULL PRIMARY KEY,
           sk BIGINT NOT NULL,
           f  FLOAT NULL,
           d  DOUBLE NULL
         ) ENGINE=InnoDB`,
        'fl',
        'sk',
      );
      await query(
        's0',
        e.db,
        `INSERT INTO fl VALUES (1, 1, 16777215, 16777215), (2, 2, 1.2345678, 1.2345678),
           (3, 3, 0.1, 0.1), (4, 4, 3.4028234e38, 1e300), (5, 5, NULL, NULL), (6, 6, 123456.789, 2.5)`,
      );
      const s = await runCopy({
        planPath: e.planPath,
        control: e.controlDsn,
        metaDb: e.metaDb,
        progress: 'none',
        bulk,
      });
      expect(s.complete).toBe(true);
      const exact = 'SELECT id, CAST(f AS DOUBLE) AS f, d FROM fl ORDER BY id';
      const src = await query<{ id: string; f: number | null; d: number | null }>('s0', e.db, exact);
      const tgt = [
        ...(await query<{ id: string; f: number | null; d: number | null }>('t0', e.db, exact)),
        ...(await query<{ id: string; f: number | null; d: number | null }>('t1', e.db, exact)),
      ].sort((a, b) => Number(a.id) - Number(b.id));
      expect(tgt).toEqual(src);
    });
  }
});

describe('reshard copy: FLOAT values and verify', () => {
  // verify hashed the server's 6-digit text of a FLOAT, the same rounding on both sides: a value
  // the copy changed was invisible to it. Both now read FLOAT as DOUBLE.
  it('a copy keeps FLOAT values and verify agrees; a changed FLOAT is a difference', async () => {
    const e = await oneSourceEstate(
      'cpfloatv',
      `CREATE TABLE fl (id BIGINT NOT NULL PRIMARY KEY, sk BIGINT NOT NULL, f FLOAT NULL) ENGINE=InnoDB`,
      'fl',
      'sk',
    );
    await query('s0', e.db, 'INSERT INTO fl VALUES (1, 1, 16777215), (2, 2, 1.2345678), (3, 3, 123456.789)');
    expect((await copyAll(e)).complete).toBe(true);
    const exact = 'SELECT COUNT(*) AS n FROM fl WHERE f IN (16777215, 1.2345678, 123456.789)';
    let same = 0;
    for (const t of ['t0', 't1'] as const) same += Number((await query<{ n: string }>(t, e.db, exact))[0]!.n);
    const src = Number((await query<{ n: string }>('s0', e.db, exact))[0]!.n);
    const { runVerify } = await import('../../../src/verify/verifier.js');
    const report = await runVerify({
      planPath: e.planPath,
      control: e.controlDsn,
      recheck: { rounds: 0, pauseMs: 0 },
    });
    expect(same).toBe(src);
    expect(report.ok).toBe(true);
    // One float changed in its last bit on its target: verify must see it.
    for (const t of ['t0', 't1'] as const) await query(t, e.db, 'UPDATE fl SET f = 16777214 WHERE id = 1');
    const again = await runVerify({
      planPath: e.planPath,
      control: e.controlDsn,
      recheck: { rounds: 0, pauseMs: 0 },
    });
    expect(again.ok).toBe(false);
    expect(again.totals.different).toBe(1);
  });
});

describe('reshard copy: pause', () => {
  // A job paused through the control schema (`reshard copy --pause`) must not be copied by a
  // worker that starts (or restarts) while it is paused. run.ts read the control row only from
  // a 1 s interval timer, after the slots had started.
  it('a worker started while the job is paused copies nothing', async () => {
    const e = await makeEstate({ prefix: 'cppause', rows: 2000, seed: 3 });
    estates.push(e);
    const ctx = await openJob({ planPath: e.planPath, control: e.controlDsn, create: true });
    try {
      await setCopyControl(ctx.control.conn, ctx.job.id, { paused: true });
    } finally {
      await ctx.close();
    }
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 4000);
    try {
      const s = await runCopy({
        planPath: e.planPath,
        control: e.controlDsn,
        metaDb: e.metaDb,
        progress: 'none',
        signal: stop.signal,
      });
      expect(s.rows).toBe(0);
    } finally {
      clearTimeout(timer);
    }
  });
});

describe('reshard copy: a latin1 shard key', () => {
  // The router hashes a text key's UTF-8 bytes; CRC32(col) in the copy's SQL filter hashed the
  // column's latin1 bytes ('é' is E9 there, C3 A9 in UTF-8), so the filter and the router could
  // pick different rows. The filter converts such a key to utf8mb4 first.
  it('moves exactly the rows the router moves, for non-ASCII keys in an in-place expansion', async () => {
    const db = uniqueDb('cplatin');
    const e = await makeEstate({
      prefix: 'cplatin',
      db,
      rows: 0,
      schemaSql:
        'CREATE TABLE names (name VARCHAR(40) CHARACTER SET latin1 NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB',
      tables: [{ name: 'names', shardKey: 'name' }],
      sources: [
        { name: 's0', server: 's0', database: db },
        { name: 's1', server: 's1', database: db },
      ],
      targets: [
        { name: 's0', server: 's0', database: db },
        { name: 's1', server: 's1', database: db },
        { name: 's2', server: 't0', database: db },
      ],
    });
    estates.push(e);
    const from = createRouter(e.from);
    const to = createRouter(e.to);
    const bySource = new Map<string, string[]>();
    let moving = 0;
    for (let i = 0; i < 300; i++) {
      const name = `${['é', 'ü', 'ß', 'ñ', 'ø'][i % 5]}${i}`;
      const s = String(from.ownerOf(name));
      if (String(to.ownerOf(name)) === 's2') moving++;
      bySource.set(s, [...(bySource.get(s) ?? []), name]);
    }
    expect(moving).toBeGreaterThan(0);
    for (const [s, names] of bySource)
      await query(
        s as SandboxName,
        e.db,
        `INSERT INTO names VALUES ${names.map(() => '(?, 1)').join(', ')}`,
        names,
      );
    expect((await copyAll(e)).complete).toBe(true);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    const onNew = await query<{ n: string }>('t0', e.db, 'SELECT COUNT(*) AS n FROM names');
    expect(Number(onNew[0]!.n)).toBe(moving);
  });
});
