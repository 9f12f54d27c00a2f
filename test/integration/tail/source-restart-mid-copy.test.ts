/**
 * Written by review F (it passed): a source server restarted in the middle of the copy (clean shutdown on one, kill -9
 * on the other), while the load writes and the tailer runs: the copy retries its pages, the
 * tailer reconnects, and after catch-up the estate equals the sources row by row. Private
 * mariadbd instances for the sources (never the shared sandbox).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { runCopy } from '../../../src/copy/run.js';
import { runLoad } from '../../../src/load/generator.js';
import {
  findServerBinary,
  type InstanceInfo,
  instanceInfo,
  startInstance,
  stopInstance,
} from '../../../src/sandbox/instances.js';
import { port } from '../../support/db.js';
import { type Estate, expectConverged, makeEstate, queryOn } from './helpers.js';

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a source restarted mid-copy under load, tailer running', () => {
  const bin = findServerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'reshard-rvf-srcrestart-'));
  const servers: InstanceInfo[] = [];
  let e: Estate;

  beforeAll(async () => {
    for (const name of ['r0', 'r1']) {
      const p = await freePort();
      servers.push(instanceInfo(dir, { name, port: p, serverId: 2_500_000 + p }));
    }
    await Promise.all(servers.map((s) => startInstance(bin, s)));
    e = await makeEstate({
      prefix: 'rvfsr',
      rows: 16_000,
      seed: 31,
      sources: servers.map((s, i) => ({ name: `s${i}`, port: s.port })),
      targets: (['t0', 't1', 't2'] as const).map((n) => ({ name: n, port: port(n) })),
    });
  });

  afterAll(async () => {
    await e?.drop().catch(() => undefined);
    await Promise.all(servers.map((s) => stopInstance(s).catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  it('converges row by row', async () => {
    const stopLoad = new AbortController();
    const load = runLoad({ topology: e.from, rate: 300, signal: stopLoad.signal, seed: 31, concurrency: 4 });
    let chunks = 0;
    const copy = runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
      concurrency: 2,
      rate: 2500,
      chunkTimeMs: 150,
      onChunkDone: () => {
        chunks++;
      },
    });
    copy.catch(() => undefined);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await queryOn<{ n: number }>(
        port('ctl'),
        `SELECT COUNT(*) AS n FROM \`${e.controlDb}\`.reshard_binlog_positions WHERE direction = 'forward' AND start_binlog_file IS NOT NULL`,
      ).catch(() => [{ n: 0 }]);
      if (Number(r[0]?.n) === 2) break;
      if (Date.now() > deadline) throw new Error('no start positions');
      await sleep(50);
    }
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb, heartbeatMs: 500 });
    try {
      while (chunks < 3) await sleep(20);
      await stopInstance(servers[0]!); // clean shutdown mid-copy
      await sleep(800);
      await startInstance(bin, servers[0]!);
      const at = chunks;
      while (chunks < at + 3) await sleep(20);
      await stopInstance(servers[1]!, { signal: 'SIGKILL' });
      await sleep(500);
      await startInstance(bin, servers[1]!);
      const copied = await copy;
      expect(copied.complete).toBe(true);
      await sleep(1500);
      stopLoad.abort();
      const l = await load;
      expect(l.errors).toBe(0);
      expect(l.crossSourceMoves).toBeGreaterThan(0);
      await tail.waitCaughtUp({ timeoutMs: 90_000 });
      await tail.stop();
      await expectConverged(e);
    } finally {
      stopLoad.abort();
      await load.catch(() => undefined);
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });
});
