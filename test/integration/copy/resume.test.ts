/**
 * kill -9 at random points during the copy, then resume: same result as an uninterrupted copy,
 * no duplicate-key failures, the start positions recorded once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../../../src/util/prng.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn } from '../../support/db.js';
import { chunkRows, type Estate, jobState, makeEstate, reshard, spawnReshard } from './helpers.js';

const SEED = Number(process.env.RESHARD_TEST_SEED ?? Date.now() % 100_000);

async function doneChunks(e: Estate): Promise<number> {
  const c = await rootConn('ctl', e.controlDb);
  try {
    const [r] = await c.query("SELECT COUNT(*) AS n FROM reshard_copy_chunks WHERE state = 'done'");
    return Number((r as { n: string }[])[0]!.n);
  } catch {
    return 0; // control schema not yet created by the first run
  } finally {
    await c.end();
  }
}

describe(`reshard copy survives kill -9 (seed ${SEED})`, () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copykill', rows: 24_000, seed: SEED });
  });
  afterAll(async () => e?.drop());

  it('resumes after 5 kills at random points with no gap, no duplicate and no duplicate-key error', async () => {
    const rnd = prng(SEED);
    const args = [
      'copy',
      '--plan',
      e.planPath,
      '--control',
      e.controlDsn,
      '--meta-db',
      e.metaDb,
      '--execute',
      '--json',
    ];
    // Slow enough that every kill lands mid-copy: ~8 s of copying in all, ~32 chunks, about 4 a
    // second. A kill lands some chunks after the one it waits for (the test polls while the copy
    // goes on, slower on a loaded machine): at --rate 8000 (12 chunks a second) one overshot from
    // 4 to 10, five such let the fifth killed run finish the copy, and the resumed run had nothing
    // left to resume.
    const slow = [...args, '--rate', '3000', '--concurrency', '2', '--chunk-time', '200ms'];
    const kills: { afterChunks: number; extraMs: number; done: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const before = await doneChunks(e);
      const want = before + 1 + Math.floor(rnd() * 4);
      const extraMs = Math.floor(rnd() * 250);
      const { child, done } = spawnReshard(slow);
      const deadline = Date.now() + 60_000;
      while ((await doneChunks(e)) < want && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 25));
      }
      await new Promise((r) => setTimeout(r, extraMs));
      child.kill('SIGKILL');
      const r = await done;
      expect(r.signal === 'SIGKILL' || r.code === 0, r.stderr).toBe(true);
      expect(r.stderr).not.toMatch(/Duplicate entry|ER_DUP_ENTRY|E_BUG/);
      kills.push({ afterChunks: want, extraMs, done: await doneChunks(e) });
    }
    expect(await jobState(e), JSON.stringify(kills)).toBe('copying');
    const final = await reshard(args);
    expect(final.code, final.stderr).toBe(0);
    expect(final.stderr).not.toMatch(/Duplicate entry|ER_DUP_ENTRY|E_BUG/);
    const summary = JSON.parse(final.stdout) as { complete: boolean; job: { state: string } };
    expect(summary.complete).toBe(true);
    expect(summary.job.state).toBe('catching-up');

    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences, JSON.stringify(kills)).toEqual([]);
    expect(diff.rows.target).toBe(diff.rows.source);

    // Chunks tile each (source, table) without gap or overlap: each lower bound is the previous upper.
    const chunks = await chunkRows(e);
    expect(chunks.every((c) => c.state === 'done')).toBe(true);
    const groups = new Map<string, typeof chunks>();
    for (const c of chunks)
      groups.set(`${c.source_shard}/${c.table_name}`, [
        ...(groups.get(`${c.source_shard}/${c.table_name}`) ?? []),
        c,
      ]);
    expect(groups.size).toBe(12);
    for (const list of groups.values()) {
      list.sort((a, b) => Number(a.chunk_id) - Number(b.chunk_id));
      expect(list[0]!.lower_pk).toBeNull();
      expect(list.at(-1)!.upper_pk).toBeNull();
      list.forEach((c, i) => {
        expect(Number(c.chunk_id)).toBe(i);
        if (i > 0) expect(c.lower_pk).toBe(list[i - 1]!.upper_pk);
      });
    }
    // The start positions were recorded by the first run only.
    const c = await rootConn('ctl', e.controlDb);
    try {
      const [ev] = await c.query(
        "SELECT COUNT(*) AS n FROM reshard_job_events WHERE kind = 'copy-positions'",
      );
      expect(Number((ev as { n: string }[])[0]!.n)).toBe(1);
      const [cp] = await c.query("SELECT COUNT(*) AS n FROM reshard_copy_checkpoints WHERE state = 'done'");
      expect(Number((cp as { n: string }[])[0]!.n)).toBe(12);
    } finally {
      await c.end();
    }
  });
});
