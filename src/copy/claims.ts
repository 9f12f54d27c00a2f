/**
 * Chunk claims and checkpoints in the control schema (`reshard_copy_chunks`,
 * `reshard_copy_checkpoints`): what lets several workers share one job and any of them resume
 * after a crash.
 *
 * Lifecycle of a chunk: created by the worker that reads its first page (`nextBounds`, read,
 * `insertChunk`: claimed, attempts 1) → done (`done`), or, if its worker dies, retaken by another (`claimAbandoned`:
 * attempts + 1) → done. A chunk is (lower, upper] over the primary key; the last chunk of a
 * (source, table) has upper = NULL (unbounded) and marks the table fully chunked.
 *
 * A claim is abandoned when its lease expired (the worker stopped renewing it: frozen, or cut
 * off from the control server) or when its worker's identity lock is free (the worker's control
 * session is gone: the process died). Every worker holds `GET_LOCK(<job, worker id>)` on its
 * main control session for its whole run, so a killed worker's chunks are retaken at once
 * instead of after the lease.
 *
 * The checkpoint of a (source, table) is its low watermark: the upper bound of the longest run of
 * finished chunks from the start, advanced in the same control transaction that marks a chunk
 * done, which itself commits only after the chunk's rows committed on every target.
 */
import { createHash } from 'node:crypto';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { classifyError, withRetry } from '../db/retry.js';
import { PreconditionError, type ReshardError } from '../errors.js';
import { decodeKey, encodeKey, type PkTuple } from './keyset.js';

/** In-process identity of a chunk. */
export function chunkKey(source: string, table: string, chunkId: number): string {
  return `${source}\u0000${table}\u0000${chunkId}`;
}

export interface Chunk {
  source: string;
  table: string;
  chunkId: number;
  lower: PkTuple | null;
  upper: PkTuple | null;
  attempts: number;
  /** Worker that held it before this claim (null for a chunk this worker created). */
  previousWorker: string | null;
}

export interface CheckpointRow {
  source: string;
  table: string;
  state: 'pending' | 'copying' | 'done';
  rowsCopied: number;
  lowWatermark: PkTuple | null;
  chunks: number;
  chunksDone: number;
}

/**
 * One control-schema session with retry: conflicts (deadlock, lock wait) re-run the unit, a lost
 * connection is replaced (and `onConnect` re-run: session settings, the identity lock).
 */
export class ControlSession {
  private conn: Connection | undefined;
  private pending: Promise<Connection> | undefined;
  private closed = false;
  /** Aborted by close(): a call waiting out a retry backoff then ends instead of holding a timer. */
  private readonly closing = new AbortController();
  constructor(
    private readonly open: () => Promise<Connection>,
    private readonly onConnect: (c: Connection) => Promise<void> = async () => undefined,
    signal?: AbortSignal,
  ) {
    // The caller's stop aborts retries too (one signal for both, without AbortSignal.any).
    if (signal?.aborted) this.closing.abort(signal.reason);
    else signal?.addEventListener('abort', () => this.closing.abort(signal.reason), { once: true });
  }

