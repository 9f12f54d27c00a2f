import fc from 'fast-check';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RowOp, sourceOwnerFn, TargetApplier } from '../../../src/apply/applier.js';
import { loadTableMeta, type TableMeta } from '../../../src/apply/table.js';
import type { Row } from '../../../src/apply/values.js';
import { createRouter } from '../../../src/plan/router.js';
import { parseTopology } from '../../../src/topology/load.js';
import { createDatabases, rootConn, topologyYaml, uniqueDb } from '../../support/db.js';

const SCHEMA = `
CREATE TABLE users (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL) ENGINE=InnoDB;
CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, note VARCHAR(40) NULL, KEY (user_id)) ENGINE=InnoDB;
CREATE TABLE coupons (code VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, v INT NOT NULL) ENGINE=InnoDB;
CREATE TABLE corpus (id INT NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, u64 BIGINT UNSIGNED NULL,
  d65 DECIMAL(65,30) NULL, dt6 DATETIME(6) NULL, ts6 TIMESTAMP(6) NULL, b64 BIT(64) NULL, e ENUM('a','b') NULL,
  s SET('x','y','z') NULL, bl BLOB NULL, vb VARBINARY(16) NULL, txt VARCHAR(20) CHARACTER SET utf8mb4 NULL, j JSON NULL,
  maybe VARCHAR(5) NULL) ENGINE=InnoDB;
`;

