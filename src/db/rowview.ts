/**
 * Rows as the MySQL text protocol carries them, read without making a JavaScript value per
 * column: a row is a set of spans into the packet it arrived in (RowView). The verifier hashes
 * rows this way (src/verify) and the copier transcodes them into LOAD DATA (src/copy); both read
 * through `streamRowViews`, which stands in for mysql2's row parser.
 */
import type { Connection } from 'mysql2/promise';
import { ReshardError } from '../errors.js';
import { streamQuery } from './stream.js';

/** One column value as the server sent it (text protocol), or null. */
export type RawValue = Buffer | null;
export type RawRow = RawValue[];

/** lenenc(len): the text protocol's minimal length prefix. */
export function lenenc(len: number): Buffer {
  if (len < 251) return Buffer.from([len]);
  if (len < 2 ** 16) return Buffer.from([0xfc, len & 0xff, len >>> 8]);
  if (len < 2 ** 24) return Buffer.from([0xfd, len & 0xff, (len >>> 8) & 0xff, len >>> 16]);
  const b = Buffer.alloc(9);
  b[0] = 0xfe;
  b.writeUInt32LE(len % 2 ** 32, 1);
  b.writeUInt32LE(Math.floor(len / 2 ** 32), 5);
  return b;
}

/** The text-protocol payload of a row (no column count): what a server sends for it. */
export function textRowPayload(row: readonly RawValue[]): Buffer {
  const parts: Buffer[] = [];
  for (const v of row) {
    if (v === null) parts.push(Buffer.from([0xfb]));
    else parts.push(lenenc(v.length), v);
  }
  return Buffer.concat(parts);
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
  /**
   * `buf` is a packet buffer as mysql2 received it (a socket chunk, or a packet reassembled into
   * a buffer of its own), which nothing writes after it arrived: consumers may keep using bytes
   * of it across rows (the verifier's WebAssembly hash copies it in once for all its rows).
   * False for views over any other buffer.
   */
  received: boolean;
}

function emptyView(n: number): RowView {
  return {
    buf: Buffer.alloc(0),
    start: new Int32Array(n),
    len: new Int32Array(n),
    rowStart: 0,
    rowEnd: 0,
    minimal: true,
    received: false,
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
          view.received = true;
        } catch (e) {
          failed = new ReshardError('bug', 'E_BUG', `cannot read a row packet: ${(e as Error).message}`, {
            cause: e,
          });
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
        view.received = false;
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