  /** The open connection; concurrent callers during a reconnect share one attempt. */
  connection(): Promise<Connection> {
    if (this.closed) return Promise.reject(new Error('control session closed'));
    if (this.conn) return Promise.resolve(this.conn);
    this.pending ??= (async () => {
      const c = await this.open();
      try {
        // Claims lock single rows by key; READ COMMITTED avoids gap locks between workers.
        await c.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
        await this.onConnect(c);
      } catch (e) {
        c.destroy();
        throw e;
      }
      if (this.closed) {
        c.destroy();
        throw new Error('control session closed');
      }
      this.conn = c;
      return c;
    })().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** Run `fn` (no transaction of its own), retried. */
  run<T>(label: string, fn: (c: Connection) => Promise<T>): Promise<T> {
    let used: Connection | undefined;
    return withRetry(
      async () => {
        used = await this.connection().catch((e: unknown) => {
          // connect() wraps "server unreachable" as E_CONNECT; the driver error under it says
          // whether waiting helps (the control server restarting) or not (access denied).
          throw (e as ReshardError).code === 'E_CONNECT' && (e as ReshardError).cause
            ? (e as ReshardError).cause
            : e;
        });
        return fn(used);
      },
      {
        label,
        attempts: 10,
        signal: this.closing.signal,
        onReconnect: async () => {
          if (used && this.conn === used) {
            this.conn = undefined;
            used.destroy();
          }
          await this.connection();
        },
      },
    );
  }

  /** Run `fn` inside one transaction, retried as a whole. */
  tx<T>(label: string, fn: (c: Connection) => Promise<T>): Promise<T> {
    return this.run(label, async (c) => {
      await c.query('START TRANSACTION');
      try {
        const r = await fn(c);
        await c.query('COMMIT');
        return r;
      } catch (e) {
        if (classifyError(e) !== 'reconnect') await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }

  /** Whether close() was called: later calls reject instead of reconnecting. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Closes for good. A caller still running (a poller's tick that fired just before) must not
   * open a new connection afterwards: that connection kept `reshard copy` alive after it had
   * printed its summary (seen once in ~30 bench copies: the process never exited).
   */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(new Error('control session closed'));
    const pending = this.pending;
    const c = this.conn;
    this.conn = undefined;
    await c?.end().catch(() => c.destroy());
    // A connect in flight sees `closed` when it completes and destroys its connection.
    await pending?.catch(() => undefined);
  }
}

/** A chunk row's worker identity lock name in SQL: ChunkStore.lockName on the control database. */
const WORKER_LOCK = `CONCAT('reshard-copy-', LEFT(SHA1(CONCAT(DATABASE(), ':', job_id, ':', worker_id)), 40))`;

// Abandoned: given back; or claimed by a worker whose lease expired or whose identity lock is free;
// or claimed by this very worker but not in flight here (a claim whose commit reply was lost).
const ABANDONED = `(state = 'pending' OR (state = 'claimed' AND (worker_id = ? OR lease_expires_at < NOW(6)
   OR IS_FREE_LOCK(${WORKER_LOCK}) = 1)))`;

/** Copy workers of a job that are alive: their identity lock is held, whatever their leases say. */
export async function liveCopyWorkers(c: Connection, jobId: number): Promise<string[]> {
  const [rows] = await c.query<RowDataPacket[]>(
    `SELECT DISTINCT worker_id FROM reshard_copy_chunks
      WHERE job_id = ? AND worker_id IS NOT NULL AND IS_USED_LOCK(${WORKER_LOCK}) IS NOT NULL`,
    [jobId],
  );
  return rows.map((r) => String(r.worker_id));
}

export class ChunkStore {
  private skipLocked = true;

  constructor(
    private readonly o: {
      jobId: number;
      workerId: string;
      /** Control database name (part of the identity lock name). */
      database: string;
      leaseMs: number;
    },
  ) {}

  /** GET_LOCK name of a worker: ≤ 64 characters (MySQL's limit), same formula as in SQL. */
  static lockName(database: string, jobId: number, workerId: string): string {
    return `reshard-copy-${createHash('sha1').update(`${database}:${jobId}:${workerId}`, 'utf8').digest('hex')}`;
  }

  /**
   * Take this worker's identity lock on the main control session (call again after a reconnect),
   * and detect whether the server supports SKIP LOCKED.
   */
  async register(c: Connection): Promise<void> {
    const name = ChunkStore.lockName(this.o.database, this.o.jobId, this.o.workerId);
    // A short wait: after a reconnect the server may not yet have noticed our old session is gone.
    const [r] = await c.query<RowDataPacket[]>('SELECT GET_LOCK(?, 3) AS got', [name]);
    if (String(r[0]?.got) !== '1') {
      throw new PreconditionError(
        'E_WORKER_ID_IN_USE',
        `another reshard copy process is running as worker '${this.o.workerId}' on this job`,
        { hint: 'give each worker its own --worker-id (the default, host:pid, is unique)' },
      );
    }
    const [v] = await c.query<RowDataPacket[]>('SELECT VERSION() AS v');
    const text = String(v[0]?.v ?? '');
    const m = /^(\d+)\.(\d+)/.exec(text);
    const major = Number(m?.[1] ?? 0);
    const minor = Number(m?.[2] ?? 0);
    // SKIP LOCKED: MariaDB 10.6+, MySQL 8.0+. Without it claimers queue briefly on one row.
    this.skipLocked = /mariadb/i.test(text) ? major > 10 || (major === 10 && minor >= 6) : major >= 8;
  }

  async ensureCheckpoints(c: Connection, pairs: readonly { source: string; table: string }[]): Promise<void> {
    // Insert only the missing rows: INSERT IGNORE of an existing row would wait for any lock
    // another worker holds on it.
    const [have] = await c.query<RowDataPacket[]>(
      'SELECT source_shard, table_name FROM reshard_copy_checkpoints WHERE job_id = ?',
      [this.o.jobId],
    );
    const known = new Set(have.map((r) => `${String(r.source_shard)}\u0000${String(r.table_name)}`));
    pairs = pairs.filter((p) => !known.has(`${p.source}\u0000${p.table}`));
    if (pairs.length === 0) return;
    await c.query(
      `INSERT IGNORE INTO reshard_copy_checkpoints (job_id, source_shard, table_name) VALUES ${pairs.map(() => '(?, ?, ?)').join(', ')}`,
      pairs.flatMap((p) => [this.o.jobId, p.source, p.table]),
    );
  }

  private leaseSql(): string {
    return 'DATE_ADD(NOW(6), INTERVAL ? MICROSECOND)';
  }

  /**
   * Claim one abandoned chunk of `source`, if any (call inside a control transaction).
   * `inFlight` holds the keys (chunkKey) of the chunks this worker is copying right now.
   */
  async claimAbandoned(
    c: Connection,
    source: string,
    inFlight: ReadonlySet<string>,
  ): Promise<Chunk | undefined> {
    const [rows] = await c.query<RowDataPacket[]>(
      `SELECT table_name, chunk_id, lower_pk, upper_pk, attempts, worker_id FROM reshard_copy_chunks
        WHERE job_id = ? AND source_shard = ? AND ${ABANDONED}
        ORDER BY table_name, chunk_id LIMIT ? FOR UPDATE${this.skipLocked ? ' SKIP LOCKED' : ''}`,
      [this.o.jobId, source, this.o.workerId, inFlight.size + 1],
    );
    const r = rows.find((x) => !inFlight.has(chunkKey(source, String(x.table_name), Number(x.chunk_id))));
    if (!r) return undefined;
    await c.query(
      `UPDATE reshard_copy_chunks SET state = 'claimed', worker_id = ?, attempts = attempts + 1,
              lease_expires_at = ${this.leaseSql()}
        WHERE job_id = ? AND source_shard = ? AND table_name = ? AND chunk_id = ?`,
      [this.o.workerId, this.o.leaseMs * 1000, this.o.jobId, source, r.table_name, r.chunk_id],
    );
    const chunk: Chunk = {
      source,
      table: String(r.table_name),
      chunkId: Number(r.chunk_id),
      lower: decodeKey(r.lower_pk),
      upper: decodeKey(r.upper_pk),
      attempts: Number(r.attempts) + 1,
      previousWorker: r.worker_id === null ? null : String(r.worker_id),
    };
    return chunk;
  }

  /**
   * Where the next chunk of (source, table) starts: the upper bound of its last chunk (a plain
   * read: chunk bounds never change once written). Undefined when the table is fully chunked.
   */
  async nextBounds(
    c: Connection,
    source: string,
    table: string,
  ): Promise<{ lower: PkTuple | null; chunkId: number } | undefined> {
    const [last] = await c.query<RowDataPacket[]>(
      `SELECT chunk_id, upper_pk FROM reshard_copy_chunks WHERE job_id = ? AND source_shard = ? AND table_name = ?
        ORDER BY chunk_id DESC LIMIT 1`,
      [this.o.jobId, source, table],
    );
    const l = last[0];
    if (l && l.upper_pk === null) return undefined;
    return { lower: l ? decodeKey(l.upper_pk) : null, chunkId: l ? Number(l.chunk_id) + 1 : 0 };
  }

  /**
   * Register a chunk this worker has just read the first page of, claimed by it. Optimistic: no
   * lock is held while the page is read, so two workers may read the same next chunk; the
   * primary key lets exactly one register it, and the other (undefined here) reads again.
   */
  async insertChunk(
    c: Connection,
    source: string,
    table: string,
    chunkId: number,
    lower: PkTuple | null,
    upper: PkTuple | null,
  ): Promise<Chunk | undefined> {
    try {
      await c.query(
        `INSERT INTO reshard_copy_chunks (job_id, source_shard, table_name, chunk_id, lower_pk, upper_pk, state, worker_id, lease_expires_at, attempts)
         VALUES (?, ?, ?, ?, ?, ?, 'claimed', ?, ${this.leaseSql()}, 1)`,
        [
          this.o.jobId,
          source,
          table,
          chunkId,
          encodeKey(lower),
          encodeKey(upper),
          this.o.workerId,
          this.o.leaseMs * 1000,
        ],
      );
    } catch (e) {
      if ((e as { errno?: number }).errno === 1062) return undefined;
      throw e;
    }
    await c.query(
      `UPDATE reshard_copy_checkpoints SET state = 'copying' WHERE job_id = ? AND source_shard = ? AND table_name = ? AND state = 'pending'`,
      [this.o.jobId, source, table],
    );
    return { source, table, chunkId, lower, upper, attempts: 1, previousWorker: null };
  }

  /**
   * Mark a chunk done (its rows are committed on every target) and advance the checkpoint, in
   * one control transaction. Idempotent: a chunk another worker already finished adds nothing.
   */
  async done(c: Connection, chunk: Chunk, rows: number): Promise<{ tableDone: boolean; counted: boolean }> {
    const { jobId } = this.o;
    const k = [jobId, chunk.source, chunk.table];
    const [cp] = await c.query<RowDataPacket[]>(
      'SELECT low_watermark FROM reshard_copy_checkpoints WHERE job_id = ? AND source_shard = ? AND table_name = ? FOR UPDATE',
      k,
    );
    const [res] = await c.query(
      `UPDATE reshard_copy_chunks SET state = 'done', rows_copied = ?, worker_id = ?, lease_expires_at = NULL
        WHERE job_id = ? AND source_shard = ? AND table_name = ? AND chunk_id = ? AND state <> 'done'`,
      [rows, this.o.workerId, ...k, chunk.chunkId],
    );
    const counted = (res as { affectedRows: number }).affectedRows > 0;
    const [open] = await c.query<RowDataPacket[]>(
      `SELECT MIN(chunk_id) AS first_open FROM reshard_copy_chunks
        WHERE job_id = ? AND source_shard = ? AND table_name = ? AND state <> 'done'`,
      k,
    );
    const firstOpen = open[0]?.first_open;
    const [prefix] = await c.query<RowDataPacket[]>(
      `SELECT chunk_id, upper_pk FROM reshard_copy_chunks WHERE job_id = ? AND source_shard = ? AND table_name = ?
          ${firstOpen === null || firstOpen === undefined ? '' : 'AND chunk_id < ?'}
        ORDER BY chunk_id DESC LIMIT 1`,
      firstOpen === null || firstOpen === undefined ? k : [...k, firstOpen],
    );
    const p = prefix[0];
    const tableDone =
      (firstOpen === null || firstOpen === undefined) && p !== undefined && p.upper_pk === null;
    // The watermark only moves over the contiguous finished prefix; the last chunk is unbounded,
    // so a finished table keeps the last bounded watermark and says 'done'.
    const watermark = p && p.upper_pk !== null ? String(p.upper_pk) : (cp[0]?.low_watermark ?? null);
    await c.query(
      `UPDATE reshard_copy_checkpoints SET low_watermark = ?, rows_copied = rows_copied + ?, state = ?
        WHERE job_id = ? AND source_shard = ? AND table_name = ?`,
      [watermark, counted ? rows : 0, tableDone ? 'done' : 'copying', ...k],
    );
    return { tableDone, counted };
  }

  /** Extend the lease of every chunk this worker holds. */
  async renew(c: Connection): Promise<void> {
    await c.query(
      `UPDATE reshard_copy_chunks SET lease_expires_at = ${this.leaseSql()}
        WHERE job_id = ? AND state = 'claimed' AND worker_id = ?`,
      [this.o.leaseMs * 1000, this.o.jobId, this.o.workerId],
    );
  }

  /** Give back every chunk this worker holds (on stop): another worker may take it at once. */
  async releaseHeld(c: Connection): Promise<void> {
    await c.query(
      `UPDATE reshard_copy_chunks SET state = 'pending', lease_expires_at = NULL
        WHERE job_id = ? AND state = 'claimed' AND worker_id = ?`,
      [this.o.jobId, this.o.workerId],
    );
  }

  /** Whether every table of `source` is done (all chunks created and finished). */
  async sourceDone(c: Connection, source: string): Promise<boolean> {
    const [rows] = await c.query<RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM reshard_copy_checkpoints WHERE job_id = ? AND source_shard = ? AND state <> 'done'`,
      [this.o.jobId, source],
    );
    return Number(rows[0]?.n ?? 1) === 0;
  }

  /** Per (source, table): state, rows copied (all workers), chunks. */
  async checkpoints(c: Connection): Promise<CheckpointRow[]> {
    const [rows] = await c.query<RowDataPacket[]>(
      `SELECT p.source_shard, p.table_name, p.state, p.rows_copied, p.low_watermark,
              (SELECT COUNT(*) FROM reshard_copy_chunks k WHERE k.job_id = p.job_id AND k.source_shard = p.source_shard AND k.table_name = p.table_name) AS chunks,
              (SELECT COUNT(*) FROM reshard_copy_chunks k WHERE k.job_id = p.job_id AND k.source_shard = p.source_shard AND k.table_name = p.table_name AND k.state = 'done') AS chunks_done
         FROM reshard_copy_checkpoints p WHERE p.job_id = ? ORDER BY p.source_shard, p.table_name`,
      [this.o.jobId],
    );
    return rows.map((r) => ({
      source: String(r.source_shard),
      table: String(r.table_name),
      state: String(r.state) as CheckpointRow['state'],
      rowsCopied: Number(r.rows_copied),
      lowWatermark: decodeKey(r.low_watermark),
      chunks: Number(r.chunks),
      chunksDone: Number(r.chunks_done),
    }));
  }
}
