/**
 * Incremental verify by exact changed keys (changes.ts: reshard_changed_keys): the recorded
 * primary keys are looked up on every source and target shard instead of scanning buckets, and
 * still find every kind of fault on a changed row — missing, extra, on a wrong target, different
 * bytes — also for exact-value keys (DECIMAL, DATETIME(6), binary, BIGINT UNSIGNED > 2^53). When
 * an epoch's key list overflowed, the run falls back to the Bloom-flagged buckets and still finds
 * them; keys recorded by concurrent writers (racing each other and a new epoch) are all kept.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import type { Value } from '../../../src/apply/values.js';
import { type ControlConnection, openControl } from '../../../src/state/control.js';
import {
  type ChangedRow,
  openEpoch,
  recordChanges,
  runVerify,
  splitFixSql,
  type VerifyReport,
} from '../../../src/verify/index.js';
import { rootConn, type SandboxName } from '../../support/db.js';
import { applyFixSql, buildEstate, type Estate, SOURCES, TARGETS } from './helpers.js';

function pks(r: VerifyReport): string[] {
  return r.differences.map((d) => `${d.kind} ${d.table} ${JSON.stringify(d.pk)}`).sort();
}

function table(r: VerifyReport, name: string) {
  return r.tables.find((t) => t.table === name)!;
}

/** A table whose primary key is made of values that are easy to get inexact on the way. */
const ODD_KEYS = {
  name: 'odd_keys',
  shardKey: 'user_id',
  ddl: `CREATE TABLE odd_keys (
    k_dec   DECIMAL(20,6)   NOT NULL,
    k_dt    DATETIME(6)     NOT NULL,
    k_bin   VARBINARY(16)   NOT NULL,
    k_big   BIGINT UNSIGNED NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    v       VARCHAR(32)     NOT NULL,
    PRIMARY KEY (k_dec, k_dt, k_bin, k_big)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;`,
};

