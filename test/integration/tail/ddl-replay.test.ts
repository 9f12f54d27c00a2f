/**
 * `--apply-ddl` replays a schema change once per source: the operator makes it on every source
 * (the tailer's hint says so), so every target sees it from each of them. The second replay must
 * be recognised as already made — also for a change whose replay does not fail with a
 * "duplicate"-style error: a column rename fails with 1054 (unknown column) the second time.
 * The same holds after a crash between a target's DDL and the tailer's checkpoint.
 *
 * Waiting for the sources that share a target:
 * 1. Sources that share only some targets (s0 → t0; s1 → t0, t1; s2 → t1): the change used to
 *    be made on every target any of the waiting sources found without it, t1 included, while s2
 *    — which also writes to t1 — had not reached it; s2's rows of the old shape then failed on t1
 *    (1054), for good. Now each target changes once all its own writers are there.
 * 2. Two changes on different tables made in one order on s0 and in the other on s1: each stream
 *    waited at its first change for the other, which waited at its own, with nothing reported
 *    but "waiting", ever. Now it is E_TAIL_DDL_ORDER, naming both statements.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { port } from '../../support/db.js';
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

/** Start an --apply-ddl tailer, run `during` while it runs, wait for catch-up; the outcome. */
async function tailOutcome(e: Estate, during: () => Promise<void>, timeoutMs: number): Promise<string> {
  const ctx = await e.job();
  const tail = await startTail({ ctx, metaDb: e.metaDb, applyDdl: true });
  let outcome = 'caught-up';
  try {
    await during();
    await tail.waitCaughtUp({ timeoutMs });
  } catch (err) {
    const x = err as { code?: string; message?: string };
    outcome = `${x.code ?? 'error'}: ${x.message ?? String(err)}`;
  } finally {
    await tail.stop().catch(() => undefined);
    await ctx.close();
  }
  return outcome;
}

describe('tail --apply-ddl: waiting for the sources that share a target', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.drop();
    e = undefined;
  });

  it('sources sharing only some targets: a change is not made on a target before every source writing to it reached it', async () => {
    // Three sources, two targets, by ranges of the user id: s0 → t0, s1 → t0 and t1, s2 → t1.
    // (Source s2 lives on the sandbox server t2.)
    e = await makeEstate({
      prefix: 'ddlchain',
      rows: 120,
      sources: [
        { name: 's0', port: port('s0') },
        { name: 's1', port: port('s1') },
        { name: 's2', port: port('t2') },
      ],
      targets: [
        { name: 't0', port: port('t0') },
        { name: 't1', port: port('t1') },
      ],
      fromScheme:
        '{ type: range, ranges: [ { shard: s0, to: 34 }, { shard: s1, from: 34, to: 67 }, { shard: s2, from: 67 } ] }',
      toScheme: '{ type: range, ranges: [ { shard: t0, to: 50 }, { shard: t1, from: 50 } ] }',
    });
    await recordStarts(e);
    await naiveCopy(e);
    const [s0, s1, s2] = e.sources;
    for (const s of [s0!, s1!]) {
      await sqlOn(s.port, 'ALTER TABLE orders RENAME COLUMN note TO remark', e.db);
      await sqlOn(s.port, 'UPDATE orders SET remark = CONCAT(COALESCE(remark, ""), "r")', e.db);
    }
    const outcome = await tailOutcome(
      e,
      async () => {
        // s0 and s1 meet at the rename; s2 has not been migrated yet and its application still
        // writes the old column, as the operator works through the shards one at a time.
        await new Promise((r) => setTimeout(r, 4000));
        await sqlOn(s2!.port, 'UPDATE orders SET note = CONCAT(COALESCE(note, ""), "o")', e!.db);
        await sqlOn(s2!.port, 'ALTER TABLE orders RENAME COLUMN note TO remark', e!.db);
        await sqlOn(s2!.port, 'UPDATE orders SET remark = CONCAT(COALESCE(remark, ""), "n")', e!.db);
      },
      25_000,
    );
    expect(outcome).toBe('caught-up');
    for (const t of e.targets) expect(await columns(t.port, e.db, 'orders')).toContain('remark');
    await expectConverged(e);
  });

  it('two changes made in a different order on two sources do not leave the tailer waiting for ever', async () => {
    e = await makeEstate({ prefix: 'ddlorder', rows: 60, seed: 4 });
    await recordStarts(e);
    await naiveCopy(e);
    const [s0, s1] = e.sources;
    // The same migration (two independent ALTERs) on both sources, its statements run in another
    // order on s1 (e.g. by a migration tool that runs one session per table).
    await sqlOn(s0!.port, 'ALTER TABLE users ADD COLUMN r2a INT NULL', e.db);
    await sqlOn(s0!.port, 'ALTER TABLE orders ADD COLUMN r2b INT NULL', e.db);
    await sqlOn(s1!.port, 'ALTER TABLE orders ADD COLUMN r2b INT NULL', e.db);
    await sqlOn(s1!.port, 'ALTER TABLE users ADD COLUMN r2a INT NULL', e.db);
    const outcome = await tailOutcome(e, async () => undefined, 30_000);
    // The streams can never meet: the tailer stops, naming both statements and the way out.
    expect(outcome).toMatch(/^E_TAIL_DDL_ORDER: /);
    expect(outcome).toContain('ADD COLUMN r2a');
    expect(outcome).toContain('ADD COLUMN r2b');
  });
});
