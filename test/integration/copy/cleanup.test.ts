/**
 * In-place expansion (s0, s1 → s0, s1, s2): the copy moves only the rows whose segment moves;
 * after a completed cutover (not while rollback is still possible), cleanup deletes exactly those from their old shards, and keeps any
 * row its new owner does not have.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCleanup } from '../../../src/copy/cleanup.js';
import type { ReshardError } from '../../../src/errors.js';
import { transitionJob } from '../../../src/state/control.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn, uniqueDb } from '../../support/db.js';
import { copyAll, type Estate, makeEstate } from './helpers.js';

describe('in-place expansion 2 → 3 and cleanup', () => {
  let e: Estate;
  beforeAll(async () => {
    const db = uniqueDb('copyinplace');
    e = await makeEstate({
      prefix: 'copyinplace',
      db,
      rows: 12_000,
      seed: 31,
      sources: [
        { name: 's0', server: 's0', database: db },
        { name: 's1', server: 's1', database: db },
      ],
      targets: [
        { name: 's0', server: 's0', database: db },
        { name: 's1', server: 's1', database: db },
        { name: 's2', server: 't0', database: db },
      ],
    });
  });
  afterAll(async () => e?.drop());

  it('copies only moving rows, then cleanup removes them from their old shards', async () => {
    const s = await copyAll(e);
    expect(s.complete).toBe(true);
    const before = await compareEstate({ from: e.from, to: e.to, leftovers: 'report' });
    expect(before.counts, JSON.stringify(before.differences.slice(0, 5))).toMatchObject({
      missing: 0,
      extra: 0,
      different: 0,
      misplaced: 0,
    });
    expect(before.total - before.counts.leftover).toBe(0);
    // Every copied row is a moved row, and every moved row was copied.
    expect(before.counts.leftover).toBeGreaterThan(0);
    expect(s.rows).toBe(before.counts.leftover);
    expect(before.counts.leftover).toBeLessThan(before.rows.source); // rows that stay were not copied

    const ctl = await rootConn('ctl', e.controlDb);
    try {
      const [j] = await ctl.query('SELECT id FROM reshard_jobs');
      const id = Number((j as { id: string }[])[0]!.id);
      await transitionJob(ctl, id, 'catching-up', 'verified');
      await transitionJob(ctl, id, 'verified', 'cut-over');
    } finally {
      await ctl.end();
    }

    const dry = await runCleanup({ planPath: e.planPath, control: e.controlDsn, execute: false });
    expect(dry.deleted).toBe(0);
    expect(dry.tables.reduce((a, t) => a + t.moved, 0)).toBe(before.counts.leftover);
    // Cut over but not completed: the old copies are the rollback's, so cleanup refuses to delete.
    const early = (await runCleanup({ planPath: e.planPath, control: e.controlDsn, execute: true }).then(
      () => undefined,
      (x: unknown) => x,
    )) as ReshardError | undefined;
    expect(early?.code).toBe('E_CLEANUP_TOO_EARLY');
    const ctl2 = await rootConn('ctl', e.controlDb);
    try {
      const [j] = await ctl2.query('SELECT id FROM reshard_jobs');
      await transitionJob(ctl2, Number((j as { id: string }[])[0]!.id), 'cut-over', 'completed');
    } finally {
      await ctl2.end();
    }

    // One moved row vanishes from its new owner: cleanup must keep the old copy and say so.
    const s2 = await rootConn('t0', e.db);
    let lost: string;
    try {
      const [r] = await s2.query('SELECT id FROM orders ORDER BY id LIMIT 1');
      lost = String((r as { id: string }[])[0]!.id);
      await s2.query('DELETE FROM orders WHERE id = ?', [lost]);
    } finally {
      await s2.end();
    }
    const err = (await runCleanup({ planPath: e.planPath, control: e.controlDsn, execute: true }).then(
      () => undefined,
      (x: unknown) => x,
    )) as ReshardError | undefined;
    expect(err?.code).toBe('E_CLEANUP_MISSING_ON_TARGET');
    expect(err?.exitCode).toBe(4);
    // The target topology on its own: every row on its owner, except the one kept on its old shard.
    const after = await compareEstate({ from: e.to, to: e.to });
    // (seen from both sides: a source row its shard does not own, and a row no owner expects)
    const kept = { table: 'orders', shard: expect.stringMatching(/^s[01]$/), pk: JSON.stringify([lost]) };
    expect(after.differences).toEqual([
      { ...kept, kind: 'source-misplaced' },
      { ...kept, kind: 'extra' },
    ]);
    expect(after.rows.source).toBe(before.rows.source - 1);

    // Put it back on its new owner; a re-run deletes the last leftover and the estate is clean.
    await copyRowBack(e, lost);
    const last = await runCleanup({ planPath: e.planPath, control: e.controlDsn, execute: true });
    expect(last.deleted).toBe(1);
    const clean = await compareEstate({ from: e.to, to: e.to });
    expect(clean.differences).toEqual([]);
    expect(clean.rows.source).toBe(before.rows.source);
    const none = await runCleanup({ planPath: e.planPath, control: e.controlDsn, execute: true });
    expect(none.tables.reduce((a, t) => a + t.moved, 0)).toBe(0);
  });
});

/** Restore one orders row on its new owner (s2) from its old shard. */
async function copyRowBack(e: Estate, id: string): Promise<void> {
  for (const server of ['s0', 's1'] as const) {
    const c = await rootConn(server, e.db);
    try {
      const [r] = await c.query('SELECT * FROM orders WHERE id = ?', [id]);
      const row = (r as Record<string, unknown>[])[0];
      if (!row) continue;
      const t = await rootConn('t0', e.db);
      try {
        await t.query('INSERT INTO orders SET ?', [row]);
      } finally {
        await t.end();
      }
      return;
    } finally {
      await c.end();
    }
  }
  throw new Error(`row ${id} not found on any old shard`);
}
