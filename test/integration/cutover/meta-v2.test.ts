/**
 * A meta database still at META_VERSION 2 mid-job: what the previous build of this reshard wrote,
 * and what a `reshard tail` started before the upgrade keeps writing (the job is the same
 * version). It records no owner (`jobs`, META_VERSION 3), so its rows are the job's own: the
 * cutover drain used to read "nothing applied" and wait for positions that were there, until
 * E_CUTOVER_DRAIN_TIMEOUT, and purge left them for the next job with that id to take.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Drainer } from '../../../src/cutover/drain.js';
import { purgeTargets } from '../../../src/cutover/purge.js';
import { type JobContext, openJob } from '../../../src/job/context.js';
import { rootConn, uniqueDb } from '../../support/db.js';
import { type Estate, makeEstate } from '../copy/helpers.js';

/** `metaDb` on t0 as reshard with META_VERSION 2 left it, holding positions and a parked row of `jobId`. */
async function metaV2(metaDb: string, jobId: number): Promise<void> {
  const c = await rootConn('t0');
  try {
    await c.query(`CREATE DATABASE \`${metaDb}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
    await c.query(`USE \`${metaDb}\``);
    await c.query('CREATE TABLE meta_version (id TINYINT NOT NULL PRIMARY KEY, version INT NOT NULL)');
    await c.query('INSERT INTO meta_version VALUES (1, 2)');
    await c.query(`CREATE TABLE parked_rows (job_id BIGINT UNSIGNED NOT NULL, db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL,
      pk_hash BINARY(32) NOT NULL, source VARCHAR(191) NOT NULL, image LONGTEXT NOT NULL,
      parked_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (job_id, db, tbl, pk_hash, source))`);
    await c.query(`CREATE TABLE apply_positions (job_id BIGINT UNSIGNED NOT NULL, source VARCHAR(191) NOT NULL,
      target VARCHAR(191) NOT NULL, binlog_file VARCHAR(255) NOT NULL, binlog_pos BIGINT UNSIGNED NOT NULL, gtid LONGTEXT NULL,
      updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (job_id, source, target))`);
    await c.query(
      "INSERT INTO apply_positions (job_id, source, target, binlog_file, binlog_pos) VALUES (?, 's0', 't0', 'sandbox-bin.000001', 4242)",
      [jobId],
    );
    await c.query(
      "INSERT INTO parked_rows (job_id, db, tbl, pk_hash, source, image) VALUES (?, 'x', 'users', REPEAT('a', 32), 's1', '[]')",
      [jobId],
    );
  } finally {
    await c.end();
  }
}

async function count(metaDb: string, table: string, jobId: number): Promise<number> {
  const c = await rootConn('t0');
  try {
    const [r] = await c.query(`SELECT COUNT(*) AS n FROM \`${metaDb}\`.\`${table}\` WHERE job_id = ?`, [
      jobId,
    ]);
    return Number((r as { n: unknown }[])[0]!.n);
  } finally {
    await c.end();
  }
}

describe('a meta database at META_VERSION 2, mid-job', () => {
  let e: Estate;
  let ctx: JobContext;
  beforeAll(async () => {
    const db = uniqueDb('metav2');
    e = await makeEstate({
      prefix: 'metav2',
      db,
      rows: 0,
      targets: [{ name: 't0', server: 't0', database: db }],
    });
  });
  afterAll(async () => {
    await ctx?.close();
    await e?.drop();
  });

  it('the drain reads the positions the job applied; purge removes the job’s own rows', async () => {
    ctx = await openJob({ planPath: e.planPath, control: e.controlDsn, create: true });
    await metaV2(e.metaDb, ctx.job.id);
    const drainer = new Drainer({ ctx, direction: 'forward', metaDb: e.metaDb });
    const applied = await drainer.appliedOf({ source: 's0', target: 't0' }).finally(() => drainer.stop());
    await purgeTargets(ctx, e.metaDb);
    expect({
      applied: applied && `${applied.file}:${applied.pos}`,
      positionsLeft: await count(e.metaDb, 'apply_positions', ctx.job.id),
      parkedLeft: await count(e.metaDb, 'parked_rows', ctx.job.id),
    }).toEqual({ applied: 'sandbox-bin.000001:4242', positionsLeft: 0, parkedLeft: 0 });
  });
});
