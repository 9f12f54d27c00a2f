/**
 * Several statements per round trip, on connections that allow it (see `Statements`).
 */
import type { Connection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';

/** Whether a connection was opened with multipleStatements (several statements per packet). */
function takesManyStatements(c: Connection): boolean {
  return (c as { config?: { multipleStatements?: boolean } }).config?.multipleStatements === true;
}

/**
 * Largest text of statements held for one packet (characters; a packet is at most 4 bytes per
 * character, so far below MySQL 5.7's default max_allowed_packet of 4 MiB). A single statement
 * longer than this still goes alone, as it always did.
 */
export const HELD_MAX_CHARS = 512 * 1024;

/**
 * The statements of one transaction, sent in as few round trips as the results allow. A write
 * whose result nothing waits for is held and goes out together with the next statement that must
 * be answered (a read, or `flush`), as one multi-statement packet; the server runs them in order
 * and stops at the first error, which then rejects that call.
 *
 * Why: a tailer commit of sysbench's four tables was about 12 round trips (START, a DELETE and an
 * INSERT per table, the position, COMMIT), and on a loaded machine every round trip waits for a
 * CPU twice, on the server and here: a write to a loopback socket wakes the server thread, which
 * then often takes this process's CPU. Held, the writes of a commit are one round trip.
 *
 * The held statements' texts are joined and their values concatenated, so the driver formats the
 * packet once, exactly as it formats any `query(sql, values)`; identifiers are quoted by the
 * callers. On a connection opened without multipleStatements every statement goes alone.
 */
export class Statements {
  private readonly multi: boolean;
  private sqls: string[] = [];
  private values: unknown[] = [];
  private heldChars = 0;
  private done: (((r: ResultSetHeader) => void) | undefined)[] = [];

  constructor(
    private readonly conn: Connection,
    private readonly maxChars = HELD_MAX_CHARS,
  ) {
    this.multi = takesManyStatements(conn);
  }

  /** A write whose result can wait; `onDone` gets it once it has run. */
  async write(sql: string, params: unknown[] = [], onDone?: (r: ResultSetHeader) => void): Promise<void> {
    if (!this.multi) {
      const [r] = await this.conn.query(sql, params);
      onDone?.(r as ResultSetHeader);
      return;
    }
    const chars = sql.length + valueChars(params);
    if (this.sqls.length && this.heldChars + chars > this.maxChars) await this.flush();
    this.sqls.push(sql);
    for (const v of params) this.values.push(v);
    this.heldChars += chars;
    this.done.push(onDone);
  }

  /** A statement whose result is needed now: sent after everything held, in the same packet. */
  async read(sql: string, params: unknown[], rowsAsArray = false): Promise<RowDataPacket[]> {
    return (await this.readMany([[sql, params]], rowsAsArray))[0]!;
  }

  /** Several statements whose results are needed now, in order, in one packet with everything held. */
  async readMany(reads: [sql: string, params: unknown[]][], rowsAsArray = false): Promise<RowDataPacket[][]> {
    if (!this.multi || (this.sqls.length === 0 && reads.length === 1)) {
      const out: RowDataPacket[][] = [];
      for (const [sql, values] of reads) {
        const [rows] = await this.conn.query<RowDataPacket[]>({ sql, values, rowsAsArray });
        out.push(rows);
      }
      return out;
    }
    for (const [sql, params] of reads) {
      this.sqls.push(sql);
      for (const v of params) this.values.push(v);
    }
    const results = await this.send(rowsAsArray);
    return results.slice(results.length - reads.length) as RowDataPacket[][];
  }

  /** Send everything held. */
  async flush(): Promise<void> {
    if (this.sqls.length) await this.send(false);
  }

  private async send(rowsAsArray: boolean): Promise<unknown[]> {
    const sqls = this.sqls;
    const values = this.values;
    const done = this.done;
    this.sqls = [];
    this.values = [];
    this.done = [];
    this.heldChars = 0;
    const [res] = await this.conn.query({ sql: sqls.join(';\n'), values, rowsAsArray });
    // One statement gives its result alone; several give one result per statement.
    const results = sqls.length === 1 ? [res] : (res as unknown as unknown[]);
    done.forEach((cb, i) => {
      cb?.(results[i] as ResultSetHeader);
    });
    return results;
  }
}

/** About how many characters values take in the statement text (buffers go as X'hex'). */
function valueChars(values: readonly unknown[]): number {
  let n = 0;
  for (const v of values) {
    if (typeof v === 'string') n += v.length + 2;
    else if (Buffer.isBuffer(v)) n += 2 * v.length + 3;
    else if (Array.isArray(v)) n += valueChars(v) + 2;
    else n += 24;
  }
  return n;
}
