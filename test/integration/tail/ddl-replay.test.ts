/**
 * `--apply-ddl` replays a schema change once per source: the operator makes it on every source
 * (the tailer's hint says so), so every target sees it from each of them. The second replay must
 * be recognised as already made — also for a change whose replay does not fail with a
 * "duplicate"-style error: a column rename fails with 1054 (unknown column) the second time.
 * The same holds after a crash between a target's DDL and the tailer's checkpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Estate,
  expectConverged,
  makeEstate,
  naiveCopy,
  queryOn,
  recordStarts,
  sqlOn,
  tailCaughtUp,
} from './helpers.js';

async function columns(p: number, db: string, table: string): Promise<string[]> {
  const rows = await queryOn<{ c: string }>(
    p,
    'SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
    [db, table],
  );
  return rows.map((r) => r.c);
}

describe('reshard tail --apply-ddl: the same change from every source', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'tailddlre', rows: 1500, seed: 11 });
    await recordStarts(e);
    await naiveCopy(e);
  });
  afterAll(async () => e?.drop());

  it('a column renamed on both sources is renamed once on every target, and rows converge', async () => {
    // Source 1 writes many transactions of the old shape before its rename; source 0 renames
    // first. Replayed as soon as source 0's stream reads it, the rename would break source 1's
    // pending rows on the shared targets.
    const [s0, s1] = e.sources;
    await sqlOn(s0!.port, 'ALTER TABLE orders RENAME COLUMN note TO remark', e.db);
    await sqlOn(
      s0!.port,
      'UPDATE orders SET remark = CONCAT(COALESCE(remark, ""), "b") WHERE id % 3 = 0',
      e.db,
    );
    for (let i = 0; i < 40; i++)
      await sqlOn(
        s1!.port,
        `UPDATE orders SET note = CONCAT(COALESCE(note, ""), "${i % 10}") WHERE id % 4 = ${i % 4}`,
        e.db,
      );
    await sqlOn(s1!.port, 'ALTER TABLE orders RENAME COLUMN note TO remark', e.db);
    await sqlOn(
      s1!.port,
      'UPDATE orders SET remark = CONCAT(COALESCE(remark, ""), "b") WHERE id % 3 = 0',
      e.db,
    );
    await tailCaughtUp(e, { applyDdl: true });
    for (const t of e.targets) {
      const cols = await columns(t.port, e.db, 'orders');
      expect(cols).toContain('remark');
      expect(cols).not.toContain('note');
    }
    await expectConverged(e);
  });

  it('a change already made on a target (a crash before the checkpoint) is not made twice', async () => {
    // CHANGE COLUMN renames and retypes at once; made by hand on every target first, as a
    // tailer that died right after its DDL would leave them.
    for (const t of e.targets)
      await sqlOn(t.port, 'ALTER TABLE orders CHANGE COLUMN remark memo VARCHAR(500) NULL', e.db);
    for (const s of e.sources) {
      await sqlOn(s.port, 'ALTER TABLE orders CHANGE COLUMN remark memo VARCHAR(500) NULL', e.db);
      await sqlOn(s.port, 'UPDATE orders SET memo = CONCAT(COALESCE(memo, ""), "c") WHERE id % 4 = 0', e.db);
    }
    await tailCaughtUp(e, { applyDdl: true });
    for (const t of e.targets) expect(await columns(t.port, e.db, 'orders')).toContain('memo');
    await expectConverged(e);
  });
});
