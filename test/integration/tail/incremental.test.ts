/**
 * The tailer records what it changes into verify's change filter before each target commit, so
 * `verify --incremental` re-checks the buckets it touched — and finds a corruption in one of them.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { createRouter } from '../../../src/plan/router.js';
import { runVerify } from '../../../src/verify/verifier.js';
import { type Estate, makeEstate, naiveCopy, queryOn, recordStarts, sqlOn } from './helpers.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop();
});

describe('reshard tail feeds verify --incremental', () => {
  it('re-checks the buckets the tailer changed and finds a corruption there', async () => {
    const e = await makeEstate({ prefix: 'tailinc', rows: 4000, seed: 3 });
    estates.push(e);
    await recordStarts(e);
    await naiveCopy(e);
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb });
    try {
      const opts = { planPath: e.planPath, control: e.controlDsn, preflight: false };
      const full = await runVerify(opts);
      expect(full.ok).toBe(true);
      // One change on a source, carried by the tailer.
      const src = createRouter(e.from);
      const dst = createRouter(e.to);
      const [u] = await queryOn<{ id: string }>(
        e.sources[0]!.port,
        `SELECT id FROM users ORDER BY id LIMIT 1`,
        [],
        e.db,
      );
      const id = BigInt(u!.id);
      expect(src.ownerOf(id)).toBe(e.sources[0]!.name);
      await sqlOn(e.sources[0]!.port, `UPDATE users SET name = 'changed by the app' WHERE id = ${id}`, e.db);
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      // Corrupt that row on its new owner behind reshard's back: only the tailer's record of the
      // change makes the incremental run look at its bucket.
      const owner = e.targets.find((t) => t.name === dst.ownerOf(id))!;
      await sqlOn(owner.port, `UPDATE users SET name = 'corrupted' WHERE id = ${id}`, e.db);
      const bad = await runVerify({ ...opts, incremental: true });
      expect(bad.mode).toBe('incremental');
      expect(bad.ok).toBe(false);
      expect(bad.totals.bucketsChecked).toBeGreaterThan(0);
      expect(bad.totals.bucketsChecked).toBeLessThan(full.totals.bucketsChecked);
      expect(bad.differences.map((d) => d.table)).toContain('users');
      // The tailer recorded the exact key too: the run looked it up instead of scanning buckets.
      expect(bad.tables.find((t) => t.table === 'users')?.keys).toBeGreaterThanOrEqual(1);
    } finally {
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });
});
