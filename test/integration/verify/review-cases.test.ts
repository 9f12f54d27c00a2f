/**
 * Cases a review of `reshard verify` found (each failed before its fix): FLOAT compared through
 * the server's 6-digit text, text in cp932 compared after conversion, an ENUM in the primary key
 * (pages skipped rows), an incremental run after a run that did not keep all its differences,
 * and a DOUBLE primary key whose recorded change ids are not the rows'.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { recordChanges, runVerify, type VerifyReport } from '../../../src/verify/index.js';
import { buildEstate, type Estate, TARGETS } from './helpers.js';

function found(r: VerifyReport): string[] {
  return r.differences.map((d) => `${d.kind} ${d.table} ${JSON.stringify(d.pk)} on=${d.shard}`).sort();
}

describe('reshard verify: review cases', () => {
  let e: Estate | undefined;
  afterEach(async () => {
    await e?.cleanup();
    e = undefined;
  });

  const onBoth = (key: number, sql: string, params?: unknown[]) => e!.onBoth(key, sql, params);
  const onTarget = (key: number, sql: string, params?: unknown[]) => e!.onTarget(key, sql, params);
  const onSource = (key: number, sql: string, params?: unknown[]) => e!.onSource(key, sql, params);

  it('FLOAT: two stored FLOAT values that print alike (6 digits) are a difference', async () => {
    e = await buildEstate('rv_float', {
      users: 4,
      ordersPerUser: 1,
      typeCorpus: false,
      extraTables: [
        {
          name: 'measures',
          shardKey: 'user_id',
          ddl: 'CREATE TABLE measures (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, v FLOAT NOT NULL) ENGINE=InnoDB;',
        },
      ],
    });
    const ctx = await e.open();
    // 1.0000001 and 1.0000002 are distinct FLOATs (1 + 2^-23 and 1 + 2^-22); 123456789 vs 123457000 too.
    await onSource(1, 'INSERT INTO measures VALUES (1, 1, 1.0000001), (2, 1, 123456789)');
    await onTarget(1, 'INSERT INTO measures VALUES (1, 1, 1.0000002), (2, 1, 123457000)');
    const exact = async (k: 'source' | 'target') => {
      const [rows] = (await await (k === 'source' ? onSource : onTarget)(
        1,
        'SELECT id, CAST(v AS DOUBLE) AS v FROM measures ORDER BY id',
      )) as unknown as [RowDataPacket[]];
      return rows.map((r) => String(r.v));
    };
    // The stored values really differ...
    expect(await exact('source')).not.toEqual(await exact('target'));
    const report = await runVerify({ ctx, preflight: false });
    // ...but verify hashes the server's 6-digit text ('1', '123457000') on both sides.
    expect(report.ok).toBe(false);
  });

  it('refuses cp932 text, where two different stored strings read as the same (not: reports them clean)', async () => {
    e = await buildEstate('rv_cp932', {
      users: 4,
      ordersPerUser: 1,
      typeCorpus: false,
      extraTables: [
        {
          name: 'names_jp',
          shardKey: 'user_id',
          ddl: 'CREATE TABLE names_jp (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, s VARCHAR(10) CHARACTER SET cp932 NOT NULL) ENGINE=InnoDB;',
        },
      ],
    });
    const ctx = await e.open();
    // cp932 0x8790 (NEC row 13) and 0x81E0 (JIS) are different stored bytes that both convert to
    // U+2252; a copy through utf8mb4 text turns the first into the second.
    await onSource(1, "INSERT INTO names_jp VALUES (1, 1, X'8790')");
    await onTarget(1, "INSERT INTO names_jp VALUES (1, 1, X'81E0')");
    const hex = async (side: typeof onSource) => {
      const [rows] = (await side(1, 'SELECT HEX(s) AS h FROM names_jp WHERE id = 1')) as unknown as [
        RowDataPacket[],
      ];
      return String(rows[0]!.h);
    };
    expect(await hex(onSource)).not.toBe(await hex(onTarget));
    // Such text cannot be compared (nor copied) exactly through utf8mb4: refused, not "clean".
    const err = await runVerify({ ctx, preflight: false }).then(
      () => undefined,
      (x: unknown) => x as { code?: string },
    );
    expect(err?.code).toBe('E_CHARSET_AMBIGUOUS');
  });

  it('refuses an ENUM in a composite primary key (pages by it skipped rows)', async () => {
    e = await buildEstate('rv_enum', {
      users: 12,
      ordersPerUser: 1,
      typeCorpus: false,
      extraTables: [
        {
          name: 'addresses',
          shardKey: 'user_id',
          ddl: "CREATE TABLE addresses (user_id BIGINT NOT NULL, kind ENUM('shipping','billing') NOT NULL, line VARCHAR(40) NOT NULL, PRIMARY KEY (user_id, kind)) ENGINE=InnoDB;",
        },
      ],
    });
    const ctx = await e.open();
    await onBoth(5, "INSERT INTO addresses VALUES (5, 'shipping', 'ship 5'), (5, 'billing', 'bill 5')");
    // Pages by such a key skipped (u, 'billing') after (u, 'shipping') and re-read rows: false
    // clean on a corrupted row, false mismatches on identical data. Refused now.
    const err = await runVerify({ ctx, preflight: false, pageSize: 1 }).then(
      () => undefined,
      (x: unknown) => x as { code?: string },
    );
    expect(err?.code).toBe('E_PK_ENUM');
  });

  it('incremental after a run whose differences were truncated verifies in full', async () => {
    e = await buildEstate('rv_trunc', { users: 60, ordersPerUser: 1, typeCorpus: false });
    const ctx = await e.open();
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);

    // 1. a row with a different column in users
    await onTarget(17, "UPDATE users SET email = 'changed@example.test' WHERE id = 17");
    // 2. a copy of a coupon on a target that owns it under neither topology (behind reshard's back)
    const [cp] = (await onSource(2, 'SELECT * FROM coupons WHERE user_id = 2')) as unknown as [
      RowDataPacket[],
    ];
    expect(cp).toHaveLength(1);
    const wrong = TARGETS.find((t) => t !== e!.targetOf(2n))!;
    await (await e.conn(wrong)).query('INSERT INTO coupons SET ?', [cp[0]]);

    // A full run that keeps fewer differences than it finds (as 100 000 would on a large estate).
    const full = await runVerify({ ctx, preflight: false, maxDiffs: 1 });
    expect(full.ok).toBe(false);
    expect(full.truncated).toBe(true);
    expect(full.totals).toMatchObject({ different: 1, misplaced: 1 });

    // The listed difference is repaired; the unlisted misplaced coupon is still there.
    await onTarget(17, "UPDATE users SET email = 'u17@example.test' WHERE id = 17");
    const inc = await runVerify({ ctx, preflight: false, incremental: true });
    const again = await runVerify({ ctx, preflight: false });
    expect({ incremental: inc.ok, full: again.ok, fullFound: found(again) }).toEqual({
      incremental: false,
      full: false,
      fullFound: [expect.stringMatching(/^misplaced coupons/)],
    });
  });

  it('incremental verifies a table with a DOUBLE primary key in full (its recorded change ids are not the rows)', async () => {
    e = await buildEstate('rv_dblkey', {
      users: 4,
      ordersPerUser: 1,
      typeCorpus: false,
      extraTables: [
        {
          name: 'readings',
          shardKey: 'user_id',
          ddl: 'CREATE TABLE readings (k DOUBLE NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, v VARCHAR(20) NOT NULL) ENGINE=InnoDB;',
        },
      ],
    });
    const ctx = await e.open();
    // SELECT prints 1e-7 as '0.0000001'; the tailer's value (zongji: a JS number) as '1e-7'.
    await onBoth(3, "INSERT INTO readings VALUES (1e-7, 3, 'a'), (2.5, 3, 'b')");
    expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);
    // The source row changes; the tailer records the change (before applying it) with the
    // binlog's value of the key, and the target ends up with a wrong value.
    await onSource(3, "UPDATE readings SET v = 'new' WHERE k = 1e-7");
    await recordChanges(ctx.control, ctx.job.id, e.sourceOf(3n), [
      { table: 'readings', pk: [1e-7], target: e.targetOf(3n) },
    ]);
    await onTarget(3, "UPDATE readings SET v = 'wrong' WHERE k = 1e-7");
    const inc = await runVerify({ ctx, preflight: false, incremental: true });
    const full = await runVerify({ ctx, preflight: false });
    expect({ incremental: inc.ok, full: full.ok }).toEqual({ incremental: false, full: false });
  });
});
