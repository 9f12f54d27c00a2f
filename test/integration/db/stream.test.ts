/**
 * Streaming reads on a connection the server kills. mysql2 reports a lost connection of a
 * callback-less query only on the connection, never on the query: before src/db/stream.ts a copy
 * slot or a verify scan then waited forever (a CI run hung on exactly this). Each read here must
 * settle with the driver's fatal error, so retry logic replaces the connection.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { classifyError } from '../../../src/db/retry.js';
import { iterateQuery, streamQuery } from '../../../src/db/stream.js';
import { rootConn } from '../../support/db.js';

const open: Connection[] = [];
async function conn(): Promise<Connection> {
  const c = await rootConn('s0', 'mysql'); // sequence tables need a current database
  open.push(c);
  return c;
}
afterEach(async () => {
  for (const c of open.splice(0)) c.destroy();
});

async function idOf(c: Connection): Promise<number> {
  const [rows] = await c.query<RowDataPacket[]>('SELECT CONNECTION_ID() AS id');
  return Number(rows[0]!.id);
}

async function kill(id: number): Promise<void> {
  const k = await conn();
  await k.query(`KILL CONNECTION ${id}`);
}

/** Settles within `ms`, or fails the test with 'hung' instead of waiting for the test timeout. */
function within<T>(p: Promise<T>, ms = 10_000): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error('hung')), ms).unref()),
  ]);
}

// 3 million rows from the sequence engine: far more than fit in socket buffers, so the kill
// lands while the result is still streaming.
const BIG = "SELECT seq, REPEAT('x', 100) FROM seq_1_to_3000000";

describe('streamQuery', () => {
  it('streams every row and resolves to the count', async () => {
    const c = await conn();
    const core = (c as unknown as { connection: NodeJS.EventEmitter }).connection;
    const listeners = core.listenerCount('error');
    let sum = 0n;
    const n = await streamQuery<string[]>(
      c,
      { sql: 'SELECT seq FROM seq_1_to_1000', rowsAsArray: true },
      (r) => {
        sum += BigInt(r[0]!);
      },
    );
    expect(n).toBe(1000);
    expect(sum).toBe(500500n);
    // The connection is still usable and carries no leftover listener.
    expect(core.listenerCount('error')).toBe(listeners);
    const [rows] = await c.query<RowDataPacket[]>('SELECT 1 AS one');
    expect(rows[0]!.one).toBe(1);
  });

  it('rejects at once on a connection the server already killed', async () => {
    const c = await conn();
    await kill(await idOf(c));
    await new Promise((r) => setTimeout(r, 200)); // let the close arrive
    const err = await within(streamQuery(c, { sql: 'SELECT 1' }, () => undefined)).catch((e: unknown) => e);
    expect((err as Error).message).not.toBe('hung');
    expect(classifyError(err)).toBe('reconnect');
  });

  it('rejects when the connection is killed mid-result', async () => {
    const c = await conn();
    const id = await idOf(c);
    let rows = 0;
    let killing: Promise<void> | undefined;
    const err = await within(
      streamQuery(c, { sql: BIG, rowsAsArray: true }, () => {
        rows++;
        if (rows === 1) killing = kill(id);
      }),
    ).catch((e: unknown) => e);
    await killing;
    expect((err as Error).message).not.toBe('hung');
    expect(rows).toBeLessThan(3_000_000);
    expect(classifyError(err)).toBe('reconnect');
  });

  it('drains the result after onRow throws, then rejects with that error', async () => {
    const c = await conn();
    const err = await streamQuery(c, { sql: 'SELECT seq FROM seq_1_to_5000', rowsAsArray: true }, () => {
      throw new Error('row 1 is bad');
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('row 1 is bad');
    const [rows] = await c.query<RowDataPacket[]>('SELECT 2 AS two');
    expect(rows[0]!.two).toBe(2);
  });
});

describe('iterateQuery', () => {
  it('ends with the fatal error when the connection is killed mid-result', async () => {
    const c = await conn();
    const id = await idOf(c);
    let rows = 0;
    const err = await within(
      (async () => {
        for await (const _ of iterateQuery(c, { sql: BIG, rowsAsArray: true })) {
          rows++;
          if (rows === 1) await kill(id);
        }
      })(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).not.toBe('hung');
    expect(rows).toBeLessThan(3_000_000);
    expect(classifyError(err)).toBe('reconnect');
  });

  it('yields every row of a normal result', async () => {
    const c = await conn();
    let n = 0;
    for await (const _ of iterateQuery(c, { sql: 'SELECT seq FROM seq_1_to_2500' })) n++;
    expect(n).toBe(2500);
  });
});
