/**
 * Reads first (`cutover --reads-only`) sends reads to the new shards while writes stay on the old
 * ones, so it is only safe while a `reshard tail` keeps them fresh: its "tail lag" check reads the
 * lag each running tailer reports in `reshard_tail_status`. Found in review: a tailer that held
 * its stream lock but had reported nothing yet (starting, or its status write failing) was left
 * out of the lag map and the check passed with the lag unknown; and a stuck tailer's last figure
 * was trusted however old. Now an unreported lag fails the check, and a row not rewritten for
 * over 10 s counts its age on top.
 *
 * A session of the test plays the running tailer: it holds the stream locks and writes the
 * status rows. Shared sandbox servers; nothing is switched (dry runs only).
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tailLockName } from '../../../src/binlog/status.js';
import { runCutover } from '../../../src/cutover/index.js';
import { port } from '../../support/db.js';
import { copyAndVerify, ctlQuery, type Estate, makeEstate } from './helpers.js';

describe('reads-first lag check with a tailer running elsewhere', () => {
  let e: Estate;
  let tailer: mysql.Connection;
  beforeAll(async () => {
    e = await makeEstate({
      prefix: 'co_rl',
      rows: 400,
      seed: 5,
      appUser: false,
      ports: { s0: port('s0'), s1: port('s1'), t0: port('t0'), t1: port('t1'), t2: port('t2') },
    });
    await copyAndVerify(e);
    tailer = await mysql.createConnection({
      host: '127.0.0.1',
      port: port('ctl'),
      user: 'root',
      database: e.controlDb,
    });
  }, 120_000);
  afterAll(async () => {
    await tailer?.end().catch(() => undefined);
    await e?.drop().catch(() => undefined);
  });

  async function tailLag(): Promise<{ ok: boolean; detail: string } | undefined> {
    const r = await runCutover({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      readsOnly: true,
      maxLagMs: 2000,
    });
    expect(r.mode).toBe('dry-run');
    return r.checks.find((c) => c.name === 'tail lag');
  }

  /** The status row a tailer writes, `ageS` seconds old by the control server's clock. */
  async function status(shard: string, lagS: number, ageS: number): Promise<void> {
    const [job] = await ctlQuery<{ id: number }>(e, 'SELECT id FROM reshard_jobs');
    await tailer.query(
      `INSERT INTO reshard_tail_status (job_id, shard, direction, state, lag_seconds, tailer, updated_at)
       VALUES (?, ?, 'forward', 'running', ?, 'test', NOW(6) - INTERVAL ? SECOND)
       ON DUPLICATE KEY UPDATE lag_seconds = VALUES(lag_seconds), updated_at = VALUES(updated_at)`,
      [Number(job!.id), shard, lagS, ageS],
    );
  }

  it('fails while a running tailer has not reported its lag, or reported it long ago; passes when fresh', async () => {
    const [job] = await ctlQuery<{ id: number }>(e, 'SELECT id FROM reshard_jobs');
    for (const s of ['s0', 's1']) {
      const [r] = await tailer.query('SELECT GET_LOCK(?, 0) AS got', [
        tailLockName(e.controlDb, Number(job!.id), 'forward', s),
      ]);
      expect(String((r as { got: unknown }[])[0]?.got)).toBe('1');
    }

    // Locks held, no status row yet.
    const none = await tailLag();
    expect(none?.ok).toBe(false);
    expect(none?.detail).toBe('the reshard tail of s0, s1 has not reported its lag yet');

    // s0 fresh and close behind; s1 wrote 0.1 s of lag 30 s ago and nothing since.
    await status('s0', 0.1, 0);
    await status('s1', 0.1, 30);
    const stale = await tailLag();
    expect(stale?.ok).toBe(false);
    expect(stale?.detail).toMatch(/^lag over 2000 ms on s1 \(30\.\d s\)$/);

    // Both fresh: ready.
    await status('s1', 0.2, 0);
    const fresh = await tailLag();
    expect(fresh?.ok, fresh?.detail).toBe(true);
  }, 120_000);
});
