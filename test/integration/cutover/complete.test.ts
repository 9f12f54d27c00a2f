/**
 * `reshard complete` closes the rollback window: refused while reverse replication runs or before
 * cutover; afterwards rollback and reverse tailing are refused, and cleanup — refused while the
 * job was only cut over, because the old shards were still the rollback copy — deletes the moved
 * rows from their old shards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { runCleanup } from '../../../src/copy/cleanup.js';
import { runComplete, runRollback } from '../../../src/cutover/index.js';
import {
  copyAndVerify,
  type Estate,
  jobState,
  layout,
  makeEstate,
  type OwnServer,
  openCtx,
  runCli,
  setReadOnly,
  startServer,
} from './helpers.js';

let servers: OwnServer[] = [];
let e: Estate | undefined;

beforeAll(async () => {
  servers = await Promise.all(['a', 'b', 'c', 'd'].map((n) => startServer(`complete-${n}`)));
}, 180_000);

afterAll(async () => {
  await e?.drop().catch(() => undefined);
  await Promise.all(servers.map((s) => s.destroy()));
});

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (x: { code?: string }) => x.code,
  );

describe('reshard complete', () => {
  it('ends the rollback window only when reverse replication has stopped; then cleanup may run', async () => {
    for (const s of servers) await setReadOnly(s.port, false);
    e = await makeEstate({ prefix: 'co_complete', rows: 2000, seed: 3, ports: layout(servers) });
    const base = { planPath: e.planPath, control: e.controlDsn };
    // Every old shard is retired here (the new shards are other databases): cleanup empties them.
    const cleanup = (execute: boolean) => runCleanup({ ...base, execute, includeRetired: true });
    await copyAndVerify(e);

    // Before cutover: nothing to complete, and cleanup refuses even a dry run.
    expect(await codeOf(runComplete({ ...base, execute: true }))).toBe('E_COMPLETE_STATE');
    expect(await codeOf(cleanup(false))).toBe('E_CLEANUP_TOO_EARLY');

    const cut = await runCli([
      'cutover',
      '--plan',
      e.planPath,
      '--control',
      e.controlDsn,
      '--meta-db',
      e.metaDb,
      '--execute',
      '--max-freeze',
      '60s',
      '--max-lag',
      '30s',
      '--json',
    ]);
    expect(cut.code, cut.stderr).toBe(0);
    expect(await jobState(e)).toBe('cut-over');

    // Cut over: cleanup would delete the rollback copy, so only its dry run is allowed.
    const dry = await cleanup(false);
    const moved = dry.tables.reduce((a, t) => a + t.moved, 0);
    expect(moved).toBeGreaterThan(0);
    expect(await codeOf(cleanup(true))).toBe('E_CLEANUP_TOO_EARLY');

    // Reverse replication running: complete checks and refuses, in both modes, changing nothing.
    const ctx = await openCtx(e);
    const tail = await startTail({ ctx, direction: 'reverse', metaDb: e.metaDb, statusIntervalMs: 500 });
    try {
      const check = await runComplete({ ...base, execute: false });
      expect(check.ok).toBe(false);
      expect(check.checks.find((c) => c.name === 'reverse tailer')?.ok).toBe(false);
      expect(check.checks.find((c) => c.name === 'routing')?.ok).toBe(true);
      const refused = await runComplete({ ...base, execute: true });
      expect(refused.ok).toBe(false);
      expect(refused.mode).toBe('dry-run');
      expect(await jobState(e)).toBe('cut-over');
    } finally {
      await tail.stop();
      await ctx.close();
    }

    // Stopped: complete moves the job, once.
    const ready = await runComplete({ ...base, execute: false });
    expect(ready.ok).toBe(true);
    const done = await runComplete({ ...base, execute: true });
    expect(done.mode).toBe('completed');
    expect(await jobState(e)).toBe('completed');
    expect((await runComplete({ ...base, execute: true })).mode).toBe('already-completed');

    // Completed: no rollback, no reverse tailing; cleanup deletes exactly the moved rows.
    expect(await codeOf(runRollback({ ...base, metaDb: e.metaDb, execute: true, purgeTargets: false }))).toBe(
      'E_ROLLBACK_STATE',
    );
    const rev = await runCli([
      'tail',
      '--plan',
      e.planPath,
      '--control',
      e.controlDsn,
      '--meta-db',
      e.metaDb,
      '--reverse',
      '--until-caught-up',
    ]);
    expect(rev.code, rev.stderr).toBe(3);
    expect(rev.stderr).toContain('E_TAIL_JOB_STATE');
    // A tailer that passed the command's state check just before the transition: it re-reads the
    // state once it holds its locks, and refuses too.
    const late = await openCtx(e);
    try {
      expect(await codeOf(startTail({ ctx: late, direction: 'reverse', metaDb: e.metaDb }))).toBe(
        'E_TAIL_JOB_STATE',
      );
    } finally {
      await late.close();
    }
    const clean = await cleanup(true);
    expect(clean.deleted).toBe(moved);
    const after = await cleanup(false);
    expect(after.tables.reduce((a, t) => a + t.moved, 0)).toBe(0);
  }, 240_000);
});
