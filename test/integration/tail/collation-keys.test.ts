/**
 * Review B (coverage, passes): a VARCHAR primary key that is also the shard key, under the
 * server's case- and trailing-space-insensitive utf8mb4_unicode_ci, changed by case and by a
 * trailing space only ('a' → 'A', 'b' → 'b ', 'c ' → 'c', 'é' → 'É'), plus a BINARY(3) UNIQUE key
 * whose new value differs only by a trailing 0x00: the tailer moves each row to the owner of its
 * new bytes, and verify agrees.
 */
import { afterAll, expect, it } from 'vitest';
import { copy, type Estate, oneSourceEstate, sql, stored, tailOnce, verify } from '../copy/one-source.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

it('shard-key changes by case and trailing space only, through the tailer', async () => {
  const e = await oneSourceEstate(
    'rbci',
    'CREATE TABLE ck (k VARCHAR(20) NOT NULL PRIMARY KEY, v INT NOT NULL, b BINARY(3) NOT NULL, UNIQUE KEY ub (b)) ENGINE=InnoDB',
    'ck',
    'k',
  );
  estates.push(e);
  await sql(
    's0',
    e.db,
    "INSERT INTO ck VALUES ('a', 1, X'01'), ('b', 2, X'02'), ('c ', 3, X'03'), ('é', 4, X'04')",
  );
  expect((await copy(e, true)).complete).toBe(true);
  await sql(
    's0',
    e.db,
    `UPDATE ck SET k = 'A' WHERE k = 'a'; UPDATE ck SET k = 'b ' WHERE k = 'b'; UPDATE ck SET k = 'c' WHERE k = 'c ';
     UPDATE ck SET k = 'É', b = X'0400' WHERE k = 'é';
     INSERT INTO ck VALUES ('d', 5, X'05'); UPDATE ck SET k = 'D' WHERE k = 'd'; DELETE FROM ck WHERE k = 'D';`,
  );
  expect(await tailOnce(e)).toBeUndefined();
  const ex = { v: 'v', b: 'HEX(b)' };
  const src = await stored(['s0'], e.db, 'ck', 'k', ex);
  expect(Object.keys(src).sort()).toEqual(['41', '6220', '63', 'C389']);
  expect(await stored(['t0', 't1'], e.db, 'ck', 'k', ex)).toEqual(src);
  expect((await verify(e)).ok).toBe(true);
});
