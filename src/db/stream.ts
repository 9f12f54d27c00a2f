/**
 * Streaming reads through mysql2's callback API (rows as `result` events, no result array), made
 * safe against a connection that dies.
 *
 * Why this exists: mysql2 reports a network error (the server KILLed the connection, restarted,
 * or a proxy dropped it) only through a command's callback. A callback-less streaming query
 * never gets `error` or `end` for it — the error goes to the *connection's* `error` event, and a
 * query on an already-closed connection likewise only emits `error` on the connection. A bare
 * `query.on('error')` then waits forever (a copy slot or a verify scan hung for good), and with
 * no listener on the connection the event would even crash the process. Every streaming read goes
 * through here, so the connection's error settles the read and the caller retries on a new one.
 */
import type { Readable } from 'node:stream';
import type { Connection } from 'mysql2/promise';
import { ReshardError } from '../errors.js';

/** A callback-API query: events until `end`, or `error` for a server error packet. */
export interface CoreQuery {
  on(event: 'result', fn: (row: never) => void): CoreQuery;
  on(event: 'end', fn: () => void): CoreQuery;
  on(event: 'error', fn: (e: Error) => void): CoreQuery;
  stream(opts?: { highWaterMark?: number }): Readable;
}

export interface CoreQueryOptions {
  sql: string;
  values?: unknown[];
  rowsAsArray?: boolean;
  typeCast?: boolean;
}

interface CoreConnection {
  query(opts: CoreQueryOptions): CoreQuery;
  on(event: 'error', fn: (e: Error) => void): unknown;
  off(event: 'error', fn: (e: Error) => void): unknown;
}

/** The callback connection under a mysql2 promise connection. */
function coreOf(conn: Connection): CoreConnection {
  const c = (conn as unknown as { connection?: CoreConnection }).connection;
  if (!c || typeof c.query !== 'function' || typeof c.on !== 'function')
    throw new ReshardError('bug', 'E_BUG', 'a mysql2 promise connection without its core connection');
  return c;
}

/**
 * Run one statement and hand every row to `onRow` as it is parsed; resolves to the row count
 * after the last row. Rejects on a server error, on the connection's loss (the error is mysql2's,
 * `fatal: true`, so retry logic replaces the connection), or with the first error `onRow` threw —
 * after the result is drained, so the connection stays usable. `prepare` sees the query object
 * before any row arrives (to install a row parser).
 */
export function streamQuery<R>(
  conn: Connection,
  options: CoreQueryOptions,
  onRow: (row: R) => void,
  prepare?: (q: CoreQuery) => void,
): Promise<number> {
  const core = coreOf(conn);
  return new Promise<number>((resolve, reject) => {
    let n = 0;
    let failed: unknown;
    let settled = false;
    const settle = (err: unknown) => {
      if (settled) return;
      settled = true;
      core.off('error', onConnectionError);
      if (err === undefined) resolve(n);
      else reject(err);
    };
    const onConnectionError = (e: Error) => settle(e);
    // Before the query: on a closed connection mysql2 emits the error inside query().
    core.on('error', onConnectionError);
    let q: CoreQuery;
    try {
      q = core.query(options);
    } catch (e) {
      settle(e);
      return;
    }
    if (settled) return;
    prepare?.(q);
    q.on('result', (row: never) => {
      if (failed !== undefined || settled) return;
      n++;
      try {
        onRow(row as R);
      } catch (e) {
        failed = e; // keep draining: throwing into mysql2 would desynchronise the connection
      }
    })
      .on('error', (e: Error) => settle(e))
      .on('end', () => settle(failed));
  });
}

/**
 * The rows of one statement as an async iterable with backpressure (mysql2 pauses the socket
 * while the consumer is behind), ended with an error if the connection is lost.
 */
export async function* iterateQuery<R>(conn: Connection, options: CoreQueryOptions): AsyncGenerator<R> {
  const core = coreOf(conn);
  let lost: Error | undefined;
  let stream: Readable | undefined;
  const onConnectionError = (e: Error) => {
    lost ??= e;
    stream?.destroy(e);
  };
  core.on('error', onConnectionError);
  try {
    stream = core.query(options).stream({ highWaterMark: 1000 });
    if (lost) throw lost;
    for await (const row of stream) yield row as R;
    if (lost) throw lost;
  } finally {
    core.off('error', onConnectionError);
  }
}
