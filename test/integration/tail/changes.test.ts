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
import { type ControlRunner, connectControl } from '../../../src/state/control.js';
import {
  changeIdOfPk,
  compactChanges,
  loadChangedKeys,
  loadChangeSet,
  openEpoch,
  pruneChangesBefore,
  recordChanges,
} from '../../../src/verify/changes.js';
import { type Estate, makeEstate } from './helpers.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop();
});

/** An empty estate and its job for one test; the job's connections are closed afterwards. */
async function withJob(
  prefix: string,
  fn: (ctx: Awaited<ReturnType<Estate['job']>>, e: Estate) => Promise<void>,
): Promise<void> {
  const e = await makeEstate({ prefix, rows: 0 });
  estates.push(e);
  const ctx = await e.job();
  try {
    await fn(ctx, e);
  } finally {
    await ctx.close();
  }
}

describe('ChangeRecorder', () => {
  it('keeps one write in flight under a stream of records, and loses no key', async () => {
    await withJob('tailrec', async (ctx) => {
      // Only the table name and the primary-key positions matter to the recorder.
      const users = { name: 'users', pk: [0] } as unknown as TableMeta;
      const op = (id: number): RowOp => ({ kind: 'upsert', table: users, source: 's0', row: [String(id)] });
      // The recorder's writes go through this runner (exactly what it builds from a connection:
      // onConnection), which counts the record writes that start after the last call was made.
      let issued = false;
      let writesAfterIssued = 0;
      const runner: ControlRunner = {
        run: (what, fn) => {
          if (issued && what.startsWith('recording')) writesAfterIssued++;
          return fn(ctx.control.conn);
        },
      };
      // A 1 ms window: far shorter than a control-schema write, as under a loaded machine.
      const recorder = new ChangeRecorder(runner, ctx.job.id, 's0', 1);
      const calls = 400;
      const done: Promise<void>[] = [];
      for (let id = 1; id <= calls; id++) {
        done.push(recorder.record(new Map([['t0', [op(id)]]])));
        if (id === calls) issued = true;
        else await new Promise((r) => setTimeout(r, 1));
      }
      // A hang guard only (a call that never resolves), with a margin no machine needs.
      let hung: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(done),
        new Promise((_, reject) => {
          hung = setTimeout(() => reject(new Error('calls still unresolved after 60 s')), 60_000);
        }),
      ]).finally(() => clearTimeout(hung));

      const [rows] = await ctx.control.conn.query<RowDataPacket[]>(
        'SELECT MAX(generation) AS g FROM reshard_bloom_filters WHERE job_id = ? AND shard = ?',
        [ctx.job.id, 's0'],
      );
      const writes = Number(rows[0]?.g);
      // One write per call would be `calls` writes, each waiting for all before it.
      expect(writes).toBeGreaterThan(0);
      expect(writes).toBeLessThan(calls / 2);
      // The drain after the last call is bounded in writes, not in wall-clock time (it was
      // "under 5 s"): whatever was pending then shares one write, which may still start behind the
      // write in flight and, every 64th, the fold queued after it on the same connection — at
      // most two record writes start after the last call, however slow the machine.
      expect(writesAfterIssued).toBeLessThanOrEqual(2);

      const set = await loadChangeSet(ctx.control.conn, ctx.job.id, null);
      for (let id = 1; id <= calls; id++)
        expect(set.mayHaveChanged('users', changeIdOfPk([String(id)]))).toBe(true);
      // Each write stored a delta, and every 64th folded them: far fewer rows than writes.
      const [left] = await ctx.control.conn.query<RowDataPacket[]>(
        'SELECT COUNT(*) AS n, SUM(encoding = 1) AS deltas FROM reshard_bloom_filters WHERE job_id = ? AND shard = ?',
        [ctx.job.id, 's0'],
      );
      if (writes >= 64) expect(Number(left[0]!.n)).toBeLessThan(writes);
      expect(Number(left[0]!.deltas)).toBeLessThan(64);
    });
  });

  it('stores a delta whole when that is smaller than its bit positions (a large catch-up batch)', async () => {
    await withJob('tailwhole', async (ctx) => {
      const many = Array.from({ length: 60_000 }, (_, i) => ({ table: 'users', pk: [String(i + 1)] }));
      await recordChanges(ctx.control, ctx.job.id, 's0', many.slice(0, 10));
      await recordChanges(ctx.control, ctx.job.id, 's0', many);
      const [rows] = await ctx.control.conn.query<RowDataPacket[]>(
        'SELECT encoding, LENGTH(bits) AS n, m FROM reshard_bloom_filters WHERE job_id = ? AND shard = ? ORDER BY generation',
        [ctx.job.id, 's0'],
      );
      expect(rows.map((r) => Number(r.encoding))).toEqual([1, 0]);
      expect(Number(rows[0]!.n)).toBeLessThan(200);
      expect(Number(rows[1]!.n)).toBe(Number(rows[1]!.m) / 8);
      const set = await loadChangeSet(ctx.control.conn, ctx.job.id, null);
      for (const r of many) expect(set.mayHaveChanged('users', changeIdOfPk(r.pk))).toBe(true);
    });
  });

  it('keeps every key of one large write (several parts, several INSERT statements)', async () => {
    await withJob('tailbigkeys', async (ctx) => {
      const epoch = await openEpoch(ctx.control.conn, ctx.job.id, ['s0']);
      // About 3.5 MB of keys over two targets: four 1 MiB parts, more than one 2 MiB statement.
      const rows = Array.from({ length: 60_000 }, (_, i) => ({
        table: 'users',
        pk: [`${'k'.repeat(52)}${i}`],
        target: i % 2 === 0 ? 't0' : 't1',
      }));
      await recordChanges(ctx.control, ctx.job.id, 's0', rows);
      const [parts] = await ctx.control.conn.query<RowDataPacket[]>(
        'SELECT COUNT(*) AS n, SUM(key_count) AS k FROM reshard_changed_keys WHERE job_id = ? AND shard = ?',
        [ctx.job.id, 's0'],
      );
      expect(Number(parts[0]!.n)).toBeGreaterThanOrEqual(4);
      expect(Number(parts[0]!.k)).toBe(60_000);
      const exact = await loadChangedKeys(ctx.control.conn, ctx.job.id, ['s0'], epoch, {});
      expect(exact.complete).toBe(true);
      if (!exact.complete) return;
      const users = exact.keys.get('users')!;
      expect(users.keys.length).toBe(60_000);
      expect(users.at.get('t0')!.length).toBe(30_000);
      expect(users.at.get('t1')!.length).toBe(30_000);
    });
  });

  it('a writer reads the newest generation under a lock that keeps others from inserting above it', async () => {
    // insertGeneration's argument: with the newest generation read by a locking read in the
    // inserting transaction, no other writer can put a generation above it (or fill a hole
    // below it) before that transaction ends. Checked on the server, not assumed.
    await withJob('tailgenlock', async (ctx, e) => {
      const other = await connectControl(e.controlDsn);
      try {
        await recordChanges(ctx.control, ctx.job.id, 's0', [{ table: 'users', pk: ['1'] }]);
        await recordChanges(ctx.control, ctx.job.id, 's0', [{ table: 'users', pk: ['2'] }]);
        const a = ctx.control.conn;
        await a.beginTransaction();
        const [top] = await a.query<RowDataPacket[]>(
          'SELECT generation FROM reshard_bloom_filters WHERE job_id = ? AND shard = ? ORDER BY generation DESC LIMIT 1 FOR UPDATE',
          [ctx.job.id, 's0'],
        );
        expect(Number(top[0]!.generation)).toBe(2);
        await other.conn.query(`USE \`${new URL(e.controlDsn).pathname.slice(1)}\``);
        await other.conn.query('SET SESSION innodb_lock_wait_timeout = 1');
        const insert = (g: number) =>
          other.conn.query(
            "INSERT INTO reshard_bloom_filters (job_id, shard, generation, bits, encoding, k, m, inserted) VALUES (?, 's0', ?, '', 1, 7, 64, 0)",
            [ctx.job.id, g],
          );
        await expect(insert(3)).rejects.toMatchObject({ errno: 1205 });
        await expect(insert(7)).rejects.toMatchObject({ errno: 1205 });
        await a.rollback();
        // Once the lock is gone the same insert goes through.
        await insert(3);
      } finally {
        await other.close();
      }
    });
  });

  it('compaction holds no lock while it reads and ORs: a record goes through meanwhile, and a fold whose generations changed is rolled back', async () => {
    await withJob('tailcompactlock', async (ctx, e) => {
      const other = await connectControl(e.controlDsn);
      try {
        const job = ctx.job.id;
        const row = (id: number) => ({ table: 'users', pk: [String(id)], target: 't0' });
        const epoch = await openEpoch(ctx.control.conn, job, ['s0']);
        for (let id = 1; id <= 3; id++) await recordChanges(ctx.control, job, 's0', [row(id)]);
        // Between its read and its fold, a record inserts the next generation on another
        // connection with a short lock wait: it would time out (1205) if the compaction held
        // the newest generation's lock or the gap above it while reading.
        await other.conn.query(`USE \`${new URL(e.controlDsn).pathname.slice(1)}\``);
        await other.conn.query('SET SESSION innodb_lock_wait_timeout = 1');
        let recorded: number | undefined;
        expect(
          await compactChanges(ctx.control.conn, job, 's0', async () => {
            recorded = await recordChanges({ conn: other.conn }, job, 's0', [row(4)]);
          }),
        ).toBe(true);
        expect(recorded).toBe(epoch.s0! + 4);
        const gens = async () =>
          (
            await ctx.control.conn.query<RowDataPacket[]>(
              'SELECT generation, encoding FROM reshard_bloom_filters WHERE job_id = ? AND shard = ? ORDER BY generation',
              [job, 's0'],
            )
          )[0].map((r) => [Number(r.generation), Number(r.encoding)]);
        // The epoch's row and deltas 1–3 folded into delta 3's number; the record's generation
        // (4) was not read, so it stays as it was.
        expect(await gens()).toEqual([
          [epoch.s0! + 3, 0],
          [epoch.s0! + 4, 1],
        ]);
        const set = await loadChangeSet(ctx.control.conn, job, epoch);
        for (let id = 1; id <= 4; id++)
          expect(set.mayHaveChanged('users', changeIdOfPk([String(id)]))).toBe(true);

        // A generation it read disappears before the fold (a prune, another compaction): it
        // changes nothing.
        for (let id = 5; id <= 6; id++) await recordChanges(ctx.control, job, 's0', [row(id)]);
        const before = await gens();
        expect(
          await compactChanges(ctx.control.conn, job, 's0', async () => {
            await other.conn.query(
              'DELETE FROM reshard_bloom_filters WHERE job_id = ? AND shard = ? AND generation = ?',
              [job, 's0', epoch.s0! + 4],
            );
          }),
        ).toBe(false);
        expect(await gens()).toEqual(before.filter(([g]) => g !== epoch.s0! + 4));
        // And the newest one changed under it (another compaction wrote it whole): nothing either.
        await recordChanges(ctx.control, job, 's0', [row(7)]);
        const newest = epoch.s0! + 7;
        const before2 = await gens();
        expect(
          await compactChanges(ctx.control.conn, job, 's0', async () => {
            await other.conn.query(
              'UPDATE reshard_bloom_filters SET inserted = inserted + 1 WHERE job_id = ? AND shard = ? AND generation = ?',
              [job, 's0', newest],
            );
          }),
        ).toBe(false);
        expect(await gens()).toEqual(before2);
      } finally {
        await other.close();
      }
    });
  });

  it('recorders sharing a connection for compactions fold there one at a time, and their records lose no key', async () => {
    await withJob('tailrecfold', async (ctx, e) => {
      const folds = await connectControl(e.controlDsn);
      try {
        await folds.conn.query(`USE \`${new URL(e.controlDsn).pathname.slice(1)}\``);
        const users = { name: 'users', pk: [0] } as unknown as TableMeta;
        const op = (id: number): RowOp => ({ kind: 'upsert', table: users, source: 's0', row: [String(id)] });
        const seen: string[] = [];
        let inFlight = 0;
        let most = 0;
        // The tailer gives every source's recorder the same link: its folds must take turns
        // (one connection, one transaction at a time).
        const compactor = {
          run: async <T>(what: string, fn: (c: typeof folds.conn) => Promise<T>): Promise<T> => {
            seen.push(what);
            most = Math.max(most, ++inFlight);
            try {
              return await fn(folds.conn);
            } finally {
              inFlight--;
            }
          },
        };
        const shards = ['s0', 's1'];
        const recorders = shards.map((sh) => new ChangeRecorder(ctx.control, ctx.job.id, sh, 0, compactor));
        // One record at a time per source: 130 writes each, so two compactions each are due.
        await Promise.all(
          recorders.map(async (r) => {
            for (let id = 1; id <= 130; id++) await r.record(new Map([['t0', [op(id)]]]));
          }),
        );
        for (const r of recorders) await r.settle();
        expect(seen.length).toBeGreaterThanOrEqual(2);
        expect(seen.every((w) => w.includes('folding'))).toBe(true);
        expect(most).toBe(1);
        for (const sh of shards) {
          const [left] = await ctx.control.conn.query<RowDataPacket[]>(
            'SELECT COUNT(*) AS n, MAX(generation) AS g FROM reshard_bloom_filters WHERE job_id = ? AND shard = ?',
            [ctx.job.id, sh],
          );
          expect(Number(left[0]!.g)).toBe(130);
          expect(Number(left[0]!.n)).toBeLessThan(130 - 60);
        }
        const set = await loadChangeSet(ctx.control.conn, ctx.job.id, null);
        for (let id = 1; id <= 130; id++)
          expect(set.mayHaveChanged('users', changeIdOfPk([String(id)]))).toBe(true);
      } finally {
        await folds.close();
      }
    });
  });

  it('a prune that meets a lock it cannot wait out (a compaction holding it, a deadlock) runs again', async () => {
    await withJob('tailprune', async (ctx, e) => {
      const db = new URL(e.controlDsn).pathname.slice(1);
      const holder = await connectControl(e.controlDsn);
      const pruner = await connectControl(e.controlDsn);
      try {
        const job = ctx.job.id;
        await recordChanges(ctx.control, job, 's0', [{ table: 'users', pk: ['1'] }]);
        await recordChanges(ctx.control, job, 's0', [{ table: 'users', pk: ['2'] }]);
        const epoch = await openEpoch(ctx.control.conn, job, ['s0']);
        await pruner.conn.query(`USE \`${db}\``);
        await pruner.conn.query('SET SESSION innodb_lock_wait_timeout = 1');
        // Another session holds a generation the prune deletes, for longer than one lock wait.
        await holder.conn.query(`USE \`${db}\``);
        await holder.conn.beginTransaction();
        await holder.conn.query(
          'SELECT generation FROM reshard_bloom_filters WHERE job_id = ? AND shard = ? AND generation = 1 FOR UPDATE',
          [job, 's0'],
        );
        // The lock is let go once the prune has met its first lock-wait timeout (1205), and that
        // error reaches the prune only after the rollback: the attempt after it cannot meet the
        // lock again. It used to be let go by a 1.5 s timer against a 1 s lock wait, which on a
        // loaded machine could fire before the prune reached the lock (no retry tested) or, late
        // enough, after the prune's five attempts.
        let released = 0;
        let timeouts = 0;
        let release: Promise<void> | undefined;
        const watched = new Proxy(pruner.conn, {
          get(target, prop) {
            const v = Reflect.get(target, prop, target) as unknown;
            if (prop !== 'query' || typeof v !== 'function')
              return typeof v === 'function' ? v.bind(target) : v;
            return async (...args: unknown[]) => {
              try {
                return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
              } catch (err) {
                if ((err as { errno?: number }).errno === 1205) {
                  timeouts++;
                  release ??= holder.conn.rollback().then(() => {
                    released = Date.now();
                  });
                  await release;
                }
                throw err;
              }
            };
          },
        });
        await pruneChangesBefore(watched, job, epoch);
        const doneAt = Date.now();
        // It met the lock once (1205), ran again after the lock was let go, and finished then.
        expect(timeouts).toBe(1);
        expect(released).toBeGreaterThan(0);
        expect(doneAt).toBeGreaterThanOrEqual(released);
        const [left] = await ctx.control.conn.query<RowDataPacket[]>(
          'SELECT generation FROM reshard_bloom_filters WHERE job_id = ? AND shard = ? ORDER BY generation',
          [job, 's0'],
        );
        expect(left.map((r) => Number(r.generation))).toEqual([epoch.s0!]);
      } finally {
        await holder.close();
        await pruner.close();
      }
    });
  });

  it('compaction folds only the current epoch, loses no change, and keeps the exact keys', async () => {
    await withJob('tailcompact', async (ctx) => {
      const conn = ctx.control.conn;
      const job = ctx.job.id;
      const row = (id: number) => ({ table: 'users', pk: [String(id)], target: 't0' });
      const ids = (from: number, to: number) =>
        Array.from({ length: to - from + 1 }, (_, i) => row(from + i));
      // Before any epoch: deltas of ids 1..300, then a verify run opens an epoch.
      for (let i = 0; i < 3; i++)
        await recordChanges(ctx.control, job, 's0', ids(i * 100 + 1, i * 100 + 100));
      const epoch = await openEpoch(conn, job, ['s0']);
      // In the epoch: ids 1001..1400 in four deltas, folded into one whole filter.
      for (let i = 0; i < 4; i++)
        await recordChanges(ctx.control, job, 's0', ids(1001 + i * 100, 1100 + i * 100));
      const before = await loadChangeSet(conn, job, epoch);
      expect(await compactChanges(conn, job, 's0')).toBe(true);
      const [rows] = await conn.query<RowDataPacket[]>(
        'SELECT generation, encoding FROM reshard_bloom_filters WHERE job_id = ? AND shard = ? ORDER BY generation',
        [job, 's0'],
      );
      // The three pre-epoch deltas stay apart (pruning drops them after a clean run); the epoch's
      // own row and its four deltas became one whole filter under the newest one's number (a
      // record's next generation is then still the one after it).
      expect(rows.map((r) => Number(r.encoding))).toEqual([1, 1, 1, 0]);
      expect(Number(rows[3]!.generation)).toBe(epoch.s0! + 4);
      const after = await loadChangeSet(conn, job, epoch);
      for (let id = 1001; id <= 1400; id++)
        expect(after.mayHaveChanged('users', changeIdOfPk([String(id)]))).toBe(true);
      // "Since the epoch" is no wider than before compaction: the same answer for every id.
      for (let id = 1; id <= 2000; id++) {
        const c = changeIdOfPk([String(id)]);
        expect(after.mayHaveChanged('users', c)).toBe(before.mayHaveChanged('users', c));
      }
      // Nothing to fold now; the exact keys of the epoch are all still there.
      expect(await compactChanges(conn, job, 's0')).toBe(false);
      const exact = await loadChangedKeys(conn, job, ['s0'], epoch, {});
      expect(exact.complete).toBe(true);
      if (exact.complete) expect(exact.count).toBe(400);
    });
  });
});
