import type { Connection, RowDataPacket } from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { recordChanges, runVerify, type VerifyReport } from '../../../src/verify/index.js';
import { rootConn, type SandboxName } from '../../support/db.js';
import { buildEstate, type Estate, SOURCES } from './helpers.js';

function table(r: VerifyReport, name: string) {
  return r.tables.find((t) => t.table === name)!;
}

function pks(r: VerifyReport): string[] {
  return r.differences.map((d) => `${d.kind} ${d.table} ${JSON.stringify(d.pk)}`).sort();
}

describe('verify --incremental', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.cleanup();
    e = undefined;
  });

  it('re-checks only the buckets recorded as changed since the last clean run, and finds faults there', async () => {
    e = await buildEstate('verify_inc', { users: 400, ordersPerUser: 2 });
    const ctx = await e.open();
    const S = (u: number) => e!.conn(e!.sourceOf(BigInt(u)));
    const T = (u: number) => e!.conn(e!.targetOf(BigInt(u)));
    const both = async (u: number, sql: string) => {
      await (await S(u)).query(sql);
      await (await T(u)).query(sql);
    };
    const record = async (u: number) =>
      recordChanges(ctx.control, ctx.job.id, e!.sourceOf(BigInt(u)), [{ table: 'users', pk: [String(u)] }]);

    // No clean run yet: incremental checks everything.
    const first = await runVerify({ ctx, preflight: false, incremental: true });
    expect(first.ok).toBe(true);
    expect(first.mode).toBe('full');
    expect(first.notes.join(' ')).toMatch(/no clean verify/);

    // A few rows change on both sides (as the tailer would apply them) and are recorded.
    for (const u of [5, 6, 7]) {
      await both(u, `UPDATE users SET name = 'renamed ${u}' WHERE id = ${u}`);
      await record(u);
    }
    const inc = await runVerify({ ctx, preflight: false, incremental: true });
    expect(inc.ok).toBe(true);
    expect(inc.mode).toBe('incremental');
    expect(inc.baseRunId).toBe(first.runId);
    expect(table(inc, 'users').mode).toBe('incremental');
    for (const t of ['orders', 'order_items', 'coupons', 'group', 'type_corpus'])
      expect(table(inc, t).mode).toBe('skipped');
    // Only the changed rows' buckets were read (1 row each at 2^20 change ids; FP rate 1%).
    expect(table(inc, 'users').sourceRows).toBeGreaterThanOrEqual(3);
    expect(table(inc, 'users').sourceRows).toBeLessThan(10);
    expect(inc.totals.sourceRows + inc.totals.targetRows).toBeLessThan(20);

    // A recorded change applied wrongly is found; an unrecorded out-of-band write is not (by design).
    await (await T(6)).query("UPDATE users SET name = 'wrong' WHERE id = 6");
    await record(6);
    await (await T(300)).query("UPDATE users SET email = 'oob@example.test' WHERE id = 300");
    const bad = await runVerify({ ctx, preflight: false, incremental: true });
    expect(bad.ok).toBe(false);
    expect(pks(bad)).toEqual(['different users {"id":"6"}']);
    expect(bad.baseRunId).toBe(inc.runId);

    const full = await runVerify({ ctx, preflight: false });
    expect(pks(full)).toEqual(['different users {"id":"300"}', 'different users {"id":"6"}']);

    // Repaired out of band (nothing recorded): the next incremental still re-checks the buckets
    // the failed runs stored, so it sees the repair.
    await (await T(6)).query("UPDATE users SET name = 'renamed 6' WHERE id = 6");
    const stillBad = await runVerify({ ctx, preflight: false, incremental: true });
    expect(pks(stillBad)).toEqual(['different users {"id":"300"}']);
    await (await T(300)).query("UPDATE users SET email = 'u300@example.test' WHERE id = 300");
    const fixed = await runVerify({ ctx, preflight: false, incremental: true });
    expect(fixed.ok).toBe(true);
    expect(fixed.baseRunId).toBe(inc.runId);

    // After a clean run, nothing changed: nothing to read.
    const idle = await runVerify({ ctx, preflight: false, incremental: true });
    expect(idle.ok).toBe(true);
    expect(idle.baseRunId).toBe(fixed.runId);
    expect(idle.tables.every((t) => t.mode === 'skipped')).toBe(true);
    expect(idle.totals.sourceRows).toBe(0);

    // Old change filters are pruned after clean runs: only the latest epoch's generations remain.
    const [gens] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT shard, COUNT(*) AS n FROM reshard_bloom_filters WHERE job_id = ? GROUP BY shard',
      [ctx.job.id],
    );
    expect(gens.map((g) => Number(g.n))).toEqual(SOURCES.map(() => 1));
  });

  it('under live writes, re-checks a mismatch after the tailer caught up instead of reporting it', async () => {
    e = await buildEstate('verify_live', { users: 60, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    const control = ctx.control.conn;
    const masters = new Map<string, Connection>();
    for (const s of SOURCES) masters.set(s, await rootConn(s as SandboxName));
    const endOf = async (s: string) => {
      const [r] = await masters.get(s)!.query<RowDataPacket[]>('SHOW MASTER STATUS');
      return { file: String(r[0]!.File), pos: Number(r[0]!.Position) };
    };
    try {
      // A tailer is running: it has applied up to some position on every source.
      for (const s of SOURCES) {
        const p = await endOf(s);
        await control.query(
          "INSERT INTO reshard_binlog_positions (job_id, shard, direction, binlog_file, binlog_pos) VALUES (?, ?, 'forward', ?, ?)",
          [ctx.job.id, s, p.file, p.pos],
        );
      }
      // A write on a source the tailer has not applied yet …
      await (await e.conn(e.sourceOf(8n))).query("UPDATE users SET name = 'in flight' WHERE id = 8");
      // … and a real fault on a target.
      await (await e.conn(e.targetOf(9n))).query("UPDATE users SET name = 'corrupt' WHERE id = 9");

      // The fake tailer applies the in-flight write once the verifier waits for it (after the scan
      // saw the mismatch), then reports its position as the sources' end of binlog.
      let applied = false;
      const tailer = async () => {
        await new Promise((r) => setTimeout(r, 200));
        await (await e!.conn(e!.targetOf(8n))).query("UPDATE users SET name = 'in flight' WHERE id = 8");
        for (const s of SOURCES) {
          const p = await endOf(s);
          await control.query(
            "UPDATE reshard_binlog_positions SET binlog_file = ?, binlog_pos = ? WHERE job_id = ? AND shard = ? AND direction = 'forward'",
            [p.file, p.pos, ctx.job.id, s],
          );
        }
        applied = true;
      };
      let started: Promise<void> | undefined;
      const report = await runVerify({
        ctx,
        preflight: false,
        recheck: { tailerTimeoutMs: 10_000 },
        onProgress: (p) => {
          if (p.phase === 'recheck' && !started) started = tailer();
        },
      });
      await started;
      expect(applied).toBe(true);
      expect(report.recheck.live).toBe(true);
      expect(report.recheck.tailerCaughtUp).toBe(true);
      expect(report.recheck.resolvedBuckets).toBeGreaterThanOrEqual(1);
      expect(pks(report)).toEqual(['different users {"id":"9"}']);
    } finally {
      for (const c of masters.values()) await c.end();
    }
  });
});
