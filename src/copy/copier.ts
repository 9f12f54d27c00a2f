/**
 * The copier: copies one page of one (source, table) to its new owners.
 *
 * Lifecycle of a page (the convergence argument is in src/apply/README.md and README.md here):
 *   source: START TRANSACTION (READ COMMITTED) → SELECT … WHERE lower < pk <= upper [AND moving]
 *           ORDER BY pk LIMIT n LOCK IN SHARE MODE
 *   route:  each row to index.ownerOf('to', key); rows whose segment stays, or that this source
 *           does not own, are skipped
 *   targets: per target, one transaction per batch — LOAD DATA when every row inserts cleanly
 *           (bulk.ts), else TargetApplier.apply — all committed
 *   source: COMMIT (releases the shared locks)
 * The shared locks are held from the read until every target committed, so no newer version of
 * a copied row can commit on the source — and reach the tailer — before the copy is written.
 */
import type { Connection } from 'mysql2/promise';
import pLimit, { type LimitFunction } from 'p-limit';
import type { RowOp, TargetApplier } from '../apply/applier.js';
import { routeKeyOf, routeKeyOfText, type TableMeta } from '../apply/table.js';
import type { Row, Value } from '../apply/values.js';
import { classifyError } from '../db/retry.js';
import { type RowView, streamRowViews } from '../db/rowview.js';
import { streamQuery } from '../db/stream.js';
import { log } from '../output.js';
import type { PlanIndex } from '../plan/plan-index.js';
import { isFloatType } from '../preflight/schema.js';
import {
  type BulkPlan,
  isLocalInfileRefused,
  loadAbsent,
  NotBulkable,
  type TsvBatch,
  TsvEncoder,
} from './bulk.js';
import type { KeyColumn, PkTuple } from './keyset.js';
import { pageQuery } from './keyset.js';

/** What the copier knows about one (source, table). */
export interface TableJob {
  source: string;
  table: string;
  /** Source-side metadata (source database, columns in order). */
  meta: TableMeta;
  key: KeyColumn[];
  /** SQL selecting the moving rows of this source, or undefined (all rows read, filtered here). */
  filter: string | undefined;
  /** Target-side metadata per target shard (the table in that shard's database). */
  targetMeta: Map<string, TableMeta>;
  /** Targets this source's moving segments go to. */
  targets: string[];
  /** LOAD DATA plan per target (undefined: this table is always written by the applier). */
  bulk: Map<string, BulkPlan | undefined>;
  /** Estimated rows to copy (information_schema × moving share); for progress only. */
  estimatedRows: number;
  avgRowBytes: number;
  /** Whether the shard and primary keys can be read from raw row bytes (set on first use). */
  rawKeys?: boolean;
}

export interface PageResult {
  /** Rows read (the page size counts these). */
  read: number;
  /** Rows written to targets. */
  written: number;
  /** Rows on this source that its topology routes elsewhere (skipped, reported). */
  misplaced: number;
  /** Approximate bytes of the rows read. */
  bytes: number;
  /** Primary key of the last row read, or null when the page was empty. */
  lastPk: PkTuple | null;
  /** Rows written per target. */
  perTarget: Map<string, number>;
  /** Rows written by the bulk path (the rest went through the applier). */
  bulk: number;
}

/** A source connection running one locking transaction at a time. */
export class SourceSession {
  private conn: Connection | undefined;
  private inTx = false;
  constructor(
    private readonly open: () => Promise<Connection>,
    private readonly lockWaitSeconds: number,
  ) {}

  private async connection(): Promise<Connection> {
    if (!this.conn) {
      const c = await this.open();
      // Record locks only (no gap locks): rows inserted into a chunk's range while it is copied
      // reach the targets through the tailer, so the copy need not block them. A short lock wait
      // bounds how long our already-taken shared locks can hold up the application.
      await c.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
      await c.query(
        `SET SESSION innodb_lock_wait_timeout = ${Math.max(1, Math.floor(this.lockWaitSeconds))}`,
      );
      this.conn = c;
    }
    return this.conn;
  }

  async begin(): Promise<Connection> {
    if (this.inTx) await this.rollback();
    const c = await this.connection();
    await c.query('START TRANSACTION');
    this.inTx = true;
    return c;
  }

  async commit(): Promise<void> {
    if (!this.inTx || !this.conn) return;
    await this.conn.query('COMMIT');
    this.inTx = false;
  }

