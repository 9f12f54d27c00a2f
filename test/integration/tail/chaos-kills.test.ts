/**
 * Chaos (written by review F; it passed): several `reshard copy` worker processes (real CLI, --concurrency 2 each) and a
 * `reshard tail` process, all killed with SIGKILL at seeded random points and restarted, while
 * the load generator writes (inserts, updates, deletes, shard-key moves within and across
 * sources). The tailer starts late (after part of the copy). Once the copy is complete the load
 * stops, a fresh tailer catches up, and the estate is compared row by row.
 *
 * RESHARD_CHAOS_SEEDS=1,2,3 picks the seeds (default: 101, 202); RESHARD_COPY_BULK=0 in the
 * environment runs the copy workers without the LOAD DATA path (every row through the applier).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runLoad } from '../../../src/load/generator.js';
import { prng } from '../../../src/util/prng.js';
import { port } from '../../support/db.js';
import { type Estate, expectConverged, makeEstate, queryOn, runCli, startCli } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SEEDS = (process.env.RESHARD_CHAOS_SEEDS ?? '101,202').split(',').map(Number);

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop();
});

async function jobState(e: Estate): Promise<string | undefined> {
  const r = await queryOn<{ state: string }>(
    port('ctl'),
    `SELECT state FROM \`${e.controlDb}\`.reshard_jobs`,
  ).catch(() => []);
  return r[0]?.state;
}

async function startsRecorded(e: Estate): Promise<boolean> {
  const r = await queryOn<{ n: number }>(
    port('ctl'),
    `SELECT COUNT(*) AS n FROM \`${e.controlDb}\`.reshard_binlog_positions WHERE direction = 'forward' AND start_binlog_file IS NOT NULL`,
  ).catch(() => [{ n: 0 }]);
  return Number(r[0]?.n) === e.sources.length;
}

type Proc = ReturnType<typeof startCli>;

describe('copy workers and tailer killed at random under load', () => {
  it.each(SEEDS)('seed %i: converges row by row', async (seed) => {
    const rnd = prng(seed);
    const e = await makeEstate({ prefix: `rvfch${seed}`, rows: 16_000, seed });
    estates.push(e);
    const common = ['--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb];
    const copyArgs = (w: number) => [
      'copy',
      ...common,
      '--execute',
      '--worker-id',
      `w${w}`,
      '--concurrency',
      '2',
      '--rate',
      '2500',
      '--chunk-time',
      '150ms',
    ];
    const tailArgs = ['tail', ...common];
    const stopLoad = new AbortController();
    const load = runLoad({ topology: e.from, rate: 300, signal: stopLoad.signal, seed, concurrency: 4 });
    const workers: (Proc | undefined)[] = [startCli(copyArgs(0)), startCli(copyArgs(1))];
    let tail: Proc | undefined;
    const log: string[] = [];
    const tailStartAfter = 1000 + Math.floor(rnd() * 3000);
    const t0 = Date.now();
    try {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        await sleep(200 + Math.floor(rnd() * 900));
        const state = await jobState(e);
        if (state !== undefined && state !== 'planned' && state !== 'copying') break;
        if (!tail && Date.now() - t0 > tailStartAfter && (await startsRecorded(e))) {
          tail = startCli(tailArgs);
          log.push(`${Date.now() - t0}ms start tail`);
          continue;
        }
        const r = rnd();
        if (r < 0.5) {
          const w = Math.floor(rnd() * workers.length);
          workers[w]?.child.kill('SIGKILL');
          await workers[w]?.done;
          workers[w] = startCli(copyArgs(w));
          log.push(`${Date.now() - t0}ms kill+restart copy w${w}`);
        } else if (r < 0.7 && tail) {
          tail.child.kill('SIGKILL');
          await tail.done;
          tail = startCli(tailArgs);
          log.push(`${Date.now() - t0}ms kill+restart tail`);
        }
        for (let w = 0; w < workers.length; w++) {
          const p = workers[w]!;
          if (p.child.exitCode !== null && p.child.exitCode !== 0) {
            const res = await p.done;
            throw new Error(`copy w${w} failed (${res.code}): ${res.stderr.slice(-2000)}`);
          }
        }
      }
      for (const p of workers) {
        const res = await p!.done;
        expect(res.code, res.stderr.slice(-2000)).toBe(0);
      }
      expect(await jobState(e)).toBe('catching-up');
      if (!tail) tail = startCli(tailArgs);
      await sleep(1500);
      stopLoad.abort();
      const l = await load;
      expect(l.errors).toBe(0);
      expect(l.crossSourceMoves).toBeGreaterThan(0);
      tail.child.kill('SIGKILL');
      await tail.done;
      tail = undefined;
      const res = await runCli([...tailArgs, '--until-caught-up', '--json'], 120_000);
      expect(res.code, res.stderr.slice(-2000)).toBe(0);
      if (process.env.RESHARD_CHAOS_VERBOSE) console.log(`seed ${seed}: ${log.join('; ')}`);
      try {
        await expectConverged(e);
      } catch (err) {
        throw new Error(`${(err as Error).message}\nschedule: ${log.join('; ')}`);
      }
    } finally {
      stopLoad.abort();
      await load.catch(() => undefined);
      for (const p of workers) p?.child.kill('SIGKILL');
      tail?.child.kill('SIGKILL');
    }
  });
});
