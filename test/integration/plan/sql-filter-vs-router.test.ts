/**
 * Found by review D: the copy's SQL filter vs the router, on the real server. For each column type a
 * shard key may have and each scheme change, every segment's `sqlPredicate` (over the shard key
 * as `TableMeta.sql.shardKey` writes it, exactly what the copy runs) must select exactly the rows
 * the router puts in that segment — the router reading each key as the copy reads it (the
 * text-protocol bytes, `routeKeyOfText`). A row in the router's moving segment that the SQL
 * leaves out is never read by the copy.
 */
import type { Connection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTableMeta, routeKeyOfText, type TableMeta } from '../../../src/apply/table.js';
import { indexPlan } from '../../../src/plan/plan-index.js';
import { plan } from '../../../src/plan/planner.js';
import { parseTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';
import { prng } from '../../../src/util/prng.js';
import { createDatabases, rootConn, uniqueDb } from '../../support/db.js';

function topo(shards: string[], scheme: string, entries?: Record<string, string>): Topology {
  const list = shards.map((s) => `  - { name: ${s}, host: ${s}.db, port: 3306, database: app }`).join('\n');
  const t = parseTopology(
    `version: 1\nshards:\n${list}\ntables:\n  - { name: t, shardKey: k }\nscheme: ${scheme}\n`,
    `${shards.join('')}.yaml`,
  );
  if (entries) {
    if (t.scheme.type !== 'directory') throw new Error('unreachable');
    t.scheme.entries = new Map(Object.entries(entries));
  }
  return t;
}

const ABC = ['a', 'b', 'c'];
const ABCD = ['a', 'b', 'c', 'd'];
const crc3 = () => topo(ABC, '{ type: hash-mod, hash: crc32 }');
const crc4 = () => topo(ABCD, '{ type: hash-mod, hash: crc32 }');
const id3 = () => topo(ABC, '{ type: hash-mod, hash: identity }');
const id5 = () => topo([...ABCD, 'e'], '{ type: hash-mod, hash: identity }');
const lit = (v: bigint | string) => (typeof v === 'string' ? JSON.stringify(v) : v.toString());
function range(shards: string[], bounds: (bigint | string)[]): Topology {
  const items = shards.map((s, i) => {
    const parts = [`shard: ${s}`];
    if (i > 0) parts.push(`from: ${lit(bounds[i - 1]!)}`);
    if (i < shards.length - 1) parts.push(`to: ${lit(bounds[i]!)}`);
    return `    - { ${parts.join(', ')} }`;
  });
  return topo(shards, `\n  type: range\n  ranges:\n${items.join('\n')}`);
}
function directory(shards: string[], keys: string[], seed: number, def?: string): Topology {
  const rnd = prng(seed);
  const entries: Record<string, string> = {};
  for (const k of keys) if (rnd() < 0.6) entries[k] = shards[Math.floor(rnd() * shards.length)]!;
  const scheme = `{ type: directory, table: { shard: ${shards[0]}, name: dir, keyColumn: k, shardColumn: s }${def ? `, default: ${def}` : ''} }`;
  return topo(shards, scheme, entries);
}

interface Case {
  name: string;
  type: string;
  /** SQL literals of the keys. */
  literals: string[];
  /** The keys' canonical strings (for directory entries). */
  texts: string[];
  int: boolean;
}

function cases(): Case[] {
  const rnd = prng(4242);
  const ints: bigint[] = [0n, 1n, -1n, 2n, 3n, 999999n, 1000000n, 1000001n, -1000000n];
  while (ints.length < 300) {
    const bits = 1 + Math.floor(rnd() * 40);
    const v = BigInt(Math.floor(rnd() * 2 ** bits));
    ints.push(rnd() < 0.3 ? -v : v);
  }
  const big: bigint[] = [0n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 63n + 1n, 2n ** 64n - 1n, 2n ** 53n + 1n];
  while (big.length < 200) {
    let v = 0n;
    for (let i = 0; i < 4; i++) v = (v << 16n) | BigInt(Math.floor(rnd() * 65536));
    big.push(v);
  }
  const alphabet = [...'aAbBzZ09 _-', 'é', 'É', 'ß', 'ñ', 'ż', '€', 'Š', '日', '🙂'];
  const latin = [...'aAbBzZ09 _-', 'é', 'É', 'ß', 'ñ', '€', 'Š', 'ÿ', '™'];
  const strs = (alpha: string[], max: number): string[] => {
    const out = new Set<string>(['a', 'A', 'a ', 'b', 'B', 'é', 'É', 'e']);
    while (out.size < 300) {
      const n = 1 + Math.floor(rnd() * max);
      let s = '';
      for (let i = 0; i < n; i++) s += alpha[Math.floor(rnd() * alpha.length)];
      out.add(s);
    }
    return [...out];
  };
  const bytes = (len: () => number): Buffer[] => {
    const out = new Map<string, Buffer>();
    for (const b of [Buffer.from('a'), Buffer.from('a '), Buffer.from([0x61, 0]), Buffer.from([0xff])])
      out.set(b.toString('hex'), b);
    while (out.size < 300) {
      const n = len();
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++)
        b[i] = rnd() < 0.3 ? [0, 0x20, 0x41, 0x61][Math.floor(rnd() * 4)]! : Math.floor(rnd() * 256);
      out.set(b.toString('hex'), b);
    }
    return [...out.values()];
  };
  const utf = strs(alphabet, 8).filter((s) => s.trimEnd() === s || s.length > 1);
  // Keys distinct under the column's collation (a PRIMARY KEY is not needed on k, but keep it honest).
  const ci = [
    ...new Map(
      utf.map((s) => [s.toLowerCase().normalize('NFD').replace(/\p{M}/gu, '').trimEnd(), s]),
    ).values(),
  ];
  const b4 = bytes(() => 1 + Math.floor(rnd() * 4)).filter((b) => b.length <= 4);
  return [
    {
      name: 'BIGINT',
      type: 'BIGINT NOT NULL',
      literals: ints.map(String),
      texts: ints.map(String),
      int: true,
    },
    {
      name: 'BIGINT UNSIGNED',
      type: 'BIGINT UNSIGNED NOT NULL',
      literals: big.map(String),
      texts: big.map(String),
      int: true,
    },
    {
      name: 'VARCHAR utf8mb4_unicode_ci',
      type: 'VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL',
      literals: ci.map((s) => `X'${Buffer.from(s).toString('hex')}'`),
      texts: ci,
      int: false,
    },
    {
      name: 'CHAR(12) utf8mb4_general_ci',
      type: 'CHAR(12) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL',
      // CHAR drops trailing spaces on read: the key is the trimmed text.
      literals: ci.map((s) => `X'${Buffer.from(s).toString('hex')}'`),
      texts: ci.map((s) => s.trimEnd()),
      int: false,
    },
    {
      name: 'VARCHAR latin1_swedish_ci',
      type: 'VARCHAR(40) CHARACTER SET latin1 NOT NULL',
      literals: strs(latin, 8).map((s) => `CONVERT(X'${Buffer.from(s).toString('hex')}' USING utf8mb4)`),
      texts: [],
      int: false,
    },
    {
      name: 'VARBINARY',
      type: 'VARBINARY(16) NOT NULL',
      literals: bytes(() => Math.floor(rnd() * 6)).map((b) => `X'${b.toString('hex')}'`),
      texts: [],
      int: false,
    },
    {
      name: 'BINARY(4)',
      type: 'BINARY(4) NOT NULL',
      literals: b4.map((b) => `X'${b.toString('hex')}'`),
      texts: [],
      int: false,
    },
  ];
}

