import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCopy } from '../../../src/copy/run.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn } from '../../support/db.js';
import { chunkRows, copyAll, type Estate, jobState, makeEstate, ROOT } from './helpers.js';

const ROWS = Number(process.env.RESHARD_COPY_TEST_ROWS ?? 50_000);

/** Put the type corpus's extreme rows on the source that owns each (hash-mod crc32 over 2). */
async function addTypeCorpus(db: string): Promise<void> {
  const sql = readFileSync(join(ROOT, 'fixtures/shop/type_corpus.sql'), 'utf8');
  for (const [i, server] of (['s0', 's1'] as const).entries()) {
    const c = await rootConn(server, db);
    try {
      await c.query('DELETE FROM type_corpus WHERE id <= 100');
      await c.query(sql);
      await c.query(`DELETE FROM type_corpus WHERE id <= 100 AND MOD(CRC32(user_id), 2) <> ${i}`);
    } finally {
      await c.end();
    }
  }
}

describe('reshard copy: 2 → 3 hash-mod of the shop fixture', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copy23', rows: ROWS, afterSeed: addTypeCorpus });
  });
  afterAll(async () => e?.drop());

  it('puts every row on exactly its new owner with identical bytes, and moves the job to catching-up', async () => {
    const s = await runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
      concurrency: 2,
    });
    expect(s.complete).toBe(true);
    expect(s.job.state).toBe('catching-up');
    expect(s.misplaced).toBe(0);
    // Every page loaded cleanly by LOAD DATA, the type corpus's extreme values included.
    expect(s.bulkRows).toBe(s.rows);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    expect(diff.total).toBe(0);
    expect(diff.rows.target).toBe(diff.rows.source);
    expect(s.rows).toBe(diff.rows.source);
    expect(await jobState(e)).toBe('catching-up');
    const chunks = await chunkRows(e);
    expect(chunks.every((c) => c.state === 'done' && Number(c.attempts) === 1)).toBe(true);
    // The start positions are recorded once, for both sources.
    const c = await rootConn('ctl', e.controlDb);
    try {
      const [pos] = await c.query(
        "SELECT shard, start_binlog_file, start_binlog_pos, start_gtid_set FROM reshard_binlog_positions WHERE direction = 'forward' ORDER BY shard",
      );
      const p = pos as {
        shard: string;
        start_binlog_file: string;
        start_binlog_pos: string;
        start_gtid_set: string | null;
      }[];
      expect(p.map((x) => x.shard)).toEqual(['s0', 's1']);
      for (const x of p) {
        expect(x.start_binlog_file).toMatch(/\.\d{6}$/);
        expect(Number(x.start_binlog_pos)).toBeGreaterThan(0);
      }
      // A re-run does nothing and keeps the positions.
      const again = await runCopy({
        planPath: e.planPath,
        control: e.controlDsn,
        metaDb: e.metaDb,
        progress: 'none',
      });
      expect(again.alreadyCopied).toBe(true);
      const [pos2] = await c.query(
        "SELECT shard, start_binlog_file, start_binlog_pos, start_gtid_set FROM reshard_binlog_positions WHERE direction = 'forward' ORDER BY shard",
      );
      expect(pos2).toEqual(pos);
    } finally {
      await c.end();
    }
  });
});

describe('reshard copy without the bulk path (every row through the applier)', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copyapplier', rows: 8000, seed: 9, afterSeed: addTypeCorpus });
  });
  afterAll(async () => e?.drop());

  it('gives the same estate', async () => {
    const s = await runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
      bulk: false,
    });
    expect(s.complete).toBe(true);
    expect(s.bulkRows).toBe(0);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    expect(diff.rows.target).toBe(diff.rows.source);
  });

  it('a re-copy over rows already on the targets falls back to the applier and changes nothing', async () => {
    const c = await rootConn('ctl', e.controlDb);
    try {
      // Forget the copy: every chunk is copied again, over identical rows.
      await c.query('DELETE FROM reshard_copy_chunks');
      await c.query(
        "UPDATE reshard_copy_checkpoints SET state = 'pending', low_watermark = NULL, rows_copied = 0",
      );
      await c.query("UPDATE reshard_jobs SET state = 'copying'");
    } finally {
      await c.end();
    }
    const s = await copyAll(e);
    expect(s.complete).toBe(true);
    expect(s.rows).toBeGreaterThan(0);
    expect(s.bulkRows).toBe(0);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
  });
});
