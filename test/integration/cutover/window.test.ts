/**
 * The rollback window's edges, each a case that once went wrong (each failed before its fix):
 *
 *   1. rollback before cutover (reads-first active): routing reads back is published as a
 *      journaled step; when the publish fails, the re-run publishes it.
 *   2. rollback before cutover: a failing --on-flip hook is an error, not a success.
 *   3. forward and reverse tailing never overlap: a forward tailer stops by itself once the job
 *      is cut over, a reverse one refuses while a forward one streams (and vice versa). When both
 *      ran, each carried the other's writes back and a committed update on the new shards was
 *      overwritten by an older image, again and again.
 *   4. `reshard complete` refuses while a crashed rollback still holds the new (authoritative)
 *      shards read-only.
 *
 * Cases 1–3a run on the shared sandbox (nothing is frozen). The others freeze, so they run on two
 * private servers: A holds s0, s1 (old shards only); B holds t0, t1, t2 (new shards only).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail, type TailHandle } from '../../../src/binlog/tailer.js';
import { runComplete, runCutover, runRollback } from '../../../src/cutover/index.js';
import { port, type SandboxName } from '../../support/db.js';
import {
  copyAndVerify,
  type Estate,
  jobState,
  makeEstate,
  type OwnServer,
  openCtx,
  portConn,
  readOnly,
  runCli,
  setReadOnly,
  startServer,
} from './helpers.js';

const SHARED: SandboxName[] = ['s0', 's1', 't0', 't1', 't2'];
const estates: Estate[] = [];

afterAll(async () => {
  for (const n of SHARED) if (await readOnly(port(n)).catch(() => false)) await setReadOnly(port(n), false);
  for (const e of estates) await e.drop().catch(() => undefined);
});

async function sharedEstate(prefix: string): Promise<Estate> {
  const e = await makeEstate({
    prefix,
    rows: 600,
    seed: 4,
    appUser: false,
    ports: { s0: port('s0'), s1: port('s1'), t0: port('t0'), t1: port('t1'), t2: port('t2') },
  });
  estates.push(e);
  await copyAndVerify(e);
  return e;
}

/** Reads-first flip (needs a running forward tailer), then the tailer is stopped. */
async function readsFirst(e: Estate): Promise<void> {
  const ctx = await openCtx(e);
  let tail: TailHandle | undefined;
  try {
    tail = await startTail({ ctx, metaDb: e.metaDb, statusIntervalMs: 300 });
    await tail.waitCaughtUp({ timeoutMs: 60_000 });
    // The cutover reads the lag from the tailer's status rows: wait for a row written after it
    // caught up, for every source — each row's updated_at moves on from what it was now (every
    // 300 ms on a machine that keeps up). It used to sleep 700 ms and assume one had been written.
    const sources = tail.status().sources.map((s) => s.source);
    const statusRows = async () => {
      const [rows] = await ctx.control.conn.query<RowDataPacket[]>(
        "SELECT shard, CAST(updated_at AS CHAR) AS at FROM reshard_tail_status WHERE job_id = ? AND direction = 'forward'",
        [ctx.job.id],
      );
      return new Map(rows.map((r) => [String(r.shard), String(r.at)]));
    };
    const caughtUp = await statusRows();
    const until = Date.now() + 60_000;
    for (;;) {
      const now = await statusRows();
      const stale = sources.filter((s) => !now.has(s) || now.get(s) === caughtUp.get(s));
      if (stale.length === 0) break;
      expect(
        Date.now(),
        `no status row written since the tailer caught up: ${stale.join(', ')}`,
      ).toBeLessThan(until);
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await runCutover({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      execute: true,
      readsOnly: true,
      maxLagMs: 30_000,
    });
    expect(r.mode).toBe('reads-only');
  } finally {
    await tail?.stop().catch(() => undefined);
    await ctx.close();
  }
}

describe('forward and reverse tailing exclude each other (shared sandbox)', () => {
  it('a reverse tailer refuses while a forward one streams, and a forward one while a reverse one does', async () => {
    const e = await sharedEstate('win_dir');
    const ctxF = await openCtx(e);
    const ctxR = await openCtx(e);
    let fwd: TailHandle | undefined;
    let rev: TailHandle | undefined;
    try {
      fwd = await startTail({ ctx: ctxF, metaDb: e.metaDb });
      const refused = await startTail({
        ctx: ctxR,
        direction: 'reverse',
        metaDb: e.metaDb,
        otherDirectionWaitMs: 500,
      }).then(
        (t) => {
          rev = t;
          return undefined;
        },
        (err: unknown) => err as { code?: string; message?: string },
      );
      expect(refused?.code).toBe('E_TAIL_OTHER_DIRECTION');
      expect(refused?.message).toMatch(/a forward reshard tail is still streaming s0, s1/);
      await fwd.stop();
      fwd = undefined;
      // The other way round: a reverse tailer of t0 (from t0's current end) streams...
      const t0 = await portConn(port('t0'));
      const [st] = await t0.query<RowDataPacket[]>('SHOW MASTER STATUS');
      await t0.end();
      rev = await startTail({
        ctx: ctxR,
        direction: 'reverse',
        metaDb: e.metaDb,
        sources: ['t0'],
        fromPosition: { file: String(st[0]!.File), pos: Number(st[0]!.Position) },
      });
      // ...so a forward start refuses: t0 is one of its targets.
      const forwardRefusal = await startTail({ ctx: ctxF, metaDb: e.metaDb, otherDirectionWaitMs: 0 }).then(
        async (t) => {
          await t.stop();
          return undefined;
        },
        (err: unknown) => err as { code?: string; message?: string },
      );
      expect(forwardRefusal?.code ?? 'never refused').toBe('E_TAIL_OTHER_DIRECTION');
      expect(forwardRefusal?.message).toMatch(/a reverse reshard tail is still streaming t0 /);
    } finally {
      await fwd?.stop().catch(() => undefined);
      await rev?.stop().catch(() => undefined);
      await ctxF.close();
      await ctxR.close();
    }
  });
});

describe('rollback before cutover with reads-first active (shared sandbox, no freeze)', () => {
  it('re-publishes the routed-back reads after the first publish failed', async () => {
    const e = await sharedEstate('win_pub');
    await readsFirst(e);
    // First attempt: the flip back commits, then writing the routing file fails (no such dir).
    await expect(
      runRollback({
        planPath: e.planPath,
        control: e.controlDsn,
        metaDb: e.metaDb,
        execute: true,
        routingOut: join(e.dir, 'no-such-dir', 'routing.json'),
      }),
    ).rejects.toThrow(/ENOENT/);
    expect(await jobState(e)).toBe('cancelled');
    // The re-run the operator is told to do, with a working --routing-out.
    const good = join(e.dir, 'routing.json');
    const again = await runRollback({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      execute: true,
      routingOut: good,
    });
    expect(again.ok).toBe(true);
    // The applications were never told that reads went back to the old shards.
    expect(existsSync(good), `re-run result: ${JSON.stringify(again)}`).toBe(true);
  });

  it('does not report success when the --on-flip hook fails', async () => {
    const e = await sharedEstate('win_hook');
    await readsFirst(e);
    const run = runRollback({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      execute: true,
      onFlip: 'exit 7',
    });
    const r = await run.catch((err: unknown) => ({ rejected: err as Error }));
    // Either an error (as cutover's E_CUTOVER_HOOK) or ok: false — not a silent success.
    const silentSuccess = !('rejected' in r) && r.ok === true;
    expect(silentSuccess, `result: ${JSON.stringify(r)}`).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

let own: OwnServer[] = [];
let ownEstate: Estate | undefined;

describe('after cutover (two private servers)', () => {
  beforeAll(async () => {
    own = await Promise.all(['a', 'b'].map((n) => startServer(`window-${n}`)));
    const [A, B] = own.map((s) => s.port) as [number, number];
    ownEstate = await makeEstate({
      prefix: 'win_echo',
      rows: 600,
      seed: 5,
      ports: { s0: A, s1: A, t0: B, t1: B, t2: B },
    });
    estates.push(ownEstate);
    await copyAndVerify(ownEstate);
  }, 240_000);

  afterAll(async () => {
    await Promise.all(own.map((s) => s.destroy()));
  });

  it('a forward tailer left running after cutover must not overwrite a newer write on the new shards', async () => {
    const e = ownEstate!;
    const [A, B] = own.map((s) => s.port) as [number, number];
    const ctxF = await openCtx(e);
    const ctxR = await openCtx(e);
    let fwd: TailHandle | undefined;
    let rev: TailHandle | undefined;
    const app1 = await portConn(B, 'app');
    const app2 = await portConn(B, 'app');
    const root = await portConn(B);
    try {
      // The forward tailer runs (e.g. under a supervisor) through the cutover, as in the e2e.
      fwd = await startTail({ ctx: ctxF, metaDb: e.metaDb, statusIntervalMs: 300 });
      await fwd.waitCaughtUp({ timeoutMs: 60_000 });
      const cut = await runCutover({
        planPath: e.planPath,
        control: e.controlDsn,
        metaDb: e.metaDb,
        execute: true,
        maxFreezeMs: 60_000,
        maxLagMs: 30_000,
      });
      expect(cut.mode).toBe('cutover');
      expect(await readOnly(A)).toBe(true);
      // The forward tailer notices the cutover and stops by itself.
      const ended = await Promise.race([
        fwd.done,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000)),
      ]);
      expect(ended?.stoppedBecause).toMatch(/is now 'cut-over': forward tailing stopped/);
      // Reverse replication, as the cutover tells the operator.
      rev = await startTail({ ctx: ctxR, direction: 'reverse', metaDb: e.metaDb, statusIntervalMs: 300 });

      // A user on a new shard, and its old shard.
      let tShard = '';
      let id = 0;
      for (const t of ['t0', 't1', 't2']) {
        const [r] = await root.query<RowDataPacket[]>(
          `SELECT id FROM \`${e.db}_${t}\`.users ORDER BY id LIMIT 1`,
        );
        if (r[0]) {
          tShard = t;
          id = Number(r[0].id);
          break;
        }
      }
      expect(tShard).not.toBe('');
      const oldConn = await portConn(A);
      let sShard = '';
      for (const s of ['s0', 's1']) {
        const [r] = await oldConn.query<RowDataPacket[]>(
          `SELECT 1 FROM \`${e.db}_${s}\`.users WHERE id = ?`,
          [id],
        );
        if (r[0]) sShard = s;
      }
      expect(sShard).not.toBe('');
      const oldBalance = async () => {
        const [r] = await oldConn.query<RowDataPacket[]>(
          `SELECT balance FROM \`${e.db}_${sShard}\`.users WHERE id = ?`,
          [id],
        );
        return String(r[0]?.balance);
      };

      // The application (routing by the new topology) writes balance 111, then 222 to the user.
      await app1.query(`USE \`${e.db}_${tShard}\``);
      await app2.query(`USE \`${e.db}_${tShard}\``);
      await app1.query('UPDATE users SET balance = 111 WHERE id = ?', [id]);
      await app2.query('START TRANSACTION');
      await app2.query('UPDATE users SET balance = 222 WHERE id = ?', [id]);
      // Reverse replication carries 111 to the old shard …
      for (let i = 0; i < 300 && (await oldBalance()) !== '111.0000'; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(await oldBalance()).toBe('111.0000');
      // … where a forward tailer still running would pick it up and apply it to the new shard
      // again, behind the application's row lock (it waited on it when this case failed).
      await new Promise((r) => setTimeout(r, 1500));
      await app2.query('COMMIT'); // the application's last write: balance 222
      // From the commit on, the application's data is balance 222. Watch the new shard for 4 s:
      // an echo would land the stale image (111) on it, and two tailers would then feed each
      // other's writes back (each one's writes are in the other's source binlog).
      const seen: string[] = [];
      const t0 = Date.now();
      while (Date.now() - t0 < 4000) {
        const [r] = await root.query<RowDataPacket[]>(
          `SELECT balance FROM \`${e.db}_${tShard}\`.users WHERE id = ?`,
          [id],
        );
        const v = String(r[0]?.balance);
        if (seen.at(-1) !== v) seen.push(v);
        await new Promise((res) => setTimeout(res, 25));
      }
      const [bl] = await root.query<RowDataPacket[]>('SHOW BINARY LOGS');
      process.stderr.write(
        `window echo: new-shard balance after the commit, in order: ${seen.join(' → ')}; old shard now ${await oldBalance()}; B binlog bytes ${JSON.stringify(bl.map((x) => Number(x.File_size)))}\n`,
      );
      await oldConn.end();
      expect(seen, 'balances seen on the new shard after the application committed 222').toEqual([
        '222.0000',
      ]);
    } finally {
      await app1.end().catch(() => undefined);
      await app2.end().catch(() => undefined);
      await root.end().catch(() => undefined);
      await fwd?.stop().catch(() => undefined);
      await rev?.stop().catch(() => undefined);
      await ctxF.close();
      await ctxR.close();
    }
  }, 240_000);

  it('complete refuses while a crashed rollback holds the new shards read-only', async () => {
    const e = ownEstate!;
    const [, B] = own.map((s) => s.port) as [number, number];
    expect(await jobState(e)).toBe('cut-over');
    // A rollback is killed after freezing the new shards (kill -9 at its drain step).
    const crashed = await runCli(
      [
        'rollback',
        '--plan',
        e.planPath,
        '--control',
        e.controlDsn,
        '--meta-db',
        e.metaDb,
        '--execute',
        '--json',
      ],
      { RESHARD_CRASH_AT: 'rollback.drain' },
    );
    expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
    expect(await readOnly(B)).toBe(true); // the new shards: frozen by the crashed rollback
    const done = await runComplete({ planPath: e.planPath, control: e.controlDsn, execute: true }).catch(
      (err: unknown) => ({ rejected: String(err) }),
    );
    const completed = await jobState(e);
    // Clean up for the other files: a rollback re-run undoes the crashed attempt's freeze.
    await runRollback({ planPath: e.planPath, control: e.controlDsn, metaDb: e.metaDb, execute: true }).catch(
      () => undefined,
    );
    process.stderr.write(
      `window complete: ${JSON.stringify(done)}; B read_only after the rollback re-run: ${await readOnly(B)}\n`,
    );
    expect(
      completed,
      'the rollback window was closed while the new shards were still read-only from the crashed rollback',
    ).toBe('cut-over');
  }, 240_000);
});
