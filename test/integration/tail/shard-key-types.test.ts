/**
 * Found by review D: the tailer routes a row by the shard-key value zongji decodes from the binlog image,
 * while copy and verify route the same row by the bytes the server sends in a SELECT (utf8mb4
 * text; binary strings as stored). Where the two differ, the tailer writes a row to another
 * target than the one copy, verify and cutover's routing name as its owner: the row is
 * "missing" on its owner and "misplaced" on the other target, and after cutover the application
 * reads it from a shard that does not have it.
 *
 * One source s0 → two targets t0, t1 under hash-mod crc32: every row moves, and the target is
 * decided by CRC32 of the key's bytes.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createRouter, type RouteKey } from '../../../src/plan/router.js';
import type { SandboxName } from '../../support/db.js';
import { copy, type Estate, oneSourceEstate, sql, tailOnce, verify } from '../copy/one-source.js';

const estates: Estate[] = [];
afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
});

/** HEX(shard key) → the target(s) holding the row. */
async function whereRows(e: Estate, table: string, keyCol: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const t of ['t0', 't1'] as SandboxName[]) {
    for (const r of await sql(t, e.db, `SELECT HEX(${keyCol}) AS k FROM \`${table}\``)) {
      const k = String(r.k);
      out.set(k, [...(out.get(k) ?? []), t]);
    }
  }
  return out;
}

describe('tailer routing of shard keys vs copy/verify routing', () => {
  it('a latin1 shard key holding a byte 0x80–0x9F (€, Š, ‚, ™, …) goes to the owner the router names for its text', async () => {
    const e = await oneSourceEstate(
      'rdl1',
      'CREATE TABLE nm (name VARCHAR(40) CHARACTER SET latin1 NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB',
      'nm',
      'name',
    );
    estates.push(e);
    expect((await copy(e, true)).complete).toBe(true);
    // Ordinary Western European text: the euro sign, Š/Ž/Œ, low and curly quotes, the trade mark.
    const names: string[] = [];
    for (let i = 0; i < 40; i++) names.push(`${['€', 'Š', 'Ž', 'Œ', '‚', '“', '™', '…'][i % 8]}${i}`);
    await sql('s0', e.db, `INSERT INTO nm VALUES ${names.map(() => '(?, 1)').join(', ')}`, names);
    expect(await tailOnce(e)).toBeUndefined();
    const router = createRouter(e.to);
    const at = await whereRows(e, 'nm', 'CONVERT(name USING utf8mb4)');
    const wrong: string[] = [];
    for (const n of names) {
      const hex = Buffer.from(n, 'utf8').toString('hex').toUpperCase();
      const want = router.ownerOf(n);
      const got = at.get(hex) ?? [];
      if (got.length !== 1 || got[0] !== want) wrong.push(`${n}: on [${got.join(', ')}], owner ${want}`);
    }
    // Now: about half the rows are on the other target (the tailer hashed U+0080… for 0x80…).
    expect(wrong).toEqual([]);
    expect((await verify(e)).ok).toBe(true);
  });

  it('a BINARY(4) shard key whose value ends in 0x00 goes to the owner of its stored bytes', async () => {
    const e = await oneSourceEstate(
      'rdbin',
      'CREATE TABLE bk (k BINARY(4) NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB',
      'bk',
      'k',
    );
    estates.push(e);
    expect((await copy(e, true)).complete).toBe(true);
    const keys: Buffer[] = [];
    for (let i = 1; i <= 40; i++) keys.push(Buffer.from([0x41 + (i % 26), i, 0, 0]));
    await sql('s0', e.db, `INSERT INTO bk VALUES ${keys.map(() => '(?, 1)').join(', ')}`, keys);
    expect(await tailOnce(e)).toBeUndefined();
    const router = createRouter(e.to);
    const at = await whereRows(e, 'bk', 'k');
    const wrong: string[] = [];
    for (const k of keys) {
      const hex = k.toString('hex').toUpperCase();
      const want = router.ownerOf(k as RouteKey);
      const got = at.get(hex) ?? [];
      if (got.length !== 1 || got[0] !== want) wrong.push(`${hex}: on [${got.join(', ')}], owner ${want}`);
    }
    expect(wrong).toEqual([]);
    expect((await verify(e)).ok).toBe(true);
  });

  it('a BIT(8) shard key ≥ 0x80 goes to the owner of its bytes', async () => {
    const e = await oneSourceEstate(
      'rdbit',
      'CREATE TABLE bt (id INT NOT NULL PRIMARY KEY, k BIT(8) NOT NULL, v INT NOT NULL) ENGINE=InnoDB',
      'bt',
      'k',
    );
    estates.push(e);
    expect((await copy(e, true)).complete).toBe(true);
    const vals: number[] = [];
    for (let i = 0; i < 40; i++) vals.push(0x80 + i * 3);
    await sql('s0', e.db, `INSERT INTO bt VALUES ${vals.map((b, i) => `(${i}, ${b}, 1)`).join(', ')}`);
    expect(await tailOnce(e)).toBeUndefined();
    const router = createRouter(e.to);
    const at = await whereRows(e, 'bt', 'k');
    const wrong: string[] = [];
    for (const b of vals) {
      const hex = b.toString(16).toUpperCase();
      const want = router.ownerOf(Buffer.from([b]) as RouteKey);
      const got = at.get(hex) ?? [];
      if (got.length !== 1 || got[0] !== want) wrong.push(`${hex}: on [${got.join(', ')}], owner ${want}`);
    }
    expect(wrong).toEqual([]);
    expect((await verify(e)).ok).toBe(true);
  });
});

