/**
 * Acceptance: a source server restarted under load (clean shutdown, and kill -9) — the tailer
 * reconnects from its last transaction boundary and converges. Uses private mariadbd instances
 * for the sources, so restarting them disturbs no other test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { runLoad } from '../../../src/load/generator.js';
import {
  findServerBinary,
  type InstanceInfo,
  instanceInfo,
  startInstance,
  stopInstance,
} from '../../../src/sandbox/instances.js';
import { port } from '../../support/db.js';
import { type Estate, expectConverged, makeEstate, naiveCopy, recordStarts } from './helpers.js';

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const p = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(p));
    });
  });
}

describe('reshard tail: source restarted under load', () => {
  const bin = findServerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'reshard-tail-restart-'));
  const servers: InstanceInfo[] = [];
  let e: Estate;

  beforeAll(async () => {
    for (const name of ['r0', 'r1']) {
      const p = await freePort();
      servers.push(instanceInfo(dir, { name, port: p, serverId: 2_000_000 + p }));
    }
    await Promise.all(servers.map((s) => startInstance(bin, s)));
    e = await makeEstate({
      prefix: 'tailrs',
      rows: 5000,
      seed: 17,
      sources: servers.map((s, i) => ({ name: `s${i}`, port: s.port })),
      targets: (['t0', 't1', 't2'] as const).map((n) => ({ name: n, port: port(n) })),
    });
    await recordStarts(e);
    await naiveCopy(e);
  });

  afterAll(async () => {
    await e?.drop().catch(() => undefined);
    await Promise.all(servers.map((s) => stopInstance(s).catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  it('reconnects with backoff after a clean restart and after kill -9, and converges', async () => {
    const notes: string[] = [];
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb, heartbeatMs: 500, onNote: (t) => notes.push(t) });
    const stopLoad = new AbortController();
    const load = runLoad({ topology: e.from, rate: 400, signal: stopLoad.signal, seed: 17, concurrency: 4 });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      await stopInstance(servers[0]!); // SIGTERM: clean shutdown
      await new Promise((r) => setTimeout(r, 1000));
      await startInstance(bin, servers[0]!);
      await new Promise((r) => setTimeout(r, 1500));
      await stopInstance(servers[1]!, { signal: 'SIGKILL' });
      await new Promise((r) => setTimeout(r, 500));
      await startInstance(bin, servers[1]!);
      await new Promise((r) => setTimeout(r, 2000));
      stopLoad.abort();
      const l = await load;
      expect(l.errors).toBe(0);
      expect(l.retries).toBeGreaterThan(0);
      const s = await tail.waitCaughtUp({ timeoutMs: 60_000 });
      expect(s.sources.map((x) => x.reconnects >= 1)).toEqual([true, true]);
      await tail.stop();
      expect(notes.some((n) => n.includes('reconnecting'))).toBe(true);
      await expectConverged(e);
    } finally {
      stopLoad.abort();
      await load.catch(() => undefined);
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });
});
