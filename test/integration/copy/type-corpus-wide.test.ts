/**
 * Review B (coverage, passes): types and values outside fixtures/shop/type_corpus.sql, moved by
 * the copy (LOAD DATA path and applier path) and by the tailer, compared with the stored bytes on
 * both sides (HEX of CAST(col AS BINARY); FLOAT/DOUBLE as col + 0e0; LONGBLOB by length and MD5);
 * then a change in every column on the targets is reported by verify, and its --fix-sql restores
 * every byte: YEAR 0/1901/2155, TIME(0/3/6) negative, fractional and ±838h, zero and partial-zero
 * DATE/DATETIME/TIMESTAMP (lax sql_mode), FLOAT/DOUBLE extremes and subnormals, DECIMAL edges,
 * BIT(1)/BIT(13)/BIT(63), ENUM with a '' member, SET empty and full, CHAR with trailing spaces,
 * BINARY(4) with 0x00 padding, VARBINARY of zeros, TINYTEXT '', a 2 MB LONGBLOB of zeros, JSON
 * with escapes and big numbers, latin1/utf8mb3 text, VIRTUAL and STORED generated columns, an
 * INVISIBLE column and a DEFAULT expression.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  applyFix,
  copy,
  type Estate,
  fixPath,
  oneSourceEstate,
  sql,
  stored,
  tailOnce,
  verify,
} from './one-source.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

const SCHEMA = `CREATE TABLE vt (
  id BIGINT NOT NULL PRIMARY KEY,
  sk BIGINT NOT NULL,
  y YEAR NULL, tm TIME(6) NULL, tm0 TIME NULL, tm3 TIME(3) NULL, d DATE NULL, dt DATETIME NULL, dt6 DATETIME(6) NULL,
  ts TIMESTAMP NULL DEFAULT NULL, ts3 TIMESTAMP(3) NULL DEFAULT NULL,
  f FLOAT NULL, db DOUBLE NULL, dec1 DECIMAL(10,2) NULL, dec2 DECIMAL(30,0) NULL, dec3 DECIMAL(5,5) NULL,
  b1 BIT(1) NULL, b13 BIT(13) NULL, b63 BIT(63) NULL,
  e ENUM('', 'a', 'b') NULL, s SET('x','y','z') NULL,
  ch CHAR(5) NULL, bn BINARY(4) NULL, vb VARBINARY(10) NULL, tt TINYTEXT NULL, lb LONGBLOB NULL, j JSON NULL,
  l1 VARCHAR(20) CHARACTER SET latin1 NULL, u3 VARCHAR(20) CHARACTER SET utf8mb3 NULL, lt TEXT CHARACTER SET latin1 NULL,
  gen BIGINT AS (id * 2) VIRTUAL, gens VARCHAR(30) AS (CONCAT('x', u3)) STORED,
  inv INT INVISIBLE NULL,
  dflt VARCHAR(20) NULL DEFAULT (CONCAT('d', 'x'))
) ENGINE=InnoDB`;

const COLS = [
  'sk',
  'y',
  'tm',
  'tm0',
  'tm3',
  'd',
  'dt',
  'dt6',
  'ts',
  'ts3',
  'f',
  'db',
  'dec1',
  'dec2',
  'dec3',
  'b1',
  'b13',
  'b63',
  'e',
  's',
  'ch',
  'bn',
  'vb',
  'tt',
  'lb',
  'j',
  'l1',
  'u3',
  'lt',
  'gen',
  'gens',
  'inv',
  'dflt',
];
const EXPRS: Record<string, string> = Object.fromEntries(
  COLS.map((c) => [
    c,
    c === 'f' || c === 'db'
      ? `CONCAT(${c} + 0e0)`
      : c === 'lb'
        ? `CONCAT(LENGTH(lb), ':', MD5(lb))`
        : `HEX(CAST(${c} AS BINARY))`,
  ]),
);
EXPRS.eidx = 'e + 0';
EXPRS.sidx = 's + 0';

const rows = (base: number) => `SET SESSION sql_mode = ''; SET time_zone = '+00:00'; SET NAMES utf8mb4;
INSERT INTO vt (id, sk, y, tm, tm0, tm3, d, dt, dt6, ts, ts3, f, db, dec1, dec2, dec3, b1, b13, b63, e, s, ch, bn, vb, tt, lb, j, l1, u3, lt, inv) VALUES
 (${base + 1}, ${base + 1}, 0, '-00:00:01.500000', '-838:59:59', '-00:00:00.001', '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00', -1.5e-10, 1e308, -0.01, -999999999999999999999999999999, -0.00001,
   b'1', b'1000000000001', b'100000000000000000000000000000000000000000000000000000000000001', 'a', '', 'a  ', X'61', X'0000', '', REPEAT(X'00', 2000000), '{"b":1,"a":"\\\\u00e9","n":123456789012345678901234567890}', 'ü', 'é', 'Ä', -5),
 (${base + 2}, ${base + 2}, 2155, '838:59:59.999999', '-00:01:00', '-12:00:00.500', '2024-02-30', '2024-00-00 00:00:00', '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01', '2038-01-19 03:14:07.999', 3.4028234e38, -2.2250738585072014e-308, 0, 0, 0.99999,
   b'0', 0, b'111111111111111111111111111111111111111111111111111111111111111', '', 'x,y,z', '', X'00000001', X'FF', 'x', X'', '[]', '', '', '', NULL),
 (${base + 3}, ${base + 3}, 1901, '-838:59:59.000000', '00:00:00', '-00:00:59.999', '9999-12-31', '9999-12-31 23:59:59', '2024-01-01 12:00:00.5', '2001-01-01 00:00:00', '2001-01-01 00:00:00.001', 0.1, 5e-324, 12345678.90, 123456789012345678901234567890, 0.00001,
   NULL, b'1', NULL, 'b', 'z', 'abcde', X'00000000', X'00', NULL, NULL, NULL, NULL, NULL, NULL, 7)`;

// A different value in every column of rows 1 and 2 (one step, one bit or one byte away).
const MUTATE = `SET SESSION sql_mode = ''; SET time_zone = '+00:00'; SET NAMES utf8mb4;
UPDATE vt SET y = 1901, tm = '-00:00:01.500001', tm0 = '-838:59:58', tm3 = '-00:00:00.002', d = '0000-00-01', dt = '0000-00-00 00:00:01', dt6 = '0000-00-00 00:00:00.000001', ts = '1970-01-01 00:00:01', ts3 = '1970-01-01 00:00:01', f = -1.5000001e-10, db = 9.999999999999999e307, dec1 = -0.02, dec2 = -999999999999999999999999999998, dec3 = -0.00002, b1 = b'0', b13 = b'1000000000000', b63 = b'100000000000000000000000000000000000000000000000000000000000000', e = '', s = 'x', ch = 'b', bn = X'62', vb = X'0001', tt = ' ', lb = CONCAT(REPEAT(X'00', 1999999), X'01'), j = '{"b":1,"a":"\\\\u00e9","n":123456789012345678901234567891}', l1 = 'u', u3 = 'e', lt = 'A', inv = -6, dflt = 'dy' WHERE id = 1;
UPDATE vt SET y = 2154, tm = '838:59:59.999998', tm0 = '-00:01:01', tm3 = '-12:00:00.501', d = '2024-02-29', dt = '2024-00-01 00:00:00', dt6 = '1000-01-01 00:00:00.000002', ts = '1970-01-01 00:00:02', ts3 = '2038-01-19 03:14:07.998', f = 3.4028232e38, db = -2.2250738585072019e-308, dec1 = 0.01, dec2 = 1, dec3 = 0.99998, b1 = b'1', b13 = 1, b63 = b'111111111111111111111111111111111111111111111111111111111111110', e = 'a', s = 'x,y', ch = ' ', bn = X'00000002', vb = X'FE', tt = 'y', lb = X'00', j = '[ ]', l1 = ' ', u3 = ' ', lt = ' ', inv = 0, dflt = NULL WHERE id = 2`;

async function expectSame(e: Estate): Promise<void> {
  const src = await stored(['s0'], e.db, 'vt', 'id', EXPRS);
  const tgt = await stored(['t0', 't1'], e.db, 'vt', 'id', EXPRS);
  expect(tgt).toEqual(src);
}

describe('a wider type corpus through copy, tail, verify and --fix-sql', () => {
  for (const bulk of [true, false]) {
    it(`is byte-exact (${bulk ? 'LOAD DATA path' : 'applier path'}), and every changed column is found and repaired`, async () => {
      const e = await oneSourceEstate(`rbcorp${bulk ? 'b' : 'a'}`, SCHEMA, 'vt', 'sk');
      estates.push(e);
      await sql('s0', e.db, rows(0));
      const s = await copy(e, bulk);
      expect(s.complete).toBe(true);
      expect(s.bulkRows).toBe(bulk ? 3 : 0);
      await expectSame(e);
      // The same rows again, and an update of every row, through the tailer.
      await sql('s0', e.db, rows(10));
      await sql('s0', e.db, "UPDATE vt SET dflt = CONCAT('u', id) WHERE id IN (1, 2, 3, 12)");
      expect(await tailOnce(e)).toBeUndefined();
      await expectSame(e);
      expect((await verify(e)).ok).toBe(true);
      // Change every column of two rows on their targets.
      for (const t of ['t0', 't1'] as const) await sql(t, e.db, MUTATE);
      const report = await verify(e, fixPath(e));
      expect(report.ok).toBe(false);
      expect(report.totals.different).toBe(2);
      const fix = readFileSync(fixPath(e), 'utf8');
      // A different row is replaced: deleted, then inserted as the source holds it.
      expect(fix).toMatch(/DELETE FROM[^\n]*\n(.*\n)*INSERT INTO/);
      await applyFix(fixPath(e));
      await expectSame(e);
      expect((await verify(e)).ok).toBe(true);
    });
  }
});
