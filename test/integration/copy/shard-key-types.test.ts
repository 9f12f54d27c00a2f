/**
 * Found by review D: the copy selects moving rows with SQL (`PlanIndex.sqlPredicate` over
 * `TableMeta.sql.shardKey`) and re-checks each row with the JavaScript router. A row the SQL
 * filter leaves out is never read, so never copied; the tailer only carries later changes, and
 * cleanup later deletes the old copy. Each test sets up keys where the two must agree, and looks
 * where every row ended.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createRouter, type RouteKey } from '../../../src/plan/router.js';
import { rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { copyAll, type Estate, makeEstate } from './helpers.js';
import { copy, oneSourceEstate, sql, verify } from './one-source.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

async function query<T>(server: SandboxName, db: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = await rootConn(server, db);
  try {
    const [rows] = await c.query(text, params);
    return rows as T[];
  } finally {
    await c.end();
  }
}

/** In-place expansion s0, s1 → s0, s1, s2 (s2 on the t0 server) under hash-mod crc32. */
async function inPlaceEstate(prefix: string, schemaSql: string, table: string, shardKey: string) {
  const db = uniqueDb(prefix);
  const e = await makeEstate({
    prefix,
    db,
    rows: 0,
    schemaSql,
    tables: [{ name: table, shardKey }],
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
  return e;
}

describe('copy of an in-place expansion with a ZEROFILL integer shard key', () => {
  // The router hashes an integer key's decimal text ('42'); CRC32(col) of an INT ZEROFILL column
  // hashes the text the server prints ('000042'). The copy's SQL filter therefore selects
  // another set of rows than the router moves: rows the router moves to s2 are never read.
  it('copies to s2 every row the router moves there', async () => {
    const e = await inPlaceEstate(
      'rdzf',
      'CREATE TABLE acct (id INT NOT NULL PRIMARY KEY, sk INT(6) UNSIGNED ZEROFILL NOT NULL, bal DECIMAL(12,2) NOT NULL) ENGINE=InnoDB',
      'acct',
      'sk',
    );
    const from = createRouter(e.from);
    const to = createRouter(e.to);
    const bySource = new Map<string, number[]>();
    const moving: number[] = [];
    for (let k = 1; k <= 300; k++) {
      const s = from.ownerOf(k);
      if (to.ownerOf(k) === 's2') moving.push(k);
      bySource.set(s, [...(bySource.get(s) ?? []), k]);
    }
    expect(moving.length).toBeGreaterThan(50);
    for (const [s, ks] of bySource)
      await query(
        s as SandboxName,
        e.db,
        `INSERT INTO acct VALUES ${ks.map((k) => `(${k}, ${k}, 100.00)`).join(', ')}`,
      );
    expect((await copyAll(e)).complete).toBe(true);
    const onS2 = (await query<{ id: number }>('t0', e.db, 'SELECT id FROM acct ORDER BY id')).map((r) =>
      Number(r.id),
    );
    // Now: s2 holds another set of rows (those whose zero-padded text hashes to s2's residues
    // and which the router also moves), and most of the rows the router moves are missing.
    expect(onS2).toEqual(moving);
  });
});

describe('a BIT shard key through the copy', () => {
  // Text-protocol bytes (the LOAD DATA path, verify) vs the driver's Buffer decoded as UTF-8
  // (the applier path: routeKeyOf with keyKind 'string'), for BIT values ≥ 0x80.
  for (const bulk of [true, false]) {
    it(`puts every row on the owner of its bytes (${bulk ? 'LOAD DATA path' : 'applier path'})`, async () => {
      const e = await oneSourceEstate(
        `rdbit${bulk ? 'b' : 'a'}`,
        'CREATE TABLE bt (id INT NOT NULL PRIMARY KEY, k BIT(8) NOT NULL, v INT NOT NULL) ENGINE=InnoDB',
        'bt',
        'k',
      );
      estates.push(e);
      const vals: number[] = [];
      for (let i = 0; i < 40; i++) vals.push(0x80 + i * 3);
      await sql('s0', e.db, `INSERT INTO bt VALUES ${vals.map((b, i) => `(${i}, ${b}, 1)`).join(', ')}`);
      expect((await copy(e, bulk)).complete).toBe(true);
      const router = createRouter(e.to);
      const where = new Map<number, string[]>();
      for (const t of ['t0', 't1'] as SandboxName[])
        for (const r of await sql(t, e.db, 'SELECT k + 0 AS k FROM bt'))
          where.set(Number(r.k), [...(where.get(Number(r.k)) ?? []), t]);
      const wrong = vals
        .map((b) => ({ b, want: router.ownerOf(Buffer.from([b]) as RouteKey), got: where.get(b) ?? [] }))
        .filter((x) => x.got.length !== 1 || x.got[0] !== x.want)
        .map((x) => `${x.b.toString(16)}: on [${x.got.join(', ')}], owner ${x.want}`);
      expect(wrong).toEqual([]);
      expect((await verify(e)).ok).toBe(true);
    });
  }
});
