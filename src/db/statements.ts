/**
 * Several statements per round trip, on connections that allow it (see `Statements`).
 */
import type { Connection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';

/** Whether a connection was opened with multipleStatements (several statements per packet). */
export function takesManyStatements(c: Connection): boolean {
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
 * Values are formatted here exactly as `query(sql, values)` formats them (the connection's own
 * `format`, same escaping); identifiers are quoted by the callers. On a connection opened without
 * multipleStatements every statement goes alone.
 */
export class Statements {
  private held: string[] = [];
  private heldChars = 0;
  private done: (((r: ResultSetHeader) => void) | undefined)[] = [];

  constructor(
    private readonly conn: Connection,
    private readonly multi: boolean,
    private readonly maxChars: number,
  ) {}

  /** A write whose result can wait; `onDone` gets it once it has run. */
  async write(sql: string, params: unknown[] = [], onDone?: (r: ResultSetHeader) => void): Promise<void> {
    if (!this.multi) {
      const [r] = await this.conn.query(sql, params);
      onDone?.(r as ResultSetHeader);
      return;
    }
    const text = params.length ? this.conn.format(sql, params) : sql;
    if (this.held.length && this.heldChars + text.length > this.maxChars) await this.flush();
    this.held.push(text);
    this.heldChars += text.length;
    this.done.push(onDone);
  }

  /** A statement whose result is needed now: sent after everything held, in the same packet. */
  async read(sql: string, params: unknown[], rowsAsArray = false): Promise<RowDataPacket[]> {
    return (await this.readMany([[sql, params]], rowsAsArray))[0]!;
  }

  /** Several statements whose results are needed now, in order, in one packet with everything held. */
  async readMany(reads: [sql: string, params: unknown[]][], rowsAsArray = false): Promise<RowDataPacket[][]> {
    if (!this.multi || (this.held.length === 0 && reads.length === 1)) {
      const out: RowDataPacket[][] = [];
      for (const [sql, values] of reads) {
        const [rows] = await this.conn.query<RowDataPacket[]>({ sql, values, rowsAsArray });
        out.push(rows);
      }
      return out;
    }
    const results = await this.send(
      reads.map(([sql, params]) => this.conn.format(sql, params)),
      rowsAsArray,
    );
    return results.slice(results.length - reads.length) as RowDataPacket[][];
  }

  /** Send everything held. */
  async flush(): Promise<void> {
    if (this.held.length) await this.send([], false);
  }

  private async send(reads: string[], rowsAsArray: boolean): Promise<unknown[]> {
    const texts = this.held;
    const done = this.done;
    this.held = [];
    this.done = [];
    this.heldChars = 0;
    texts.push(...reads);
    const [res] = await this.conn.query({ sql: texts.join(';\n'), rowsAsArray });
    // One statement gives its result alone; several give one result per statement.
    const results = texts.length === 1 ? [res] : (res as unknown as unknown[]);
    done.forEach((cb, i) => {
      cb?.(results[i] as ResultSetHeader);
    });
    return results;
  }
}
