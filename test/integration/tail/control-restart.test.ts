/**
 * The control-schema server restarted while `reshard tail` runs under load. The tailer's change
 * recorder used to write on one control connection opened at setup and never replaced: after
 * the restart every record failed, each target commit waits on it, and the whole tailer stopped
 * with E_TAIL_CHANGES. Now its control work runs through ControlLink, which reconnects and
 * retries. The control server here is a private mariadbd, so restarting it disturbs no other test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { openJob } from '../../../src/job/context.js';
import { runLoad } from '../../../src/load/generator.js';
import {
  findServerBinary,
  type InstanceInfo,
  instanceInfo,
  startInstance,
  stopInstance,
} from '../../../src/sandbox/instances.js';
import { connectControl } from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { type Estate, expectConverged, makeEstate, naiveCopy, recordStarts } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A free port in the test sandbox's range (20000–29990), never one of the ports left alone. */
async function freeTestPort(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const p = 20000 + Math.floor(Math.random() * 9990);
    const ok = await new Promise<boolean>((res) => {
      const srv = createServer();
      srv.once('error', () => res(false));
      srv.listen(p, '127.0.0.1', () => srv.close(() => res(true)));
    });
    if (ok) return p;
  }
  throw new Error('no free port');
}

describe('control server restarted mid-tail', () => {
  const bin = findServerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'reshard-revb-ctl-'));
  let ctl: InstanceInfo;
  let e: Estate;

  beforeAll(async () => {
    const p = await freeTestPort();
    ctl = instanceInfo(dir, { name: 'ctl', port: p, serverId: 3_000_000 + p });
    await startInstance(bin, ctl);
    const base = await makeEstate({ prefix: 'rbctlrs', rows: 2000, seed: 21 });
    const controlDsn = `mysql://root@127.0.0.1:${p}/${base.controlDb}`;
    const c = await connectControl(controlDsn);
    try {
      await ensureControlSchema(c);
    } finally {
      await c.close();
    }
    e = {
      ...base,
      controlDsn,
      job: () => openJob({ planPath: base.planPath, control: controlDsn, create: true }),
    };
    await recordStarts(e);
    await naiveCopy(e);
  });

  afterAll(async () => {
    await e?.drop().catch(() => undefined);
    if (ctl) await stopInstance(ctl).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

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
      await stopInstance(ctl);
      await sleep(500);
      await startInstance(bin, ctl);
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