  async rollback(): Promise<void> {
    if (!this.inTx) return;
    this.inTx = false;
    const c = this.conn;
    if (!c) return;
    try {
      await c.query('ROLLBACK');
    } catch {
      this.reset();
    }
  }

  /** After an error: a connection in doubt is replaced (its transaction dies with it). */
  fail(err: unknown): void {
    if (classifyError(err) === 'reconnect' || this.inTx) this.reset();
  }

  private reset(): void {
    const c = this.conn;
    this.conn = undefined;
    this.inTx = false;
    c?.destroy();
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = undefined;
    if (this.inTx) await c?.query('ROLLBACK').catch(() => undefined);
    this.inTx = false;
    await c?.end().catch(() => c.destroy());
  }
}

/**
 * One writer to a target: the bulk path (LOAD DATA, see bulk.ts) on its own connection, and the
 * applier for everything the bulk path declines.
 */
export class TargetWriter {
  private conn: Connection | undefined;
  constructor(
    readonly applier: TargetApplier,
    private readonly open: () => Promise<Connection>,
    /** Shared by a target's writers: set when the server refuses LOAD DATA LOCAL. */
    private readonly bulk: { disabled: boolean; target: string },
  ) {}

  private async connection(): Promise<Connection> {
    if (!this.conn) {
      const c = await this.open();
      // As the applier's: values the column cannot hold are errors (warnings under LOAD DATA
      // LOCAL, which make the load roll back), and an explicit 0 stays 0 in AUTO_INCREMENT.
      await c.query(
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
      );
      this.conn = c;
    }
    return this.conn;
  }

  /**
   * Load batches encoded while the page streamed in (see `streamPage`): true when every batch
   * committed; false as soon as one was rolled back or the target refuses LOAD DATA LOCAL — the
   * caller then writes this target's rows of the page through the applier (re-applying rows an
   * earlier batch loaded is harmless: the same images, upserted).
   */
  async loadBatches(
    batches: readonly TsvBatch[],
    plan: BulkPlan,
    beforeCommit?: () => Promise<void>,
  ): Promise<boolean> {
    for (const batch of batches) {
      if (this.bulk.disabled) return false;
      try {
        const conn = await this.connection();
        // The copy's fence (applier.ts checkCopyFence) on this connection, as the applier checks
        // it on its own: a page in flight after cutover rolls back instead of landing.
        const fenced = async () => {
          await this.applier.checkFenceOn(conn);
          await beforeCommit?.();
        };
        if (!(await loadAbsent(conn, plan, batch, fenced))) return false;
      } catch (e) {
        if (!isLocalInfileRefused(e)) {
          const c = this.conn;
          this.conn = undefined;
          c?.destroy();
          throw e;
        }
        this.refused(e);
        return false;
      }
    }
    return true;
  }

  /** Apply full row images as `source` through the owner-aware applier, in batches of bounded size. */
  async applyRows(
    rows: readonly Row[],
    table: TableMeta,
    source: string,
    beforeCommit?: () => Promise<void>,
  ): Promise<void> {
    for (const batch of byteBatches(rows))
      await this.applier.apply(
        batch.map((row): RowOp => ({ kind: 'upsert', table, source, row })),
        undefined,
        beforeCommit ? { beforeCommit } : {},
      );
  }

  private refused(e: unknown): void {
    if (this.bulk.disabled) return;
    this.bulk.disabled = true;
    log().warn(
      { target: this.bulk.target, err: (e as Error).message },
      'the target refuses LOAD DATA LOCAL (local_infile); copying with INSERT instead, about half as fast',
    );
  }

  get bulkDisabled(): boolean {
    return this.bulk.disabled;
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = undefined;
    await c?.end().catch(() => c.destroy());
    await this.applier.close();
  }
}

/** The writers of one target, used one at a time each, at most `size` at once. */
export class TargetPool {
  readonly limit: LimitFunction;
  private readonly free: TargetWriter[];
  private readonly all: TargetWriter[];
  constructor(
    readonly target: string,
    writers: TargetWriter[],
  ) {
    this.free = [...writers];
    this.all = [...writers];
    this.limit = pLimit(Math.max(1, writers.length));
  }
  /** Whether this target takes LOAD DATA (false once it refused LOCAL INFILE). */
  get bulkEnabled(): boolean {
    return !(this.all[0]?.bulkDisabled ?? true);
  }
  run<T>(fn: (w: TargetWriter) => Promise<T>): Promise<T> {
    return this.limit(async () => {
      const w = this.free.pop();
      if (!w) throw new Error(`no free writer for target ${this.target}`);
      try {
        return await fn(w);
      } finally {
        this.free.push(w);
      }
    });
  }
  async close(): Promise<void> {
    await Promise.all(this.all.map((w) => w.close()));
  }
}

