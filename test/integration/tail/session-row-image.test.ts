/**
 * A source session that logs partial row images (SET SESSION binlog_row_image = NOBLOB or
 * MINIMAL). Preflight and the tailer check only the GLOBAL setting, which stays FULL, so only
 * the tailer can notice the partial images it receives. It must never apply a partial image as a
 * full row, and its error must name the setting.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { compareEstate } from '../../support/compare.js';
import { rootConn } from '../../support/db.js';
import { type Estate, jobArgs, makeEstate, reshard } from '../copy/helpers.js';

async function copyThenUpdate(prefix: string, image: 'NOBLOB' | 'MINIMAL'): Promise<Estate> {
  const e = await makeEstate({ prefix, rows: 200, seed: 5 });
  const c = await reshard(jobArgs(e, 'copy', '--execute'));
  expect(c.code, c.stderr).toBe(0);
  const s0 = await rootConn('s0', e.db);
  try {
    // Make sure the row has a TEXT value to lose.
    await s0.query("UPDATE orders SET note = 'keep me' ORDER BY id LIMIT 1");
    await s0.query(`SET SESSION binlog_row_image = '${image}'`);
    await s0.query("UPDATE orders SET status = IF(status = 'paid', 'shipped', 'paid') ORDER BY id LIMIT 1");
  } finally {
    await s0.end();
  }
  return e;
}

function tail(e: Estate) {
  return reshard(jobArgs(e, 'tail', '--until-caught-up', '--json'));
}

describe('tail and partial row images from one session', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.drop();
    e = undefined;
  });

  it('NOBLOB: an update that leaves out an unchanged TEXT column does not erase it on the target', async () => {
    e = await copyThenUpdate('rev_a_noblob', 'NOBLOB');
    const t = await tail(e);
    if (t.code === 0) {
      const diff = await compareEstate({ from: e.from, to: e.to });
      expect(diff.differences, 'tail exited 0 but the targets differ from the sources').toEqual([]);
    } else {
      expect(t.stdout).toMatch(/binlog_row_image/);
    }
  });

  it('MINIMAL: the error names binlog_row_image (not a NULL shard key or a schema difference)', async () => {
    e = await copyThenUpdate('rev_a_minimal', 'MINIMAL');
    const t = await tail(e);
    expect(t.code).not.toBe(0);
    const body = JSON.parse(t.stdout) as {
      ok: boolean;
      error: { code: string; message: string; hint?: string };
    };
    expect(body.ok).toBe(false);
    expect(`${body.error.code} ${body.error.message} ${body.error.hint ?? ''}`).toMatch(/binlog_row_image/);
  });
});
