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
 */
import type { Connection } from 'mysql2/promise';
import { streamQuery } from '../db/stream.js';
import { ReshardError } from '../errors.js';
import { type RawRow, textRowPayload } from './rowhash.js';
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

/**
 * One row as spans of a packet buffer: column i is buf[start[i], start[i] + len[i]), or NULL when
 * start[i] is -1. The object is reused for every row of a statement: use it inside the callback,
 * copy what must outlive it.
 */
export interface RowView {
  buf: Buffer;
  start: Int32Array;
  len: Int32Array;
  /** The row's text-protocol payload is buf[rowStart, rowEnd). */
  rowStart: number;
  rowEnd: number;
  /** Every length prefix in the payload is minimal (then it is the canonical encoding). */
  minimal: boolean;
}

function emptyView(n: number): RowView {
  return {
    buf: Buffer.alloc(0),
    start: new Int32Array(n),
    len: new Int32Array(n),
    rowStart: 0,
    rowEnd: 0,
    minimal: true,
  };
}

/** A view of a parsed row (tests, and mysql2 versions without the row hook). */
export function rowViewOf(row: RawRow): RowView {
  const view = emptyView(row.length);
  fillViewFromRow(view, row);
  return view;
}

function fillViewFromRow(view: RowView, row: RawRow): void {
  const payload = textRowPayload(row);
  parseTextRow(payload, 0, payload.length, view, row.length);
}

/** Split a text-protocol row packet's payload buf[off, end) into n column spans. */
export function parseTextRow(buf: Buffer, off: number, end: number, view: RowView, n: number): void {
  const start = view.start;
  const len = view.len;
  let minimal = true;
  view.rowStart = off;
  for (let i = 0; i < n; i++) {
    const b = buf[off]!;
    let l: number;
    if (b < 0xfb) {
      l = b;
      off += 1;
    } else if (b === 0xfb) {
      start[i] = -1;
      len[i] = 0;
      off += 1;
      continue;
    } else if (b === 0xfc) {
      l = buf[off + 1]! | (buf[off + 2]! << 8);
      if (l < 251) minimal = false;
      off += 3;
    } else if (b === 0xfd) {
      l = buf[off + 1]! | (buf[off + 2]! << 8) | (buf[off + 3]! << 16);
      if (l < 2 ** 16) minimal = false;
      off += 4;
    } else {
      l =
        (buf[off + 1]! | (buf[off + 2]! << 8) | (buf[off + 3]! << 16)) +
        buf[off + 4]! * 2 ** 24 +
        buf.readUInt32LE(off + 5) * 2 ** 32;
      if (l < 2 ** 24) minimal = false;
      off += 9;
    }
    start[i] = off;
    len[i] = l;
    off += l;
  }
  if (off !== end) throw new Error(`row packet of ${end - off} unexpected bytes for ${n} columns`);
  view.buf = buf;
  view.rowEnd = end;
  view.minimal = minimal;
}

/**
 * Run one statement and hand every row to `onRow` as spans of the packet it arrived in: no
 * Buffer or array is allocated per row or per column. This reads mysql2's row packets directly
 * (the text protocol: each column a length-encoded string, 0xFB for NULL) by standing in for its
 * row parser; should a mysql2 version not use that hook, rows arrive parsed and are converted,
 * slower but the same. Resolves to the row count.
 */
export function streamRowViews(
  conn: Connection,
  sql: string,
  columns: number,
  onRow: (view: RowView) => void,
  values?: unknown[],
): Promise<number> {
  {
    const view = emptyView(columns);
    let n = 0;
    let failed: unknown;
    const take = () => {
      n++;
      try {
        onRow(view);
      } catch (e) {
        failed ??= e;
      }
    };
    const parser = {
      next(packet: { buffer?: unknown; offset?: unknown; end?: unknown }): null {
        // Never throw into mysql2 here: it would end the command mid-result and desynchronise the
        // connection. Record the error and keep consuming rows instead.
        if (failed !== undefined) return null;
        try {
          if (
            !Buffer.isBuffer(packet.buffer) ||
            typeof packet.offset !== 'number' ||
            typeof packet.end !== 'number'
          )
            throw new Error('unexpected mysql2 packet shape');
          parseTextRow(packet.buffer, packet.offset, packet.end, view, columns);
        } catch (e) {
          failed = new ReshardError(
            'bug',
            'E_BUG',
            `verify: cannot read a row packet: ${(e as Error).message}`,
            {
              cause: e,
            },
          );
          return null;
        }
        take();
        return null;
      },
    };
    return streamQuery<RawRow | null>(
      conn,
      { sql, ...(values ? { values } : {}), rowsAsArray: true, typeCast: false },
      (row) => {
        if (row === null || failed !== undefined) return;
        fillViewFromRow(view, row); // mysql2 parsed the row itself: same bytes, one copy
        take();
      },
      (q) =>
        Object.defineProperty(q, '_rowParser', {
          configurable: true,
          get: () => parser,
          set: () => undefined,
        }),
    ).then(() => {
      if (failed !== undefined) throw failed;
      return n;
    });
  }
}

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
    const sql = `SELECT ${t.sql.columns} FROM ${o.from}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${t.sql.orderBy} LIMIT ${o.pageSize}`;
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
