/**
 * Found by review G: DDL on the source that changes tracked rows (or a tracked table's schema) without
 * the tailer noticing, or that --apply-ddl replays although it deletes rows.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { type Estate, makeEstate, naiveCopy, queryOn, recordStarts, sqlOn } from './helpers.js';

/** Start a tailer, run `during`, wait for catch-up: 'caught-up' or `CODE: message`. */
async function tailOutcome(e: Estate, during: () => Promise<void>, applyDdl = false): Promise<string> {
  const ctx = await e.job();
  const tail = await startTail({ ctx, metaDb: e.metaDb, applyDdl });
  let outcome = 'caught-up';
  try {
    await during();
    await Promise.race([tail.waitCaughtUp({ timeoutMs: 30_000 }), tail.done]);
  } catch (err) {
    const x = err as { code?: string; message?: string };
    outcome = `${x.code ?? 'error'}: ${x.message ?? String(err)}`;
  } finally {
    await tail.stop().catch(() => undefined);
    await ctx.close();
  }
  return outcome;
}

async function count(p: number, db: string, table: string): Promise<number> {
  const r = await queryOn<{ n: number }>(p, `SELECT COUNT(*) AS n FROM \`${db}\`.\`${table}\``);
  return Number(r[0]!.n);
}

describe('DDL the tailer does not see', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.drop();
    e = undefined;
  });

  it('ALTER TABLE <untracked> EXCHANGE PARTITION … WITH TABLE <tracked> stops the tailer', async () => {
    e = await makeEstate({ prefix: 'rgexch', rows: 300, seed: 5 });
    await recordStarts(e);
    await naiveCopy(e);
    const s0 = e.sources[0]!;
    const before = await count(s0.port, e.db, 'coupons');
    expect(before).toBeGreaterThan(0);
    const outcome = await tailOutcome(e, async () => {
      // A table of the same shape, partitioned, holding one row; its partition swapped with
      // `coupons`: every coupon of s0 leaves the tracked table and one arrives, with no row event.
      await sqlOn(s0.port, 'CREATE TABLE coupons_swap LIKE coupons', e!.db);
      await sqlOn(s0.port, 'ALTER TABLE coupons_swap PARTITION BY KEY (code) PARTITIONS 1', e!.db);
      await sqlOn(
        s0.port,
        "INSERT INTO coupons_swap (code, user_id, discount) SELECT 'SWAPPED', user_id, 1.00 FROM coupons LIMIT 1",
        e!.db,
      );
      await sqlOn(s0.port, 'ALTER TABLE coupons_swap EXCHANGE PARTITION p0 WITH TABLE coupons', e!.db);
    });
    expect(await count(s0.port, e.db, 'coupons')).toBe(1);
    // Now: 'caught-up', and the targets still hold every coupon s0 no longer has (and lack SWAPPED).
    expect(outcome).toMatch(/^E_TAIL_DDL\b/);
  });

  it('CREATE UNIQUE INDEX … USING BTREE ON <tracked> stops the tailer like any other index change', async () => {
    e = await makeEstate({ prefix: 'rgidx', rows: 100, seed: 6 });
    await recordStarts(e);
    await naiveCopy(e);
    const outcome = await tailOutcome(e, async () => {
      // Valid MariaDB/MySQL syntax: index_type may come before ON. classifyDdl returns undefined.
      await sqlOn(
        e!.sources[0]!.port,
        'CREATE UNIQUE INDEX ux_coupon_user USING BTREE ON coupons (user_id, code)',
        e!.db,
      );
    });
    // Now: 'caught-up'; the targets never get the UNIQUE key, and --apply-ddl would not replay it.
    expect(outcome).toMatch(/^E_TAIL_DDL\b/);
  });
});

describe('DDL --apply-ddl replays although it deletes rows', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.drop();
    e = undefined;
  });

  it('ALTER IGNORE TABLE … ADD UNIQUE KEY deletes other sources’ rows on a shared target', async () => {
    e = await makeEstate({ prefix: 'rgignore', rows: 300, seed: 7 });
    // Names unique within each source (n1, n2, …), so the same names on both sources: a target
    // holding users of both has duplicates.
    for (const s of e.sources)
      await sqlOn(
        s.port,
        "SET @r := 0; UPDATE users SET name = CONCAT('n', (@r := @r + 1)) ORDER BY id",
        e.db,
      );
    await recordStarts(e);
    await naiveCopy(e);
    let sourceUsers = 0;
    for (const s of e.sources) sourceUsers += await count(s.port, e.db, 'users');
    const outcome = await tailOutcome(
      e,
      async () => {
        // On each source it deletes nothing (no duplicate there).
        for (const s of e!.sources)
          await sqlOn(s.port, 'ALTER IGNORE TABLE users ADD UNIQUE KEY ux_users_name (name)', e!.db);
      },
      true,
    );
    let after = 0;
    for (const s of e.sources) after += await count(s.port, e.db, 'users');
    expect(after).toBe(sourceUsers);
    let targetUsers = 0;
    for (const t of e.targets) targetUsers += await count(t.port, e.db, 'users');
    // Now: outcome 'caught-up' and the targets hold fewer users than the sources, silently.
    expect({ outcome: outcome.slice(0, 40), lost: sourceUsers - targetUsers }).toEqual({
      outcome: expect.stringMatching(/^E_TAIL_DDL/),
      lost: 0,
    });
  });
});
