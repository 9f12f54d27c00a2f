/**
 * Found by review A. Reverse replication in an in-place expansion (s0, s1 → s0, s1, s2; s0 and s1 are the
 * same databases on both sides), after a real cutover, on three private servers (a cutover
 * freezes them).
 *
 * After the cutover the application routes by the new topology. It moves an order (shard key
 * user_id, not the primary key) from a user of a STAYING segment (s0 → s0) to a user of a segment
 * that moved s0 → s2: insert on s2, then delete on s0 ("in either order", src/apply/README.md).
 * Reverse replication must put the new image back on its old owner s0, so that a rollback loses
 * nothing. The new image was parked against the staying row, whose delete no stream carries (it
 * is made in the very table the tailer writes): it stayed parked for good. The applier now looks
 * for parked rows whose key came free (once a second while idle, when a caller waits for the
 * tailer to catch up, and on stopping).
 */
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail, type TailHandle } from '../../../src/binlog/tailer.js';
import { runCutover, runRollback } from '../../../src/cutover/index.js';
import { openJob } from '../../../src/job/context.js';
import { runVerify } from '../../../src/verify/index.js';
import { compareEstate } from '../../support/compare.js';
import { uniqueDb } from '../../support/db.js';
import { copyAll, type Estate, makeEstate } from '../copy/helpers.js';
import { type OwnServer, portConn, readOnly, startServer } from './helpers.js';

// It freezes, so on three private servers: P0 holds s0, P1 s1 (both on both sides), P2 s2.
let servers: OwnServer[] = [];
const P = (i: number) => servers[i]!.port;
const conn = async (i: number, db: string) => {
  const c = await portConn(P(i));
  await c.query(`USE \`${db}\``);
  return c;
};

beforeAll(async () => {
  servers = await Promise.all(['p0', 'p1', 'p2'].map((n) => startServer(`inplace-${n}`)));
}, 180_000);
let e: Estate | undefined;
let f: Estate | undefined;

afterAll(async () => {
  await e?.drop().catch(() => undefined);
  await f?.drop().catch(() => undefined);
  await Promise.all(servers.map((x) => x.destroy()));
});

/** The order's row on s0. */
async function orderOn(s0: Awaited<ReturnType<typeof portConn>>, id: string): Promise<RowDataPacket[]> {
  const [rows] = await s0.query<RowDataPacket[]>(
    'SELECT id, user_id, status, total, note FROM orders WHERE id = ?',
    [id],
  );
  return rows;
}

function inPlace(prefix: string, db: string) {
  return makeEstate({
    prefix,
    db,
    rows: 600,
    seed: 23,
    sources: [
      { name: 's0', server: P(0), database: db },
      { name: 's1', server: P(1), database: db },
    ],
    targets: [
      { name: 's0', server: P(0), database: db },
      { name: 's1', server: P(1), database: db },
      { name: 's2', server: P(2), database: db },
    ],
  });
}

