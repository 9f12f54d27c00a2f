/**
 * Preconditions and operability: a purged binlog, a second tailer for the same source, the
 * metrics endpoint, a graceful stop by signal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordStartPosition } from '../../../src/binlog/status.js';
import { startTail } from '../../../src/binlog/tailer.js';
import { ReshardError } from '../../../src/errors.js';
import { type Estate, makeEstate, naiveCopy, queryOn, recordStarts, sqlOn, startCli } from './helpers.js';

describe('reshard tail: faults and operations', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'tailft', rows: 1000, seed: 2 });
    await recordStarts(e);
    await naiveCopy(e);
  });
  afterAll(async () => e?.drop());

  it('serves metrics, refuses a second tailer for the same source, and stops gracefully on SIGTERM', async () => {
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb, metricsPort: 0 });
    try {
      await sqlOn(e.sources[0]!.port, 'UPDATE users SET balance = balance + 1 WHERE id < 100', e.db);
      await tail.waitCaughtUp({ timeoutMs: 30_000 });
      const text = await (await fetch(tail.metricsUrl!)).text();
      expect(text).toMatch(/reshard_tail_lag_seconds\{source="s0"\} 0/);
      expect(text).toMatch(/reshard_tail_rows_total\{source="s0"\} [1-9]/);
      expect(text).toContain('reshard_tail_applied_ops_total{source="s0",target=');
      // The same job and source in another process: refused while this one runs.
      const other = startCli([
        'tail',
        '--plan',
        e.planPath,
        '--control',
        e.controlDsn,
        '--meta-db',
        e.metaDb,
      ]);
      const res = await other.done;
      expect(res.code, res.stderr).toBe(3);
      expect(res.stderr).toContain('E_TAIL_RUNNING');
    } finally {
      await tail.stop();
      await ctx.close();
    }
    // Now a CLI tailer runs, and SIGTERM stops it cleanly (exit 0, result on stdout).
    const p = startCli([
      'tail',
      '--plan',
      e.planPath,
      '--control',
      e.controlDsn,
      '--meta-db',
      e.metaDb,
      '--json',
    ]);
    const ctlPort = Number(new URL(e.controlDsn).port);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const running = await queryOn<{ state: string }>(
        ctlPort,
        `SELECT state FROM \`${e.controlDb}\`.reshard_tail_status WHERE state = 'running'`,
      );
      if (running.length === 2 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await sqlOn(e.sources[1]!.port, 'UPDATE users SET balance = balance + 1 WHERE id < 100', e.db);
    p.child.kill('SIGTERM');
    const res = await p.done;
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ ok: true, direction: 'forward' });
    const events = await queryOn<{ kind: string }>(
      ctlPort,
      `SELECT kind FROM \`${e.controlDb}\`.reshard_job_events WHERE kind LIKE 'tail-%' ORDER BY id`,
    );
    expect(events.map((x) => x.kind)).toEqual(['tail-start', 'tail-stop', 'tail-start', 'tail-stop']);
  });

  it('a start position whose binlog was purged is a precondition error that asks for a re-copy', async () => {
    const ctx = await e.job();
    try {
      const files = await queryOn<{ Log_name: string }>(e.sources[0]!.port, 'SHOW BINARY LOGS');
      const gone = files[0]!.Log_name.replace(/\d+$/, (d) => '0'.repeat(d.length));
      // Forget what the targets applied for s0, and pretend the copy started in a purged file.
      for (const t of e.targets)
        await sqlOn(t.port, `DELETE FROM \`${e.metaDb}\`.apply_positions WHERE source = 's0'`);
      await recordStartPosition(ctx.control.conn, ctx.job.id, 's0', 'forward', { file: gone, pos: 4 });
      let err: unknown;
      try {
        const t = await startTail({ ctx, metaDb: e.metaDb, sources: ['s0'] });
        await t.stop();
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(ReshardError);
      expect(err).toMatchObject({ code: 'E_BINLOG_PURGED', exitCode: 3 });
      expect((err as ReshardError).message).toContain(gone);
      expect((err as ReshardError).hint).toContain('re-copy');
    } finally {
      await ctx.close();
    }
  });
});
