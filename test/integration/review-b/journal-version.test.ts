/**
 * Review B: a cutover journal written by another reshard version must be refused, not misread.
 *
 * Every attempt's `begin` row records the writer (`reshard: VERSION`, src/cutover/engine.ts), but
 * recovery (`recoverSwitch`) never looks at it: an open attempt left by another version is
 * interpreted with this version's idea of the step details. Here a newer reshard crashed after
 * its freeze step, recording the frozen servers under a key this version does not know; this
 * version finds "nothing frozen", journals the freeze as undone and the attempt as aborted — the
 * servers the other version froze would stay read-only and the journal now says otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootConn } from '../../support/db.js';
import { copyAll, type Estate, makeEstate, reshard } from '../copy/helpers.js';

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

describe('review-b: cutover journal from another reshard version', () => {
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
    const res = await reshard([
      'cutover',
      '--plan',
      e.planPath,
      '--control',
      e.controlDsn,
      '--meta-db',
      e.metaDb,
      '--execute',
    ]);
    // Refused as a precondition, naming the version that wrote the attempt…
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).toMatch(/99\.0\.0/);
    // …and nothing was "undone" or "aborted" on its behalf.
    expect(await journal()).toEqual(before);
  });
});
