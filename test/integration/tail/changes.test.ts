/**
 * The tailer's change recorder (src/binlog/changes.ts) under a steady stream of calls: the
 * dispatcher records every routed transaction, so calls arrive far more often than the control
 * schema can take one write each. Writes must not queue up behind each other (the lag of every
 * transaction would then grow with the queue): one write is in flight, and whatever arrives
 * meanwhile shares the next. Every key still ends up in the filter before its call resolves.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, describe, expect, it } from 'vitest';
import type { RowOp } from '../../../src/apply/applier.js';
import type { TableMeta } from '../../../src/apply/table.js';
import { ChangeRecorder } from '../../../src/binlog/changes.js';
import { changeIdOfPk, loadChangeSet } from '../../../src/verify/changes.js';
import { type Estate, makeEstate } from './helpers.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop();
});

describe('ChangeRecorder', () => {
  it('keeps one write in flight under a stream of records, and loses no key', async () => {
    const e = await makeEstate({ prefix: 'tailrec', rows: 0 });
    estates.push(e);
    const ctx = await e.job();
    try {
      // Only the table name and the primary-key positions matter to the recorder.
      const users = { name: 'users', pk: [0] } as unknown as TableMeta;
      const op = (id: number): RowOp => ({ kind: 'upsert', table: users, source: 's0', row: [String(id)] });
      // A 1 ms window: far shorter than a control-schema write, as under a loaded machine.
      const recorder = new ChangeRecorder(ctx.control, ctx.job.id, 's0', 1);
      const calls = 400;
      const done: Promise<void>[] = [];
      const t0 = Date.now();
      for (let id = 1; id <= calls; id++) {
        done.push(recorder.record(new Map([['t0', [op(id)]]])));
        await new Promise((r) => setTimeout(r, 1));
      }
      const issuedMs = Date.now() - t0;
      await Promise.all(done);
      const drainedMs = Date.now() - t0 - issuedMs;

      const [rows] = await ctx.control.conn.query<RowDataPacket[]>(
        'SELECT MAX(generation) AS g FROM reshard_bloom_filters WHERE job_id = ? AND shard = ?',
        [ctx.job.id, 's0'],
      );
      const writes = Number(rows[0]?.g);
      // One write per call would be `calls` writes, each waiting for all before it.
      expect(writes).toBeGreaterThan(0);
      expect(writes).toBeLessThan(calls / 2);
      expect(drainedMs).toBeLessThan(5_000);

      const set = await loadChangeSet(ctx.control.conn, ctx.job.id, null);
      for (let id = 1; id <= calls; id++)
        expect(set.mayHaveChanged('users', changeIdOfPk([String(id)]))).toBe(true);
    } finally {
      await ctx.close();
    }
  });
});
