/**
 * Values the tailer could not carry although the copy and the source handle them (found by
 * review B; both stopped the tailer for good).
 *
 * 1. Text in latin1 (MariaDB's latin1 is cp1252 with 0x81, 0x8D, 0x8F, 0x90, 0x9D mapped to the C1
 *    controls U+0081…U+009D): zongji decodes the row image with iconv-lite's cp1252, which has no
 *    mapping for those five bytes and yields U+FFFD; the applier's strict INSERT of U+FFFD into
 *    the latin1 column fails (1366) and the tailer stops, on every re-run. The copy moves the same
 *    rows exactly (the server converts them itself).
 * 2. One source transaction changing many rows with large BLOBs: the applier writes a run of up
 *    to 1000 rows as one INSERT whose values are hex literals (twice the bytes), with no bound on
 *    the statement's size, so the statement exceeds the target's max_allowed_packet (64 MiB on the
 *    sandbox; MariaDB's default is 16 MiB) and the tailer stops with ER_NET_PACKET_TOO_LARGE, on
 *    every re-run. The source took the transaction without trouble.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { copy, type Estate, oneSourceEstate, sql, stored, tailOnce, verify } from '../copy/one-source.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

describe('tail of latin1 text', () => {
  it('carries latin1 bytes 0x81 0x8D 0x8F 0x90 0x9D byte for byte (the copy does)', async () => {
    const e = await oneSourceEstate(
      'rbtl1',
      `CREATE TABLE l1 (
         id BIGINT NOT NULL PRIMARY KEY,
         sk BIGINT NOT NULL,
         name VARCHAR(20) CHARACTER SET latin1 NULL,
         note TEXT CHARACTER SET latin1 NULL
       ) ENGINE=InnoDB`,
      'l1',
      'sk',
    );
    estates.push(e);
    // Copied rows with the same bytes arrive exactly (the server converts latin1 itself).
    await sql('s0', e.db, `INSERT INTO l1 VALUES (1, 1, X'E981', X'8D8F909D'), (2, 2, 'caf\u00e9', 'x')`);
    expect((await copy(e, true)).complete).toBe(true);
    // Changes after the copy started come through the tailer; row 5 holds every byte but 0x00.
    const every = Array.from({ length: 255 }, (_, i) => (i + 1).toString(16).padStart(2, '0')).join('');
    await sql(
      's0',
      e.db,
      `INSERT INTO l1 VALUES (3, 3, X'E981', X'8D8F909D'), (4, 4, 'na\u00efve', 'y'), (5, 5, X'80', X'${every}');
       UPDATE l1 SET note = CONCAT(note, X'90') WHERE id = 2`,
    );
    const err = await tailOnce(e);
    // Now: Incorrect string value: '\xEF\xBF\xBD' for column …`name` (ER_TRUNCATED_WRONG_VALUE_FOR_FIELD).
    expect(err).toBeUndefined();
    const exprs = { name: 'HEX(name)', note: 'HEX(note)' };
    const src = await stored(['s0'], e.db, 'l1', 'id', exprs);
    const tgt = await stored(['t0', 't1'], e.db, 'l1', 'id', exprs);
    expect(src['3']).toEqual({ name: 'E981', note: '8D8F909D' });
    expect(tgt).toEqual(src);
    expect((await verify(e)).ok).toBe(true);
  });
});

describe('tail of a transaction with many large BLOB rows', () => {
  it('applies one source transaction of 70 rows with 1 MB BLOBs', async () => {
    const e = await oneSourceEstate(
      'rbtblob',
      'CREATE TABLE bl (id BIGINT NOT NULL PRIMARY KEY, sk BIGINT NOT NULL, data LONGBLOB NULL) ENGINE=InnoDB',
      'bl',
      'sk',
    );
    estates.push(e);
    expect((await copy(e, true)).complete).toBe(true);
    // One statement on the source (a few bytes of SQL); 70 MB of row images in its binlog.
    await sql(
      's0',
      e.db,
      `INSERT INTO bl SELECT seq, seq, CONCAT(REPEAT(X'AB', 1000000), CHAR(seq)) FROM seq_1_to_70`,
    );
    const err = await tailOnce(e);
    // Now: Got a packet bigger than 'max_allowed_packet' bytes (ER_NET_PACKET_TOO_LARGE).
    expect(err).toBeUndefined();
    const exprs = { len: 'LENGTH(data)', md5: 'MD5(data)' };
    const src = await stored(['s0'], e.db, 'bl', 'id', exprs);
    const tgt = await stored(['t0', 't1'], e.db, 'bl', 'id', exprs);
    expect(Object.keys(src)).toHaveLength(70);
    expect(tgt).toEqual(src);
  });
});
