/**
 * Found by review E. The applier's parked rows against writes that reach the target other than through a
 * stream's applier (an in-place shard's application, the copier's bulk path). Each case is one sequence of operations in the order a real run can
 * deliver them; the final state is what the sources hold.
 *
 * Source side: 2 shards, identity hash-mod on user_id (even → s0, odd → s1), one target t0.
 * A direct DELETE on t0 stands for the application of an in-place shard (the target is the same
 * database as a source: the application deletes the row in the very table the tailer writes,
 * and no stream carries that delete — src/apply/README.md, "a freed key").
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type RowOp, sourceOwnerFn, TargetApplier } from '../../../src/apply/applier.js';
import { loadTableMeta, type TableMeta } from '../../../src/apply/table.js';
import type { Row } from '../../../src/apply/values.js';
import { bulkPlan, loadAbsent, TsvEncoder } from '../../../src/copy/bulk.js';
import { createRouter } from '../../../src/plan/router.js';
import { requireTableDefinition } from '../../../src/preflight/schema.js';
import { parseTopology } from '../../../src/topology/load.js';
import { createDatabases, rootConn, topologyYaml, uniqueDb } from '../../support/db.js';

const SCHEMA = `
CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, note VARCHAR(40) NULL, KEY (user_id)) ENGINE=InnoDB;
CREATE TABLE coupons (code VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, v INT NOT NULL, KEY (user_id)) ENGINE=InnoDB;
`;

describe('parked rows vs writes outside the streams', () => {
  const db = uniqueDb('reve');
  const metaDb = `${db}_meta`;
  let drop: () => Promise<void>;
  let conn: Connection;
  let orders: TableMeta;
  let coupons: TableMeta;
  const appliers: TargetApplier[] = [];

  const topo = parseTopology(
    topologyYaml({
      shards: [
        { name: 's0', server: 's0', database: 'x' },
        { name: 's1', server: 's1', database: 'x' },
      ],
      tables: [
        { name: 'orders', shardKey: 'user_id' },
        { name: 'coupons', shardKey: 'user_id' },
      ],
      scheme: '{ type: hash-mod, hash: identity }',
    }),
    'review-e.yaml',
  );
  const router = createRouter(topo);
  const ownerOf = sourceOwnerFn((k) => router.ownerOf(k));
  let job = 100;

  /** The tailer's applier for `source` on t0 (it looks for freed parked keys, as the tailer's does). */
  async function tailApplier(
    source: string,
    jobId: number,
    tables: () => TableMeta[],
  ): Promise<TargetApplier> {
    const a = new TargetApplier({
      jobId,
      owner: `test/${db}/${jobId}`,
      target: 't0',
      metaDb,
      sourceOwnerOf: ownerOf,
      connect: () => rootConn('t0', db, { multipleStatements: true }),
      freedParked: { source, tables },
    });
    await a.open();
    appliers.push(a);
    return a;
  }

  beforeAll(async () => {
    drop = await createDatabases(['t0'], db, SCHEMA);
    conn = await rootConn('t0', db);
    orders = await loadTableMeta(conn, db, { name: 'orders', shardKey: 'user_id' }, 'test');
    coupons = await loadTableMeta(conn, db, { name: 'coupons', shardKey: 'user_id' }, 'test');
  });
  beforeEach(() => {
    job++;
  });
  afterAll(async () => {
    for (const a of appliers) await a.close();
    await conn.query(`DROP DATABASE IF EXISTS \`${metaDb}\``);
    await conn.end();
    await drop();
  });

  const up = (table: TableMeta, source: string, row: Row): RowOp => ({ kind: 'upsert', table, source, row });
  const del = (table: TableMeta, source: string, row: Row): RowOp => ({ kind: 'delete', table, source, row });
  const rowsOf = async (sql: string) => {
    const [r] = await conn.query<RowDataPacket[]>({ sql, rowsAsArray: true });
    return (r as unknown as unknown[][]).map((x) => x.map((v) => (v === null ? null : String(v))));
  };
  const parkedCount = async (jobId: number) => {
    const [p] = await conn.query<RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM \`${metaDb}\`.parked_rows WHERE job_id = ?`,
      [jobId],
    );
    return Number(p[0]!.n);
  };
  const freedCheckDue = async (a: TargetApplier) => {
    const deadline = Date.now() + 5_000;
    while (!a.freedCheckDue() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  };

  // Order 41 moves from user 2 (s0, the in-place shard) to user 3 (s1), then is deleted on s1.
  // s1's tailer parks its insert against s0's live row; the application deletes the row on s0
  // (in place, no stream carries it), and before the once-a-second look the copier's bulk path
  // loads s1's current row (the key is free, so LOAD DATA inserts it without a warning). The
  // bulk path does not clear s1's parked row (bulk.ts assumes a parked row exists only while the
  // key is held). s1's delete then deletes the copied row and promotes the parked image — s1's
  // OWN stale row — under a key no source holds any more.
  it('a row the copier bulk-loads over its own source’s parked image is not resurrected by its delete', async () => {
    const jobId = job;
    const s1 = await tailApplier('s1', jobId, () => [orders]);
    await conn.query('DELETE FROM orders');
    // The in-place shard's own row (s0's, staying segment).
    await conn.query("INSERT INTO orders (id, user_id, note) VALUES (41, 2, 'on s0')");
    // s1's stream: the insert of the moved row, parked against s0's live row.
    const st1 = await s1.apply([up(orders, 's1', ['41', '3', 'moved'])]);
    expect(st1.parked).toBe(1);
    // The application deletes the row on s0 (the in-place target itself).
    await conn.query('DELETE FROM orders WHERE id = 41');
    // The copier's bulk path, s1's current row.
    const def = await requireTableDefinition(conn, db, 'orders', 'test');
    const plan = bulkPlan(orders, def)!;
    const enc = new TsvEncoder(plan.modes, 1 << 20);
    enc.add(['41', '3', 'moved']);
    const bulkConn = await rootConn('t0', db);
    try {
      for (const b of enc.finish()) expect(await loadAbsent(bulkConn, plan, b)).toBe(true);
    } finally {
      await bulkConn.end();
    }
    // s1's stream goes on: the order is deleted on s1 (nobody holds it any more).
    await s1.apply([del(orders, 's1', ['41', '3', 'moved'])]);
    expect(await rowsOf('SELECT id, user_id, note FROM orders ORDER BY id')).toEqual([]);
    // …and the tailer keeps looking for freed keys, as it does while idle and on stopping.
    await freedCheckDue(s1);
    await s1.apply([]);
    expect(await rowsOf('SELECT id, user_id, note FROM orders ORDER BY id')).toEqual([]);
    expect(await parkedCount(jobId)).toBe(0);
  });

  // Coupon 'ABC' (s0, in-place, user 2) moves to user 3 on s1, where the application writes it
  // as 'abc' (equal under utf8mb4_general_ci: one row). s1's insert is parked under the key as
  // the target stores it ('ABC'). The application deletes 'ABC' on s0, then s1 updates and later
  // deletes 'abc'. s1's update finds the key free and writes 'abc', clearing the parked slot of
  // the key it computes from its own bytes ('abc') — not the one the stale image is parked under
  // ('ABC'). After s1's delete the key is free again, and the freed-key look promotes the stale
  // image: a coupon no source holds, back on the target.
  it('a stale parked image under a collation-equal key is not promoted after its source deleted the row', async () => {
    const jobId = job;
    const s1 = await tailApplier('s1', jobId, () => [coupons]);
    await conn.query('DELETE FROM coupons');
    await conn.query("INSERT INTO coupons (code, user_id, v) VALUES ('ABC', 2, 0)");
    expect((await s1.apply([up(coupons, 's1', ['abc', '3', 1])])).parked).toBe(1);
    await conn.query("DELETE FROM coupons WHERE code = 'ABC'");
    await s1.apply([up(coupons, 's1', ['abc', '3', 2])]);
    expect(await rowsOf('SELECT code, user_id, v FROM coupons')).toEqual([['abc', '3', '2']]);
    await s1.apply([del(coupons, 's1', ['abc', '3', 2])]);
    // Right after s1's delete the coupon is gone (as on every source)…
    expect(await rowsOf('SELECT code, user_id, v FROM coupons')).toEqual([]);
    // …and the freed-key look (once a second while idle, and on stopping) must not bring it back.
    await freedCheckDue(s1);
    await s1.apply([]);
    expect(await rowsOf('SELECT code, user_id, v FROM coupons')).toEqual([]);
    // (The stale image stays parked under 'ABC': a character key is parked under the bytes of
    // the row it waited for and cleared by the bytes of the image replacing it. The freed-key
    // look skips such tables; see the applier's promoteFreed.)
  });

  // Passing (coverage): the freed-key look racing with the parked row's own stream. The occupant
  // is deleted in place, s1's delete of its parked row arrives, then the look runs: nothing is
  // promoted. And a parked row whose occupant is deleted and re-inserted by its own stream
  // (through the applier) ends as the occupant's source last left it.
  it('a freed key whose parked row its own source deleted stays empty; an occupant re-inserted by its stream wins', async () => {
    const jobId = job;
    const s0 = await tailApplier('s0', jobId, () => [orders]);
    const s1 = await tailApplier('s1', jobId, () => [orders]);
    await conn.query('DELETE FROM orders');
    await conn.query("INSERT INTO orders (id, user_id, note) VALUES (51, 2, 'on s0'), (52, 2, 'on s0')");
    expect(
      (await s1.apply([up(orders, 's1', ['51', '3', 'stale']), up(orders, 's1', ['52', '3', 'stale'])]))
        .parked,
    ).toBe(2);
    await conn.query('DELETE FROM orders WHERE id = 51');
    await s1.apply([del(orders, 's1', ['51', '3', 'stale'])]);
    await freedCheckDue(s1);
    await s1.apply([]);
    // 52: s0 deletes and re-inserts it through its stream; s1's stale image is promoted in between
    // and deleted by s1's own delete, which follows in s1's stream.
    await s0.apply([del(orders, 's0', ['52', '2', 'on s0'])]);
    await s0.apply([up(orders, 's0', ['52', '2', 'back on s0'])]);
    await freedCheckDue(s1);
    await s1.apply([]);
    await s1.apply([del(orders, 's1', ['52', '3', 'stale'])]);
    await freedCheckDue(s0);
    await s0.apply([]);
    expect(await rowsOf('SELECT id, user_id, note FROM orders ORDER BY id')).toEqual([
      ['52', '2', 'back on s0'],
    ]);
    expect(await parkedCount(jobId)).toBe(0);
  });
});
