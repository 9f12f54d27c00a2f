/**
 * Acceptance: the type corpus round-trips byte-exact through binlog → tailer → target; DDL on a
 * tracked table stops the tailer (exit 3) naming the statement, or is replayed with --apply-ddl.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTail } from '../../../src/binlog/tailer.js';
import { ReshardError } from '../../../src/errors.js';
import { port } from '../../support/db.js';
import {
  type Estate,
  expectConverged,
  makeEstate,
  naiveCopy,
  queryOn,
  ROOT,
  recordStarts,
  runCli,
  sqlOn,
  startCli,
  tailCaughtUp,
} from './helpers.js';

const CORPUS = readFileSync(join(ROOT, 'fixtures/shop/type_corpus.sql'), 'utf8');

describe('reshard tail: type corpus', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'tailty', rows: 0 });
    await recordStarts(e);
  });
  afterAll(async () => e?.drop());

  it('every extreme value arrives byte-exact, through inserts, updates, shard-key moves and deletes', async () => {
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb });
    try {
      for (const [i, s] of e.sources.entries()) {
        // Every corpus row on every source, then each source deletes the rows it does not own:
        // the tailer must ignore both halves of those (their old owner is the other source).
        await sqlOn(s.port, CORPUS, e.db);
        await sqlOn(s.port, `DELETE FROM type_corpus WHERE MOD(CRC32(user_id), 2) <> ${i}`, e.db);
        await sqlOn(
          s.port,
          `SET NAMES utf8mb4; SET time_zone = '+00:00';
           UPDATE type_corpus SET text_mb4 = CONCAT(COALESCE(text_mb4, ''), '😀 ü'), dt6 = '2000-02-29 23:59:59.999999',
             ts6 = '2001-02-03 04:05:06.000007', bits = b'1010', flags = 'a,d', color = 'green',
             doc = '{"k": 18446744073709551616, "e": "\\\\u00e9"}', dec65 = -0.000000000000000000000000000001,
             blob_data = X'00FF00', maybe_empty = '' WHERE id IN (4, 5);
           UPDATE type_corpus SET maybe_empty = NULL, varbin = X'' WHERE id IN (1, 2, 6);
           INSERT INTO type_corpus (id, user_id, u64, i64, dec65, dt6, ts6, bits, color, flags, blob_data, varbin, text_mb4, doc, maybe_empty)
             SELECT id + 100, user_id, u64, i64, dec65, dt6, ts6, bits, color, flags, blob_data, varbin, text_mb4, doc, maybe_empty FROM type_corpus;
           DELETE FROM type_corpus WHERE id = 103;`,
          e.db,
        );
      }
      // Shard-key moves within each source: new user_id of the same source, most to another target.
      for (const [i, s] of e.sources.entries()) {
        const keys = await queryOn<{ k: number }>(
          s.port,
          `SELECT k FROM (SELECT 1000 + seq AS k FROM seq_1_to_200) x WHERE MOD(CRC32(k), 2) = ${i} LIMIT 5`,
          [],
          e.db,
        );
        for (const [j, row] of keys.entries()) {
          await sqlOn(s.port, `UPDATE type_corpus SET user_id = ${row.k} WHERE id = ${101 + j}`, e.db);
        }
      }
      await tail.waitCaughtUp({ timeoutMs: 30_000 });
      const st = tail.status();
      expect(st.sources.reduce((a, x) => a + x.rows, 0)).toBeGreaterThan(20);
      await tail.stop();
      const { rows } = await expectConverged(e);
      expect(rows).toBe(11);
      // And spot-check the stored bytes on a target for the hardest values.
      const [hex] = await Promise.all(
        e.targets.map((t) =>
          queryOn<{ h: string }>(
            t.port,
            `SELECT HEX(CONCAT_WS('|', u64, dec65, dt6, ts6, HEX(bits), HEX(blob_data), doc)) AS h FROM type_corpus WHERE id = 1`,
            [],
            e.db,
          ),
        ),
      ).then((r) => r.flat());
      const [src] = await Promise.all(
        e.sources.map((s) =>
          queryOn<{ h: string }>(
            s.port,
            `SELECT HEX(CONCAT_WS('|', u64, dec65, dt6, ts6, HEX(bits), HEX(blob_data), doc)) AS h FROM type_corpus WHERE id = 1`,
            [],
            e.db,
          ),
        ),
      ).then((r) => r.flat());
      expect(hex?.h).toBe(src?.h);
    } finally {
      await tail.stop().catch(() => undefined);
      await ctx.close();
    }
  });
});

describe('reshard tail: DDL on a tracked table', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'tailddl', rows: 2000, seed: 3 });
    await recordStarts(e);
    await naiveCopy(e);
  });
  afterAll(async () => e?.drop());

  async function waitRunning(n: number): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const r = await queryOn<{ n: number }>(
        port('ctl'),
        `SELECT COUNT(*) AS n FROM \`${e.controlDb}\`.reshard_tail_status WHERE state = 'running'`,
      ).catch(() => [{ n: 0 }]);
      if (Number(r[0]?.n) >= n) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('the tailer did not start');
  }

  it('stops the tailer with exit 3 naming the statement; committed positions stop just before it', async () => {
    const args = ['tail', '--plan', e.planPath, '--control', e.controlDsn, '--meta-db', e.metaDb];
    const p = startCli(args);
    await waitRunning(2);
    await sqlOn(e.sources[0]!.port, 'UPDATE users SET balance = 1 WHERE id < 50', e.db);
    await sqlOn(e.sources[0]!.port, 'ALTER TABLE orders ADD COLUMN gift_wrap TINYINT NULL', e.db);
    const res = await p.done;
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).toContain('E_TAIL_DDL');
    expect(res.stderr).toContain('ALTER TABLE orders ADD COLUMN gift_wrap TINYINT NULL');
    expect(res.stderr).toContain('--apply-ddl');
    // Running it again stops at the same statement: nothing after it was applied or skipped.
    const again = await runCli([...args, '--json']);
    expect(again.code).toBe(3);
    expect(JSON.parse(again.stdout).error).toMatchObject({ code: 'E_TAIL_DDL', kind: 'precondition' });
  });

  it('replays schema-only DDL with --apply-ddl and converges', async () => {
    // The other source gets the same change; rows written after it carry the new column.
    await sqlOn(e.sources[1]!.port, 'ALTER TABLE orders ADD COLUMN gift_wrap TINYINT NULL', e.db);
    for (const s of e.sources)
      await sqlOn(
        s.port,
        'UPDATE orders SET gift_wrap = 1, note = CONCAT(COALESCE(note, ""), "!") WHERE id % 7 = 0',
        e.db,
      );
    await tailCaughtUp(e, { applyDdl: true });
    await expectConverged(e);
    const cols = await queryOn<{ n: number }>(
      e.targets[0]!.port,
      `SELECT COUNT(*) AS n FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'gift_wrap'`,
      [e.db],
    );
    expect(Number(cols[0]!.n)).toBe(1);
  });

  it('never replays TRUNCATE, even with --apply-ddl: the copy must be redone', async () => {
    await sqlOn(e.sources[1]!.port, 'TRUNCATE TABLE coupons', e.db);
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb, applyDdl: true });
    const err = await tail.done.then(
      () => undefined,
      (x: unknown) => x,
    );
    await ctx.close();
    expect(err).toBeInstanceOf(ReshardError);
    expect(err).toMatchObject({ code: 'E_TAIL_DDL', exitCode: 3 });
    expect((err as ReshardError).message).toContain('TRUNCATE TABLE coupons');
    expect((err as ReshardError).hint).toContain('re-copy');
  });
});
