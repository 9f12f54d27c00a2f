/**
 * Two jobs with the same job id on one target server. `<metaDb>.apply_positions` (default
 * `_reshard` on every target) is keyed by job id, and a job id is an AUTO_INCREMENT of one
 * control schema: a job of another control schema (another estate on the same servers, or this
 * one after its control schema was made anew) is job 1 too, with shards called s0/t0 as often as
 * not. Its tailer used to resume from the other job's positions and skip its own changes (35
 * stale rows and 5 resurrected ones here). Now the meta database records which job owns a job
 * id, and the second job is refused, naming the fix; with a meta database of its own it converges.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { ReshardError } from '../../../src/errors.js';
import { compareEstate } from '../../support/compare.js';
import { port } from '../../support/db.js';
import { type Estate, makeEstate, naiveCopy, queryOn, recordStarts, sqlOn, tailCaughtUp } from './helpers.js';

const estates: Estate[] = [];
const SHARED_META = `t_shared_meta_${Date.now().toString(36)}`;

afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
  for (const n of ['t0', 't1', 't2'] as const)
    await sqlOn(port(n), `DROP DATABASE IF EXISTS \`${SHARED_META}\``).catch(() => undefined);
});

async function tailShared(e: Estate): Promise<void> {
  const ctx = await e.job();
  try {
    const tail = await startTail({ ctx, metaDb: SHARED_META });
    try {
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
    } finally {
      await tail.stop();
    }
  } finally {
    await ctx.close();
  }
}

describe('apply positions of two jobs with the same id on one target server', () => {
  it('the second job is refused instead of taking the first one’s positions, and converges in its own meta database', async () => {
    const a = await makeEstate({ prefix: 'metaA', rows: 300, seed: 3 });
    estates.push(a);
    const b = await makeEstate({ prefix: 'metaB', rows: 300, seed: 4 });
    estates.push(b);
    // Both jobs are job 1 of their own control schema.
    for (const e of [a, b]) {
      const ctx = await e.job();
      expect(ctx.job.id).toBe(1);
      await ctx.close();
    }
    // Job B starts: start positions, then its copy; the application then writes to its sources.
    await recordStarts(b);
    await naiveCopy(b);
    for (const s of b.sources) {
      await sqlOn(
        s.port,
        "UPDATE users SET email = CONCAT('changed-', id, '@example.com'); DELETE FROM coupons WHERE user_id % 3 = 0",
        b.db,
      );
    }
    // Job A tails to the sources' end in the shared meta database: positions for (job 1,
    // s0/s1, t0/t1/t2) past B's changes.
    await recordStarts(a);
    await naiveCopy(a);
    await tailShared(a);
    const before = await queryOn<{ n: number }>(
      port('t0'),
      `SELECT COUNT(*) AS n FROM \`${SHARED_META}\`.apply_positions`,
    );
    // B's tailer in the same meta database is refused before it applies anything.
    const err = await tailShared(b).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ReshardError);
    expect(err).toMatchObject({ code: 'E_META_OTHER_JOB', exitCode: 3 });
    expect((err as ReshardError).hint).toContain('--meta-db');
    const after = await queryOn<{ n: number }>(
      port('t0'),
      `SELECT COUNT(*) AS n FROM \`${SHARED_META}\`.apply_positions`,
    );
    expect(after).toEqual(before);
    // In its own meta database (the hint's first fix) B carries every change.
    await tailCaughtUp(b, {}, 60_000);
    const diff = await compareEstate({ from: b.from, to: b.to });
    expect(diff.differences).toEqual([]);
    expect(diff.total).toBe(0);
  });
});
