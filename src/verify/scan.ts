/**
 * Reading rows as raw bytes, in primary-key order, with bounded memory.
 *
 * Rows come through mysql2's callback API as they are parsed (`result` events, no result array)
 * with `typeCast: false` (each column the server's text-protocol bytes, or null) and
 * `rowsAsArray`. That path parses about three times faster than the promise API building arrays.
 *
 * `scanTable` pages by keyset: `WHERE pk > lastPk [AND filter] ORDER BY pk LIMIT pageSize`, so
 * each statement is short (no long-running snapshot on a live primary), memory is one page at
 * most (rows are handed over and dropped as they arrive), and a scan can stop anywhere.
 *
 * Rows as spans of their packets (RowView, streamRowViews) live in src/db/rowview.ts, shared with
 * the copier; they are re-exported here for the verifier's modules.
 */
import type { Connection } from 'mysql2/promise';
import { type RowView, streamRowViews } from '../db/rowview.js';
import { streamQuery } from '../db/stream.js';
import type { RawRow } from './rowhash.js';
import { pkAfter, type VerifyTable } from './table.js';

/** Run one statement and hand every row to `onRow` as it is parsed; resolves to the row count. */
export function streamRows(conn: Connection, sql: string, onRow: (row: RawRow) => void): Promise<number> {
  return streamQuery<RawRow>(conn, { sql, rowsAsArray: true, typeCast: false }, onRow);
}

/** Run one statement and return its rows (small results only: drill-down pages, lookups). */
export async function fetchRows(conn: Connection, sql: string): Promise<RawRow[]> {
  const rows: RawRow[] = [];
  await streamRows(conn, sql, (r) => rows.push(r));
  return rows;
}

export { parseTextRow, type RowView, rowViewOf, streamRowViews } from '../db/rowview.js';

export interface ScanOptions {
  conn: Connection;
  table: VerifyTable;
  /** `db`.`table` on this shard. */
  from: string;
  /** Extra SQL condition (a bucket filter), or undefined for every row. */
  where?: string | undefined;
  pageSize: number;
  onRow: (row: RowView) => void;
  /** Called after each page with the rows read so far. */
  onPage?: (rows: number) => void;
  signal?: AbortSignal | undefined;
}

/** Read every row (matching `where`) in primary-key order, page by page. Returns the row count. */
export async function scanTable(o: ScanOptions): Promise<number> {
  const t = o.table;
  const ncols = t.columns.length;
  const pk = t.pk;
  const lastStart = new Int32Array(pk.length);
  const lastLen = new Int32Array(pk.length);
  let lastBuf: Buffer | undefined;
  let last: RawRow | undefined;
  let total = 0;
  for (;;) {
    o.signal?.throwIfAborted();
    const conds: string[] = [];
    if (last) conds.push(pkAfter(t, last));
    if (o.where) conds.push(`(${o.where})`);
    const sql = `SELECT ${t.sql.select} FROM ${o.from}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${t.sql.orderBy} LIMIT ${o.pageSize}`;
    lastBuf = undefined;
    const n = await streamRowViews(o.conn, sql, ncols, (view) => {
      // Remember where the last row's key is; its packet buffer is not reused.
      for (let j = 0; j < pk.length; j++) {
        lastStart[j] = view.start[pk[j]!]!;
        lastLen[j] = view.len[pk[j]!]!;
      }
      lastBuf = view.buf;
      o.onRow(view);
    });
    total += n;
    o.onPage?.(total);
    if (n < o.pageSize || !lastBuf) return total;
    const buf: Buffer = lastBuf;
    last = pk.map((_, j) =>
      lastStart[j]! < 0 ? null : Buffer.from(buf.subarray(lastStart[j]!, lastStart[j]! + lastLen[j]!)),
    );
  }
}
