/**
 * crc32 routing = the server's CRC32(): the exact estimate, copy's predicates and any SQL view
 * route by `MOD(CRC32(col), n)` on the server, while the router hashes in JS. Both must agree on
 * every key: strings as UTF-8 (utf8mb4 column), integers as decimal text (BIGINT, BIGINT
 * UNSIGNED and DECIMAL(40,0) columns: beyond 2^53, negative, beyond 64 bits), binary as bytes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Connection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32Of, type RouteKey } from '../../../src/plan/hash.js';
import { createRouter, sqlResidueExpr } from '../../../src/plan/router.js';
import { decodeVectorKey, type RoutingVectors } from '../../../src/plan/vectors.js';
import { parseTopology } from '../../../src/topology/load.js';
import { prng } from '../../../src/util/prng.js';
import { createDatabases, rootConn, uniqueDb } from '../../support/db.js';
import { ROOT } from './helpers.js';

const ALPHABET = [
  ...'abcXYZ019 -_.',
  'é',
  'ß',
  'ñ',
  'Ω',
  'ж',
  'ł',
  'ż',
  '日',
  '本',
  '語',
  '한',
  '🙂',
  '🚀',
  '\u0301', // combining acute accent
  '\u0000',
  '\t',
  "'",
  '\\',
];

/** 600 strings (empty, trailing spaces, 1–4 byte characters) and 520 integers of every size. */
function keys(): RouteKey[] {
  const rnd = prng(20261122);
  const out: RouteKey[] = ['', ' ', 'a ', 'A', 'naïve café', '日本語', '🙂🙂', 'e\u0301'];
  while (out.length < 600) {
    const len = Math.floor(rnd() * 24);
    let s = '';
    for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
    out.push(s);
  }
  const edges = [0n, 1n, -1n, 2n ** 31n, -(2n ** 31n), 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n];
  edges.push(
    -(2n ** 53n) - 1n,
    2n ** 63n - 1n,
    -(2n ** 63n),
    2n ** 63n,
    2n ** 64n - 1n,
    10n ** 22n + 7n,
    -(10n ** 25n),
  );
  out.push(...edges);
  for (let i = 0; i < 504; i++) {
    // half beyond 2^53 (up to 2^66), half below; half negative where BIGINT allows it
    const bits = rnd() < 0.5 ? 54 + Math.floor(rnd() * 13) : 1 + Math.floor(rnd() * 53);
    let v = 0n;
    for (let b = 0; b < bits; b += 16) v = (v << 16n) | BigInt(Math.floor(rnd() * 65536));
    v &= (1n << BigInt(bits)) - 1n;
    out.push(rnd() < 0.5 && v < 2n ** 63n ? -v : v);
  }
  return out;
}

/** The column a key is stored in: one per value type, so CRC32 sees what it sees in real tables. */
function columnFor(k: RouteKey): 's' | 'i' | 'u' | 'd' | 'b' {
  if (typeof k === 'string') return 's';
  if (Buffer.isBuffer(k)) return 'b';
  const v = BigInt(k);
  if (v >= -(2n ** 63n) && v < 2n ** 63n) return 'i';
  if (v >= 0n && v < 2n ** 64n) return 'u';
  return 'd';
}

async function load(c: Connection, ks: RouteKey[]): Promise<void> {
  await c.query(
    `CREATE TABLE k (id INT NOT NULL PRIMARY KEY, s VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
       i BIGINT NULL, u BIGINT UNSIGNED NULL, d DECIMAL(40,0) NULL, b VARBINARY(255) NULL)`,
  );
  for (let at = 0; at < ks.length; at += 200) {
    const rows: string[] = [];
    const params: string[] = [];
    ks.slice(at, at + 200).forEach((k, j) => {
      const col = columnFor(k);
      let v = String(k);
      if (col === 's') {
        params.push(k as string);
        v = '?';
      } else if (col === 'b') v = `X'${(k as Buffer).toString('hex')}'`;
      const cells = ['s', 'i', 'u', 'd', 'b'].map((x) => (x === col ? v : 'NULL'));
      rows.push(`(${at + j}, ${cells.join(', ')})`);
    });
    await c.query(`INSERT INTO k (id, s, i, u, d, b) VALUES ${rows.join(', ')}`, params);
  }
}

