/**
 * A clean verify ends by dropping the change records older than its epoch (housekeeping: they are
 * never read again). That prune can meet locks it cannot wait out — a tailer's compaction, or a
 * deadlock with one — and retries a few times (pruneChangesBefore). When it still fails, the run
 * must stay clean and recorded as such, say so in a note, and leave the records for the next
 * clean run to drop: nothing it compared depended on them being gone.
 *
 * The lock is held by a session of the test on the shared control server (READ COMMITTED: the
 * existing epoch rows only, so the verify's own new epoch is not in the way); the verify's
 * control session waits 1 s per lock instead of the server's 50.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail, type TailHandle } from '../../../src/binlog/tailer.js';
import { openJob } from '../../../src/job/context.js';
import { runVerify } from '../../../src/verify/index.js';
import { port } from '../../support/db.js';
import { type Estate, makeEstate, naiveCopy, recordStarts, sqlOn } from './helpers.js';

describe('a clean verify whose prune of old change records fails', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'prunenote', rows: 300, seed: 12 });
    await recordStarts(e);
    await naiveCopy(e);
  }, 120_000);
  afterAll(async () => e?.drop());

  /** The job's change epochs, as `shard:epoch`. */
  async function epochs(jobId: number): Promise<string[]> {
    const c = await mysql.createConnection({ host: '127.0.0.1', port: port('ctl'), user: 'root' });
    try {
      const [rows] = await c.query(
        `SELECT shard, epoch FROM \`${e.controlDb}\`.reshard_change_epochs WHERE job_id = ? ORDER BY shard, epoch`,
        [jobId],
      );
      return (rows as { shard: unknown; epoch: unknown }[]).map(
        (r) => `${String(r.shard)}:${Number(r.epoch)}`,
      );
    } finally {
      await c.end();
    }
  }

  it('stays clean and recorded, says so in a note, and the next clean run drops the records', async () => {
    const ctx = await openJob({ planPath: e.planPath, control: e.controlDsn, create: true });
    let tail: TailHandle | undefined;
    const holder = await mysql.createConnection({ host: '127.0.0.1', port: port('ctl'), user: 'root' });
    try {
      tail = await startTail({ ctx, metaDb: e.metaDb, statusIntervalMs: 500 });
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      const first = await runVerify({ ctx, preflight: false });
      expect(first.ok).toBe(true);
      // Changes after the first run, recorded by the tailer in that run's epoch.
      for (const s of e.sources)
        await sqlOn(s.port, "UPDATE users SET name = CONCAT(name, '+') WHERE id % 5 = 0", e.db);
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      await tail.stop();
      tail = undefined;
      const old = await epochs(ctx.job.id);
      expect(old.length).toBeGreaterThan(0);

      await holder.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
      await holder.query('START TRANSACTION');
      await holder.query(
        `SELECT epoch FROM \`${e.controlDb}\`.reshard_change_epochs WHERE job_id = ? FOR UPDATE`,
        [ctx.job.id],
      );
      await ctx.control.conn.query('SET SESSION innodb_lock_wait_timeout = 1');
      const second = await runVerify({ ctx, preflight: false, incremental: true });
      expect(second.mode).toBe('incremental');
      expect(second.ok).toBe(true);
      expect(second.notes.join('\n')).toMatch(
        /could not drop the change records older than this run .*the next clean run drops them/,
      );
      await holder.query('ROLLBACK');
      // Nothing was dropped: every old epoch is still there, beside the run's own.
      const kept = await epochs(ctx.job.id);
      for (const x of old) expect(kept).toContain(x);

      // Recorded clean: the next run is incremental from it, and its prune drops the old records.
      const third = await runVerify({ ctx, preflight: false, incremental: true });
      expect(third.ok).toBe(true);
      expect(third.baseRunId).toBe(second.runId);
      expect(third.notes.join('\n')).not.toContain('could not drop');
      const left = await epochs(ctx.job.id);
      for (const x of old) expect(left).not.toContain(x);
    } finally {
      await holder.end().catch(() => undefined);
      await tail?.stop().catch(() => undefined);
      await ctx.close();
    }
  }, 180_000);
});