function approxBytes(row: Row): number {
  let n = 8;
  for (const v of row) {
    if (v === null) n += 1;
    else if (typeof v === 'string' || Buffer.isBuffer(v)) n += v.length + 2;
    else n += 8;
  }
  return n;
}

/** Largest transaction one apply call sends (bytes of row data): keeps every statement far below max_allowed_packet. */
const MAX_APPLY_BYTES = 8 << 20;

/**
 * Read one page under shared locks (the caller has begun the source transaction), route it, and
 * write it to its targets (each committed). The caller then commits the source transaction.
 */
export async function readPage(
  src: Connection,
  job: TableJob,
  lower: PkTuple | null,
  upper: PkTuple | null,
  limit: number,
): Promise<Row[]> {
  const q = lockingPageQuery(job, lower, upper, limit);
  const [rows] = await src.query({ sql: q.sql, values: q.params, rowsAsArray: true });
  return rows as unknown as Row[];
}

/** The page `lower < pk <= upper` (moving rows only, where SQL can tell), in key order, under shared locks. */
function lockingPageQuery(job: TableJob, lower: PkTuple | null, upper: PkTuple | null, limit: number) {
  return pageQuery({
    table: job.meta.sql.table,
    columns: job.meta.sql.select,
    key: job.key,
    lower,
    upper,
    filter: job.filter,
    limit,
    lock: true,
  });
}

/** Rows split so that no one apply call carries more than MAX_APPLY_BYTES of row data. */
function byteBatches(rows: readonly Row[]): Row[][] {
  const out: Row[][] = [];
  let batch: Row[] = [];
  let size = 0;
  for (const row of rows) {
    const b = approxBytes(row);
    if (batch.length > 0 && size + b > MAX_APPLY_BYTES) {
      out.push(batch);
      batch = [];
      size = 0;
    }
    batch.push(row);
    size += b;
  }
  if (batch.length) out.push(batch);
  return out;
}

/**
 * The page's source transaction is gone (its connection was lost before a target commit): the
 * target write rolls back at once — retrying it could not bring the locks back — and the chunk is
 * retried from the source (run.ts treats this error as retryable).
 */
export class SourceLostError extends Error {
  readonly code = 'E_SOURCE_LOST';
  constructor(cause: unknown) {
    super(`the source transaction of the page was lost: ${(cause as Error)?.message ?? cause}`, { cause });
  }
}

/** What one target gets of a streamed page. */
interface TargetPart {
  rows: number;
  /** LOAD DATA batches, encoded as the rows arrived. */
  encoder?: TsvEncoder;
  /** Rows kept as images for the applier (no bulk plan, or the target refuses LOAD DATA). */
  images?: Row[];
  /** A value could not be encoded: this target's rows go through the applier after a re-read. */
  reread?: boolean;
}

export interface StreamedPage {
  read: number;
  misplaced: number;
  bytes: number;
  lastPk: PkTuple | null;
  parts: Map<string, TargetPart>;
}

/**
 * Read one page under shared locks (the caller has begun the source transaction) and route each
 * row as it arrives: rows for a target that takes LOAD DATA are encoded into its batches at once
 * and dropped, so no page of row arrays outlives the read (see TsvEncoder).
 */
