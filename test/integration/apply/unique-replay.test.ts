/**
 * Secondary UNIQUE keys in the applier and the tailer.
 *
 * 1. A parked row promoted by the holding source's delete was written by INSERT … ON DUPLICATE
 *    KEY UPDATE: its clash on the UNIQUE key updated the other row, primary key included, and
 *    that row was gone without an error. Now it is a plain INSERT after the clash check.
 * 2. A legitimate single-source history: the tailer replays an old image holding a value that
 *    another row of the same source holds in the copied data, until a later event of the stream.
 *    Inserted plainly it clashed, and the tailer stopped for good with E_UNIQUE_CONFLICT; now the
 *    same source's clashing row is cleared (its later event writes it again) and the replay
 *    converges.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RowOp, sourceOwnerFn, TargetApplier } from '../../../src/apply/applier.js';
import { loadTableMeta, type TableMeta } from '../../../src/apply/table.js';
import type { Row } from '../../../src/apply/values.js';
import { createRouter } from '../../../src/plan/router.js';
import { parseTopology } from '../../../src/topology/load.js';
import { createDatabases, rootConn, topologyYaml, uniqueDb } from '../../support/db.js';
import {
  type Estate,
  expectConverged,
  makeEstate,
  naiveCopy,
  queryOn,
  recordStarts,
  sqlOn,
  tailCaughtUp,
} from '../tail/helpers.js';

describe('applier: promoting a parked row on a table with a secondary UNIQUE key', () => {
  const db = uniqueDb('r2uqpromo');
  const metaDb = `${db}_meta`;
  let drop: () => Promise<void>;
  let conn: Connection;
  let orders: TableMeta;
  let applier: TargetApplier;
  // Source side: identity hash-mod on user_id (even → s0, odd → s1).
  const topo = parseTopology(
    topologyYaml({
      shards: [
        { name: 's0', server: 's0', database: 'x' },
        { name: 's1', server: 's1', database: 'x' },
      ],
      tables: [{ name: 'orders', shardKey: 'user_id' }],
      scheme: '{ type: hash-mod, hash: identity }',
    }),
    'r2.yaml',
  );
  const router = createRouter(topo);

  beforeAll(async () => {
    drop = await createDatabases(
      ['t0'],
      db,
      'CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, code VARCHAR(16) NOT NULL, UNIQUE KEY uq_code (code)) ENGINE=InnoDB;',
    );
    conn = await rootConn('t0', db);
    orders = await loadTableMeta(conn, db, { name: 'orders', shardKey: 'user_id' }, 'test');
    applier = new TargetApplier({
      jobId: 1,
      owner: `test/${db}/1`,
      target: 't0',
      metaDb,
      sourceOwnerOf: sourceOwnerFn((k) => router.ownerOf(k)),
      connect: () => rootConn('t0', db),
    });
    await applier.open();
  });
  afterAll(async () => {
    await applier?.close();
    await conn?.query(`DROP DATABASE IF EXISTS \`${metaDb}\``);
    await conn?.end();
    await drop?.();
  });

  const up = (source: string, row: Row): RowOp => ({ kind: 'upsert', table: orders, source, row });
  const del = (source: string, row: Row): RowOp => ({ kind: 'delete', table: orders, source, row });

  it('a promoted row whose code another row holds is E_UNIQUE_CONFLICT, and no row is lost', async () => {
    // s0 (user 2) holds orders 100 ('X') and 300 ('C'). Order 100 moves to user 3 on s1 with code
    // 'C' — the cross-source clash the commit turns into E_UNIQUE_CONFLICT at copy time.
    await applier.apply([up('s0', ['100', '2', 'X']), up('s0', ['300', '2', 'C'])]);
    const parked = await applier.apply([up('s1', ['100', '3', 'C'])]);
    expect(parked.parked).toBe(1);
    let error: unknown;
    try {
      // s0's delete of order 100 promotes s1's parked image (100, 3, 'C').
      await applier.apply([del('s0', ['100', '2', 'X'])]);
    } catch (e) {
      error = e;
    }
    const [rows] = await conn.query<RowDataPacket[]>('SELECT id, user_id, code FROM orders ORDER BY id');
    const ids = rows.map((r) => String(r.id));
    // Order 300 is still on s0; whatever the applier does, it must not vanish from the target
    // while the delete "succeeds".
    expect({ ids, error: (error as { code?: string } | undefined)?.code }).toEqual({
      ids: ['100', '300'],
      error: 'E_UNIQUE_CONFLICT',
    });
  });
});

/** Two users on source `s` whose rows go to the same target. */
async function twoUsersOnOneTarget(e: Estate, s: string): Promise<[string, string]> {
  const from = createRouter(e.from);
  const to = createRouter(e.to);
  const src = e.sources.find((x) => x.name === s)!;
  const users = await queryOn<{ id: string }>(src.port, 'SELECT id FROM users ORDER BY id', [], e.db);
  const byTarget = new Map<string, string[]>();
  for (const u of users) {
    const id = String(u.id);
    if (from.ownerOf(BigInt(id)) !== s) continue;
    const t = to.ownerOf(BigInt(id));
    const list = byTarget.get(t) ?? [];
    list.push(id);
    byTarget.set(t, list);
    if (list.length === 2) return [list[0]!, list[1]!];
  }
  throw new Error(`no two users of ${s} share a target`);
}

describe('tail: legitimate histories on a table with a secondary UNIQUE key', () => {
  let e: Estate | undefined;
  afterAll(async () => e?.drop());

  it('an e-mail address taken by a later user, replayed over a copy that read the later state', async () => {
    e = await makeEstate({ prefix: 'r2uqreplay', rows: 60, seed: 6 });
    await recordStarts(e);
    const s0 = e.sources[0]!;
    const [a, b] = await twoUsersOnOneTarget(e, 's0');
    // After the copy's start position: user a gives its address up and user b takes it. Each
    // statement is valid on the source; the copy (below) reads the final state.
    await sqlOn(s0.port, `UPDATE users SET email = CONCAT('old-', email) WHERE id = ${a}`, e.db);
    await sqlOn(s0.port, `DELETE FROM users WHERE id = ${a}`, e.db);
    await sqlOn(
      s0.port,
      `INSERT INTO users (id, email, name, balance, created_at) VALUES (${a}, 'taken@example.com', 'a', 1, NOW(6))`,
      e.db,
    );
    // A busy source: one large transaction (more operations than a tailer batch takes) between
    // the insert and the change that gives the address up, so they are applied in different
    // target transactions, as in any long catch-up.
    await sqlOn(
      s0.port,
      `INSERT INTO orders (id, user_id, status, total, note) SELECT 9000000 + seq, ${a}, 'paid', 1, 'bulk' FROM seq_1_to_2500`,
      e.db,
    );
    await sqlOn(s0.port, `UPDATE users SET email = 'moved@example.com' WHERE id = ${a}`, e.db);
    await sqlOn(s0.port, `UPDATE users SET email = 'taken@example.com' WHERE id = ${b}`, e.db);
    await naiveCopy(e);
    // The tailer replays from the start position: user a's insert carries 'taken@example.com',
    // which user b holds in the copied data (it is given up two events later).
    await tailCaughtUp(e, {}, 20_000);
    await expectConverged(e);
  });
});