describe('crc32 routing equals the server’s CRC32()', () => {
  const db = uniqueDb('plan_crc32');
  let drop: () => Promise<void>;
  let c: Connection;
  beforeAll(async () => {
    drop = await createDatabases(['s0'], db);
    c = await rootConn('s0', db);
  });
  afterAll(async () => {
    await c.end();
    await drop();
  });

  it('for 1,120 keys: strings with 1–4 byte characters, integers beyond 2^53, negative and beyond 64 bits', async () => {
    const ks = keys();
    expect(ks.length).toBeGreaterThanOrEqual(1000);
    expect(
      ks.filter((k) => typeof k === 'bigint' && (k > 2n ** 53n || k < -(2n ** 53n))).length,
    ).toBeGreaterThan(200);
    await load(c, ks);
    const moduli = [2, 3, 7, 16, 1024];
    const [rows] = await c.query({
      sql: `SELECT id, CRC32(s), CRC32(i), CRC32(u), CRC32(d), CRC32(b), ${moduli
        .map((m) => ['s', 'i', 'u', 'd', 'b'].map((col) => sqlResidueExpr('crc32', col, m)).join(', '))
        .join(', ')} FROM k ORDER BY id`,
      rowsAsArray: true,
    });
    const routers = moduli.map((m) =>
      createRouter(
        parseTopology(
          `version: 1\nshards:\n${Array.from({ length: m }, (_, i) => `  - { name: s${i}, host: h${i}, database: d }`).join('\n')}\ntables:\n  - { name: t, shardKey: k }\nscheme: { type: hash-mod, hash: crc32 }\n`,
          `crc-${m}.yaml`,
        ),
      ),
    );
    const mismatches: string[] = [];
    for (const r of rows as unknown[][]) {
      const id = Number(r[0]);
      const k = ks[id]!;
      const col = ['s', 'i', 'u', 'd', 'b'].indexOf(columnFor(k));
      const server = Number(r[1 + col]);
      if (server !== crc32Of(k))
        mismatches.push(`${JSON.stringify(String(k))}: server ${server}, router ${crc32Of(k)}`);
      moduli.forEach((m, mi) => {
        const residue = Number(r[6 + mi * 5 + col]);
        if (routers[mi]!.ownerIndexOf(k) !== residue)
          mismatches.push(
            `${JSON.stringify(String(k))} mod ${m}: server ${residue}, router ${routers[mi]!.ownerIndexOf(k)}`,
          );
      });
    }
    expect(mismatches).toEqual([]);
    expect((rows as unknown[]).length).toBe(ks.length);
  });

  it('for the published vectors (fixtures/vectors/routing.json): hashes and hash-mod crc32 routes', async () => {
    const v = JSON.parse(
      readFileSync(join(ROOT, 'fixtures', 'vectors', 'routing.json'), 'utf8'),
    ) as RoutingVectors;
    const ks = v.hashes.map((h) => decodeVectorKey(h.key));
    await c.query('DROP TABLE IF EXISTS k');
    await load(c, ks);
    const [rows] = await c.query({
      sql: 'SELECT id, CRC32(s), CRC32(i), CRC32(u), CRC32(d), CRC32(b) FROM k ORDER BY id',
      rowsAsArray: true,
    });
    const server = new Map(
      ks.map((k, i) => {
        const col = ['s', 'i', 'u', 'd', 'b'].indexOf(columnFor(k));
        return [JSON.stringify(v.hashes[i]!.key), Number((rows as unknown[][])[i]![1 + col])];
      }),
    );
    v.hashes.forEach((h, i) => {
      expect({ key: h.key, crc32: server.get(JSON.stringify(h.key)) }).toEqual({
        key: h.key,
        crc32: h.crc32,
      });
      expect(crc32Of(ks[i]!)).toBe(h.crc32);
    });
    const crcCases = v.cases.filter((x) => /hash-mod crc32/.test(x.name));
    expect(crcCases.length).toBe(2);
    for (const cs of crcCases) {
      const t = parseTopology(cs.topology, 'vectors.yaml');
      if (t.scheme.type !== 'hash-mod') throw new Error('unreachable');
      const { modulus, slots } = t.scheme;
      for (const r of cs.routes) {
        const crc = server.get(JSON.stringify(r.key))!;
        expect({ case: cs.name, key: r.key, shard: slots[crc % modulus] }).toEqual({
          case: cs.name,
          key: r.key,
          shard: r.shard,
        });
      }
    }
  });
});