export function streamPage(
  src: Connection,
  job: TableJob,
  index: PlanIndex,
  pools: Map<string, TargetPool>,
  lower: PkTuple | null,
  upper: PkTuple | null,
  limit: number,
): Promise<StreamedPage> {
  if (rawEligible(job, pools)) return streamPageRaw(src, job, index, lower, upper, limit);
  const meta = job.meta;
  const q = lockingPageQuery(job, lower, upper, limit);
  const page: StreamedPage = { read: 0, misplaced: 0, bytes: 0, lastPk: null, parts: new Map() };
  let last: Row | undefined;
  const partFor = (target: string): TargetPart => {
    let part = page.parts.get(target);
    if (!part) {
      const plan = job.bulk.get(target);
      part = { rows: 0 };
      if (plan && pools.get(target)?.bulkEnabled) part.encoder = new TsvEncoder(plan.modes, MAX_APPLY_BYTES);
      else part.images = [];
      page.parts.set(target, part);
    }
    return part;
  };
  const onRow = (row: Row) => {
    page.read++;
    last = row;
    page.bytes += approxBytes(row);
    const seg = index.segmentOf(routeKeyOf(meta, row[meta.shardKey] ?? null));
    if (seg.from !== job.source) {
      // In place, a source is also a target: rows copied here from another source are not ours.
      if (seg.to !== job.source) page.misplaced++;
      return;
    }
    if (!seg.moves) return;
    const part = partFor(seg.to);
    part.rows++;
    if (part.reread) return;
    if (part.images) {
      part.images.push(row);
      return;
    }
    try {
      part.encoder!.add(row);
    } catch (e) {
      if (!(e instanceof NotBulkable)) throw e;
      part.encoder = undefined;
      part.reread = true;
    }
  };
  // Rows one by one through the callback API, not a page-sized array. A row that cannot be
  // routed or encoded fails the page after the result is drained (see streamQuery).
  return streamQuery<Row>(src, { sql: q.sql, values: q.params, rowsAsArray: true }, onRow).then(() => {
    page.lastPk = last ? meta.pk.map((i) => last![i] ?? null) : null;
    return page;
  });
}

/**
 * Whether a page can stream as raw row packets (streamPageRaw): every target of the job takes
 * LOAD DATA, and the shard key and primary key read from their text bytes exactly as from the
 * driver's values. FLOAT and DOUBLE are not (the driver's number prints differently from the
 * server's text); BIT keys are rare enough to leave to the value path.
 */
function rawEligible(job: TableJob, pools: Map<string, TargetPool>): boolean {
  if (process.env.RESHARD_COPY_RAW === '0') return false; // the value path, to compare or fall back
  if (job.rawKeys === undefined) {
    const plan = job.bulk.get(job.targets[0] ?? '');
    const keyish = plan ? [job.meta.shardKey, ...job.meta.pk] : [];
    job.rawKeys =
      plan !== undefined &&
      keyish.every((i) => !isFloatType({ dataType: plan.types[i] ?? '' }) && plan.modes[i] !== 'bit');
  }
  if (!job.rawKeys) return false;
  for (const t of job.targets) if (!job.bulk.get(t) || !pools.get(t)?.bulkEnabled) return false;
  return true;
}

/** The driver-equivalent value of a primary-key column given as a span (start -1: NULL). */
function keyValueOf(
  buf: Buffer,
  start: number,
  len: number,
  mode: BulkPlan['modes'][number] | undefined,
): Value {
  if (start < 0) return null;
  // Binary columns are Buffers, everything else text: integers as decimal text travel as exact
  // integer parameters (keyset.ts), temporal and DECIMAL values as the server printed them.
  return mode === 'hex'
    ? Buffer.from(buf.subarray(start, start + len))
    : buf.toString('utf8', start, start + len);
}

/**
 * streamPage for tables every target bulk-loads: rows are taken as spans of the packets they
 * arrive in (the row parser shared with verify, src/db/rowview.ts) and transcoded into each target's LOAD DATA batches
 * byte for byte (TsvEncoder.addView), with no JavaScript value made per column. Only the shard
 * key (to route) and the last row's primary key (where the next page starts) are decoded. A
 * target whose load then rolls back gets the page re-read with values (writeStreamedPage).
 */