describe('reverse replication, in-place expansion', () => {
  it('carries an order moved out of a staying segment (insert on s2, then delete on s0) back to its old owner; rollback then succeeds', async () => {
    const db = uniqueDb('reva_inplace');
    e = await inPlace('reva_inplace', db);
    const est = e;
    const base = { planPath: est.planPath, control: est.controlDsn, metaDb: est.metaDb };
    expect((await copyAll(est)).complete).toBe(true);
    const ctx = await openJob({ planPath: est.planPath, control: est.controlDsn, create: false });
    let rev: TailHandle | undefined;
    const s0 = await conn(0, db);
    const s2 = await conn(2, db);
    try {
      expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);
      const cut = await runCutover({ ...base, execute: true, maxFreezeMs: 60_000, maxLagMs: 30_000 });
      expect(cut.mode).toBe('cutover');
      // The copy is fenced on the new shard (a copy page still in flight cannot land after the flip).
      const [fence] = await s2.query<RowDataPacket[]>(
        `SELECT fenced FROM \`${est.metaDb}\`.copy_fences WHERE job_id = ?`,
        [ctx.job.id],
      );
      expect(fence.map((r) => Number(r.fenced))).toEqual([1]);
      // Both old servers hold new shards (in place): writable again.
      expect([await readOnly(P(0)), await readOnly(P(1))]).toEqual([false, false]);

      rev = await startTail({ ctx, direction: 'reverse', metaDb: est.metaDb, statusIntervalMs: 300 });

      // An order of a user whose segment stays on s0, and a user whose segment moved s0 → s2.
      const seg = (k: number | string) => ctx.index.segmentOf(BigInt(k));
      const [orders] = await s0.query<RowDataPacket[]>('SELECT id, user_id FROM orders ORDER BY id');
      const order = orders.find((o) => {
        const s = seg(String(o.user_id));
        return s.from === 's0' && s.to === 's0';
      });
      expect(order, 'an order of a staying user on s0').toBeDefined();
      let uc = 1_000_000;
      while (!(seg(uc).from === 's0' && seg(uc).to === 's2')) uc++;
      const id = String(order!.id);

      // The application (new topology): the order now belongs to user uc, whose owner is s2.
      // Insert on the new owner first, then delete on the old one (two shards, two transactions).
      await s2.query(
        "INSERT INTO orders (id, user_id, status, total, created_at, note) VALUES (?, ?, 'paid', 1234.5678, '2024-01-02 03:04:05.123456', 'moved to uc')",
        [id, uc],
      );
      await rev.waitCaughtUp({ timeoutMs: 60_000 }); // the reverse stream has applied the insert
      await s0.query('DELETE FROM orders WHERE id = ?', [id]);
      await rev.waitCaughtUp({ timeoutMs: 60_000 });

      // Under the old topology user uc lives on s0: a rollback must find the moved order there.
      // No stream event says the key came free: catching up includes a look for such keys.
      const onS0 = await orderOn(s0, id);
      const [parked] = await s0.query<RowDataPacket[]>(
        `SELECT source, COUNT(*) AS n FROM \`${est.metaDb}\`.parked_rows GROUP BY source`,
      );
      await rev.stop();
      rev = undefined;
      // Rollback (full verify under the freeze) must succeed and lose nothing.
      const rb = await runRollback({ ...base, execute: true }).catch((err: unknown) => ({
        error: `${(err as { code?: string }).code}: ${(err as Error).message}`,
      }));
      const diff = await compareEstate({ from: est.from, to: est.to, leftovers: 'ignore' }).catch(
        () => undefined,
      );
      process.stderr.write(
        `inplace: order ${id} on s0 after reverse replication: ${JSON.stringify(onS0)}; parked on s0: ${JSON.stringify(parked)}; rollback: ${JSON.stringify('error' in rb ? rb : { mode: rb.mode })}; compare: ${JSON.stringify(diff?.counts)}\n`,
      );
      expect(
        onS0.map((r) => ({ ...r })),
        'the moved order on its old owner s0',
      ).toEqual([{ id, user_id: String(uc), status: 'paid', total: '1234.5678', note: 'moved to uc' }]);
      expect('error' in rb ? rb.error : rb.mode).toBe('rolled-back');
    } finally {
      await rev?.stop().catch(() => undefined);
      await s0.end();
      await s2.end();
      await ctx.close();
    }
  }, 240_000);

  it('(same cause, forward) carries an order moved out of a staying segment (insert on s1, then delete on s0) to its new owner s0; cutover then succeeds', async () => {
    const db = uniqueDb('reva_inplace_fwd');
    f = await inPlace('reva_inplace_fwd', db);
    const est = f;
    const base = { planPath: est.planPath, control: est.controlDsn, metaDb: est.metaDb };
    expect((await copyAll(est)).complete).toBe(true);
    const ctx = await openJob({ planPath: est.planPath, control: est.controlDsn, create: false });
    let fwd: TailHandle | undefined;
    const s0 = await conn(0, db);
    const s1 = await conn(1, db);
    try {
      fwd = await startTail({ ctx, metaDb: est.metaDb, statusIntervalMs: 300 });
      const seg = (k: number | string) => ctx.index.segmentOf(BigInt(k));
      const [orders] = await s0.query<RowDataPacket[]>('SELECT id, user_id FROM orders ORDER BY id');
      const order = orders.find((o) => {
        const s = seg(String(o.user_id));
        return s.from === 's0' && s.to === 's0';
      });
      expect(order, 'an order of a staying user on s0').toBeDefined();
      // A user that lives on s1 today and moves to s0.
      let ub = 1_000_000;
      while (!(seg(ub).from === 's1' && seg(ub).to === 's0')) ub++;
      const id = String(order!.id);
      // The application (old topology): the order now belongs to ub (owner s1): insert there, then delete on s0.
      await s1.query(
        "INSERT INTO orders (id, user_id, status, total, created_at, note) VALUES (?, ?, 'paid', 42.0001, '2024-01-02 03:04:05.123456', 'moved to ub')",
        [id, ub],
      );
      await fwd.waitCaughtUp({ timeoutMs: 60_000 });
      await s0.query('DELETE FROM orders WHERE id = ?', [id]);
      await fwd.waitCaughtUp({ timeoutMs: 60_000 });
      const onS0 = await orderOn(s0, id);
      await fwd.stop();
      fwd = undefined;
      const v = await runVerify({ ctx, preflight: false });
      process.stderr.write(
        `inplace fwd: order ${id} on s0 (its new owner): ${JSON.stringify(onS0)}; verify ${JSON.stringify(v.totals)}\n`,
      );
      expect(
        onS0.map((r) => ({ ...r })),
        'the moved order on its new owner s0',
      ).toEqual([{ id, user_id: String(ub), status: 'paid', total: '42.0001', note: 'moved to ub' }]);
      expect(v.ok).toBe(true);
      const cut = await runCutover({ ...base, execute: true, maxFreezeMs: 60_000, maxLagMs: 30_000 });
      expect(cut.mode).toBe('cutover');
    } finally {
      await fwd?.stop().catch(() => undefined);
      await s0.end();
      await s1.end();
      await ctx.close();
    }
  }, 240_000);
});
