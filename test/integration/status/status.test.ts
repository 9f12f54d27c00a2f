/**
 * `reshard status` and `reshard route` against a control schema filled by hand (a fresh control
 * database per file): the JSON shape and values, the plain-text report, routing by the active
 * version before and after a new version is activated, and the following router.
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Connection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mirror, recordStartPosition } from '../../../src/binlog/status.js';
import { setCopyControl } from '../../../src/copy/control.js';
import { createRouter } from '../../../src/plan/router.js';
import {
  appendEvent,
  type ControlConnection,
  connectControl,
  createJob,
  transitionJob,
} from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { followActiveRouting } from '../../../src/status/follow.js';
import {
  activateRoutingVersion,
  recordRoutingVersion,
  routingFromTopology,
} from '../../../src/status/routing.js';
import type { StatusReport } from '../../../src/status/types.js';
import { parseTopology } from '../../../src/topology/load.js';
import { port, rootConn, uniqueDb } from '../../support/db.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(join(ROOT, 'bin/reshard'), args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

const yaml = (name: string, shards: string[]) =>
  `version: 1\nname: ${name}\nshards:\n${shards.map((s) => `  - { name: ${s}, host: ${s}.db, port: 3306, database: app }`).join('\n')}\ntables:\n  - { name: orders, shardKey: user_id }\nscheme: { type: hash-mod, hash: crc32 }\n`;
const FROM = parseTopology(yaml('shop-from', ['s0', 's1']), 'from.yaml');
const TO = parseTopology(yaml('shop-to', ['t0', 't1', 't2']), 'to.yaml');

async function inTx(conn: Connection, fn: () => Promise<unknown>): Promise<void> {
  await conn.beginTransaction();
  try {
    await fn();
    await conn.commit();
  } catch (e) {
    await conn.rollback();
    throw e;
  }
}

describe('reshard status / route (control schema filled by hand)', () => {
  const db = uniqueDb('status');
  const dsn = `mysql://root@127.0.0.1:${port('ctl')}/${db}`;
  let ctl: ControlConnection;
  let jobId: number;

  beforeAll(async () => {
    ctl = await connectControl(dsn);
    await ensureControlSchema(ctl);
    const c = ctl.conn;
    const job = await createJob(c, {
      name: 'status-job',
      planHash: createHash('sha256').update('p').digest('hex'),
    });
    jobId = job.id;
    await transitionJob(c, jobId, 'planned', 'copying');
    const started = await appendEvent(c, jobId, 'copy-worker-started', { worker: 'w1' });
    await c.query('UPDATE reshard_job_events SET at = UTC_TIMESTAMP(6) - INTERVAL 10 SECOND WHERE id = ?', [
      started,
    ]);
    await c.query(
      `INSERT INTO reshard_copy_checkpoints (job_id, source_shard, table_name, low_watermark, rows_copied, state) VALUES
        (?, 's0', 'orders', '["700"]', 1000, 'copying'), (?, 's1', 'users', '["500"]', 500, 'done'), (?, 's1', 'orders', NULL, 0, 'pending')`,
      [jobId, jobId, jobId],
    );
    await c.query(
      `INSERT INTO reshard_copy_chunks (job_id, source_shard, table_name, chunk_id, lower_pk, upper_pk, state, rows_copied, updated_at) VALUES
        (?, 's0', 'orders', 0, NULL, '["700"]', 'done', 700, UTC_TIMESTAMP(6) - INTERVAL 1 HOUR),
        (?, 's0', 'orders', 1, '["700"]', '["800"]', 'done', 300, UTC_TIMESTAMP(6)),
        (?, 's0', 'orders', 2, '["800"]', '["900"]', 'claimed', 0, UTC_TIMESTAMP(6)),
        (?, 's1', 'users', 0, NULL, NULL, 'done', 500, UTC_TIMESTAMP(6) - INTERVAL 1 HOUR)`,
      [jobId, jobId, jobId, jobId],
    );
    await setCopyControl(c, jobId, { paused: true, rate: 500 });
    await recordStartPosition(c, jobId, 's0', 'forward', { file: 'bin.000001', pos: 4 });
    await mirror(c, {
      jobId,
      shard: 's0',
      direction: 'forward',
      position: { file: 'bin.000002', pos: 1234 },
      lagSeconds: 1.25,
      eventsPerSecond: 40,
      rowsPerSecond: 30,
      lastEventAt: Date.now(),
      state: 'running',
      tailer: 'h:1',
    });
    await mirror(c, {
      jobId,
      shard: 's1',
      direction: 'forward',
      position: undefined,
      lagSeconds: 99,
      eventsPerSecond: 0,
      rowsPerSecond: 0,
      lastEventAt: undefined,
      state: 'running',
      tailer: 'h:2',
    });
    await c.query(
      "UPDATE reshard_tail_status SET updated_at = UTC_TIMESTAMP(6) - INTERVAL 1 HOUR WHERE shard = 's1'",
    );
    await c.query(
      `INSERT INTO reshard_verify_runs (job_id, run_id, state, mismatches, detail, started_at, finished_at) VALUES
        (?, 1, 'match', 0, '{"mode":"full"}', '2025-01-01 00:00:00', '2025-01-01 00:01:30'),
        (?, 2, 'mismatch', 4, '{"mode":"incremental"}', '2025-01-01 01:00:00', '2025-01-01 01:00:10')`,
      [jobId, jobId],
    );
    await inTx(c, () =>
      recordRoutingVersion(c, { jobId: null, document: routingFromTopology(FROM), activate: true }),
    );
    await c.query(
      "INSERT INTO reshard_cutover_journal (job_id, step, state, detail) VALUES (?, 'freeze', 'started', NULL), (?, 'freeze', 'done', '{\"ms\":120}')",
      [jobId, jobId],
    );
    await appendEvent(c, jobId, 'note', { hello: 'world' });
  });

  afterAll(async () => {
    await ctl?.close();
    const c = await rootConn('ctl');
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await c.end();
  });

  it('--json prints the documented shape with values read from every table', async () => {
    const r = await run(['status', '--json', '--job', 'status-job', '--control', dsn]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as StatusReport;
    expect(Object.keys(s)).toEqual([
      'statusVersion',
      'at',
      'control',
      'job',
      'copy',
      'tail',
      'verify',
      'routing',
      'cutover',
      'events',
    ]);
    expect(s.statusVersion).toBe(1);
    expect(s.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(s.control).toBe(`root@127.0.0.1:${port('ctl')}/${db}`);
    expect(s.job).toMatchObject({
      id: jobId,
      name: 'status-job',
      state: 'copying',
      terminal: false,
      position: 1,
    });
    expect(s.job.machine.map((m) => `${m.state}:${m.status}`)).toEqual([
      'planned:done',
      'copying:current',
      'catching-up:pending',
      'verified:pending',
      'cut-over:pending',
      'completed:pending',
      'rolled-back:pending',
      'cancelled:pending',
    ]);
    expect(s.job.machine[1]!.enteredAt).toMatch(/Z$/);

    const c = s.copy;
    expect(c).toMatchObject({
      started: true,
      complete: false,
      rowsCopied: 1500,
      estimatedRows: null,
      percent: null,
      chunksDone: 3,
      chunks: 4,
      etaSeconds: null,
      throttle: { paused: true, rate: 500, targetRate: null },
    });
    expect(c.rateWindowSeconds).toBeGreaterThanOrEqual(10);
    expect(c.rateWindowSeconds).toBeLessThan(30);
    expect(c.tables.map((t) => `${t.source}/${t.table}`)).toEqual(['s0/orders', 's1/orders', 's1/users']);
    const orders = c.tables[0]!;
    expect(orders).toMatchObject({
      state: 'copying',
      rowsCopied: 1000,
      chunksDone: 2,
      chunksClaimed: 1,
      chunks: 3,
      chunkedAll: false,
      etaSeconds: null,
    });
    // 300 rows finished within the window, which started ~10 s ago (the worker's start event).
    expect(orders.rowsPerSecond).toBeGreaterThan(300 / 31);
    expect(orders.rowsPerSecond).toBeLessThanOrEqual(30);
    expect(c.tables[2]).toMatchObject({
      state: 'done',
      rowsCopied: 500,
      percent: 100,
      etaSeconds: 0,
      chunkedAll: true,
      rowsPerSecond: 0,
    });

    expect(s.tail.sources.map((t) => [t.source, t.direction, t.state, t.stale])).toEqual([
      ['s0', 'forward', 'running', false],
      ['s1', 'forward', 'running', true],
    ]);
    expect(s.tail.sources[0]).toMatchObject({
      lagSeconds: 1.25,
      eventsPerSecond: 40,
      rowsPerSecond: 30,
      position: { file: 'bin.000002', pos: 1234, gtid: null },
      startPosition: { file: 'bin.000001', pos: 4, gtid: null },
      tailer: 'h:1',
    });
    // The stale source's 99 s is not current, so it does not count.
    expect(s.tail.maxLagSeconds).toBe(1.25);

    expect(s.verify.lastClean).toMatchObject({ runId: 1, state: 'match', mode: 'full', durationSeconds: 90 });
    expect(s.verify.runs.map((v) => [v.runId, v.state, v.mode, v.mismatches])).toEqual([
      [2, 'mismatch', 'incremental', 4],
      [1, 'match', 'full', 0],
    ]);
    expect(s.routing.active).toMatchObject({
      version: 1,
      jobId: null,
      job: null,
      active: true,
      writes: 'shop-from',
      reads: 'shop-from',
      canary: [],
      readCanary: [],
    });
    expect(s.routing.versions.map((v) => v.version)).toEqual([1]);
    expect(s.cutover.steps.map((x) => [x.step, x.state, x.detail])).toEqual([
      ['freeze', 'started', null],
      ['freeze', 'done', { ms: 120 }],
    ]);
    expect(s.events.at(-1)).toMatchObject({ kind: 'note', detail: { hello: 'world' } });
    expect(s.events.map((e) => e.kind)).toEqual([
      'created',
      'state',
      'copy-worker-started',
      'copy-control',
      'note',
    ]);

    // Without --job: the newest job; without a TTY: the plain-text report.
    const t = await run(['status', '--control', dsn]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toContain('job status-job');
    expect(t.stdout).toMatch(/copy: PAUSED; 1500 rows \(\?\), [\d.]+ rows\/s, ETA \?, chunks 3\/4/);
    expect(t.stdout).toMatch(/^s1\s+forward\s+running \(stale\)\s+99\.0/m);
    expect(t.stdout).toContain('routing: version 1');
  });

  it('route prints the owner under the active version, and follows a newly activated one', async () => {
    const a = await run(['route', '42', '--control', dsn, '--json']);
    expect(a.code, a.stderr).toBe(0);
    const ra = JSON.parse(a.stdout) as {
      owner: string;
      keyType: string;
      routing: { version: number; source: string };
    };
    expect(ra).toMatchObject({
      owner: createRouter(FROM).ownerOf(42n),
      keyType: 'int',
      routing: { version: 1, source: 'control' },
    });

    const follower = await followActiveRouting({ control: dsn, pollMs: 100 });
    try {
      expect(follower.version).toBe(1);
      expect(follower.ownerOf(42n)).toBe(createRouter(FROM).ownerOf(42n));
      const c = ctl.conn;
      await inTx(c, () =>
        recordRoutingVersion(c, { jobId, document: routingFromTopology(TO, 'status-job'), activate: true }),
      );

      const b = await run(['route', 'abc', '--key-type', 'string', '--control', dsn]);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout.trim()).toBe(createRouter(TO).ownerOf('abc'));
      expect(b.stderr).toContain('routing version 2 (job status-job)');

      const deadline = Date.now() + 10_000;
      while (follower.version !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(follower.version).toBe(2);
      expect(follower.ownerOf(42n)).toBe(createRouter(TO).ownerOf(42n));
      expect(follower.shards).toEqual(['t0', 't1', 't2']);

      // Rolling back to version 1 switches the follower back.
      await inTx(c, () => activateRoutingVersion(c, 1));
      await follower.refresh();
      expect(follower.version).toBe(1);
      expect(follower.ownerOf('abc')).toBe(createRouter(FROM).ownerOf('abc'));
    } finally {
      await follower.close();
    }
  });
});