describe('verify --incremental by exact changed keys', () => {
  let e: Estate | undefined;
  const extra: ControlConnection[] = [];
  afterEach(async () => {
    for (const c of extra.splice(0)) await c.close().catch(() => undefined);
    await e?.cleanup();
    e = undefined;
  });

  /** Run SQL on the source owner and the target owner of a shard key (as the tailer would apply it). */
  const both = (key: number, sql: string, params?: unknown[]) => e!.onBoth(key, sql, params);
  const onTarget = (key: number, sql: string, params?: unknown[]) => e!.onTarget(key, sql, params);
  const onSource = (key: number, sql: string, params?: unknown[]) => e!.onSource(key, sql, params);
  /** A target that owns the key under neither topology (there are 3 targets, so one exists). */
  const wrongTarget = async (key: number): Promise<Connection> =>
    e!.conn(TARGETS.find((t) => t !== e!.targetOf(BigInt(key)) && t !== e!.sourceOf(BigInt(key)))!);
  const firstRow = async (key: number, sql: string): Promise<RowDataPacket> => {
    const [rows] = await (await e!.conn(e!.sourceOf(BigInt(key)))).query<RowDataPacket[]>(sql);
    return rows[0]!;
  };

  it('finds missing, extra, wrong-target and different rows among the changed keys, without a scan', async () => {
    e = await buildEstate('verify_keys', { users: 300, ordersPerUser: 2, extraTables: [ODD_KEYS] });
    const ctx = await e.open();
    const record = (key: number, rows: ChangedRow[]) =>
      recordChanges(ctx.control, ctx.job.id, e!.sourceOf(BigInt(key)), rows);
    const user = (id: number): ChangedRow => ({ table: 'users', pk: [String(id)] });

    // Exact-value keys: DECIMAL and DATETIME(6) as the server prints them, binary bytes (with a
    // quote, a backslash and a NUL), an unsigned BIGINT beyond 2^53 — recorded as the tailer's
    // values (text, Buffer, bigint), inserted as a finished copy would leave them.
    const odd = (i: number): Value[] => [
      `12345678901234.50000${i}`,
      `2024-02-29 23:59:59.99999${i}`,
      Buffer.from([0x00, 0xff, 0x27, 0x5c, i]),
      18446744073709551615n - BigInt(i),
    ];
    for (const i of [1, 2, 3]) {
      const [kDec, kDt, kBin, kBig] = odd(i);
      await both(
        40 + i,
        'INSERT INTO odd_keys (k_dec, k_dt, k_bin, k_big, user_id, v) VALUES (?, ?, ?, ?, ?, ?)',
        [kDec, kDt, kBin, String(kBig), 40 + i, `odd ${i}`],
      );
    }

    const clean = await runVerify({ ctx, preflight: false });
    expect(clean.ok).toBe(true);
    expect(table(clean, 'odd_keys').sourceRows).toBe(3);

    // Changes the tailer applied correctly (on both sides), each recorded before it was applied.
    for (const id of [11, 13, 14, 20]) {
      await record(id, [user(id)]);
      await both(id, 'UPDATE users SET name = ? WHERE id = ?', [`changed ${id}`, id]);
    }
    await record(12, [user(12)]);
    await onSource(12, 'DELETE FROM users WHERE id = 12'); // the delete never reached the target
    const item = await firstRow(15, 'SELECT order_id, line_no FROM order_items WHERE user_id = 15 LIMIT 1');
    await record(15, [{ table: 'order_items', pk: [String(item.order_id), String(item.line_no)] }]);
    await both(15, 'UPDATE order_items SET qty = qty + 1 WHERE order_id = ? AND line_no = ?', [
      item.order_id,
      item.line_no,
    ]);
    await record(16, [{ table: 'coupons', pk: ['ab-00016'] }]);
    await both(16, "UPDATE coupons SET discount = 9.99 WHERE code = 'ab-00016'");
    await record(18, [{ table: 'coupons', pk: ['AB-00018'] }]);
    await both(18, "UPDATE coupons SET discount = 8.88 WHERE code = 'AB-00018'");
    for (const i of [1, 2, 3]) {
      await record(40 + i, [{ table: 'odd_keys', pk: odd(i) }]);
      await both(40 + i, "UPDATE odd_keys SET v = CONCAT(v, '!') WHERE user_id = ?", [40 + i]);
    }

    // Then, behind reshard's back, on the targets:
    await onTarget(11, 'DELETE FROM users WHERE id = 11'); //                          missing
    const [r13] = await (await e.conn(e.targetOf(13n))).query<RowDataPacket[]>(
      'SELECT id, email, name, balance, created_at, updated_at FROM users WHERE id = 13',
    );
    const w = r13[0]!;
    await (await wrongTarget(13)).query(
      'INSERT INTO users (id, email, name, balance, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
      [w.id, w.email, w.name, w.balance, w.created_at, w.updated_at],
    ); //                                                                              wrong target
    await onTarget(14, "UPDATE users SET name = 'corrupt' WHERE id = 14"); //          different
    await onTarget(15, 'UPDATE order_items SET qty = qty + 100 WHERE order_id = ? AND line_no = ?', [
      item.order_id,
      item.line_no,
    ]);
    await onTarget(16, "UPDATE coupons SET discount = 0.01 WHERE code = 'ab-00016'");
    // A key rewritten to one equal under the collation, not byte for byte: the lookup of
    // 'AB-00018' still finds it, and it is reported as a full run would (by bytes).
    await onTarget(18, "UPDATE coupons SET code = 'ab-00018' WHERE code = 'AB-00018'");
    await onTarget(42, 'UPDATE odd_keys SET v = ? WHERE user_id = 42', ['bad']);
    await onTarget(43, 'DELETE FROM odd_keys WHERE user_id = 43');
    // … and a row nobody recorded: incremental runs trust that targets change only through the
    // tailer, so this one is for the next full run.
    await onTarget(200, "UPDATE users SET name = 'unrecorded' WHERE id = 200");

    const inc = await runVerify({ ctx, preflight: false, incremental: true });
    const oddPk = (i: number) =>
      JSON.stringify({
        k_dec: `12345678901234.50000${i}`,
        k_dt: `2024-02-29 23:59:59.99999${i}`,
        k_bin: { hex: `00ff275c0${i}` },
        k_big: String(18446744073709551615n - BigInt(i)),
      });
    const expected = [
      'missing users {"id":"11"}',
      'extra users {"id":"12"}',
      'misplaced users {"id":"13"}',
      'different users {"id":"14"}',
      `different order_items ${JSON.stringify({ order_id: String(item.order_id), line_no: String(item.line_no) })}`,
      'different coupons {"code":"ab-00016"}',
      'missing coupons {"code":"AB-00018"}',
      'extra coupons {"code":"ab-00018"}',
      `different odd_keys ${oddPk(2)}`,
      `missing odd_keys ${oddPk(3)}`,
    ].sort();
    expect(inc.ok).toBe(false);
    expect(inc.mode).toBe('incremental');
    expect(inc.baseRunId).toBe(clean.runId);
    expect(pks(inc)).toEqual(expected);
    const misplaced = inc.differences.find((d) => d.kind === 'misplaced')!;
    expect(misplaced.owner).toBe(e.targetOf(13n));
    expect(misplaced.shard).not.toBe(e.targetOf(13n));
    const diff14 = inc.differences.find((d) => d.kind === 'different' && d.table === 'users')!;
    expect(diff14.columns).toEqual([{ name: 'name', source: 'changed 14', target: 'corrupt' }]);
    // By key: exactly the recorded keys, looked up; no table scanned, nothing else read.
    expect(table(inc, 'users')).toMatchObject({ mode: 'incremental', keys: 5 });
    expect(table(inc, 'order_items')).toMatchObject({ mode: 'incremental', keys: 1 });
    expect(table(inc, 'coupons')).toMatchObject({ mode: 'incremental', keys: 2 });
    expect(table(inc, 'odd_keys')).toMatchObject({ mode: 'incremental', keys: 3 });
    for (const t of ['orders', 'group', 'type_corpus']) expect(table(inc, t).mode).toBe('skipped');
    expect(inc.totals.sourceRows).toBe(4 + 1 + 2 + 3); // users 11, 13, 14, 20 (12 is gone), …
    expect(inc.totals.targetRows).toBe(4 + 1 + 2 + 2);
    expect(inc.notes.join(' ')).not.toMatch(/Bloom/);

    // The full run sees the unrecorded write too.
    const full = await runVerify({ ctx, preflight: false, fixSqlPath: `${e.dir}/fix.sql` });
    expect(pks(full)).toEqual([...expected, 'different users {"id":"200"}'].sort());

    // Nothing changed since: the next incremental run re-checks the keys the failed runs
    // reported (by key still), so repairs are seen — here, all but one.
    const { readFileSync } = await import('node:fs');
    const sections = splitFixSql(readFileSync(`${e.dir}/fix.sql`, 'utf8'));
    await applyFixSql(sections);
    await onTarget(14, "UPDATE users SET name = 'corrupt again' WHERE id = 14");
    const again = await runVerify({ ctx, preflight: false, incremental: true });
    expect(pks(again)).toEqual(['different users {"id":"14"}']);
    expect(table(again, 'users').keys).toBe(6);
    await onTarget(14, "UPDATE users SET name = 'changed 14' WHERE id = 14");
    const fixed = await runVerify({ ctx, preflight: false, incremental: true });
    expect(fixed.ok).toBe(true);
    expect(table(fixed, 'users').keys).toBe(6);
    // After a clean run, the keys before its epoch are pruned and nothing is left to check.
    const idle = await runVerify({ ctx, preflight: false, incremental: true });
    expect(idle.ok).toBe(true);
    expect(idle.tables.every((t) => t.mode === 'skipped')).toBe(true);
    const [left] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n FROM reshard_changed_keys WHERE job_id = ?',
      [ctx.job.id],
    );
    expect(Number(left[0]!.n)).toBe(0);
  });

  it('falls back to the Bloom-flagged buckets when an epoch overflowed its key list, and still finds the fault', async () => {
    e = await buildEstate('verify_keys_over', { users: 200, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);

    // Three keys on one source with room for two: that epoch's list is abandoned.
    const ids = [...Array(200).keys()].map((i) => i + 1).filter((id) => e!.sourceOf(BigInt(id)) === 's0');
    const three = ids.slice(0, 3);
    await recordChanges(
      ctx.control,
      ctx.job.id,
      's0',
      three.map((id) => ({ table: 'users', pk: [String(id)] })),
      { maxKeys: 2 },
    );
    // The other source stays exact: completeness is per run, over every source.
    const other = [...Array(200).keys()].map((i) => i + 1).find((id) => e!.sourceOf(BigInt(id)) === 's1')!;
    await recordChanges(ctx.control, ctx.job.id, 's1', [{ table: 'users', pk: [String(other)] }]);
    const [epochs] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT shard, key_count, overflowed FROM reshard_change_epochs WHERE job_id = ? ORDER BY shard, epoch DESC',
      [ctx.job.id],
    );
    const state = (shard: string) => {
      const r = epochs.find((x) => x.shard === shard)!;
      return { overflowed: Number(r.overflowed), keys: Number(r.key_count) };
    };
    expect(state('s0')).toEqual({ overflowed: 1, keys: 0 });
    expect(state('s1')).toEqual({ overflowed: 0, keys: 1 });

    await onTarget(three[2]!, 'UPDATE users SET balance = balance + 1 WHERE id = ?', [three[2]]);
    await onTarget(other, 'DELETE FROM users WHERE id = ?', [other]);
    const inc = await runVerify({ ctx, preflight: false, incremental: true });
    expect(inc.mode).toBe('incremental');
    expect(inc.notes.join(' ')).toMatch(/overflowed its key list.*Bloom/);
    expect(table(inc, 'users').mode).toBe('incremental');
    expect(table(inc, 'users').keys).toBeUndefined();
    expect(pks(inc)).toEqual(
      [`different users {"id":"${three[2]}"}`, `missing users {"id":"${other}"}`].sort(),
    );
    // Buckets of the flagged change ids only, not the table.
    expect(inc.totals.sourceRows).toBeLessThan(20);
  });

  it('keeps every key recorded by concurrent writers, also across an epoch opened meanwhile', async () => {
    e = await buildEstate('verify_keys_race', { users: 120, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);

    // Two writers per source (two tailer processes, or a tailer and a restarted one), each with
    // its own control connection, record interleaved single-key batches, while a third
    // connection opens a new epoch (a verify run starting) in the middle. One writer per source
    // sends several statements per packet, as the tailer's recorder does; the other one at a time.
    for (let i = 0; i < 4; i++)
      extra.push(await openControl(e.controlDsn, { multipleStatements: i % 2 === 0 }));
    const ids = [...Array(80).keys()].map((i) => i + 21);
    const bySource = new Map<string, number[]>(SOURCES.map((s) => [s, []]));
    for (const id of ids) bySource.get(e.sourceOf(BigInt(id)))!.push(id);
    // Each writer records a few keys, then the rest while the epoch opens, its last one after.
    let open!: () => void;
    const opening = new Promise<void>((r) => {
      open = r;
    });
    let epochOpened: Promise<Record<string, number>> | undefined;
    const writers: Promise<unknown>[] = [];
    let w = 0;
    let waiting = 0;
    for (const [source, list] of bySource) {
      for (const half of [0, 1]) {
        const conn = extra[w++]!;
        const mine = list.filter((_, i) => i % 2 === half);
        writers.push(
          (async () => {
            for (const [i, id] of mine.entries()) {
              if (i === 3 && ++waiting === 4) {
                epochOpened = openEpoch(ctx.control.conn, ctx.job.id, [...SOURCES]);
                open();
              }
              if (i === 3) await opening;
              if (i === mine.length - 1) await epochOpened;
              await recordChanges(conn, ctx.job.id, source, [{ table: 'users', pk: [String(id)] }]);
            }
          })(),
        );
      }
    }
    await Promise.all(writers);
    const mid = (await epochOpened)!;
    const [rows] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT shard, generation, key_count FROM reshard_changed_keys WHERE job_id = ?',
      [ctx.job.id],
    );
    expect(rows.reduce((a, r) => a + Number(r.key_count), 0)).toBe(ids.length);
    // Keys landed on both sides of the epoch opened meanwhile.
    expect(rows.some((r) => Number(r.generation) < mid[String(r.shard)]!)).toBe(true);
    expect(rows.some((r) => Number(r.generation) > mid[String(r.shard)]!)).toBe(true);

    // Every change then applied wrongly on its target.
    for (const id of ids) await onTarget(id, "UPDATE users SET name = 'wrong' WHERE id = ?", [id]);
    const inc = await runVerify({ ctx, preflight: false, incremental: true });
    expect(table(inc, 'users').keys).toBe(ids.length);
    expect(pks(inc)).toEqual(ids.map((id) => `different users {"id":"${id}"}`).sort());
  });

  it('under live writes, re-checks a changed key after the tailer caught up, and again while it keeps changing', async () => {
    e = await buildEstate('verify_keys_live', { users: 60, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    const control = ctx.control.conn;
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);
    const masters = new Map<string, Connection>();
    for (const s of SOURCES) masters.set(s, await rootConn(s as SandboxName));
    const endOf = async (s: string) => {
      const [r] = await masters.get(s)!.query<RowDataPacket[]>('SHOW MASTER STATUS');
      return { file: String(r[0]!.File), pos: Number(r[0]!.Position) };
    };
    const setPositions = async (at: Map<string, { file: string; pos: number }>) => {
      for (const [s, p] of at)
        await control.query(
          "INSERT INTO reshard_binlog_positions (job_id, shard, direction, binlog_file, binlog_pos) VALUES (?, ?, 'forward', ?, ?) ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), binlog_pos = VALUES(binlog_pos)",
          [ctx.job.id, s, p.file, p.pos],
        );
    };
    const ends = async () =>
      new Map(await Promise.all(SOURCES.map(async (s) => [s, await endOf(s)] as const)));
    const record = (id: number) =>
      recordChanges(ctx.control, ctx.job.id, e!.sourceOf(BigInt(id)), [{ table: 'users', pk: [String(id)] }]);
    const setName = async (on: 'source' | 'target', id: number, name: string) =>
      (await e!.conn(on === 'source' ? e!.sourceOf(BigInt(id)) : e!.targetOf(BigInt(id)))).query(
        'UPDATE users SET name = ? WHERE id = ?',
        [name, id],
      );
    try {
      // A tailer is running and has applied everything so far.
      await setPositions(await ends());
      // It has read (and recorded) two writes it has not applied yet …
      for (const id of [8, 10]) {
        await setName('source', id, 'v1');
        await record(id);
      }
      // … and applied one wrongly (a fault).
      await record(9);
      await setName('source', 9, 'v1');
      await setName('target', 9, 'corrupt');

      // The fake tailer, each time the verifier waits for it: first it applies what it had read
      // (8 and 10), then row 10 is written again on its source (recorded in the running verify's
      // epoch) and only applied at the next wait.
      let waits = 0;
      const tailer = async (round: number) => {
        await new Promise((r) => setTimeout(r, 200));
        const at = await ends();
        if (round === 1) {
          await setName('target', 8, 'v1');
          await setName('target', 10, 'v1');
          await record(10);
          await setName('source', 10, 'v2');
        } else {
          await setName('target', 10, 'v2');
        }
        await setPositions(round === 1 ? at : await ends());
      };
      const rounds: Promise<void>[] = [];
      const report = await runVerify({
        ctx,
        preflight: false,
        incremental: true,
        recheck: { tailerTimeoutMs: 10_000 },
        onProgress: (p) => {
          if (p.phase === 'recheck') rounds.push(tailer(++waits));
        },
      });
      await Promise.all(rounds);
      expect(table(report, 'users').keys).toBe(3);
      expect(report.recheck).toMatchObject({
        live: true,
        tailerCaughtUp: true,
        rounds: 2,
        changedDuringCheck: 0,
      });
      expect(pks(report)).toEqual(['different users {"id":"9"}']);
      expect(report.differences[0]!.changedDuringCheck).toBeUndefined();
    } finally {
      for (const c of masters.values()) await c.end();
    }
  });

  it('records nothing before the first epoch, and a key once per epoch', async () => {
    e = await buildEstate('verify_keys_once', { users: 30, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    const count = async () => {
      const [r] = await ctx.control.conn.query<RowDataPacket[]>(
        'SELECT COUNT(*) AS n, COALESCE(SUM(key_count), 0) AS k FROM reshard_change_epochs WHERE job_id = ?',
        [ctx.job.id],
      );
      const [k] = await ctx.control.conn.query<RowDataPacket[]>(
        'SELECT COUNT(*) AS n, COALESCE(SUM(key_count), 0) AS k FROM reshard_changed_keys WHERE job_id = ?',
        [ctx.job.id],
      );
      return {
        epochs: Number(r[0]!.n),
        counted: Number(r[0]!.k),
        rows: Number(k[0]!.n),
        keys: Number(k[0]!.k),
      };
    };
    const s = e.sourceOf(5n) as SandboxName;
    await recordChanges(ctx.control, ctx.job.id, s, [{ table: 'users', pk: ['5'] }]);
    expect(await count()).toEqual({ epochs: 0, counted: 0, rows: 0, keys: 0 });
    await runVerify({ ctx, preflight: false });
    // Number 5, text '5' and bigint 5n are one key; repeats in the epoch are not recorded again.
    for (const pk of [[5], ['5'], [5n], ['5']] as Value[][])
      await recordChanges(ctx.control, ctx.job.id, s, [{ table: 'users', pk }]);
    await recordChanges(ctx.control, ctx.job.id, s, [
      { table: 'users', pk: ['6'] },
      { table: 'users', pk: ['6'] },
      { table: 'orders', pk: ['5'] },
    ]);
    // One row per table per write: users 5; users 6 and orders 5.
    expect(await count()).toEqual({ epochs: 2, counted: 3, rows: 3, keys: 3 });
    // A new epoch records a key again (a run based on it needs it).
    await runVerify({ ctx, preflight: false });
    await recordChanges(ctx.control, ctx.job.id, s, [{ table: 'users', pk: ['5'] }]);
    expect(await count()).toEqual({ epochs: 2, counted: 1, rows: 1, keys: 1 });
  });
});
