/**
 * Review C: cases where verify (full, incremental, or as cutover runs it) could call an estate
 * clean whose targets differ, or where --fix-sql does not repair the target exactly.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RowDataPacket } from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyFacts } from '../../../src/cutover/cutover.js';
import { type JobContext, openJob } from '../../../src/job/context.js';
import { recordChanges, runVerify, splitFixSql, type VerifyReport } from '../../../src/verify/index.js';
import { rootConn, type SandboxName } from '../../support/db.js';
import { applyFixSql, buildEstate, type Estate, SOURCES } from './helpers.js';

function pks(r: VerifyReport): string[] {
  return r.differences.map((d) => `${d.kind} ${d.table} ${JSON.stringify(d.pk)}`).sort();
}

describe('reshard verify: review C', () => {
  let e: Estate | undefined;
  const contexts: JobContext[] = [];
  afterEach(async () => {
    for (const c of contexts.splice(0)) await c.close().catch(() => undefined);
    await e?.cleanup();
    e = undefined;
  });

  it('concurrent runs: a difference a full run reports is not forgotten because a run started after it finished clean first', async () => {
    e = await buildEstate('rvc_conc', { users: 60, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);
    // A second process (say the cron job running `verify --incremental` every few minutes).
    const ctx2 = await openJob({ planPath: e.planPath, control: e.controlDsn, create: false });
    contexts.push(ctx2);

    // A tailer has run and is behind the sources' binlogs, so a run that finds a difference
    // first waits for it to catch up (live.ts).
    const control = ctx.control.conn;
    const masters = new Map<string, import('mysql2/promise').Connection>();
    for (const s of SOURCES) masters.set(s, await rootConn(s as SandboxName));
    const endOf = async (s: string) => {
      const [r] = await masters.get(s)!.query<RowDataPacket[]>('SHOW MASTER STATUS');
      return { file: String(r[0]!.File), pos: Number(r[0]!.Position) };
    };
    try {
      for (const s of SOURCES) {
        const p = await endOf(s);
        await control.query(
          "INSERT INTO reshard_binlog_positions (job_id, shard, direction, binlog_file, binlog_pos) VALUES (?, ?, 'forward', ?, 4)",
          [ctx.job.id, s, p.file],
        );
      }
      // Behind reshard's back (not a recorded change): the full run is what is to find it.
      await e.onTarget(9, "UPDATE users SET name = 'corrupt' WHERE id = 9");

      // The full run starts first; while it waits for the tailer, an incremental run starts,
      // finds nothing recorded and finishes clean; then the tailer catches up and the full run
      // reports the difference.
      let other: Promise<VerifyReport> | undefined;
      const full = await runVerify({
        ctx,
        preflight: false,
        recheck: { tailerTimeoutMs: 60_000 },
        onProgress: (p) => {
          if (p.phase !== 'recheck' || other) return;
          other = (async () => {
            const r = await runVerify({ ctx: ctx2, preflight: false, incremental: true });
            for (const s of SOURCES) {
              const end = await endOf(s);
              await control.query(
                "UPDATE reshard_binlog_positions SET binlog_file = ?, binlog_pos = ? WHERE job_id = ? AND shard = ? AND direction = 'forward'",
                [end.file, end.pos, ctx.job.id, s],
              );
            }
            return r;
          })();
        },
      });
      const inc = await other!;
      expect(inc.ok).toBe(true); // by contract: it re-checks recorded changes only
      expect(full.ok).toBe(false);
      expect(pks(full)).toEqual(['different users {"id":"9"}']);
      expect(full.runId).toBeLessThan(inc.runId);

      // The last verify to finish found differences: cutover's precondition must not pass …
      expect.soft((await verifyFacts(ctx)).last?.state).toBe('mismatch');
      // … and the next incremental run (what cutover runs under the freeze) must re-check the
      // reported key, as it does for a mismatch reported by a run started later.
      const next = await runVerify({ ctx, preflight: false, incremental: true });
      expect(next.ok).toBe(false);
      expect(pks(next)).toEqual(['different users {"id":"9"}']);
    } finally {
      for (const c of masters.values()) await c.end();
    }
  });

  it('--fix-sql repairs a row of a table with an ON UPDATE CURRENT_TIMESTAMP column exactly', async () => {
    e = await buildEstate('rvc_onupd', {
      users: 20,
      ordersPerUser: 1,
      typeCorpus: false,
      extraTables: [
        {
          name: 'accounts',
          shardKey: 'user_id',
          ddl: `CREATE TABLE accounts (
            id         BIGINT UNSIGNED NOT NULL,
            user_id    BIGINT UNSIGNED NOT NULL,
            balance    DECIMAL(19,4)   NOT NULL,
            updated_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
            PRIMARY KEY (id)
          ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;`,
        },
      ],
    });
    for (let u = 1; u <= 20; u++)
      await e.onBoth(
        u,
        "INSERT INTO accounts (id, user_id, balance, updated_at) VALUES (?, ?, ?, '2020-01-01 00:00:00.000000')",
        [u, u, `${u}.5000`],
      );
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);

    // One column wrong on the target (the timestamp kept as it was).
    await e.onTarget(5, 'UPDATE accounts SET balance = 0, updated_at = updated_at WHERE id = 5');
    const fixPath = join(e.dir, 'fix-onupdate.sql');
    const bad = await runVerify({ ctx, preflight: false, fixSqlPath: fixPath });
    expect(pks(bad)).toEqual(['different accounts {"id":"5"}']);
    expect(bad.differences[0]!.columns?.map((c) => c.name)).toEqual(['balance']);

    await applyFixSql(splitFixSql(readFileSync(fixPath, 'utf8')));
    const after = await runVerify({ ctx, preflight: false });
    // The UPDATE set only `balance`, so the server stamped updated_at with the time of the repair.
    expect(pks(after)).toEqual([]);
    expect(after.ok).toBe(true);
  });

  it('two rows of one bucket with swapped unique values: the sum catches it, and --fix-sql repairs it', async () => {
    e = await buildEstate('rvc_swap', { users: 60, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);
    // Two users of one segment (same source, same target); with 60 users a table has one bucket per segment.
    let pair: [number, number] | undefined;
    for (let a = 1; a <= 60 && !pair; a++)
      for (let b = a + 1; b <= 60 && !pair; b++)
        if (
          e.sourceOf(BigInt(a)) === e.sourceOf(BigInt(b)) &&
          e.targetOf(BigInt(a)) === e.targetOf(BigInt(b))
        )
          pair = [a, b];
    const [a, b] = pair!;
    const t = await e.conn(e.targetOf(BigInt(a)));
    // Swap their (UNIQUE) emails on the target: the same multiset of values in the bucket.
    await t.query(`UPDATE users SET email = 'swap-tmp' WHERE id = ${a}`);
    await t.query(`UPDATE users SET email = 'u${a}@example.test' WHERE id = ${b}`);
    await t.query(`UPDATE users SET email = 'u${b}@example.test' WHERE id = ${a}`);

    const fixPath = join(e.dir, 'fix-swap.sql');
    const bad = await runVerify({ ctx, preflight: false, fixSqlPath: fixPath });
    expect(bad.ok).toBe(false);
    expect(bad.totals.bucketsMismatched).toBe(1);
    expect(pks(bad)).toEqual([`different users {"id":"${a}"}`, `different users {"id":"${b}"}`]);

    // The repair as the file has it: UPDATE a SET email = 'u{a}' collides with b's current email.
    await expect(applyFixSql(splitFixSql(readFileSync(fixPath, 'utf8')))).resolves.toBeUndefined();
    const after = await runVerify({ ctx, preflight: false });
    expect(pks(after)).toEqual([]);
  });
  it('Bloom fallback: a recorded change to a row whose key prints otherwise (INT ZEROFILL) is re-checked', async () => {
    e = await buildEstate('rvc_zf', {
      users: 40,
      ordersPerUser: 1,
      typeCorpus: false,
      extraTables: [
        {
          name: 'legacy',
          shardKey: 'user_id',
          ddl: `CREATE TABLE legacy (
            id      INT(6) UNSIGNED ZEROFILL NOT NULL,
            user_id BIGINT UNSIGNED NOT NULL,
            v       VARCHAR(32) NOT NULL,
            PRIMARY KEY (id)
          ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;`,
        },
      ],
    });
    for (let u = 1; u <= 40; u++)
      await e.onBoth(u, 'INSERT INTO legacy (id, user_id, v) VALUES (?, ?, ?)', [u, u, `v${u}`]);
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);

    // The application changes row 5; the tailer records it — the binlog's value of an INT column
    // is the number 5 (decode.ts: integers as Numbers), SELECT prints it 000005 — and the target
    // ends up without the change. The epoch holds more keys than it keeps (maxKeys: 0 stands for
    // 250 000), so the run falls back to the Bloom-flagged change ids.
    const source = e.sourceOf(5n);
    await recordChanges(
      ctx.control,
      ctx.job.id,
      source,
      [{ table: 'legacy', pk: [5], target: e.targetOf(5n) }],
      {
        maxKeys: 0,
      },
    );
    await e.onSource(5, "UPDATE legacy SET v = 'changed' WHERE id = 5");

    const inc = await runVerify({ ctx, preflight: false, incremental: true });
    expect(inc.mode).toBe('incremental');
    expect(inc.notes.join(' ')).toMatch(/overflowed/);
    expect(pks(inc)).toEqual(['different legacy {"id":"000005"}']);
    expect(inc.ok).toBe(false);
  });
  it('primary keys equal under the collation but not in bytes (case, trailing space): reported by bytes, and --fix-sql makes the target byte-exact', async () => {
    e = await buildEstate('rvc_coll', { users: 40, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);
    // coupons: VARCHAR key, utf8mb4_unicode_ci (PAD SPACE). User 8 has 'ab-00008', user 10 'AB-00010'.
    await e.onTarget(8, "UPDATE coupons SET code = 'AB-00008' WHERE code = 'ab-00008'");
    await e.onTarget(10, "UPDATE coupons SET code = 'AB-00010 ' WHERE code = 'AB-00010'");
    const fixPath = join(e.dir, 'fix-coll.sql');
    const bad = await runVerify({ ctx, preflight: false, fixSqlPath: fixPath });
    expect(pks(bad)).toEqual(
      [
        'extra coupons {"code":"AB-00008"}',
        'missing coupons {"code":"ab-00008"}',
        'extra coupons {"code":"AB-00010 "}',
        'missing coupons {"code":"AB-00010"}',
      ].sort(),
    );
    await applyFixSql(splitFixSql(readFileSync(fixPath, 'utf8')));
    const after = await runVerify({ ctx, preflight: false });
    expect(pks(after)).toEqual([]);
    const [rows] = await (await e.conn(e.targetOf(10n))).query<RowDataPacket[]>(
      "SELECT HEX(code) AS h FROM coupons WHERE code = 'AB-00010'",
    );
    expect(rows.map((r) => r.h)).toEqual([Buffer.from('AB-00010').toString('hex').toUpperCase()]);
  });
});
