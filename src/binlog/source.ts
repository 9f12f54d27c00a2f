/**
 * The change source: one server's binary log as a stream of whole source transactions.
 *
 * Lifecycle: `start(position)` once → `next()` repeatedly (each call yields one event, in binlog
 * order; it waits while the stream is idle) → `stop()`. After an error `next()` rejects with it;
 * the instance is then finished and the caller starts a new one from the last position it
 * received (positions are transaction boundaries, so nothing is lost or split).
 *
 * What comes out:
 *   transaction  the row changes of one committed source transaction on tracked tables, in
 *                order, with the position after its commit and its commit timestamp;
 *   ddl          a statement on a tracked table (see ddl.ts), with the position after it;
 *   progress     the stream moved without tracked changes (another database's transaction, a
 *                rotate, a heartbeat): the position after it, so "caught up" can be judged.
 *
 * Delivery is at-least-once across restarts (a transaction cut by a disconnect is replayed
 * whole), exactly-once within one instance. Memory is bounded: when more than `maxBufferedRows`
 * rows of finished transactions wait to be read, the socket is paused (the server then holds
 * the rest). One transaction larger than that is still buffered whole — it must be applied in
 * one target transaction.
 *
 * Implementation: @vlasky/zongji, with the exact-value driver options (src/db/connect.ts), row
 * metadata from the binlog itself (binlog_row_metadata=FULL) and server heartbeats for lag.
 */
import ZongJi, {
  type AnyBinlogEvent,
  type BinlogEventByTypeName,
  type BinlogEventTypeName,
  GtidSet,
  MariadbGtidPosition,
} from '@vlasky/zongji';
import type { ConnectionOptions } from 'mysql2';
import { classifyDdl, trackedTablesTouched } from './ddl.js';
import { LATIN1_AS_BYTES } from './decode.js';
import type { BinlogPosition, Flavor } from './position.js';

/** A row image as zongji decodes it: column name → exact value (see decode.ts). */
export type RawImage = Record<string, unknown>;

export interface RowChange {
  table: string;
  kind: 'insert' | 'update' | 'delete';
  /** Before-image (update, delete). */
  before?: RawImage;
  /** After-image (insert, update). */
  after?: RawImage;
}

export interface SourceTransaction {
  kind: 'transaction';
  changes: RowChange[];
  /** Position after the commit: resuming there starts with the next transaction. */
  position: BinlogPosition;
  /** Commit event timestamp, ms since the epoch on the source's clock (1 s resolution). */
  timestamp: number;
  /** Local time (ms) the commit arrived. */
  receivedAt: number;
  /** Binlog events the transaction took (for rates). */
  events: number;
}

export interface SourceDdl {
  kind: 'ddl';
  /** Current database of the session that ran it (unqualified names refer to it). */
  schema: string;
  statement: string;
  tables: string[];
  safeToApply: boolean;
  position: BinlogPosition;
  timestamp: number;
  receivedAt: number;
}

export interface SourceProgress {
  kind: 'progress';
  position: BinlogPosition;
  /** Source timestamp of the event (0 for heartbeats, which carry none). */
  timestamp: number;
  receivedAt: number;
  heartbeat: boolean;
  events: number;
}

export type ChangeEvent = SourceTransaction | SourceDdl | SourceProgress;

export interface ChangeSource {
  start(from: BinlogPosition): Promise<void>;
  next(): Promise<ChangeEvent>;
  stop(): Promise<void>;
}

/** A change source that buffers ahead of its reader, and says how far (for lag). */
export interface BufferedChangeSource extends ChangeSource {
  /** Rows of finished transactions waiting to be read. */
  readonly bufferedRows: number;
  /** Local time of the last event or heartbeat. */
  readonly lastMessage: number;
  /** The oldest event waiting to be read, if any. */
  oldestBuffered(): ChangeEvent | undefined;
}

