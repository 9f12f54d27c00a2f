/**
 * The binlog read on a thread of its own (src/binlog/source-thread.ts) must be the same change
 * source as the one it wraps: the same events in the same order with the same exact values
 * (Buffers as Buffers, zero bytes, BIGINT beyond 2^53, DECIMAL, DATETIME(6), JSON, BIT, ENUM/SET,
 * NULL vs ''), the same memory bound under a backlog nobody reads, and the same errors (the
 * tailer tells a purged binlog by errno 1236).
 */
import type { Connection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BinlogPosition, readMasterPosition } from '../../../src/binlog/position.js';
import {
  type BufferedChangeSource,
  type ChangeEvent,
  ZongjiSource,
  type ZongjiSourceOptions,
} from '../../../src/binlog/source.js';
import { ThreadedSource } from '../../../src/binlog/source-thread.js';
import { EXACT_VALUE_OPTIONS } from '../../../src/db/connect.js';
import { createDatabases, port, rootConn, uniqueDb } from '../../support/db.js';

const db = uniqueDb('reader_thread');
let drop: () => Promise<void>;
let c: Connection;

const SCHEMA = `
CREATE TABLE t (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  d DECIMAL(65,30) NULL,
  ts DATETIME(6) NULL,
  b BLOB NULL,
  bits BIT(64) NULL,
  e ENUM('a','b','') NULL,
  s SET('x','y') NULL,
  j JSON NULL,
  txt VARCHAR(50) CHARACTER SET utf8mb4 NULL
) ENGINE=InnoDB`;

let serverIds = 4_100_000 + Math.floor(Math.random() * 100_000);
function options(maxBufferedRows?: number): ZongjiSourceOptions {
  return {
    connection: { host: '127.0.0.1', port: port('s0'), user: 'root', ...EXACT_VALUE_OPTIONS },
    flavor: 'mariadb',
    serverId: serverIds++,
    database: db,
    tables: ['t'],
    heartbeatMs: 200,
    ...(maxBufferedRows !== undefined ? { maxBufferedRows } : {}),
  };
}

/** Every event from `from` until the stream has passed `to`, without local arrival times. */
async function readAll(src: BufferedChangeSource, from: BinlogPosition, to: BinlogPosition) {
  await src.start(from);
  const out: ChangeEvent[] = [];
  try {
    for (;;) {
      const e = await src.next();
      if (e.kind !== 'progress' || !e.heartbeat) out.push({ ...e, receivedAt: 0 });
      if (e.position.file === to.file && e.position.pos >= to.pos) break;
    }
  } finally {
    await src.stop();
  }
  return out;
}

beforeAll(async () => {
  drop = await createDatabases(['s0'], db, SCHEMA);
  c = await rootConn('s0', db);
});
afterAll(async () => {
  await c?.end();
  await drop?.();
});

describe('the binlog reader thread', () => {
  it('yields the same events, values and order as the reader it wraps', async () => {
    const from = await readMasterPosition(c, 'mariadb');
    await c.query(
      `INSERT INTO t VALUES
        (18446744073709551615, -12345678901234567890123456789012345.123456789012345678901234567891,
         '2038-01-19 03:14:07.999999', X'00FF0000', b'1000000000000000000000000000000000000000000000000000000000000001',
         '', 'x,y', '{"a": [1, 2.50, "😀"]}', ''),
        (9007199254740993, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (1, 0.000000000000000000000000000001, '1000-01-01 00:00:00.000001', X'', b'0', 'b', '', 'null', 'Zoë 😀 ')`,
    );
    await c.query("UPDATE t SET b = X'0000', txt = NULL WHERE id = 1");
    await c.query('BEGIN');
    await c.query('DELETE FROM t WHERE id = 9007199254740993');
    await c.query("INSERT INTO t (id, txt) VALUES (2, 'two')");
    await c.query('COMMIT');
    const to = await readMasterPosition(c, 'mariadb');

    const direct = await readAll(new ZongjiSource(options()), from, to);
    const threaded = await readAll(new ThreadedSource(options()), from, to);
    expect(direct.filter((e) => e.kind === 'transaction')).toHaveLength(3);
    expect(threaded).toEqual(direct);
    // toEqual sees a Uint8Array and a Buffer of the same bytes as equal: the decoder does not.
    const blobs = threaded.flatMap((e) =>
      e.kind === 'transaction' ? e.changes.flatMap((ch) => [ch.before?.b, ch.after?.b, ch.after?.bits]) : [],
    );
    const present = blobs.filter((v) => v !== null && v !== undefined);
    expect(present.length).toBeGreaterThan(4);
    for (const v of present) expect(Buffer.isBuffer(v)).toBe(true);
  });

  it('keeps a backlog nobody reads on the server, not in memory, and then delivers all of it in order', async () => {
    const from = await readMasterPosition(c, 'mariadb');
    const n = 3000;
    const values = Array.from({ length: n }, (_, i) => `(${1000 + i}, 'row ${i}')`);
    // One transaction per row: the bound counts rows of finished transactions.
    for (let i = 0; i < n; i += 500) {
      const part = values.slice(i, i + 500);
      await c.query(part.map((v) => `INSERT INTO t (id, txt) VALUES ${v};`).join(''));
    }
    const to = await readMasterPosition(c, 'mariadb');
    const max = 200;
    const src = new ThreadedSource(options(max));
    await src.start(from);
    try {
      // Nobody reads: the reader thread may take as much as its credit (half the bound).
      let peak = 0;
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 50));
        peak = Math.max(peak, src.bufferedRows);
      }
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(max / 2);
      const ids: number[] = [];
      for (;;) {
        const e = await src.next();
        if (e.kind === 'transaction') for (const ch of e.changes) ids.push(Number(ch.after!.id));
        expect(src.bufferedRows).toBeLessThanOrEqual(max / 2);
        if (e.position.file === to.file && e.position.pos >= to.pos) break;
      }
      expect(ids).toEqual(Array.from({ length: n }, (_, i) => 1000 + i));
    } finally {
      await src.stop();
    }
  });

  it('fails with the server error the tailer classifies (1236: no such binlog position), as the reader it wraps', async () => {
    const at = await readMasterPosition(c, 'mariadb');
    const nowhere = { file: `${at.file.replace(/\d+$/, '')}999999`, pos: 4 };
    // The server refuses once the dump has started: start() or the first next() rejects.
    const firstError = async (src: BufferedChangeSource) => {
      try {
        await src.start(nowhere);
        await src.next();
        return undefined;
      } catch (e) {
        return e as { errno?: number; code?: string; name?: string };
      } finally {
        await src.stop();
      }
    };
    const direct = await firstError(new ZongjiSource(options()));
    const threaded = await firstError(new ThreadedSource(options()));
    expect(direct?.errno).toBe(1236);
    expect(threaded?.name).toBe('StreamError');
    expect(threaded?.errno).toBe(1236);
    expect(threaded?.code).toBe(direct?.code);
  });

  it('stops at once while it waits for the server, and a stopped stream yields nothing', async () => {
    const at = await readMasterPosition(c, 'mariadb');
    const src = new ThreadedSource(options());
    await src.start(at);
    const pending = src.next().then(
      () => 'event',
      (e: { code?: string }) => e.code,
    );
    const t0 = Date.now();
    await src.stop();
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(await pending).toBe('STOPPED');
  });
});
