/**
 * Acceptance: kill -9 of the tailer process (bin/reshard tail) under load at random points, then
 * restart: the same exact final state — each target resumes from the position it committed with
 * its data, so nothing is lost or applied twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoad } from '../../../src/load/generator.js';
import { prng } from '../../../src/util/prng.js';
import { port } from '../../support/db.js';
import {
  type Estate,
  expectConverged,
  makeEstate,
  naiveCopy,
  queryOn,
  recordStarts,
  runCli,
  startCli,
} from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('reshard tail: kill -9 under load, restart', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'tailkill', rows: 8000, seed: 9 });
    await recordStarts(e);
    await naiveCopy(e);
  });
  afterAll(async () => e?.drop());

  async function appliedPositions(): Promise<string> {
    const rows = await Promise.all(
      e.targets.map((t) =>
        queryOn<{ source: string; binlog_file: string; binlog_pos: string }>(
          t.port,
          `SELECT source, binlog_file, binlog_pos FROM \`${e.metaDb}\`.apply_positions ORDER BY source`,
        ).catch(() => []),
      ),
    );
    return JSON.stringify(rows);
  }

  it('converges exactly after several kill -9 at random points', async () => {
    const rnd = prng(Number(process.env.RESHARD_TAIL_KILL_SEED ?? 4242));
    const stopLoad = new AbortController();
    const load = runLoad({ topology: e.from, rate: 600, signal: stopLoad.signal, seed: 9, concurrency: 4 });
    const args = ['tail', '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb];
    const seen = new Set<string>();
    try {
      // Random points: some while it starts (setup, first batches), most once it has committed
      // since the last kill (catching up or keeping up with the load).
      for (const mode of ['early', 'progress', 'progress', 'progress'] as const) {
        const before = await appliedPositions();
        const p = startCli(args);
        if (mode === 'progress') {
          const deadline = Date.now() + 60_000;
          while ((await appliedPositions()) === before && Date.now() < deadline) await sleep(50);
        }
        await sleep(Math.floor(rnd() * (mode === 'early' ? 3000 : 1500)));
        p.child.kill('SIGKILL');
        const res = await p.done;
        expect(res.signal, res.stderr).toBe('SIGKILL');
        seen.add(await appliedPositions());
      }
    } finally {
      stopLoad.abort();
    }
    const l = await load;
    expect(l.errors).toBe(0);
    expect(l.crossSourceMoves + l.sameSourceMoves).toBeGreaterThan(0);
    // The kills happened at different committed positions (the tailer made progress in between).
    expect(seen.size).toBeGreaterThanOrEqual(3);
    const res = await runCli([...args, '--until-caught-up', '--json']);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { ok: boolean; sources: { source: string; lagSeconds: number }[] };
    expect(out.ok).toBe(true);
    expect(out.sources.map((s) => s.source)).toEqual(['s0', 's1']);
    await expectConverged(e);
    // The control schema shows where each source stopped.
    const pos = await queryOn<{ shard: string; binlog_file: string | null }>(
      port('ctl'),
      `SELECT shard, binlog_file FROM \`${e.controlDb}\`.reshard_binlog_positions WHERE direction = 'forward' ORDER BY shard`,
    );
    expect(pos.map((p) => [p.shard, p.binlog_file !== null])).toEqual([
      ['s0', true],
      ['s1', true],
    ]);
  });
});