export interface ZongjiSourceOptions {
  /** mysql2 options for the server (exact-value options are forced on top). */
  connection: ConnectionOptions;
  flavor: Flavor;
  /** Replication server id for the dump connection: unique per server among its replicas. */
  serverId: number;
  /** The shard's database and its tracked tables. */
  database: string;
  tables: readonly string[];
  /**
   * Tracked tables whose engine cannot roll back (not InnoDB): a ROLLBACK TO SAVEPOINT in the
   * binlog leaves their rows in place, while it undoes the others'.
   */
  nonTransactional?: readonly string[];
  /** Server heartbeat period while idle (ms). */
  heartbeatMs?: number;
  maxBufferedRows?: number;
  /** No event or heartbeat for this long means the connection is dead (ms). */
  silenceMs?: number;
}

/** An error from the binlog stream, with the server's errno where it sent one. */
export class StreamError extends Error {
  constructor(
    message: string,
    readonly errno: number | undefined,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StreamError';
  }
}

type GtidTracker = { kind: 'mariadb'; pos: MariadbGtidPosition } | { kind: 'mysql'; set: GtidSet };

/** Buffer accounting: a transaction weighs its rows, anything else one. */
export function weight(e: ChangeEvent): number {
  return e.kind === 'transaction' ? Math.max(1, e.changes.length) : 1;
}

/**
 * Finished events waiting for `next()`: a FIFO with one waiting reader, weighed in rows
 * (`weight`). Consecutive progress events merge into the newest (they only move the position).
 * After `fail` the reader gets what is queued, then the error; after `close` only STOPPED.
 */
export class EventQueue {
  private readonly queue: ChangeEvent[] = [];
  private rows = 0;
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private closed = false;

  /** `taken`: an event of this weight left the queue (handed to the reader, or merged away). */
  constructor(private readonly taken: (weight: number) => void = () => undefined) {}

