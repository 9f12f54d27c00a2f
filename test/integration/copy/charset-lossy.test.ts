/**
 * Text in a character set with bytes that have no Unicode character (cp1250 0x81 0x83 0x88 0x90
 * 0x98, cp1251 0x98, ascii 0x80–0xFF …). The server stores such bytes as they are, but sends each
 * as '?' (0x3F) to a utf8mb4 session, which is how reshard reads rows: a copy stored '?' in their
 * place on both the LOAD DATA and the applier path, and verify, reading both sides the same way,
 * called the difference clean. Such columns are refused before anything is written.
 * (Found by review B: the copy turned 61816283 into 613F623F and reported the job complete.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { unsupportedColumns } from '../../../src/preflight/schema.js';
import { copy, type Estate, oneSourceEstate, sql, stored } from './one-source.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

const SCHEMA = `CREATE TABLE cp (
  id BIGINT NOT NULL PRIMARY KEY,
  sk BIGINT NOT NULL,
  name VARCHAR(20) CHARACTER SET cp1250 NULL,
  cyr VARCHAR(20) CHARACTER SET cp1251 NULL
) ENGINE=InnoDB`;

interface Refusal {
  code?: string;
  message?: string;
  hint?: string;
  data?: { failures?: { code: string; column?: string; message: string; hint: string }[] };
}

async function rejection(p: Promise<unknown>): Promise<Refusal> {
  return p.then(
    () => ({}),
    (e: unknown) => e as Refusal,
  );
}

describe('text in a character set with bytes that have no Unicode character', () => {
  for (const bulk of [true, false]) {
    it(`copy refuses it before writing a row (${bulk ? 'LOAD DATA path' : 'applier path'})`, async () => {
      const e = await oneSourceEstate(`rbcs${bulk ? 'b' : 'a'}`, SCHEMA, 'cp', 'sk');
      estates.push(e);
      await sql(
        's0',
        e.db,
        `INSERT INTO cp VALUES (1, 1, X'8AE1726B61', X'C0C1'), (2, 2, X'61816283', X'619862'), (3, 3, X'3F', X'3F')`,
      );
      const err = await rejection(copy(e, bulk));
      // Preflight, which lists every problem before anything is written.
      expect(err.code).toBe('E_PREFLIGHT');
      const lossy = (err.data?.failures ?? []).filter((f) => f.code === 'E_CHARSET_LOSSY');
      expect(lossy.map((f) => f.column).sort()).toEqual(expect.arrayContaining(['cyr', 'name']));
      expect(lossy.find((f) => f.column === 'name')?.message).toMatch(/`name`.*cp1250/);
      expect(lossy[0]?.hint).toMatch(/utf8mb4/);
      const tgt = await stored(['t0', 't1'], e.db, 'cp', 'id', { name: 'HEX(name)' });
      expect(tgt).toEqual({});
    });
  }

  it('verify refuses it instead of calling 0x81 and ? equal', async () => {
    // Copied as utf8mb4, then made cp1250 on every side (a job exists; the bytes then differ).
    const e = await oneSourceEstate('rbvcs', SCHEMA.replace(/CHARACTER SET cp125[01]/g, ''), 'cp', 'sk');
    estates.push(e);
    await sql('s0', e.db, `INSERT INTO cp VALUES (1, 1, 'a', 'b')`);
    expect((await copy(e, true)).complete).toBe(true);
    for (const s of ['s0', 't0', 't1'] as const)
      await sql(s, e.db, 'ALTER TABLE cp MODIFY name VARCHAR(20) CHARACTER SET cp1250 NULL');
    await sql('s0', e.db, `UPDATE cp SET name = X'81'`);
    for (const t of ['t0', 't1'] as const) await sql(t, e.db, `UPDATE cp SET name = X'3F'`);
    const { runVerify } = await import('../../../src/verify/verifier.js');
    const opts = { planPath: e.planPath, control: e.controlDsn, recheck: { rounds: 0, pauseMs: 0 } };
    const err = await rejection(runVerify(opts));
    expect(err.code).toBe('E_PREFLIGHT');
    expect(err.data?.failures?.map((f) => f.code)).toContain('E_CHARSET_LOSSY');
    // Without the preflight (as cutover runs it), the table definition itself is refused.
    expect((await rejection(runVerify({ ...opts, preflight: false }))).code).toBe('E_CHARSET_LOSSY');
  });
});

describe('which character sets are refused', () => {
  const def = (charset: string, dataType = 'varchar') => ({
    database: 'd',
    table: 't',
    primaryKey: ['id'],
    columns: [
      { name: 'id', dataType: 'bigint', charset: null },
      { name: 'c', dataType, charset },
    ],
  });
  const codes = (charset: string, dataType?: string) =>
    unsupportedColumns(def(charset, dataType) as never).map((u) => u.code);

  it('lets through the Unicode sets and the single-byte sets whose every byte has a character', () => {
    for (const cs of ['utf8mb4', 'utf8mb3', 'latin1', 'latin2', 'koi8r', 'cp852', 'macce', 'ucs2'])
      expect(codes(cs), cs).toEqual([]);
  });

  it('refuses sets with unmapped bytes or sequences, and sets where two byte sequences read alike', () => {
    for (const cs of ['ascii', 'cp1250', 'cp1251', 'greek', 'hebrew', 'tis620', 'gbk', 'euckr'])
      expect(codes(cs), cs).toEqual(['E_CHARSET_LOSSY']);
    for (const cs of ['cp932', 'eucjpms', 'sjis', 'big5', 'ujis'])
      expect(codes(cs), cs).toEqual(['E_CHARSET_AMBIGUOUS']);
  });

  it('lets an ENUM or SET through: it holds only its members', () => {
    expect(codes('ascii', 'enum')).toEqual([]);
    expect(codes('cp1250', 'set')).toEqual([]);
  });
});
