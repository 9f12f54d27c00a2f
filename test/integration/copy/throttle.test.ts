/**
 * The throttle against real servers: the row rate is honoured over a run, and a running copy
 * pauses and resumes by signal and through the control schema.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setCopyControl } from '../../../src/copy/control.js';
import { runCopy } from '../../../src/copy/run.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn } from '../../support/db.js';
import { type Estate, makeEstate, spawnReshard } from './helpers.js';

async function doneChunks(e: Estate): Promise<number> {
  const c = await rootConn('ctl', e.controlDb);
  try {
    const [r] = await c.query("SELECT COUNT(*) AS n FROM reshard_copy_chunks WHERE state = 'done'");
    return Number((r as { n: string }[])[0]!.n);
  } finally {
    await c.end();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('copy rate limit', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copyrate', rows: 10_000, seed: 21 });
  });
  afterAll(async () => e?.drop());

  it('copies at the configured rows/s, measured over the run', async () => {
    // Well below what this machine copies unthrottled, so the limit is what sets the pace.
    const RATE = 2000;
    const CHUNK_MS = 200;
    const done: { at: number; rows: number }[] = [];
    const started = Date.now();
    const s = await runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
      rate: RATE,
      chunkTimeMs: CHUNK_MS,
      concurrency: 1,
      onChunkDone: (c) => done.push({ at: Date.now(), rows: c.rows }),
    });
    expect(s.complete).toBe(true);
    const rows = done.reduce((a, d) => a + d.rows, 0);
    const secs = (done.at(-1)!.at - started) / 1000;
    // Never faster than the limit: what a throttle guarantees, however loaded the machine. Its
    // bucket starts empty when the run creates it (after this call began) and earns RATE rows a
    // second; a chunk is admitted only out of debt and charged when written, so at any moment at
    // most one chunk per slot (one per source, each at most RATE × chunk time rows) is not yet
    // paid for. Hence, exactly: rows ≤ RATE × secs + 2 × RATE × CHUNK_MS / 1000.
    // This used to be "under 1.2 × RATE between the first and the last chunk": that window
    // starts with up to a second of rate in credit (earned while the run sets up: the bucket's
    // documented burst), so on a loaded machine, whose setup takes longer, it measured 2426
    // rows/s with a correct throttle. Small rate errors are asserted exactly on a fake clock in
    // test/unit/copy/throttle.test.ts ('admit() paces charged rows at the rate').
    // No lower bound here: a loaded machine may not reach the limit at all (the copy's own work
    // adds to the time), so "at least 0.6 × the rate" measured the machine, not the product;
    // that the throttle never holds rows back longer than its debt is in that unit test too.
    const allowed = RATE * secs + 2 * RATE * (CHUNK_MS / 1000);
    expect(rows, `${rows} rows in ${secs} s (${Math.round(rows / secs)} rows/s)`).toBeLessThanOrEqual(
      allowed,
    );
  });
});

describe('pause and resume', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copypause', rows: 10_000, seed: 22 });
  });
  afterAll(async () => e?.drop());

  /** What `reshard copy --pause/--resume` do (the CLI itself is tested in cli.test.ts). */
  const control = async (change: { paused: boolean }) => {
    const c = await rootConn('ctl', e.controlDb);
    try {
      const [j] = await c.query('SELECT id FROM reshard_jobs');
      await setCopyControl(c, Number((j as { id: string }[])[0]!.id), change);
    } finally {
      await c.end();
    }
  };

  /** Chunks done per source. */
  const doneBySource = async (): Promise<Map<string, number>> => {
    const c = await rootConn('ctl', e.controlDb);
    try {
      const [r] = await c.query(
        "SELECT source_shard AS s, COUNT(*) AS n FROM reshard_copy_chunks WHERE state = 'done' GROUP BY source_shard",
      );
      return new Map((r as { s: string; n: string }[]).map((x) => [x.s, Number(x.n)]));
    } finally {
      await c.end();
    }
  };

  it('by SIGUSR1/SIGUSR2 and through the control schema, while copying', async () => {
    const base = ['copy', '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb];
    // --concurrency 1 (the default, spelled out): one slot per source, which the bound below uses.
    const w = spawnReshard([
      ...base,
      '--execute',
      '--json',
      '--rate',
      '2000',
      '--chunk-time',
      '100ms',
      '--concurrency',
      '1',
    ]);
    let stderr = '';
    w.child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const waitFor = async (n: number) => {
      const until = Date.now() + 60_000;
      while ((await doneChunks(e).catch(() => 0)) < n && Date.now() < until) await sleep(20);
      expect(await doneChunks(e), `waiting for ${n} chunks done`).toBeGreaterThanOrEqual(n);
    };
    /**
     * A pause holds each slot at its next admission (the throttle's admit() runs before every
     * page). So from the moment the pause is in effect — `applied` printed by the worker after
     * it set the pause, searched in stderr after offset `from` — each source's one slot finishes
     * at most the one chunk it had already been admitted for, and none after. This used to
     * sleep 1.5 s for the pause to settle and then require no chunk for 1.5 s: the control
     * schema is polled every second, so on a loaded machine the page in flight could finish in
     * the second window. Now the bound is counted from an observed point, not from the clock.
     * The 3 s window only gives a pause that does not hold the time to show it (at 2000 rows/s
     * ~10 chunks a second would finish): a working pause passes however slow the machine is.
     */
    const expectHeld = async (applied: string, from: number) => {
      const until = Date.now() + 60_000;
      while (stderr.indexOf(applied, from) < 0 && w.child.exitCode === null && Date.now() < until)
        await sleep(20);
      expect(
        stderr.indexOf(applied, from),
        `'${applied}' in stderr:\n${stderr.slice(from)}`,
      ).toBeGreaterThanOrEqual(0);
      const before = await doneBySource();
      await sleep(3000);
      const after = await doneBySource();
      for (const [source, n] of after)
        expect(n - (before.get(source) ?? 0), `chunks of ${source} done while paused`).toBeLessThanOrEqual(1);
      expect(w.child.exitCode, 'the copy ended while paused').toBe(null);
      return [...after.values()].reduce((a, n) => a + n, 0);
    };
    try {
      await waitFor(2);
      let from = stderr.length;
      w.child.kill('SIGUSR1');
      const a = await expectHeld('paused by SIGUSR1', from);
      w.child.kill('SIGUSR2');
      await waitFor(a + 2);
      from = stderr.length;
      await control({ paused: true });
      const b = await expectHeld('paused (control schema)', from);
      await control({ paused: false });
      const res = await w.done;
      expect(res.code, res.stderr).toBe(0);
      expect((JSON.parse(res.stdout) as { complete: boolean }).complete).toBe(true);
      expect(await doneChunks(e)).toBeGreaterThan(b);
      expect(res.stderr).toContain('paused by SIGUSR1');
      expect(res.stderr).toContain('paused (control schema)');
    } finally {
      w.child.kill('SIGKILL');
    }
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
  });
});
