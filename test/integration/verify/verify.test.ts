import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RowDataPacket } from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { RowHasher, runVerify, splitFixSql, type VerifyReport } from '../../../src/verify/index.js';
import type { RawRow } from '../../../src/verify/rowhash.js';
import { applyFixSql, buildEstate, type Estate, TARGETS } from './helpers.js';

/** The differences of a report in a comparable, order-free form. */
function found(r: VerifyReport): string[] {
  return r.differences
    .map((d) =>
      [
        d.kind,
        d.table,
        JSON.stringify(d.pk),
        `on=${d.shard}`,
        d.owner ? `owner=${d.owner}` : '',
        d.columns ? `cols=${d.columns.map((c) => c.name).join(',')}` : '',
      ]
        .filter(Boolean)
        .join(' '),
    )
    .sort();
}

const other = (t: string) => TARGETS.find((x) => x !== t)!;

describe('verify', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.cleanup();
    e = undefined;
  });

  it('verifies a correct 2 → 3 estate, type corpus included, clean', async () => {
    e = await buildEstate('verify_clean');
    const ctx = await e.open();
    const report = await runVerify({ ctx, preflight: true });
    expect(report.ok).toBe(true);
    expect(report.totals.bucketsMismatched).toBe(0);
    expect(report.differences).toEqual([]);
    // Every moved row was read once on its source and once on its target.
    expect(report.totals.sourceRows).toBe(report.totals.targetRows);
    expect(report.tables.find((t) => t.table === 'type_corpus')).toMatchObject({
      sourceRows: 6,
      targetRows: 6,
    });
    expect(report.tables.every((t) => t.sqlBucketFilter)).toBe(true);
    const [runs] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT state, mismatches FROM reshard_verify_runs WHERE job_id = ?',
      [ctx.job.id],
    );
    expect(runs.map((r) => [r.state, Number(r.mismatches)])).toEqual([['match', 0]]);
  });

  it('finds every injected fault with its exact primary key, and --fix-sql repairs them', async () => {
    e = await buildEstate('verify_faults');
    const ctx = await e.open();
    const T = (u: number) => e!.targetOf(BigInt(u));
    const c = (u: number) => e!.conn(T(u));

    // 1. one byte changed in one column
    await (await c(17)).query("UPDATE users SET email = 'u17@exbmple.test' WHERE id = 17");
    // 2. a row missing on its target (user 20's first order, id -826)
    await (await c(20)).query('DELETE FROM orders WHERE id = -826');
    // 3. an extra row on a target
    await (await c(33)).query(
      "INSERT INTO orders (id, user_id, status, total, created_at, note) VALUES (999999, 33, 'paid', 1.0000, '2024-01-01 00:00:00.000000', NULL)",
    );
    // 4. a row on the wrong target (order_items (-781, 1) of user 25)
    const [moved] = await (await c(25)).query<RowDataPacket[]>(
      'SELECT * FROM order_items WHERE order_id = -781 AND line_no = 1',
    );
    expect(moved).toHaveLength(1);
    await (await c(25)).query('DELETE FROM order_items WHERE order_id = -781 AND line_no = 1');
    const wrong = other(T(25));
    await (await e.conn(wrong)).query('INSERT INTO order_items SET ?', [moved[0]]);
    // 5. two identical corruptions in one bucket: `group` is small (bucket bits 0), so two rows of
    //    one segment share a bucket; the same byte flipped in equal-length rows leaves the XOR of
    //    their CRCs unchanged.
    const seg = (u: number) => `${e!.sourceOf(BigInt(u))}>${T(u)}`;
    const pair = [61, 62, 64, 65, 66, 67, 68, 69, 72, 73, 74, 75]
      .filter((u) => seg(u) === seg(61))
      .slice(0, 2);
    expect(pair).toHaveLength(2);
    const hasher = new RowHasher(['int', 'int', 'text', 'text', 'int']);
    const crcs = async () => {
      const [rows] = await (await c(pair[0]!)).query({
        sql: `SELECT id, user_id, \`we\`\`ird\`, \`key\`, \`order\` FROM \`group\` WHERE id IN (${pair.join(',')}) ORDER BY id`,
        rowsAsArray: true,
        typeCast: false,
      } as never);
      const out = new Int32Array(2);
      return (rows as RawRow[]).map((r) => {
        hasher.crc(r, out);
        return [out[0]!, out[1]!] as const;
      });
    };
    const before = await crcs();
    await (await c(pair[0]!)).query(
      `UPDATE \`group\` SET \`key\` = CONCAT('j', SUBSTR(\`key\`, 2)) WHERE id IN (${pair.join(',')})`,
    );
    const after = await crcs();
    const xor = (x: readonly (readonly [number, number])[]) => [x[0]![0] ^ x[1]![0], x[0]![1] ^ x[1]![1]];
    expect(xor(after)).toEqual(xor(before)); // the XOR-of-CRC blind spot is real here
    expect(after[0]).not.toEqual(before[0]);
    // 6. DATETIME(6) off by one microsecond
    await (await c(40)).query(
      'UPDATE users SET created_at = created_at + INTERVAL 1 MICROSECOND WHERE id = 40',
    );
    // 7. a VARCHAR differing only by a trailing space (in a column whose name needs quoting)
    await (await c(50)).query("UPDATE `group` SET `we``ird` = CONCAT(`we``ird`, ' ') WHERE id = 50");

    const fixPath = join(e.dir, 'fix.sql');
    // Scanned on two worker threads (the path large estates take).
    const report = await runVerify({ ctx, preflight: false, fixSqlPath: fixPath, workers: 2 });
    expect(report.ok).toBe(false);
    expect(found(report)).toEqual(
      [
        `different users {"id":"17"} on=${T(17)} cols=email`,
        `missing orders {"id":"-826"} on=${T(20)}`,
        `extra orders {"id":"999999"} on=${T(33)}`,
        `missing order_items {"order_id":"-781","line_no":"1"} on=${T(25)}`,
        `misplaced order_items {"order_id":"-781","line_no":"1"} on=${wrong} owner=${T(25)}`,
        `different group {"id":"${pair[0]}"} on=${T(pair[0]!)} cols=key`,
        `different group {"id":"${pair[1]}"} on=${T(pair[1]!)} cols=key`,
        `different users {"id":"40"} on=${T(40)} cols=created_at`,
        `different group {"id":"50"} on=${T(50)} cols=we\`ird`,
      ].sort(),
    );
    const us40 = report.differences.find((d) => d.table === 'users' && d.pk.id === '40')!;
    const [v1, v2] = [us40.columns![0]!.source as string, us40.columns![0]!.target as string];
    expect(v1.slice(0, -6)).toBe(v2.slice(0, -6));
    expect(Number(v2.slice(-6)) - Number(v1.slice(-6))).toBe(1);
    expect(report.totals).toMatchObject({ missing: 2, extra: 1, different: 5, misplaced: 1 });
    // Selecting the buckets' rows in the client instead of the server finds the same.
    const clientSide = await runVerify({ ctx, preflight: false, sqlBucketFilter: false });
    expect(found(clientSide)).toEqual(found(report));
    expect(clientSide.tables.every((t) => !t.sqlBucketFilter)).toBe(true);

    // The run and its bad buckets are in the control schema.
    const [runs] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT state, mismatches FROM reshard_verify_runs WHERE job_id = ? ORDER BY run_id',
      [ctx.job.id],
    );
    expect(runs.map((r) => r.state)).toEqual(['mismatch', 'mismatch']);
    const [buckets] = await ctx.control.conn.query<RowDataPacket[]>(
      'SELECT DISTINCT status FROM reshard_verify_buckets WHERE job_id = ?',
      [ctx.job.id],
    );
    expect(buckets.map((r) => r.status).sort()).toEqual(['mismatch', 'misplaced']);

    // Repair with the generated SQL; the next run is clean.
    const text = readFileSync(fixPath, 'utf8');
    expect(text).toMatch(/`we``ird`/);
    const sections = splitFixSql(text);
    expect([...sections.keys()].sort()).toEqual(
      [...new Set([T(17), T(20), T(33), T(25), wrong, T(50)])].sort(),
    );
    await applyFixSql(sections);
    const again = await runVerify({ ctx, preflight: false });
    expect(found(again)).toEqual([]);
    expect(again.ok).toBe(true);
  });
});