function streamPageRaw(
  src: Connection,
  job: TableJob,
  index: PlanIndex,
  lower: PkTuple | null,
  upper: PkTuple | null,
  limit: number,
): Promise<StreamedPage> {
  const meta = job.meta;
  const q = lockingPageQuery(job, lower, upper, limit);
  const page: StreamedPage = { read: 0, misplaced: 0, bytes: 0, lastPk: null, parts: new Map() };
  const sk = meta.shardKey;
  // The last row's packet is kept (mysql2 does not reuse a packet's buffer) with the spans of its
  // primary-key columns, to decode its key once the page has ended.
  const pk = meta.pk;
  let lastBuf: Buffer | undefined;
  const lastStart = new Int32Array(pk.length);
  const lastLen = new Int32Array(pk.length);
  const onView = (view: RowView) => {
    page.read++;
    page.bytes += view.rowEnd - view.rowStart + 8;
    lastBuf = view.buf;
    for (let j = 0; j < pk.length; j++) {
      lastStart[j] = view.start[pk[j]!]!;
      lastLen[j] = view.len[pk[j]!]!;
    }
    const s = view.start[sk]!;
    if (s < 0) routeKeyOf(meta, null); // throws E_NULL_SHARD_KEY
    const seg = index.segmentOf(routeKeyOfText(meta.keyKind, view.buf, s, s + view.len[sk]!));
    if (seg.from !== job.source) {
      if (seg.to !== job.source) page.misplaced++;
      return;
    }
    if (!seg.moves) return;
    let part = page.parts.get(seg.to);
    if (!part) {
      part = { rows: 0, encoder: new TsvEncoder(job.bulk.get(seg.to)!.modes, MAX_APPLY_BYTES) };
      page.parts.set(seg.to, part);
    }
    part.rows++;
    part.encoder!.addView(view);
  };
  return streamRowViews(src, q.sql, meta.columns.length, onView, q.params).then(() => {
    if (lastBuf) {
      const buf = lastBuf;
      const plan = job.bulk.get(job.targets[0]!)!;
      page.lastPk = pk.map((col, j) => keyValueOf(buf, lastStart[j]!, lastLen[j]!, plan.modes[col]));
    }
    return page;
  });
}

/**
 * Write a streamed page to its targets (each committed): LOAD DATA batches where the rows were
 * encoded, the applier for the rest. A target whose load rolled back (a key already there, a
 * value the server would convert) or that could not be encoded gets the page's rows again from
 * the source — the same locking transaction, so every row read is still the latest committed
 * version and still locked (a row inserted into the range since is also locked when read, and
 * also in the binlog after the recorded start: writing it twice is the idempotent upsert) — and
 * writes them through the owner-aware applier.
 */
export async function writeStreamedPage(
  page: StreamedPage,
  src: Connection,
  job: TableJob,
  index: PlanIndex,
  pools: Map<string, TargetPool>,
  lower: PkTuple | null,
): Promise<PageResult> {
  let reread: Promise<Map<string, Row[]>> | undefined;
  const rowsFor = async (target: string): Promise<Row[]> => {
    reread ??= readPage(src, job, lower, page.lastPk, Number.MAX_SAFE_INTEGER).then((rows) => {
      const by = new Map<string, Row[]>();
      for (const row of rows) {
        const seg = index.segmentOf(routeKeyOf(job.meta, row[job.meta.shardKey] ?? null));
        if (seg.from !== job.source || !seg.moves) continue;
        const list = by.get(seg.to) ?? [];
        list.push(row);
        by.set(seg.to, list);
      }
      return by;
    });
    return (await reread).get(target) ?? [];
  };
  const perTarget = new Map<string, number>();
  let bulk = 0;
  // Just before each target COMMIT: the source transaction is still there, so its shared locks
  // still hold every row of the page. Were the source connection lost meanwhile (a KILL, a
  // restart), the server would have released them, and the rows could have changed or gone —
  // and the tailer applied that — before this write: the target write rolls back and the page is
  // retried. What remains is the round trip between this answer and the COMMIT.
  const sourceHeld = async () => {
    try {
      await src.query('SELECT 1');
    } catch (e) {
      throw new SourceLostError(e);
    }
  };
  // Every target's write settles before this returns, also when one fails: the caller then rolls
  // the source transaction back, releasing the page's shared locks, and a load still in flight
  // on another target after that could commit a version the application has since changed or
  // deleted — after the tailer applied the change (a stale or resurrected row).
  const settled = await Promise.allSettled(
    [...page.parts].map(async ([target, part]) => {
      const pool = pools.get(target);
      if (!pool) throw new Error(`no writer pool for target ${target}`);
      const table = job.targetMeta.get(target)!;
      await pool.run(async (w) => {
        const plan = job.bulk.get(target);
        try {
          if (part.encoder && plan && (await w.loadBatches(part.encoder.finish(), plan, sourceHeld))) {
            bulk += part.rows;
            return;
          }
        } finally {
          part.encoder?.release();
        }
        await w.applyRows(part.images ?? (await rowsFor(target)), table, job.source, sourceHeld);
      });
      perTarget.set(target, part.rows);
    }),
  );
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return {
    read: page.read,
    written: [...perTarget.values()].reduce((a, b) => a + b, 0),
    misplaced: page.misplaced,
    bytes: page.bytes,
    lastPk: page.lastPk,
    perTarget,
    bulk,
  };
}