// Every case runs twice: with the applier's connection as reshard opens it (multipleStatements:
// held writes go out in one packet) and with a connection that takes one statement at a time.
describe.each([true, false])('TargetApplier (multipleStatements %s)', (multi) => {
  const db = uniqueDb('apply');
  const metaDb = `${db}_meta`;
  let drop: () => Promise<void>;
  let conn: Connection;
  let users: TableMeta;
  let orders: TableMeta;
  let corpus: TableMeta;
  let applier: TargetApplier;
  const jobId = 1;

  // Source side: 2 shards, identity hash-mod on user_id (even → s0, odd → s1).
  const topo = parseTopology(
    topologyYaml({
      shards: [
        { name: 's0', server: 's0', database: 'x' },
        { name: 's1', server: 's1', database: 'x' },
      ],
      tables: [
        { name: 'users', shardKey: 'id' },
        { name: 'orders', shardKey: 'user_id' },
        { name: 'corpus', shardKey: 'user_id' },
      ],
      scheme: '{ type: hash-mod, hash: identity }',
    }),
    'apply.yaml',
  );
  const router = createRouter(topo);
  const ownerOf = sourceOwnerFn((k) => router.ownerOf(k));

  const connectT0 = () => rootConn('t0', db, { multipleStatements: multi });
  const newApplier = (job: number) =>
    new TargetApplier({
      jobId: job,
      owner: `test/${db}/${job}`,
      target: 't0',
      metaDb,
      sourceOwnerOf: ownerOf,
      connect: connectT0,
    });

  beforeAll(async () => {
    drop = await createDatabases(['t0'], db, SCHEMA);
    conn = await rootConn('t0', db);
    users = await loadTableMeta(conn, db, { name: 'users', shardKey: 'id' }, 'test');
    orders = await loadTableMeta(conn, db, { name: 'orders', shardKey: 'user_id' }, 'test');
    corpus = await loadTableMeta(conn, db, { name: 'corpus', shardKey: 'user_id' }, 'test');
    applier = newApplier(jobId);
    await applier.open();
  });
  afterAll(async () => {
    await applier.close();
    await conn.query(`DROP DATABASE IF EXISTS \`${metaDb}\``);
    await conn.end();
    await drop();
  });

  const up = (table: TableMeta, source: string, row: Row): RowOp => ({ kind: 'upsert', table, source, row });
  const del = (table: TableMeta, source: string, row: Row): RowOp => ({ kind: 'delete', table, source, row });
  const orderRows = async () => {
    const [r] = await conn.query<RowDataPacket[]>('SELECT id, user_id, note FROM orders ORDER BY id');
    return r.map((x) => [String(x.id), String(x.user_id), x.note === null ? null : String(x.note)]);
  };

  it('fast path: shard key in the primary key is a plain upsert and delete', async () => {
    await applier.apply([
      up(users, 's0', ['2', 'ann']),
      up(users, 's1', ['3', 'bob']),
      up(users, 's0', ['2', 'ann2']),
    ]);
    const [r1] = await conn.query<RowDataPacket[]>('SELECT id, name FROM users ORDER BY id');
    expect(r1.map((r) => [String(r.id), r.name])).toEqual([
      ['2', 'ann2'],
      ['3', 'bob'],
    ]);
    await applier.apply([del(users, 's1', ['3', 'bob'])]);
    const [r2] = await conn.query<RowDataPacket[]>('SELECT id FROM users');
    expect(r2.map((r) => String(r.id))).toEqual(['2']);
  });

  it('a stale row from the old source is parked, not written, and its delete leaves the live row', async () => {
    await conn.query('DELETE FROM orders');
    // Row 5 moved from user 2 (s0) to user 3 (s1); s1's stream is ahead.
    await applier.apply([up(orders, 's1', ['5', '3', 'new'])]);
    const stats = await applier.apply([up(orders, 's0', ['5', '2', 'stale'])]);
    expect(stats.parked).toBe(1);
    expect(await orderRows()).toEqual([['5', '3', 'new']]);
    await applier.apply([del(orders, 's0', ['5', '2', 'stale'])]);
    expect(await orderRows()).toEqual([['5', '3', 'new']]);
    const [p] = await conn.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${metaDb}\`.parked_rows`);
    expect(Number(p[0]!.n)).toBe(0);
  });

  it('the delete of the holding source promotes the parked row (latest image)', async () => {
    await conn.query('DELETE FROM orders');
    await applier.apply([up(orders, 's0', ['7', '2', 'old'])]);
    await applier.apply([up(orders, 's1', ['7', '3', 'v1'])]);
    await applier.apply([up(orders, 's1', ['7', '3', 'v2'])]);
    expect(await orderRows()).toEqual([['7', '2', 'old']]);
    const stats = await applier.apply([del(orders, 's0', ['7', '2', 'old'])]);
    expect(stats.promoted).toBe(1);
    expect(await orderRows()).toEqual([['7', '3', 'v2']]);
  });

  it('pairs a stored primary key that equals an incoming one only under the collation (case, trailing space)', async () => {
    const coupons = await loadTableMeta(conn, db, { name: 'coupons', shardKey: 'user_id' }, 'test');
    await applier.apply([up(coupons, 's1', ['ABC', '3', 1])]);
    // 'abc ' equals 'ABC' under utf8mb4_general_ci (case-insensitive, PAD SPACE): the stored row
    // belongs to s1, so s0's row for the same key must be parked, not written over it.
    const stats = await applier.apply([up(coupons, 's0', ['abc ', '2', 2])]);
    expect(stats.parked).toBe(1);
    const [r] = await conn.query<RowDataPacket[]>('SELECT code, user_id, v FROM coupons');
    expect(r.map((x) => [x.code, String(x.user_id), Number(x.v)])).toEqual([['ABC', '3', 1]]);
    await applier.apply([del(coupons, 's0', ['abc ', '2', 2])]);
    const [p] = await conn.query<RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM \`${metaDb}\`.parked_rows WHERE tbl = 'coupons'`,
    );
    expect(Number(p[0]!.n)).toBe(0);
  });

  it('records the source position in the same transaction as the rows', async () => {
    await applier.apply([up(orders, 's0', ['9', '4', 'x'])], {
      source: 's0',
      file: 'binlog.000003',
      pos: 1234,
      gtid: '0-1-77',
    });
    expect(await applier.appliedPosition('s0')).toEqual({
      source: 's0',
      file: 'binlog.000003',
      pos: 1234,
      gtid: '0-1-77',
    });
    // A failing transaction (value too long under strict mode) leaves neither rows nor position.
    await expect(
      applier.apply([up(orders, 's0', ['10', '4', 'y']), up(orders, 's0', ['11', '4', 'z'.repeat(100)])], {
        source: 's0',
        file: 'binlog.000003',
        pos: 9999,
      }),
    ).rejects.toThrow();
    expect((await applier.appliedPosition('s0'))?.pos).toBe(1234);
    const [r] = await conn.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM orders WHERE id IN (10, 11)');
    expect(Number(r[0]!.n)).toBe(0);
  });

  it('keeps one applied position per (source, target), also for targets sharing a server', async () => {
    // Two target shards on one server share the meta database: their positions must not collide.
    const other = new TargetApplier({
      jobId,
      owner: `test/${db}/${jobId}`,
      target: 't9',
      metaDb,
      sourceOwnerOf: ownerOf,
      connect: connectT0,
    });
    await other.open();
    try {
      await applier.apply([], { source: 's1', file: 'binlog.000007', pos: 100 });
      await other.apply([], { source: 's1', file: 'binlog.000007', pos: 900 });
      expect((await applier.appliedPosition('s1'))?.pos).toBe(100);
      expect((await other.appliedPosition('s1'))?.pos).toBe(900);
    } finally {
      await other.close();
    }
  });

  it('writes every type byte-exact', async () => {
    const row: Row = [
      '1',
      '2',
      '18446744073709551615',
      '12345678901234567890123456789012345.123456789012345678901234567891',
      '2024-02-29 23:59:59.999999',
      '2038-01-19 03:14:07.999999',
      Buffer.from('ffffffffffffffff', 'hex'),
      'b',
      'x,z',
      Buffer.from([0, 1, 0, 255, 0]),
      Buffer.from([0, 0]),
      '😀 émoji',
      '{"big": 12345678901234567890, "a": [1, 2]}',
      '',
    ];
    await applier.apply([up(corpus, 's0', row), up(corpus, 's0', ['2', '2', ...Array(12).fill(null)])]);
    const [r] = await conn.query({ sql: 'SELECT * FROM corpus ORDER BY id', rowsAsArray: true });
    const got = (r as unknown as unknown[][]).map((x) =>
      x.map((v) => (typeof v === 'number' ? String(v) : v)),
    );
    expect(got[0]!.map((v) => (Buffer.isBuffer(v) ? v.toString('hex') : v))).toEqual(
      row.map((v) => (Buffer.isBuffer(v) ? v.toString('hex') : v)),
    );
    expect(got[1]!.slice(2).every((v) => v === null)).toBe(true);
  });

  it('sends the writes of a transaction in one packet when the connection allows it', async () => {
    await conn.query('DELETE FROM users');
    const sent: string[] = [];
    const counting = new TargetApplier({
      jobId,
      owner: `test/${db}/${jobId}`,
      target: 't0',
      metaDb,
      sourceOwnerOf: ownerOf,
      connect: async () => {
        const c = await connectT0();
        const query = c.query.bind(c);
        (c as { query: unknown }).query = (...args: Parameters<typeof query>) => {
          const sql = args[0];
          sent.push(typeof sql === 'string' ? sql : (sql as { sql: string }).sql);
          return query(...args);
        };
        return c;
      },
    });
    await counting.open();
    try {
      await counting.apply([up(users, 's0', ['20', 'a']), up(users, 's0', ['22', 'b'])]);
      sent.length = 0;
      // Four runs (upsert, delete, upsert, delete) and a position: 7 statements with COMMIT.
      const stats = await counting.apply(
        [
          up(users, 's0', ['24', 'c']),
          del(users, 's0', ['20', 'a']),
          up(users, 's0', ['20', 'a2']),
          del(users, 's0', ['22', 'b']),
        ],
        { source: 's0', file: 'binlog.000001', pos: 500 },
      );
      expect(stats).toEqual({ written: 2, deleted: 2, parked: 0, promoted: 0 });
      expect(sent.length).toBe(multi ? 2 : 7);
      expect(sent.at(-1)).toBe('COMMIT');
      const [r] = await conn.query<RowDataPacket[]>('SELECT id, name FROM users ORDER BY id');
      expect(r.map((x) => [String(x.id), x.name])).toEqual([
        ['20', 'a2'],
        ['24', 'c'],
      ]);
      expect((await counting.appliedPosition('s0'))?.pos).toBe(500);
    } finally {
      await counting.close();
    }
  });

  it('a failing statement after writes already sent in earlier packets rolls back the whole transaction', async () => {
    await conn.query('DELETE FROM users');
    const small = new TargetApplier({
      jobId,
      owner: `test/${db}/${jobId}`,
      target: 't0',
      metaDb,
      sourceOwnerOf: ownerOf,
      connect: connectT0,
      maxHeldChars: 200,
    });
    await small.open();
    try {
      await small.apply([up(users, 's0', ['30', 'keep'])], { source: 's0', file: 'binlog.000002', pos: 10 });
      const ops: RowOp[] = [];
      for (let i = 0; i < 20; i++) {
        ops.push(up(users, 's0', [String(100 + 2 * i), `n${i}`]));
        ops.push(del(users, 's0', ['30', 'keep']));
      }
      // Too long for VARCHAR(40) under strict mode: the last statement fails.
      ops.push(up(users, 's0', ['400', 'x'.repeat(41)]));
      await expect(small.apply(ops, { source: 's0', file: 'binlog.000002', pos: 20 })).rejects.toThrow(
        /too long/i,
      );
      const [r] = await conn.query<RowDataPacket[]>('SELECT id, name FROM users ORDER BY id');
      expect(r.map((x) => [String(x.id), x.name])).toEqual([['30', 'keep']]);
      expect((await small.appliedPosition('s0'))?.pos).toBe(10);
      // The connection is usable afterwards, and the same transaction without the bad row commits.
      const stats = await small.apply(ops.slice(0, -1), { source: 's0', file: 'binlog.000002', pos: 20 });
      expect(stats.written).toBe(20);
      const [r2] = await conn.query<RowDataPacket[]>('SELECT COUNT(*) AS n, MIN(id) AS lo FROM users');
      expect([Number(r2[0]!.n), String(r2[0]!.lo)]).toEqual([20, '100']);
      expect((await small.appliedPosition('s0'))?.pos).toBe(20);
    } finally {
      await small.close();
    }
  });

  it('converges for any interleaving of two sources’ ordered streams with cross-source moves (property)', async () => {
    type Ev = { source: 's0' | 's1'; op: RowOp };
    // A history of app operations on one primary key (id 42). Each step happens on the source that
    // owns the row's user at that time; a move is a delete on the old source and an insert on the
    // new one, in either order.
    const step = fc.oneof(
      fc.record({ t: fc.constant('update' as const), note: fc.string({ maxLength: 5 }) }),
      fc.record({
        t: fc.constant('move' as const),
        user: fc.integer({ min: 1, max: 6 }),
        insertFirst: fc.boolean(),
      }),
      fc.record({ t: fc.constant('delete' as const) }),
      fc.record({ t: fc.constant('insert' as const), user: fc.integer({ min: 1, max: 6 }) }),
    );
    const srcOf = (user: number) => (user % 2 === 0 ? 's0' : 's1');
    let job = 1000;
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 12 }),
        fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
        async (steps, coin) => {
          job++;
          const streams: Record<'s0' | 's1', Ev[]> = { s0: [], s1: [] };
          let cur: { user: number; note: string } | undefined;
          let n = 0;
          const emit = (kind: 'upsert' | 'delete', user: number, note: string) => {
            const s = srcOf(user);
            streams[s].push({
              source: s,
              op: { kind, table: orders, source: s, row: ['42', String(user), note] },
            });
          };
          for (const st of steps) {
            if (st.t === 'insert' && !cur) {
              cur = { user: st.user, note: `i${n++}` };
              emit('upsert', cur.user, cur.note);
            } else if (st.t === 'update' && cur) {
              cur = { ...cur, note: `${st.note}${n++}` };
              emit('upsert', cur.user, cur.note);
            } else if (st.t === 'delete' && cur) {
              emit('delete', cur.user, cur.note);
              cur = undefined;
            } else if (st.t === 'move' && cur && srcOf(st.user) !== srcOf(cur.user)) {
              const next = { user: st.user, note: `m${n++}` };
              if (st.insertFirst) {
                emit('upsert', next.user, next.note);
                emit('delete', cur.user, cur.note);
              } else {
                emit('delete', cur.user, cur.note);
                emit('upsert', next.user, next.note);
              }
              cur = next;
            }
          }
          // Random merge of the two streams, each kept in order.
          const a = new TargetApplier({
            jobId: job,
            owner: `test/${db}/${job}`,
            target: 't0',
            metaDb,
            sourceOwnerOf: ownerOf,
            connect: connectT0,
            // Packets of a few statements: a transaction spans several of them.
            maxHeldChars: 600,
          });
          await a.open();
          try {
            await conn.query('DELETE FROM orders WHERE id = 42');
            let i = 0;
            let j = 0;
            let c = 0;
            // Consecutive events of one source go into one transaction while the coin says so
            // (a transaction holds one source's changes, as a tailer worker's do).
            let batch: Ev[] = [];
            const flush = async () => {
              if (batch.length) await a.apply(batch.map((e) => e.op));
              batch = [];
            };
            while (i < streams.s0.length || j < streams.s1.length) {
              const takeS0 = j >= streams.s1.length || (i < streams.s0.length && coin[c++ % coin.length]);
              const ev = takeS0 ? streams.s0[i++]! : streams.s1[j++]!;
              if (batch.length && (batch[0]!.source !== ev.source || coin[c++ % coin.length])) await flush();
              batch.push(ev);
            }
            await flush();
            const [rows] = await conn.query<RowDataPacket[]>(
              'SELECT user_id, note FROM orders WHERE id = 42',
            );
            const got = rows.map((r) => ({ user: Number(r.user_id), note: String(r.note) }));
            expect(got).toEqual(cur ? [cur] : []);
            const [p] = await conn.query<RowDataPacket[]>(
              `SELECT COUNT(*) AS n FROM \`${metaDb}\`.parked_rows WHERE job_id = ?`,
              [job],
            );
            expect(Number(p[0]!.n)).toBe(0);
          } finally {
            await a.close();
          }
        },
      ),
      { numRuns: 60, seed: 20261122 },
    );
  });
});
