/**
 * Acceptance: under a concurrent write load (inserts, updates, deletes, shard-key moves within
 * and across sources) on both sources of the 2 → 3 shop fixture, during copy and tail, every row
 * ends byte-identical on its new owner and nowhere else once the load stops and lag reaches 0.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { runCopy } from '../../../src/copy/run.js';
import { runLoad } from '../../../src/load/generator.js';
import { port } from '../../support/db.js';
import { type Estate, expectConverged, makeEstate, naiveCopy, queryOn, recordStarts } from './helpers.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop();
});

async function waitForStartPositions(e: Estate, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await queryOn<{ n: number }>(
      port('ctl'),
      `SELECT COUNT(*) AS n FROM \`${e.controlDb}\`.reshard_binlog_positions WHERE direction = 'forward' AND start_binlog_file IS NOT NULL`,
    ).catch(() => [{ n: 0 }]);
    if (Number(rows[0]?.n) === e.sources.length) return;
    if (Date.now() > deadline) throw new Error('the copier did not record start positions');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('reshard tail: copy + tail under load converge (2 → 3, hash-mod crc32)', () => {
  it.each([11, 23, 37])('seed %i: byte-identical on the owners, nothing elsewhere', async (seed) => {
    const e = await makeEstate({ prefix: `tailcv${seed}`, rows: 10_000, seed });
    estates.push(e);
    const stopLoad = new AbortController();
    const load = runLoad({
      topology: e.from,
      rate: 400,
      signal: stopLoad.signal,
      seed,
      concurrency: 4,
    });
    // The copy records the start positions, then copies while the load writes; the tailer starts
    // as soon as the positions exist.
    const copy = runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
      concurrency: 2,
    });
    await waitForStartPositions(e);
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb, statusIntervalMs: 500 });
    try {
      const copied = await copy;
      expect(copied.complete).toBe(true);
      await new Promise((r) => setTimeout(r, 2000));
      stopLoad.abort();
      const l = await load;
      expect(l.errors).toBe(0);
      expect(l.crossSourceMoves).toBeGreaterThan(0);
      expect(l.sameSourceMoves).toBeGreaterThan(0);
      expect(l.deletes).toBeGreaterThan(0);
      const s = await tail.waitCaughtUp({ timeoutMs: 60_000 });
      expect(s.sources.map((x) => x.lagSeconds)).toEqual([0, 0]);
      expect(s.sources.every((x) => x.transactions > 0 && x.targets.every((t) => t.appliedOps > 0))).toBe(
        true,
      );
      await tail.stop();
      const { rows } = await expectConverged(e);
      expect(rows).toBeGreaterThan(9000);
      // Positions and status mirrored to the control schema.
      const st = await queryOn<{ shard: string; state: string; binlog_file: string | null }>(
        port('ctl'),
        `SELECT s.shard, s.state, p.binlog_file FROM \`${e.controlDb}\`.reshard_tail_status s
           JOIN \`${e.controlDb}\`.reshard_binlog_positions p USING (job_id, shard, direction) ORDER BY s.shard`,
      );
      expect(st.map((r) => [r.shard, r.state, r.binlog_file !== null])).toEqual([
        ['s0', 'stopped', true],
        ['s1', 'stopped', true],
      ]);
    } finally {
      stopLoad.abort();
      await load.catch(() => undefined);
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });

  it('reverse: after cutover, changes on the new shards flow back to the old ones by the old routing', async () => {
    const e = await makeEstate({ prefix: 'tailrv', rows: 3000, seed: 8 });
    estates.push(e);
    await naiveCopy(e);
    // Cutover: writes stop on the old shards, the reverse stream starts at the new shards' ends.
    await recordStarts(e, 'reverse');
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb, direction: 'reverse' });
    try {
      const l = await runLoad({ topology: e.to, rate: 0, seconds: 3, seed: 8, concurrency: 4 });
      expect(l.errors).toBe(0);
      expect(l.crossSourceMoves).toBeGreaterThan(0);
      const s = await tail.waitCaughtUp({ timeoutMs: 60_000 });
      expect(s.direction).toBe('reverse');
      expect(s.sources.map((x) => x.source)).toEqual(['t0', 't1', 't2']);
      await tail.stop();
      await expectConverged(e, { reverse: true });
    } finally {
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });

  it('tail alone from a recorded position (hand copy at quiescence) converges too', async () => {
    const e = await makeEstate({ prefix: 'tailnv', rows: 3000, seed: 5 });
    estates.push(e);
    await recordStarts(e);
    await naiveCopy(e);
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb });
    try {
      const l = await runLoad({ topology: e.from, rate: 0, seconds: 3, seed: 5, concurrency: 4 });
      expect(l.errors).toBe(0);
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      await tail.stop();
      await expectConverged(e);
    } finally {
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });
});
