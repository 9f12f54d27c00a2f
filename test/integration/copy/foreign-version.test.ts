/**
 * Checkpoints another reshard wrote are refused, not misread. A job started by another version
 * (another major, or another 0.x minor) is refused before anything is copied (E_JOB_VERSION):
 * here a newer reshard registered the first chunks of s0.users with bounds in its own encoding,
 * which a lenient reading once took as NULL — `pk <= NULL` read no rows and the chunks were
 * marked done, 12 rows short. A bound this version never writes is refused by itself too
 * (E_STATE_FORMAT), whoever wrote it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openJob } from '../../../src/job/context.js';
import { VERSION } from '../../../src/version.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn } from '../../support/db.js';
import { type Estate, jobArgs, makeEstate, reshard } from './helpers.js';

let e: Estate;
let jobId: number;

beforeAll(async () => {
  e = await makeEstate({ prefix: 'rbcpver', rows: 200, seed: 5 });
  const ctx = await openJob({ planPath: e.planPath, control: e.controlDsn, create: true });
  jobId = ctx.job.id;
  await ctx.close();
});
afterAll(async () => e?.drop());

/** The job as another reshard (`version`) left it: s0.users copying, chunks with foreign bounds. */
async function foreignCheckpoints(version: string): Promise<void> {
  const c = await rootConn('ctl', e.controlDb);
  try {
    await c.query('UPDATE reshard_jobs SET reshard_version = ?, state = ? WHERE id = ?', [
      version,
      'copying',
      jobId,
    ]);
    await c.query(
      "INSERT IGNORE INTO reshard_copy_checkpoints (job_id, source_shard, table_name, state) VALUES (?, 's0', 'users', 'copying')",
      [jobId],
    );
    // Bounds as a newer format might write them (typed key parts).
    await c.query(
      `REPLACE INTO reshard_copy_chunks (job_id, source_shard, table_name, chunk_id, lower_pk, upper_pk, state, attempts)
       VALUES (?, 's0', 'users', 0, NULL, '[{"u64":"1000000"}]', 'pending', 1),
              (?, 's0', 'users', 1, '[{"u64":"1000000"}]', NULL, 'pending', 1)`,
      [jobId, jobId],
    );
  } finally {
    await c.end();
  }
}

describe('copy checkpoints from another reshard version', () => {
  it('a job a newer reshard started is refused before anything is copied', async () => {
    await foreignCheckpoints('99.0.0');
    const res = await reshard(jobArgs(e, 'copy', '--execute', '--json'));
    expect(res.code, res.stderr).toBe(3);
    expect(JSON.parse(res.stdout).error).toMatchObject({ code: 'E_JOB_VERSION' });
    expect(res.stdout).toContain('99.0.0');
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.rows.target, 'nothing was copied').toBe(0);
    // The hint names the version to finish or cancel it with: this one refuses that too, and
    // writes nothing.
    expect(JSON.parse(res.stdout).error.hint).toContain('rollback --execute), with reshard 99.0.0');
    const cancel = await reshard(jobArgs(e, 'rollback', '--execute', '--json'));
    expect(cancel.code, cancel.stderr).toBe(3);
    expect(JSON.parse(cancel.stdout).error).toMatchObject({ code: 'E_JOB_VERSION' });
    const c = await rootConn('ctl', e.controlDb);
    try {
      const [rows] = await c.query('SELECT state FROM reshard_jobs WHERE id = ?', [jobId]);
      expect((rows as { state: string }[])[0]?.state).toBe('copying');
    } finally {
      await c.end();
    }
  });

  it('a chunk bound this version never writes is refused, not read as NULL', async () => {
    await foreignCheckpoints(VERSION);
    const res = await reshard(jobArgs(e, 'copy', '--execute', '--json'));
    expect(res.code, res.stderr).toBe(3);
    expect(JSON.parse(res.stdout).error).toMatchObject({ code: 'E_STATE_FORMAT' });
    expect(res.stdout).toContain('u64');
  });
});
