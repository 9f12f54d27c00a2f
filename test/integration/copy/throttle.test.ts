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
    const done: { at: number; rows: number }[] = [];
    const s = await runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
      rate: RATE,
      chunkTimeMs: 200,
      onChunkDone: (c) => done.push({ at: Date.now(), rows: c.rows }),
    });
    expect(s.complete).toBe(true);
    const rows = done.slice(1).reduce((a, d) => a + d.rows, 0);
    const secs = (done.at(-1)!.at - done[0]!.at) / 1000;
    const measured = rows / secs;
    // Never faster than the limit; the lower bound is loose because a loaded test machine may
    // not reach the limit at all.
    expect(measured, `${rows} rows in ${secs} s`).toBeLessThan(RATE * 1.2);
    expect(measured, `${rows} rows in ${secs} s`).toBeGreaterThan(RATE * 0.6);
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

  it('by SIGUSR1/SIGUSR2 and through the control schema, while copying', async () => {
    const base = ['copy', '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb];
    const w = spawnReshard([...base, '--execute', '--json', '--rate', '2000', '--chunk-time', '100ms']);
    const waitFor = async (n: number) => {
      const until = Date.now() + 60_000;
      while ((await doneChunks(e).catch(() => 0)) < n && Date.now() < until) await sleep(20);
    };
    /** After a pause has settled (chunks in flight finish), no chunk completes for a while. */
    const expectStill = async () => {
      await sleep(1500);
      const a = await doneChunks(e);
      await sleep(1500);
      expect(await doneChunks(e)).toBe(a);
      return a;
    };
    try {
      await waitFor(2);
      w.child.kill('SIGUSR1');
      const a = await expectStill();
      w.child.kill('SIGUSR2');
      await waitFor(a + 2);
      await control({ paused: true });
      const b = await expectStill();
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
