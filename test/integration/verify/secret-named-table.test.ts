/**
 * Verify keeps machine state in the control schema as JSON (reshard_verify_runs.detail). Table
 * names such as password_resets or personal_access_tokens are ordinary data there, not secrets.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { runVerify, type VerifyReport } from '../../../src/verify/index.js';
import { buildEstate, type Estate } from './helpers.js';

function pks(r: VerifyReport): string[] {
  return r.differences.map((d) => `${d.kind} ${d.table} ${JSON.stringify(d.pk)}`).sort();
}

describe('verify state of a table whose name looks like a secret', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.cleanup();
    e = undefined;
  });

  it('an incremental verify still reports a difference a previous run found in `password_resets`', async () => {
    e = await buildEstate('rev_a_secret_tbl', {
      users: 40,
      ordersPerUser: 1,
      typeCorpus: false,
      extraTables: [
        {
          name: 'password_resets',
          shardKey: 'user_id',
          ddl: 'CREATE TABLE password_resets (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, email VARCHAR(64) NOT NULL) ENGINE=InnoDB;',
        },
      ],
    });
    for (let u = 1; u <= 40; u++)
      await e.onBoth(u, 'INSERT INTO password_resets (id, user_id, email) VALUES (?, ?, ?)', [
        u,
        u,
        `r${u}@x.test`,
      ]);
    const ctx = await e.open();
    const clean = await runVerify({ ctx, preflight: false });
    expect(clean.ok).toBe(true);
    // A wrong row on a target, written out of band (not recorded as a change).
    await e.onTarget(7, "UPDATE password_resets SET email = 'wrong' WHERE id = 7");
    const full = await runVerify({ ctx, preflight: false });
    expect(pks(full)).toEqual(['different password_resets {"id":"7"}']);
    const [runs] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT detail FROM reshard_verify_runs WHERE job_id = ? AND run_id = ?',
      [ctx.job.id, full.runId],
    );
    // What a later incremental run builds on, stored as written: bucket bits and difference keys.
    const detail = JSON.parse(String(runs[0]!.detail)) as {
      bits: Record<string, unknown>;
      diffKeys?: Record<string, unknown>;
    };
    // Nothing changed since: the incremental run must re-check the difference and still see it.
    const again = await runVerify({ ctx, preflight: false, incremental: true });
    expect(pks(again)).toEqual(['different password_resets {"id":"7"}']);
    expect(again.ok).toBe(false);
    expect(typeof detail.bits.password_resets).toBe('number');
    expect(Array.isArray(detail.diffKeys?.password_resets)).toBe(true);
  });
});