interface Pair {
  name: string;
  from: Topology;
  to: Topology;
}

function pairs(c: Case, keysText: string[]): Pair[] {
  const sorted = [...keysText].sort();
  const dirKeys = keysText.filter((_, i) => i % 2 === 0);
  const common: Pair[] = [
    { name: 'hash-mod crc32 3 → 4', from: crc3(), to: crc4() },
    {
      name: 'directory → directory (defaults)',
      from: directory(ABC, dirKeys, 1, 'a'),
      to: directory(ABCD, dirKeys, 2, 'd'),
    },
    { name: 'hash-mod crc32 → directory (default)', from: crc3(), to: directory(ABCD, dirKeys, 3, 'b') },
  ];
  if (c.int) {
    return [
      ...common,
      { name: 'hash-mod identity 3 → 5', from: id3(), to: id5() },
      {
        name: 'range int 3 → 4',
        from: range(ABC, [-5000n, 1000000n]),
        to: range(ABCD, [-5000n, 0n, 1000000n]),
      },
      { name: 'hash-mod identity → range', from: id3(), to: range(ABCD, [-5000n, 0n, 1000000n]) },
      { name: 'range → hash-mod crc32', from: range(ABC, [0n, 1000000n]), to: crc4() },
    ];
  }
  const q = (f: number) => sorted[Math.floor(sorted.length * f)]!;
  return [
    ...common,
    { name: 'range string 3 → 4', from: range(ABC, ['B', 'b']), to: range(ABCD, ['B', 'a ', 'é']) },
    {
      name: 'range string (data quantiles)',
      from: range(ABC, [q(0.3), q(0.6)]),
      to: range(ABCD, [q(0.2), q(0.5), q(0.8)]),
    },
    { name: 'hash-mod crc32 → range string', from: crc3(), to: range(ABCD, ['B', 'a', 'é']) },
  ];
}