  get bufferedRows(): number {
    return this.rows;
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  get isEmpty(): boolean {
    return this.queue.length === 0;
  }

  oldest(): ChangeEvent | undefined {
    return this.queue[0];
  }

  push(e: ChangeEvent): void {
    const last = this.queue.at(-1);
    if (e.kind === 'progress' && last?.kind === 'progress') {
      // Consecutive progress only moves the position: keep the newest, count the events.
      this.queue[this.queue.length - 1] = { ...e, events: e.events + last.events, heartbeat: e.heartbeat };
      this.taken(weight(e));
    } else {
      this.queue.push(e);
      this.rows += weight(e);
    }
    this.wake();
  }

  fail(e: Error): void {
    if (this.failure || this.closed) return;
    this.failure = e;
    this.wake();
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  next(): Promise<ChangeEvent> {
    return new Promise<ChangeEvent>((resolve, reject) => {
      const take = () => {
        if (this.closed) {
          // A stopped stream yields nothing more: what is buffered is read again on restart.
          reject(new StreamError('the stream was stopped', undefined, 'STOPPED'));
          return true;
        }
        const e = this.queue.shift();
        if (e) {
          const w = weight(e);
          this.rows -= w;
          this.taken(w);
          resolve(e);
          return true;
        }
        if (this.failure) {
          reject(this.failure);
          return true;
        }
        return false;
      };
      if (take()) return;
      this.waiter = () => {
        if (take()) this.waiter = undefined;
      };
    });
  }

  private wake(): void {
    const w = this.waiter;
    if (w) w();
  }
}

function is<N extends BinlogEventTypeName>(e: AnyBinlogEvent, name: N): e is BinlogEventByTypeName<N> {
  return e.getTypeName() === name;
}

/** Every one of `columns` bits of a rows event's columns-present bitmap is set (a FULL image). */
export function allColumnsPresent(bitmap: Buffer | undefined, columns: number): boolean {
  if (!bitmap || bitmap.length * 8 < columns) return false;
  for (let i = 0; i < columns; i++) if ((bitmap[i >> 3]! & (1 << (i & 7))) === 0) return false;
  return true;
}

const EVENTS = [
  'tablemap',
  'writerows',
  'updaterows',
  'deleterows',
  'xid',
  'query',
  'rotate',
  'format',
  'heartbeat',
  'gtid',
  'anonymousgtid',
  'mariadbgtid',
  'mariadbgtidlist',
  'binlogcheckpoint',
  'previousgtids',
  'xaprepare',
  'transactionpayload',
  'partialupdaterows',
  'unknown',
];

const TXN_CONTROL = /^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+TO)\b/i;
const SAVEPOINT = /^\s*SAVEPOINT\s+(.+?)\s*$/is;
const ROLLBACK_TO = /^\s*ROLLBACK\s+(?:WORK\s+)?TO\s+(?:SAVEPOINT\s+)?(.+?)\s*$/is;
const RELEASE_SAVEPOINT = /^\s*RELEASE\s+SAVEPOINT\s+(.+?)\s*$/is;
/** Statements that change rows; in a binlog only a STATEMENT or MIXED session writes them as text. */
const STATEMENT_DML = /^(INSERT|UPDATE|DELETE|REPLACE|LOAD|CALL|WITH)\b/i;

const XA_START = /^\s*XA\s+(START|BEGIN)\b/i;
const XA_END = /^\s*XA\s+END\b/i;
const XA_FINISH = /^\s*XA\s+(COMMIT|ROLLBACK)\b/i;

/** A savepoint's name as the server compares it: unquoted, case-insensitive. */
function savepointName(raw: string): string {
  const t = raw.trim();
  const name = t.startsWith('`') && t.endsWith('`') && t.length >= 2 ? t.slice(1, -1).replace(/``/g, '`') : t;
  return name.toLowerCase();
}

/** The statement without leading comments and version comments, for classifying it. */
function leadingKeyword(sql: string): string {
  return sql.replace(/^(\s+|\/\*[\s\S]*?\*\/|--[^\n]*\n|#[^\n]*\n)*/, '');
}

export class ZongjiSource implements BufferedChangeSource {
  private z: ZongJi | undefined;
  private readonly events = new EventQueue(() => {
    if (this.paused && this.events.bufferedRows <= this.maxRows / 2) this.resume();
  });
  private paused = false;
  private stopped = false;
  private onStopped: (() => void) | undefined;
  private lastMessageAt = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private readonly trackedTables: Set<string>;
  private gtid: GtidTracker | undefined;
  // The transaction being read.
  private inTxn = false;
  private txnChanges: RowChange[] = [];
  private txnEvents = 0;
  /** Savepoints of the transaction being read: name → how many of its changes preceded it. */
  private savepoints: { name: string; mark: number }[] = [];
  private readonly nonTransactional: Set<string>;
  private pendingGtid: string | undefined;
  private file = '';
  private readonly maxRows: number;

  constructor(private readonly opts: ZongjiSourceOptions) {
    this.trackedTables = new Set(opts.tables);
    this.nonTransactional = new Set(opts.nonTransactional ?? []);
    this.maxRows = opts.maxBufferedRows ?? 20_000;
  }

  /** Rows of finished transactions waiting to be read. */
  get bufferedRows(): number {
    return this.events.bufferedRows;
  }

  /** Local time of the last event or heartbeat. */
  get lastMessage(): number {
    return this.lastMessageAt;
  }

  /** Source timestamp of the oldest transaction waiting to be read (for lag), if any. */
  oldestBuffered(): ChangeEvent | undefined {
    return this.events.oldest();
  }

  async start(from: BinlogPosition): Promise<void> {
    const { opts } = this;
    if (this.stopped) throw new StreamError('the stream was stopped', undefined, 'STOPPED');
    this.file = from.file;
    if (from.gtid !== undefined) {
      try {
        this.gtid =
          opts.flavor === 'mariadb'
            ? { kind: 'mariadb', pos: MariadbGtidPosition.parse(from.gtid) }
            : { kind: 'mysql', set: GtidSet.parse(from.gtid) };
      } catch {
        this.gtid = undefined;
      }
    }
    const z = new ZongJi({
      ...opts.connection,
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      decimalNumbers: false,
      jsonStrings: true,
      timezone: 'Z',
    } as ConnectionOptions);
    this.z = z;
    const ready = new Promise<void>((resolve, reject) => {
      z.once('ready', () => {
        // Ask for heartbeats while idle (queued on the dump connection before the dump command).
        const ns = BigInt(opts.heartbeatMs ?? 1000) * 1_000_000n;
        z.connection?.query(`SET @master_heartbeat_period = ${ns}`, () => undefined);
        resolve();
      });
      z.once('error', reject);
    });
    z.on('error', (e: Error) => this.fail(e));
    z.on('binlog', (e: AnyBinlogEvent) => this.onEvent(e));
    z.start({
      serverId: opts.serverId,
      filename: from.file,
      position: from.pos,
      includeEvents: EVENTS,
      includeSchema: { [opts.database]: [...opts.tables] },
    });
    // stop() during the handshake must not leave start() waiting for a 'ready' that never comes.
    const stopped = new Promise<void>((resolve) => {
      this.onStopped = resolve;
    });
    await Promise.race([ready, stopped]);
    if (this.stopped) throw new StreamError('the stream was stopped', undefined, 'STOPPED');
    this.lastMessageAt = Date.now();
    const silence = opts.silenceMs ?? Math.max(5000, 4 * (opts.heartbeatMs ?? 1000));
    this.watchdog = setInterval(() => {
      if (!this.paused && Date.now() - this.lastMessageAt > silence) {
        this.fail(
          new StreamError(`no event or heartbeat for ${silence} ms`, undefined, 'PROTOCOL_CONNECTION_LOST'),
        );
      }
    }, 1000);
    this.watchdog.unref();
  }

  next(): Promise<ChangeEvent> {
    return this.events.next();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.onStopped?.();
    if (this.watchdog) clearInterval(this.watchdog);
    const z = this.z;
    this.events.close();
    if (!z) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      z.once('stopped', () => {
        clearTimeout(t);
        resolve();
      });
      try {
        z.stop();
      } catch {
        clearTimeout(t);
        resolve();
      }
    });
  }

  private fail(e: unknown): void {
    if (this.events.failed || this.stopped) return;
    const err = e as { message?: string; errno?: number; code?: string };
    this.events.fail(
      e instanceof StreamError
        ? e
        : new StreamError(err?.message ?? String(e), err?.errno, err?.code, { cause: e }),
    );
  }

  private push(e: ChangeEvent): void {
    this.events.push(e);
    if (!this.paused && this.events.bufferedRows > this.maxRows) this.pause();
  }

  private pause(): void {
    this.paused = true;
    this.z?.connection?.pause();
  }

  private resume(): void {
    this.paused = false;
    this.lastMessageAt = Date.now();
    this.z?.connection?.resume();
  }

  private gtidString(): string | undefined {
    const g = this.gtid;
    return g ? (g.kind === 'mariadb' ? g.pos.toString() : g.set.toString()) : undefined;
  }

  /** The transaction's GTID enters the tracked state at its commit. */
  private commitGtid(): void {
    const id = this.pendingGtid;
    this.pendingGtid = undefined;
    if (!id || !this.gtid) return;
    try {
      if (this.gtid.kind === 'mysql') this.gtid.set.add(id);
      else {
        const [d, s, n] = id.split('-');
        this.gtid.pos.add({ domainId: Number(d), serverId: Number(s), seqNo: n! });
      }
    } catch {
      this.gtid = undefined;
    }
  }

  private endTxn(nextPosition: number, timestamp: number): void {
    this.commitGtid();
    const position: BinlogPosition = { file: this.file, pos: nextPosition, gtid: this.gtidString() };
    const receivedAt = Date.now();
    if (this.txnChanges.length > 0) {
      this.push({
        kind: 'transaction',
        changes: this.txnChanges,
        position,
        timestamp,
        receivedAt,
        events: this.txnEvents + 1,
      });
    } else {
      this.push({
        kind: 'progress',
        position,
        timestamp,
        receivedAt,
        heartbeat: false,
        events: this.txnEvents + 1,
      });
    }
    this.inTxn = false;
    this.txnChanges = [];
    this.savepoints = [];
    this.txnEvents = 0;
  }

  /**
   * SAVEPOINT, ROLLBACK TO and RELEASE SAVEPOINT inside a transaction. The server writes ROLLBACK
   * TO to the binlog only when the transaction also changed a non-transactional table; the row
   * events it undid then stay in the binlog before it, and a replica undoes them by replaying the
   * statement. So do we: the changes after the savepoint are dropped, except those to tracked
   * tables that cannot roll back (they did happen). True when `sql` was one of these.
   */
  private savepointControl(sql: string): boolean {
    let m = SAVEPOINT.exec(sql);
    if (m) {
      const name = savepointName(m[1]!);
      // A savepoint set again under the same name replaces the old one.
      this.savepoints = this.savepoints.filter((x) => x.name !== name);
      this.savepoints.push({ name, mark: this.txnChanges.length });
      return true;
    }
    m = ROLLBACK_TO.exec(sql);
    if (m) {
      const name = savepointName(m[1]!);
      const i = this.savepoints.findLastIndex((x) => x.name === name);
      if (i < 0) {
        this.fail(
          new StreamError(
            `the binlog rolls back to savepoint ${m[1]}, which it never set in this transaction, so the changes to undo are unknown`,
            undefined,
            'E_TAIL_SAVEPOINT',
          ),
        );
        return true;
      }
      const mark = this.savepoints[i]!.mark;
      const kept = this.txnChanges.slice(mark).filter((c) => this.nonTransactional.has(c.table));
      this.txnChanges = this.txnChanges.slice(0, mark).concat(kept);
      // Later savepoints are gone; this one stays, at the same place.
      this.savepoints = this.savepoints.slice(0, i + 1);
      return true;
    }
    m = RELEASE_SAVEPOINT.exec(sql);
    if (m) {
      const name = savepointName(m[1]!);
      const i = this.savepoints.findLastIndex((x) => x.name === name);
      if (i >= 0) this.savepoints = this.savepoints.slice(0, i);
      return true;
    }
    return false;
  }

  /**
   * Could this statement change a tracked table? Yes when it runs in the shard's database, or
   * names that database anywhere (a qualified table). A statement in another database that
   * does not name ours is someone else's, even when its tables are called like ours (a server
   * with a database per tenant). Not seen: a change made through a trigger, view or procedure
   * of another database that never names ours.
   */
  private mayTouchTracked(sql: string, schema: string | undefined): boolean {
    if (schema === this.opts.database) return true;
    const db = this.opts.database.toLowerCase();
    const text = sql.toLowerCase();
    let i = text.indexOf(db);
    while (i >= 0) {
      const before = i === 0 ? '' : text[i - 1]!;
      const after = text[i + db.length] ?? '';
      const boundary = (ch: string) => ch === '' || !/[a-z0-9_$]/.test(ch);
      if (boundary(before) && boundary(after)) return true;
      i = text.indexOf(db, i + 1);
    }
    return false;
  }

  private onEvent(e: AnyBinlogEvent): void {
    if (this.stopped || this.events.failed) return;
    this.lastMessageAt = Date.now();
    if (is(e, 'Rotate')) {
      this.file = e.binlogName;
      if (!this.inTxn) {
        this.push({
          kind: 'progress',
          position: { file: this.file, pos: e.position, gtid: this.gtidString() },
          timestamp: e.timestamp,
          receivedAt: Date.now(),
          heartbeat: false,
          events: 0,
        });
      }
      return;
    }
    if (is(e, 'Heartbeat')) {
      const pos = e.position !== undefined ? Number(e.position) : e.nextPosition;
      if (!this.inTxn && pos > 0) {
        this.file = e.binlogName || this.file;
        this.push({
          kind: 'progress',
          position: { file: this.file, pos, gtid: this.gtidString() },
          timestamp: 0,
          receivedAt: Date.now(),
          heartbeat: true,
          events: 0,
        });
      }
      return;
    }
    if (is(e, 'MariadbGtid')) {
      this.pendingGtid = e.gtid;
      this.txnEvents = 1;
      this.inTxn = !e.standalone;
      this.txnChanges = [];
      this.savepoints = [];
      return;
    }
    if (is(e, 'Gtid')) {
      this.pendingGtid = e.gtid;
      this.txnEvents = 1;
      return;
    }
    if (is(e, 'AnonymousGtid')) {
      this.pendingGtid = undefined;
      this.txnEvents = 1;
      return;
    }
    if (is(e, 'TableMap')) {
      this.txnEvents++;
      readLatin1AsBytes(e);
      return;
    }
    if (is(e, 'WriteRows') || is(e, 'DeleteRows') || is(e, 'UpdateRows')) {
      this.txnEvents++;
      const map = e.tableMap[e.tableId];
      if (!map || map.parentSchema !== this.opts.database || !this.trackedTables.has(map.tableName)) return;
      const table = map.tableName;
      // A session may log partial images (SET SESSION binlog_row_image = NOBLOB or MINIMAL)
      // while the global setting, all a server check can read, stays FULL. zongji reads a column
      // missing from an image as NULL, and an upsert of such an image would erase the column on
      // the target: every column must be present, in the before and the after image.
      const bitmaps = e as unknown as { columns_present_bitmap?: Buffer; columns_present_bitmap2?: Buffer };
      const images = is(e, 'UpdateRows')
        ? [bitmaps.columns_present_bitmap, bitmaps.columns_present_bitmap2]
        : [bitmaps.columns_present_bitmap];
      const partial = images.some((b) => !allColumnsPresent(b, e.numberOfColumns));
      if (partial) {
        this.fail(
          new StreamError(
            `a row event of table ${table} ending at ${this.file}:${e.nextPosition} carries a partial row image: a session logged it with binlog_row_image other than FULL`,
            undefined,
            'E_ROW_IMAGE',
          ),
        );
        return;
      }
      if (is(e, 'WriteRows'))
        for (const r of e.rows) this.txnChanges.push({ table, kind: 'insert', after: r });
      else if (is(e, 'DeleteRows'))
        for (const r of e.rows) this.txnChanges.push({ table, kind: 'delete', before: r });
      else
        for (const r of e.rows)
          this.txnChanges.push({ table, kind: 'update', before: r.before, after: r.after });
      return;
    }
    if (is(e, 'Xid')) {
      this.endTxn(e.nextPosition, e.timestamp);
      return;
    }
    if (is(e, 'XaPrepare')) {
      // XA PREPARE ends an event group whose rows commit later (at XA COMMIT) or never. Only a
      // prepared group with tracked rows is a problem; ONE PHASE commits at once.
      if (e.onePhase) {
        this.endTxn(e.nextPosition, e.timestamp);
      } else if (this.txnChanges.length > 0) {
        this.fail(
          new StreamError(
            'an XA transaction changing tracked tables was prepared on this source; reshard tail does not apply two-phase XA transactions',
            undefined,
            'E_TAIL_XA',
          ),
        );
      } else {
        this.endTxn(e.nextPosition, e.timestamp);
      }
      return;
    }
    if (is(e, 'Query')) {
      const sql = e.query;
      if (/^\s*BEGIN\b/i.test(sql)) {
        this.inTxn = true;
        this.txnEvents++;
        return;
      }
      if (/^\s*(COMMIT|ROLLBACK)\s*$/i.test(sql)) {
        // COMMIT ends a transaction without an Xid (non-transactional engines); a logged ROLLBACK
        // carries changes to non-transactional tables that did happen.
        this.endTxn(e.nextPosition, e.timestamp);
        return;
      }
      if (XA_START.test(sql)) {
        this.inTxn = true;
        this.txnEvents++;
        return;
      }
      if (XA_END.test(sql)) {
        this.txnEvents++;
        return;
      }
      if (XA_FINISH.test(sql)) {
        if (this.txnChanges.length > 0) {
          // Rows in the same group: a one-phase commit written as a statement.
          this.endTxn(e.nextPosition, e.timestamp);
          return;
        }
        // XA COMMIT/ROLLBACK of a group prepared earlier: that group had no tracked rows (see
        // XaPrepare), so this only moves the position.
        this.commitGtid();
        this.push({
          kind: 'progress',
          position: { file: this.file, pos: e.nextPosition, gtid: this.gtidString() },
          timestamp: e.timestamp,
          receivedAt: Date.now(),
          heartbeat: false,
          events: this.txnEvents + 1,
        });
        this.inTxn = false;
        this.txnChanges = [];
        this.savepoints = [];
        this.txnEvents = 0;
        return;
      }
      if (this.savepointControl(sql)) {
        this.txnEvents++;
        return;
      }
      if (TXN_CONTROL.test(sql)) {
        this.txnEvents++;
        return;
      }
      // Row changes written as a statement: a session ran with binlog_format STATEMENT or MIXED
      // (the server check reads only the global value). Skipping it would lose the change.
      if (STATEMENT_DML.test(leadingKeyword(sql)) && this.mayTouchTracked(sql, e.schema)) {
        this.fail(
          new StreamError(
            `a data change was logged as a statement, not as row events, so its rows cannot be known (a session used binlog_format STATEMENT or MIXED): ${sql.length > 200 ? `${sql.slice(0, 200)}…` : sql}`,
            undefined,
            'E_TAIL_STATEMENT_FORMAT',
          ),
        );
        return;
      }
      const info = classifyDdl(sql);
      if (!info && this.inTxn) {
        // Some other statement inside a transaction (nothing of ours): the transaction goes on.
        this.txnEvents++;
        return;
      }
      // A standalone statement (DDL): its own group.
      const tables = info ? trackedTablesTouched(info, e.schema, this.opts.database, this.trackedTables) : [];
      this.commitGtid();
      const position: BinlogPosition = { file: this.file, pos: e.nextPosition, gtid: this.gtidString() };
      if (info && tables.length > 0) {
        this.push({
          kind: 'ddl',
          schema: e.schema,
          statement: sql,
          tables,
          safeToApply: info.safeToApply,
          position,
          timestamp: e.timestamp,
          receivedAt: Date.now(),
        });
      } else if (!this.inTxn) {
        this.push({
          kind: 'progress',
          position,
          timestamp: e.timestamp,
          receivedAt: Date.now(),
          heartbeat: false,
          events: this.txnEvents + 1,
        });
      }
      this.inTxn = false;
      this.txnChanges = [];
      this.savepoints = [];
      this.txnEvents = 0;
      return;
    }
    if (is(e, 'TransactionPayload') || is(e, 'PartialUpdateRows')) {
      this.fail(
        new StreamError(
          `the source wrote a ${e.getTypeName()} event, which cannot be decoded (binlog_transaction_compression or binlog_row_value_options=PARTIAL_JSON)`,
          undefined,
          'E_TAIL_UNDECODABLE',
        ),
      );
      return;
    }
    // Format, GTID list, checkpoint, previous-GTIDs: between groups they only move the position.
    if (!this.inTxn && e.nextPosition > 0) {
      this.push({
        kind: 'progress',
        position: { file: this.file, pos: e.nextPosition, gtid: this.gtidString() },
        timestamp: e.timestamp,
        receivedAt: Date.now(),
        heartbeat: false,
        events: 1,
      });
    }
  }
}

/**
 * zongji decodes MariaDB's latin1 as Windows-1252, which has no character for the bytes 0x81,
 * 0x8D, 0x8F, 0x90 and 0x9D: they came out as U+FFFD, the target refused the text (1366) and the
 * tailer stopped on that row at every re-run, where the copy (the server converts) moved it.
 * Runs synchronously on the TableMap event, before zongji parses the rows that use it: its latin1
 * columns are read as ISO-8859-1 instead (one character per byte, nothing lost), and decode.ts
 * maps the 32 bytes where the two differ as MariaDB does (`latin1Text`).
 */
function readLatin1AsBytes(e: AnyBinlogEvent): void {
  const map = (e as unknown as { tableMap?: Record<number, { columns?: { charset?: string | null }[] }> })
    .tableMap?.[(e as unknown as { tableId: number }).tableId];
  for (const c of map?.columns ?? []) if (c.charset === 'latin1') c.charset = LATIN1_AS_BYTES;
}
