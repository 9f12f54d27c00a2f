/**
 * ControlSession.close() is final: a caller still running when the copy ends (a poller's tick)
 * must not reconnect, or the new connection keeps `reshard copy` alive after its summary.
 */
import type { Connection } from 'mysql2/promise';
import { describe, expect, it, vi } from 'vitest';
import { ControlSession } from '../../../src/copy/claims.js';
import { rootConn } from '../../support/db.js';

// The real timers, for deadlines while the test fakes them.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

function counting() {
  const opened: Connection[] = [];
  let gate: Promise<void> = Promise.resolve();
  return {
    opened,
    hold(p: Promise<void>) {
      gate = p;
    },
    open: async () => {
      await gate;
      const c = await rootConn('ctl');
      opened.push(c);
      return c;
    },
  };
}

/** Whether the server still has this connection (its thread id in the processlist). */
async function serverHas(c: Connection): Promise<boolean> {
  const probe = await rootConn('ctl');
  try {
    const [r] = await probe.query('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ?', [
      c.threadId,
    ]);
    return Number((r as { n: number | string }[])[0]!.n) > 0;
  } finally {
    await probe.end();
  }
}

/**
 * The connection was ended by the client — QUIT sent (end()) or its socket destroyed — and then
 * left the server's processlist. The first part is checked at once: it is what close() must do,
 * and it is what makes the server drop the connection. The server does so asynchronously (it
 * still has to read the QUIT or the EOF), so it is waited for, up to 60 s: a guard against a
 * connection that never goes, far beyond any machine's delay (it was 2 s, then asserted).
 */
async function expectLeftServer(c: Connection): Promise<void> {
  const core = (c as unknown as { connection: { _closing?: boolean; stream?: { destroyed?: boolean } } })
    .connection;
  expect(core._closing === true || core.stream?.destroyed === true, 'the client ended the connection').toBe(
    true,
  );
  const until = Date.now() + 60_000;
  while ((await serverHas(c)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  expect(await serverHas(c), 'the connection is still on the server after 60 s').toBe(false);
}

describe('ControlSession.close', () => {
  it('refuses to reconnect afterwards', async () => {
    const o = counting();
    const s = new ControlSession(o.open);
    expect(await s.run('first', async (c) => (await c.query('SELECT 1 AS one'))[0])).toEqual([{ one: 1 }]);
    await s.close();
    expect(s.isClosed).toBe(true);
    await expect(s.run('after close', (c) => c.query('SELECT 1'))).rejects.toThrow(/closed/);
    expect(o.opened).toHaveLength(1);
    // Ended on the server too.
    await expectLeftServer(o.opened[0]!);
  });

  it('closes a connection that was being opened when close() was called', async () => {
    const o = counting();
    let release!: () => void;
    o.hold(new Promise<void>((r) => (release = r)));
    const s = new ControlSession(o.open);
    const running = s.run('in flight', (c) => c.query('SELECT 1'));
    const closing = s.close();
    release();
    await closing;
    await expect(running).rejects.toThrow(/closed/);
    expect(o.opened).toHaveLength(1);
    await expectLeftServer(o.opened[0]!);
  });

  it('ends a call that is waiting out a retry backoff', async () => {
    // A control server that refuses connections: run() retries with doubling backoff. After
    // 6 s it sleeps 1.6–6.4 s between attempts; close() must end that sleep, not wait it out.
    // The backoff's timers are fake: time passes only when the test advances it, so the call is
    // inside a backoff sleep when close() comes, and can end only if close() ends that sleep.
    // (With real timers the test slept 6 s and then required the rejection within 150 ms of
    // wall clock, a race on a loaded machine.)
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let attempts = 0;
      const s = new ControlSession(async () => {
        attempts++;
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
      });
      const running = s.run('refused', (c) => c.query('SELECT 1'));
      running.catch(() => undefined);
      await vi.advanceTimersByTimeAsync(6000);
      expect(attempts).toBeGreaterThanOrEqual(6);
      expect(vi.getTimerCount(), 'the call waits out a backoff').toBe(1);
      const tried = attempts;
      await s.close();
      // No fake time passes from here: the backoff ends only by close(). A real-time deadline
      // tells a call still waiting apart from one that ended.
      let hung: ReturnType<typeof realSetTimeout> | undefined;
      const outcome = await Promise.race([
        running.then(
          () => 'resolved',
          (e: unknown) => (e as Error).message,
        ),
        new Promise<string>((r) => {
          hung = realSetTimeout(() => r('still waiting out its backoff'), 10_000);
        }),
      ]);
      realClearTimeout(hung);
      expect(outcome).toMatch(/closed/);
      expect(vi.getTimerCount(), 'the backoff timer is cleared').toBe(0);
      expect(attempts, 'no attempt after close()').toBe(tried);
    } finally {
      vi.useRealTimers();
    }
  }, 30_000);
});