describe('sqlPredicate on the server selects exactly the router’s segment', () => {
  const db = uniqueDb('rd_sqlvr');
  let drop: () => Promise<void>;
  let c: Connection;
  beforeAll(async () => {
    drop = await createDatabases(['s0'], db);
    c = await rootConn('s0', db);
  });
  afterAll(async () => {
    await c?.end();
    await drop?.();
  });

  for (const cs of cases()) {
    it(`for ${cs.name} keys, under every scheme change`, async () => {
      const table = `k_${cs.name.replace(/\W+/g, '_')}`;
      await c.query(`CREATE TABLE \`${table}\` (id INT NOT NULL PRIMARY KEY, k ${cs.type}) ENGINE=InnoDB`);
      await c.query(
        `INSERT INTO \`${table}\` VALUES ${cs.literals.map((l, i) => `(${i}, ${l})`).join(', ')}`,
      );
      const meta: TableMeta = await loadTableMeta(c, db, { name: table, shardKey: 'k' }, 's0');
      // The keys as the copy reads them: text-protocol bytes.
      const [raw] = await c.query({
        sql: `SELECT id, k FROM \`${table}\``,
        rowsAsArray: true,
        typeCast: false,
      });
      const rows = (raw as Buffer[][]).map((r) => ({ id: Number(r[0]!.toString()), k: r[1]! }));
      const keysText = cs.texts.length ? cs.texts : rows.map((r) => r.k.toString('utf8'));
      const problems: string[] = [];
      for (const p of pairs(cs, keysText)) {
        const pl = plan(p.from, p.to);
        const index = indexPlan(pl, p.from, p.to);
        const want = new Map<number, number[]>();
        for (const r of rows) {
          const seg = index.segmentIdOf(routeKeyOfText(meta.keyKind, r.k, 0, r.k.length));
          want.set(seg, [...(want.get(seg) ?? []), r.id]);
        }
        for (const seg of pl.segments) {
          const pred = index.sqlPredicate(seg, meta.sql.shardKey);
          if (pred === undefined) continue;
          const [got] = await c.query({
            sql: `SELECT id FROM \`${table}\` WHERE ${pred} ORDER BY id`,
            rowsAsArray: true,
          });
          const ids = (got as unknown[][]).map((r) => Number(r[0]));
          const exp = (want.get(seg.id) ?? []).sort((x, y) => x - y);
          const extra = ids.filter((i) => !exp.includes(i));
          const missing = exp.filter((i) => !ids.includes(i));
          if (extra.length || missing.length) {
            const show = (i: number) => rows.find((r) => r.id === i)!.k.toString('hex');
            problems.push(
              `${p.name}: segment ${seg.from}→${seg.to}: SQL lacks [${missing.slice(0, 5).map(show)}] (${missing.length}), SQL adds [${extra.slice(0, 5).map(show)}] (${extra.length})`,
            );
          }
        }
      }
      expect(problems).toEqual([]);
      expect(rows.length).toBe(cs.literals.length);
    });
  }

  it('for INT ZEROFILL keys (hash-mod crc32 and directory): the filter sees the key as the router does', async () => {
    await c.query(
      'CREATE TABLE zf (id INT NOT NULL PRIMARY KEY, k INT(6) UNSIGNED ZEROFILL NOT NULL) ENGINE=InnoDB',
    );
    const ks = Array.from({ length: 200 }, (_, i) => i * 7 + 1);
    await c.query(`INSERT INTO zf VALUES ${ks.map((k, i) => `(${i}, ${k})`).join(', ')}`);
    const meta = await loadTableMeta(c, db, { name: 'zf', shardKey: 'k' }, 's0');
    const problems: string[] = [];
    const dirKeys = ks.filter((_, i) => i % 2 === 0).map(String);
    for (const p of [
      { name: 'hash-mod crc32 3 → 4', from: crc3(), to: crc4() },
      {
        name: 'directory → directory',
        from: directory(ABC, dirKeys, 5, 'a'),
        to: directory(ABCD, dirKeys, 6, 'd'),
      },
    ]) {
      const pl = plan(p.from, p.to);
      const index = indexPlan(pl, p.from, p.to);
      for (const seg of pl.segments) {
        const [got] = await c.query({
          sql: `SELECT id FROM zf WHERE ${index.sqlPredicate(seg, meta.sql.shardKey)}`,
          rowsAsArray: true,
        });
        const ids = new Set((got as unknown[][]).map((r) => Number(r[0])));
        const exp = new Set(
          ks
            .map((k, i) => [k, i] as const)
            .filter(([k]) => index.segmentIdOf(k) === seg.id)
            .map(([, i]) => i),
        );
        const missing = [...exp].filter((i) => !ids.has(i)).length;
        const extra = [...ids].filter((i) => !exp.has(i)).length;
        if (missing || extra)
          problems.push(`${p.name}: segment ${seg.from}→${seg.to}: SQL lacks ${missing} rows, adds ${extra}`);
      }
    }
    // Now: CRC32(k) and CAST(k AS BINARY) see '000008', the router 8.
    expect(problems).toEqual([]);
  });
});
