/**
 * The control-schema server restarted while `reshard tail` runs under load. The tailer's change
 * recorder used to write on one control connection opened at setup and never replaced: after
 * the restart every record failed, each target commit waits on it, and the whole tailer stopped
 * with E_TAIL_CHANGES. Now its control work runs through ControlLink, which reconnects and
 * retries. The control server here is a private mariadbd, so restarting it disturbs no other test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { runLoad } from '../../../src/load/generator.js';
import { type Estate, estateWithPrivateControl, expectConverged } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('control server restarted mid-tail', () => {
  let e: Estate;
  let c: Awaited<ReturnType<typeof estateWithPrivateControl>> | undefined;

  beforeAll(async () => {
    c = await estateWithPrivateControl({ prefix: 'ctlrs', rows: 2000, seed: 21 });
    e = c.e;
  });

  afterAll(async () => c?.drop());

  it('keeps tailing across the restart and converges', async () => {
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb, statusIntervalMs: 500 });
    let failure: unknown;
    tail.done.catch((err: unknown) => {
      failure = err;
    });
    const stopLoad = new AbortController();
    const load = runLoad({ topology: e.from, rate: 200, signal: stopLoad.signal, seed: 21, concurrency: 2 });
    try {
      await sleep(1500);
      await c!.stopControl();
      await sleep(500);
      await c!.startControl();
      await sleep(4000);
      stopLoad.abort();
      const l = await load;
      expect(l.errors).toBe(0);
      const failed = failure as { code?: string; message?: string } | undefined;
      expect(failed?.code ?? 'still running', failed?.message).toBe('still running');
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      await tail.stop();
      await expectConverged(e);
    } finally {
      stopLoad.abort();
      await load.catch(() => undefined);
      await tail.stop().catch(() => undefined);
      await ctx.close().catch(() => undefined);
    }
  });
});