/**
 * Where each row of `table` (id, k) is on t0/t1, vs the router's owner of its key as copy and
 * verify read it (text-protocol bytes from the source).
 */
async function misrouted(e: Estate, table: string): Promise<string[]> {
  const { rootConn } = await import('../../support/db.js');
  const { loadTableMeta, routeKeyOfText } = await import('../../../src/apply/table.js');
  const c = await rootConn('s0', e.db);
  const router = createRouter(e.to);
  const want = new Map<string, string>();
  try {
    const meta = await loadTableMeta(c, e.db, { name: table, shardKey: 'k' }, 's0');
    const [raw] = await c.query({
      sql: `SELECT id, k FROM \`${table}\``,
      rowsAsArray: true,
      typeCast: false,
    });
    for (const r of raw as Buffer[][])
      want.set(
        r[0]!.toString(),
        `${r[1]!.toString('latin1')} → ${router.ownerOf(routeKeyOfText(meta.keyKind, r[1]!, 0, r[1]!.length))}`,
      );
  } finally {
    await c.end();
  }
  const got = new Map<string, string[]>();
  for (const t of ['t0', 't1'] as SandboxName[])
    for (const r of await sql(t, e.db, `SELECT id FROM \`${table}\``))
      got.set(String(r.id), [...(got.get(String(r.id)) ?? []), t]);
  const out: string[] = [];
  for (const [id, w] of want) {
    const owner = w.split(' → ')[1]!;
    const g = got.get(id) ?? [];
    if (g.length !== 1 || g[0] !== owner) out.push(`id ${id} key ${w}: on [${g.join(', ')}]`);
  }
  return out;
}

describe('tailer routing of other key types agrees with copy/verify', () => {
  const types: [string, string, string[]][] = [
    [
      'DECIMAL(12,3)',
      'DECIMAL(12,3) NOT NULL',
      ['0', '-0.5', '1.25', '-123456789.001', '0.001', '7', '99.990'],
    ],
    [
      'DATETIME(3)',
      'DATETIME(3) NOT NULL',
      [
        "'2024-01-01 00:00:00'",
        "'1999-12-31 23:59:59.999'",
        "'2024-02-29 12:00:00.5'",
        "'1000-01-01 00:00:00'",
      ],
    ],
    [
      'TIMESTAMP',
      'TIMESTAMP NOT NULL',
      ["'2024-01-01 00:00:00'", "'2038-01-19 03:14:07'", "'1970-01-01 00:00:01'", "'2001-09-09 01:46:40'"],
    ],
    ['DATE', 'DATE NOT NULL', ["'2024-01-01'", "'0001-01-01'", "'9999-12-31'", "'2000-02-29'"]],
    ['YEAR', 'YEAR NOT NULL', ['1901', '2155', '2024', '1999', '1970']],
    [
      'VARCHAR utf8mb4 (trailing spaces, case)',
      'VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL',
      ["'a'", "'a '", "'A'", "'é'", "'日本'", "'🙂 '", "''"],
    ],
    [
      'BIGINT UNSIGNED',
      'BIGINT UNSIGNED NOT NULL',
      ['0', '18446744073709551615', '9223372036854775808', '9007199254740993', '42'],
    ],
  ];
  for (const [name, type, values] of types) {
    it(`${name}: each inserted row is on the owner of its key`, async () => {
      const e = await oneSourceEstate(
        `rdty${name.replace(/\W+/g, '').slice(0, 6).toLowerCase()}`,
        `CREATE TABLE ty (id INT NOT NULL PRIMARY KEY, k ${type}, v INT NOT NULL) ENGINE=InnoDB`,
        'ty',
        'k',
      );
      estates.push(e);
      expect((await copy(e, true)).complete).toBe(true);
      await sql('s0', e.db, `INSERT INTO ty VALUES ${values.map((v, i) => `(${i}, ${v}, 1)`).join(', ')}`);
      expect(await tailOnce(e)).toBeUndefined();
      expect(await misrouted(e, 'ty')).toEqual([]);
      expect((await verify(e)).ok).toBe(true);
    });
  }
});
