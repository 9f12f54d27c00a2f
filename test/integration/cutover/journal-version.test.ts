/**
 * A cutover journal written by another reshard version is refused, not misread. Recovery
 * (`recoverSwitch`) used to read an open attempt left by another version with this version's idea
 * of the step details: here a newer reshard crashed after its freeze step, recording the frozen
 * servers under a key this version does not know, and this version found "nothing frozen",
 * journalled the freeze as undone and the attempt as aborted, while the servers stayed read-only.
 * Now every begin row carries a journal format, and another format is E_JOURNAL_FORMAT.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootConn } from '../../support/db.js';
import { copyAll, type Estate, jobArgs, makeEstate, reshard } from '../copy/helpers.js';

let e: Estate;

beforeAll(async () => {
  e = await makeEstate({ prefix: 'rbjournal', rows: 60, seed: 7 });
  const s = await copyAll(e);
  expect(s.complete).toBe(true);
});
afterAll(async () => e?.drop());

async function journal(): Promise<{ step: string; state: string }[]> {
  const c = await rootConn('ctl', e.controlDb);
  try {
    const [rows] = await c.query('SELECT step, state FROM reshard_cutover_journal ORDER BY id');
    return rows as { step: string; state: string }[];
  } finally {
    await c.end();
  }
}

describe('cutover journal from another reshard version', () => {
  it('an open cutover attempt written by a newer reshard is refused, and the journal is left alone', async () => {
    const c = await rootConn('ctl', e.controlDb);
    try {
      const [jobs] = await c.query('SELECT id FROM reshard_jobs');
      const jobId = Number((jobs as { id: number }[])[0]!.id);
      const ins = (step: string, state: string, detail: unknown) =>
        c.query('INSERT INTO reshard_cutover_journal (job_id, step, state, detail) VALUES (?, ?, ?, ?)', [
          jobId,
          step,
          state,
          JSON.stringify(detail),
        ]);
      await ins('cutover.begin', 'started', {
        attempt: 1,
        host: 'elsewhere',
        pid: 1,
        reshard: '99.0.0',
        format: 7,
      });
      // A newer layout of the freeze record: this version's reader looks for `servers`.
      await ins('cutover.freeze', 'started', {
        frozenServers: [{ id: 's0', endpoint: '127.0.0.1:1', wasReadOnly: false }],
      });
    } finally {
      await c.end();
    }
    const before = await journal();
    const res = await reshard(jobArgs(e, 'cutover', '--execute'));
    // Refused as a precondition, naming the version that wrote the attempt…
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).toMatch(/99\.0\.0/);
    // …and nothing was "undone" or "aborted" on its behalf.
    expect(await journal()).toEqual(before);
  });
});
