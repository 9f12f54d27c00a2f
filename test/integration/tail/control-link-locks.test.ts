/**
 * ControlLink and the tailer's stream locks across a control-server restart, which ends the
 * tailer's control sessions and frees its GET_LOCK stream locks.
 *
 * The recorder's new connection used to check the locks with a no-op on the tailer's own link:
 * a link that had not yet noticed its connection was dead handed it to the no-op, which
 * "succeeded" — no lock was taken, the recorder recorded, and the targets committed while
 * another session held the stream lock (another `reshard tail`, or a cutover's drain deciding by
 * IS_USED_LOCK that no tailer runs). Now the check asks the server.
 *
 * And the start-time rule "forward and reverse tailing never overlap" was not checked again on a
 * new connection: a forward tailer whose locks the restart freed kept applying while the reverse
 * stream lock of its target was held. Now it stops.
 *
 * The control server is a private mariadbd (as in tail/control-restart.test.ts). The tailer
 * reaches it through a gate (a TCP relay the test can hold shut), so that the other session
 * takes the lock before the tailer's link can reconnect: with a direct connection the tailer's
 * reconnect (backoff at most 2 s) raced the test's session, and when the tailer won it held its
 * stream locks again, and a real reverse tailer would have refused to start.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tailLockName } from '../../../src/binlog/status.js';
import { startTail, type TailHandle } from '../../../src/binlog/tailer.js';
import { openJob } from '../../../src/job/context.js';
import { type Estate, estateWithPrivateControl, queryOn, sqlOn } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP relay to `port` on loopback. While shut, new connections wait unanswered (as behind a
 * slow network) and are relayed once it opens; relayed connections end with the server's.
 */
async function gate(
  port: number,
): Promise<{ port: number; shut(): void; open(): void; close(): Promise<void> }> {
  let shut = false;
  const waiting: Socket[] = [];
  const live = new Set<Socket>();
  const relay = (client: Socket) => {
    const up = connect(port, '127.0.0.1');
    live.add(client).add(up);
    const end = () => {
      client.destroy();
      up.destroy();
      live.delete(client);
      live.delete(up);
    };
    for (const s of [client, up]) s.on('error', end).on('close', end);
    client.pipe(up);
    up.pipe(client);
  };
  const server: Server = createServer((client) => {
    if (shut) waiting.push(client);
    else relay(client);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: (server.address() as { port: number }).port,
    shut: () => {
      shut = true;
    },
    open: () => {
      shut = false;
      for (const c of waiting.splice(0)) if (!c.destroyed) relay(c);
    },
    close: async () => {
      for (const s of [...live, ...waiting]) s.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}

describe('stream locks after a control-server restart', () => {
  let ctlPort: number;
  let e: Estate;
  let c: Awaited<ReturnType<typeof estateWithPrivateControl>> | undefined;
  let g: Awaited<ReturnType<typeof gate>> | undefined;

  beforeAll(async () => {
    c = await estateWithPrivateControl({ prefix: 'ctllock', rows: 200, seed: 33 });
    e = c.e;
    ctlPort = c.port;
    g = await gate(ctlPort);
  }, 60_000);

  afterAll(async () => {
    await g?.close();
    await c?.drop();
  });

  /** A session on the (restarted) control server holding `name`, as another tailer would. */
  async function holdLock(name: string) {
    const c = await mysql.createConnection({ host: '127.0.0.1', port: ctlPort, user: 'root' });
    const [rows] = await c.query('SELECT GET_LOCK(?, 0) AS got', [name]);
    return { got: String((rows as { got: unknown }[])[0]?.got), conn: c };
  }

  /** Update a user that lives on source s0; returns its id and the marker written. */
  async function touchUserOnS0(marker: string): Promise<number> {
    const s0 = e.sources.find((s) => s.name === 's0')!;
    const [row] = await queryOn<{ id: number }>(
      s0.port,
      'SELECT id FROM users ORDER BY id LIMIT 1',
      [],
      e.db,
    );
    await sqlOn(s0.port, `UPDATE users SET name = '${marker}' WHERE id = ${Number(row!.id)}`, e.db);
    return Number(row!.id);
  }

  async function onTargets(id: number): Promise<string[]> {
    const names: string[] = [];
    for (const t of e.targets) {
      const r = await queryOn<{ name: string }>(t.port, 'SELECT name FROM users WHERE id = ?', [id], e.db);
      for (const x of r) names.push(String(x.name));
    }
    return names;
  }

  async function run(
    jobWatchMs: number | undefined,
    lockOf: (jobId: number) => string,
    marker: string,
  ): Promise<{ applied: boolean; failure: string }> {
    // The tailer's control connections go through the gate; the other session's do not.
    const ctx = await openJob({
      planPath: e.planPath,
      control: e.controlDsn.replace(`:${ctlPort}/`, `:${g!.port}/`),
      create: true,
    });
    const tail: TailHandle = await startTail({
      ctx,
      metaDb: e.metaDb,
      ...(jobWatchMs ? { jobWatchMs, statusIntervalMs: jobWatchMs } : {}),
    });
    let failure = 'still running';
    tail.done.catch((err: unknown) => {
      failure = (err as { code?: string }).code ?? String(err);
    });
    let other: Awaited<ReturnType<typeof holdLock>> | undefined;
    try {
      await tail.waitCaughtUp({ timeoutMs: 30_000 });
      g!.shut();
      await c!.stopControl();
      await c!.startControl();
      // Another session takes the lock while the control server is back, before the tailer
      // can reach it again.
      other = await holdLock(lockOf(ctx.job.id));
      expect(other.got, 'the restart freed the lock').toBe('1');
      g!.open();
      if (jobWatchMs === undefined) await sleep(3000); // the tailer's link reconnects meanwhile
      const id = await touchUserOnS0(marker);
      await sleep(4000);
      return { applied: (await onTargets(id)).includes(marker), failure };
    } finally {
      g!.open();
      await other?.conn.end().catch(() => undefined);
      await tail.stop().catch(() => undefined);
      await ctx.close().catch(() => undefined);
    }
  }

  it('a forward tailer whose stream lock another session took meanwhile commits nothing on the targets', async () => {
    // The job watch and the mirror are quiet (an option of TailOptions): only the recorder
    // touches the control server, as happens between ticks with the defaults (1 s / 2 s).
    const r = await run(600_000, (jobId) => tailLockName(e.controlDb, jobId, 'forward', 's0'), 'rev3-stolen');
    expect(r.applied, 'applied on a target while another session held the stream lock').toBe(false);
  }, 60_000);

  it('a forward tailer does not go on applying while the reverse stream lock of its target is held', async () => {
    // t0 is a forward target, hence a reverse source: its reverse lock held is what
    // refuseOtherDirection refuses at start.
    const r = await run(
      undefined,
      (jobId) => tailLockName(e.controlDb, jobId, 'reverse', 't0'),
      'rev3-reverse',
    );
    expect(r.applied, 'forward tailer applied while a reverse tailer holds its lock').toBe(false);
    expect(r.failure).toBe('E_TAIL_OTHER_DIRECTION');
  }, 60_000);
});
