/**
 * The applier: writes row changes to one target shard. Copy and tail both go through it, so the
 * convergence argument in README.md holds for every row either of them writes.
 *
 * Lifecycle: open(target) → ensureMeta() once → apply(ops, position?)* → close().
 *
 * Semantics of one `apply` call: all its operations and the optional source position commit in
 * one target transaction (or none do); operations keep their order per row.
 *   upsert(row from source S): if the target has no row with that primary key, or its row is
 *       owned by S under the source-side routing, the row is written (full image); otherwise the
 *       row is *parked* for (primary key, S) — another source currently holds that primary key.
 *   delete(row from source S): if the target row with that primary key is owned by S it is
 *       deleted, and a row parked for that primary key by another source (if any) takes its
 *       place; otherwise only S's parked row (if any) is removed.
 * When the shard key is part of the primary key, no primary key can live on two sources, so the
 * applier skips the ownership check (fast path: plain upsert / delete by primary key).
 */
import type { Connection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { q, qt } from '../db/quote.js';
import { classifyError, withRetry } from '../db/retry.js';
import { HELD_MAX_CHARS, Statements } from '../db/statements.js';
import { PreconditionError } from '../errors.js';
import { routeKeyOf, type TableMeta } from './table.js';
import { decodeImage, encodeImage, type Row, sqlParam, tupleHash, tupleKey, type Value } from './values.js';

export interface RowOp {
  kind: 'upsert' | 'delete';
  table: TableMeta;
  /** Source-side shard whose binlog (or copy) produced the change. */
  source: string;
  /** Full after-image (upsert) or before-image (delete), in `table.columns` order. */
  row: Row;
}

/** Where a source's stream is, committed with the data it describes. */
export interface ApplyPosition {
  source: string;
  file: string;
  pos: number;
  gtid?: string | undefined;
}

export interface ApplyStats {
  written: number;
  deleted: number;
  parked: number;
  promoted: number;
}

export interface ApplierOptions {
  jobId: number;
  /** The job's identity across control schemas (jobOwner): job ids repeat, it does not. */
  owner: string;
  /** Target shard name (for messages and the positions table). */
  target: string;
  /** Database on the target server that holds reshard's own tables (parked rows, positions). */
  metaDb: string;
  /** Owner of a shard-key value under the source-side routing (the `from` side going forward). */
  sourceOwnerOf: (table: TableMeta, key: Value) => string;
  /** Opens a fresh connection to the target (used at start and after a lost connection). */
  connect: () => Promise<Connection>;
  signal?: AbortSignal;
  /** Total attempts for one transaction (deadlocks, lost connections). */
  attempts?: number;
  /** Most characters of statements sent in one packet (default `HELD_MAX_CHARS`; tests lower it). */
  maxHeldChars?: number;
  /**
   * The tailer's: `source`'s rows parked on these tables, to be promoted once their primary key
   * has come free on the target without a delete through this applier (see promoteFreed).
   */
  freedParked?: { source: string; tables: () => readonly TableMeta[] };
  /** The copy's: every transaction checks the job's copy fence before COMMIT (checkCopyFence). */
  copyFence?: boolean;
}

/** How often (at most) an applier looks for parked rows whose key came free (promoteFreed). */
const FREED_CHECK_MS = 1000;

/**
 * 2: apply_positions is keyed by (job, source, target). Version 1 keyed it by (job, source) only,
 * so two targets on one server overwrote each other's position (a resumed tailer then skipped
 * changes for one of them); upgraded in place, and a target without a position simply resumes
 * from the copy's start position, which is safe (see README.md).
 * 3: `jobs` says which job a job id's rows belong to (claimMeta). A job id is an AUTO_INCREMENT
 * of one control schema: a job of another control schema (another estate on the same servers, or
 * this one after its control schema was made anew) is job 1 too, and its tailer took the other
 * job's positions as its own and skipped its changes.
 */
export const META_VERSION = 3;

/**
 * A job's identity across control schemas: its control database, name (from the plan's hash)
 * and creation time to the microsecond. A control schema made anew gives the same plan a new
 * job with the same id and name but another creation time.
 */
export function jobOwner(controlDatabase: string, job: { name: string; createdAt: string }): string {
  return `${controlDatabase}/${job.name}/${job.createdAt}`;
}

/** The owner recorded for a job id in `metaDb` (undefined: none, or no meta tables yet). */
export async function metaOwner(
  conn: Connection,
  metaDb: string,
  jobId: number,
): Promise<string | undefined> {
  try {
    const [rows] = await conn.query<RowDataPacket[]>(`SELECT owner FROM ${q(metaDb)}.jobs WHERE job_id = ?`, [
      jobId,
    ]);
    return rows[0] ? String(rows[0].owner) : undefined;
  } catch (e) {
    const errno = (e as { errno?: number }).errno;
    if (errno === 1049 || errno === 1146) return undefined;
    throw e;
  }
}

/** Refuse a job id whose rows in `metaDb` belong to another job (see META_VERSION 3). */
export function refuseOtherOwner(
  metaDb: string,
  target: string,
  jobId: number,
  owner: string,
  found: string,
): never {
  throw new PreconditionError(
    'E_META_OTHER_JOB',
    `${metaDb} on target ${target} holds positions and parked rows of another job with id ${jobId} (${found}); this job (${owner}) would take them for its own`,
    {
      hint: `give this job its own --meta-db, or, if that job is gone for good, remove its rows on ${target}: DELETE FROM ${q(metaDb)}.apply_positions WHERE job_id = ${jobId}; DELETE FROM ${q(metaDb)}.parked_rows WHERE job_id = ${jobId}; DELETE FROM ${q(metaDb)}.jobs WHERE job_id = ${jobId}; DELETE FROM ${q(metaDb)}.copy_fences WHERE job_id = ${jobId};`,
      data: { target, metaDb, jobId, owner, found },
    },
  );
}

/** Claim job id `jobId` in `metaDb` for `owner`, or refuse when another job has it. */
export async function claimMeta(
  conn: Connection,
  metaDb: string,
  target: string,
  jobId: number,
  owner: string,
): Promise<void> {
  const [claimed] = await conn.query<ResultSetHeader>(
    `INSERT IGNORE INTO ${q(metaDb)}.jobs (job_id, owner) VALUES (?, ?)`,
    [jobId, owner],
  );
  const found = await metaOwner(conn, metaDb, jobId);
  if (found !== owner) refuseOtherOwner(metaDb, target, jobId, owner, found ?? '(none)');
  // A job id claimed just now is a new job's: a fence left by an earlier job with that id (its
  // jobs row removed by hand, as E_META_OTHER_JOB's hint says) is not its own.
  await conn.query(
    claimed.affectedRows === 1
      ? `REPLACE INTO ${q(metaDb)}.copy_fences (job_id, fenced, fenced_at) VALUES (?, 0, NULL)`
      : `INSERT IGNORE INTO ${q(metaDb)}.copy_fences (job_id) VALUES (?)`,
    [jobId],
  );
}

/**
 * The copy's fence on a target (`<metaDb>.copy_fences`). A copy worker can lose its control
 * connection (its identity lock with it, so cutover counts no live worker) while a page it read
 * under shared locks on the source is still on its way: the freeze kills only sessions that
 * modified rows, so its source transaction survives, and its write could land on the new owner
 * after the flip, over a newer row the application wrote there. Every copy write to a target
 * reads the job's fence row under a shared lock just before COMMIT (checkCopyFence); cutover
 * sets it under the freeze before verifying (fenceCopy), which waits for a write holding the
 * lock to commit (before the flip) and makes every later one roll back.
 */
export async function checkCopyFence(
  read: (sql: string, params: unknown[]) => Promise<RowDataPacket[]>,
  metaDb: string,
  jobId: number,
  target: string,
): Promise<void> {
  const rows = await read(`SELECT fenced FROM ${q(metaDb)}.copy_fences WHERE job_id = ? LOCK IN SHARE MODE`, [
    jobId,
  ]);
  if (rows.length > 0 && Number(rows[0]!.fenced) === 0) return;
  throw new PreconditionError(
    'E_COPY_FENCED',
    rows.length === 0
      ? `target ${target}: ${metaDb}.copy_fences has no row for job ${jobId}: this copy worker's write is refused`
      : `target ${target}: job ${jobId} was cut over (or is being cut over) while this copy worker still held a page; the page was not written`,
    {
      hint: 'nothing to do: the copy of this job is complete; stop this worker (it lost its control connection while others finished the copy)',
    },
  );
}

/**
 * Set the copy's fence for `jobId` (cutover, under the freeze): waits for a copy write in flight.
 * The meta tables are made only where they are missing (a target no applier opened yet): the
 * freeze does not pay for ensureMeta's statements on every target.
 */
export async function fenceCopy(conn: Connection, metaDb: string, jobId: number): Promise<void> {
  const fence = () =>
    conn.query(
      `INSERT INTO ${q(metaDb)}.copy_fences (job_id, fenced, fenced_at) VALUES (?, 1, CURRENT_TIMESTAMP(6))
       ON DUPLICATE KEY UPDATE fenced = 1, fenced_at = COALESCE(fenced_at, CURRENT_TIMESTAMP(6))`,
      [jobId],
    );
  try {
    await fence();
  } catch (e) {
    const errno = (e as { errno?: number }).errno;
    if (errno !== 1049 && errno !== 1146) throw e;
    await ensureMeta(conn, metaDb);
    await fence();
  }
}

/** reshard's own tables on a target server; created on first use, refused if newer. */
export async function ensureMeta(conn: Connection, metaDb: string): Promise<void> {
  const db = q(metaDb);
  await conn.query(`CREATE DATABASE IF NOT EXISTS ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  await conn.query(
    `CREATE TABLE IF NOT EXISTS ${db}.meta_version (id TINYINT NOT NULL PRIMARY KEY, version INT NOT NULL) ENGINE=InnoDB`,
  );
  await conn.query(`INSERT IGNORE INTO ${db}.meta_version (id, version) VALUES (1, ?)`, [META_VERSION]);
  const [rows] = await conn.query<RowDataPacket[]>(`SELECT version FROM ${db}.meta_version WHERE id = 1`);
  let v = Number(rows[0]?.version);
  if (v === 1) {
    // Upgrade (see META_VERSION): old rows cannot say which target they describe, so they go;
    // their tailers resume from the copy's recorded start position.
    await conn.query(`DROP TABLE IF EXISTS ${db}.apply_positions`);
    await conn.query(`UPDATE ${db}.meta_version SET version = 2 WHERE id = 1 AND version = 1`);
    v = 2;
  }
  if (v === 2) {
    // Upgrade (see META_VERSION): the jobs table below; a job id already there is claimed by the
    // first job that opens it, as before this version.
    await conn.query(`UPDATE ${db}.meta_version SET version = 3 WHERE id = 1 AND version = 2`);
    v = 3;
  }
  if (v > META_VERSION) {
    throw new PreconditionError(
      'E_META_TOO_NEW',
      `${metaDb} on this target was written by a newer reshard (meta version ${v})`,
      {
        hint: `use that reshard version, or drop database ${metaDb} if no job uses it`,
      },
    );
  }
  // Rows that arrived for a primary key another source currently holds (see the header comment).
  await conn.query(`CREATE TABLE IF NOT EXISTS ${db}.parked_rows (
    job_id BIGINT UNSIGNED NOT NULL,
    db VARCHAR(64) NOT NULL,
    tbl VARCHAR(64) NOT NULL,
    pk_hash BINARY(32) NOT NULL,
    source VARCHAR(191) NOT NULL,
    image LONGTEXT NOT NULL,
    parked_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (job_id, db, tbl, pk_hash, source)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
  // Which job each job id's rows belong to (claimMeta).
  await conn.query(`CREATE TABLE IF NOT EXISTS ${db}.jobs (
    job_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    owner VARCHAR(512) NOT NULL,
    claimed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
  // The copy's fence per job (checkCopyFence, fenceCopy).
  await conn.query(`CREATE TABLE IF NOT EXISTS ${db}.copy_fences (
    job_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    fenced TINYINT NOT NULL DEFAULT 0,
    fenced_at DATETIME(6) NULL
  ) ENGINE=InnoDB`);
  // Last source position applied on this target, written in the same transaction as the rows.
  await conn.query(`CREATE TABLE IF NOT EXISTS ${db}.apply_positions (
    job_id BIGINT UNSIGNED NOT NULL,
    source VARCHAR(191) NOT NULL,
    target VARCHAR(191) NOT NULL,
    binlog_file VARCHAR(255) NOT NULL,
    binlog_pos BIGINT UNSIGNED NOT NULL,
    gtid LONGTEXT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (job_id, source, target)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
}

/**
 * A duplicate-key error on a key other than the primary key: two rows with different primary
 * keys hold the same value of a UNIQUE key. Sources enforce it each for their own rows only, so
 * rows merged from several sources can clash; retrying cannot help.
 */
function uniqueConflict(err: unknown, target: string): PreconditionError | undefined {
  const e = err as { errno?: number; message?: string };
  if (e?.errno !== 1062) return undefined;
  const key = /for key '([^']*)'/.exec(e.message ?? '')?.[1];
  if (key === undefined || key === 'PRIMARY' || key.endsWith('.PRIMARY')) return undefined;
  return uniqueConflictError(`target ${target}: ${e.message}`, key, err);
}

/** E_UNIQUE_CONFLICT: two rows with different primary keys hold one value of UNIQUE key `key`. */
function uniqueConflictError(message: string, key: string, cause?: unknown): PreconditionError {
  return new PreconditionError('E_UNIQUE_CONFLICT', message, {
    hint: `each source enforces UNIQUE key ${key} for its own rows only, and rows merged from several sources on one target clash. Change or remove one of the rows on the sources (or drop the key on every shard alike), then re-run: nothing of this transaction was applied`,
    ...(cause !== undefined ? { cause } : {}),
  });
}

/**
 * Most bytes of row values one statement carries, as its text will hold them (a run is one
 * statement). Binary values travel as hex (twice their size), and a source transaction can hold
 * rows of many megabytes: 70 rows of a 1 MB BLOB made one 140 MB INSERT, which every server
 * refuses (max_allowed_packet, 16 MB by default on MariaDB, 64 MB on MySQL 8), so the tailer
 * stopped on that transaction for good. Runs are cut at this size; they still commit together.
 */
export const RUN_MAX_BYTES = 4 << 20;

/** The size of a row's values in a statement, over-estimated: hex for bytes, 3 bytes per UTF-16 unit. */
function statementBytes(row: Row): number {
  let n = 16;
  for (const v of row) {
    if (v === null) n += 5;
    else if (Buffer.isBuffer(v)) n += 2 * v.length + 4;
    else if (typeof v === 'string') n += 3 * v.length + 3;
    else n += 24;
  }
  return n;
}

/** Split ops into runs of one kind on one table with distinct primary keys (order preserved). */
function* runs(ops: RowOp[], maxBytes = RUN_MAX_BYTES): Generator<RowOp[]> {
  let run: RowOp[] = [];
  let seen = new Set<string>();
  let bytes = 0;
  for (const op of ops) {
    const k = tupleKey(op.table.pk.map((i) => op.row[i] ?? null));
    const size = statementBytes(op.row);
    const head = run[0];
    if (
      head &&
      (head.kind !== op.kind ||
        head.table !== op.table ||
        head.source !== op.source ||
        seen.has(k) ||
        run.length >= 1000 ||
        bytes + size > maxBytes)
    ) {
      yield run;
      run = [];
      seen = new Set();
      bytes = 0;
    }
    run.push(op);
    seen.add(k);
    bytes += size;
  }
  if (run.length) yield run;
}

const STRICT_MODE = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

export class TargetApplier {
  private conn: Connection | undefined;
  private readonly meta: string;
  private lastFreedCheck = 0;
  /** This applier's source may have rows parked here (unknown at start; see promoteFreed). */
  private mayHaveParked = true;

  constructor(private readonly opts: ApplierOptions) {
    this.meta = q(opts.metaDb);
  }

  /** The copy fence (checkCopyFence) read on another connection of this target: the copy's bulk path. */
  checkFenceOn(conn: Connection): Promise<void> {
    return checkCopyFence(
      async (sql, params) => (await conn.query<RowDataPacket[]>(sql, params))[0],
      this.opts.metaDb,
      this.opts.jobId,
      this.opts.target,
    );
  }

  private async connection(): Promise<Connection> {
    if (!this.conn) {
      const c = await this.opts.connect();
      // Exact copies: strict mode turns any value the target cannot hold into an error instead
      // of a silent truncation; NO_AUTO_VALUE_ON_ZERO keeps an explicit 0 in an AUTO_INCREMENT.
      await c.query(STRICT_MODE);
      this.conn = c;
    }
    return this.conn;
  }

  private async reconnect(): Promise<void> {
    const old = this.conn;
    this.conn = undefined;
    old?.destroy();
    await this.connection();
  }

  async open(): Promise<void> {
    const conn = await this.connection();
    await ensureMeta(conn, this.opts.metaDb);
    await claimMeta(conn, this.opts.metaDb, this.opts.target, this.opts.jobId, this.opts.owner);
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = undefined;
    await c?.end().catch(() => c.destroy());
  }

  /** Last position of `source` committed on this target, or undefined before the first. */
  async appliedPosition(source: string): Promise<ApplyPosition | undefined> {
    const conn = await this.connection();
    const [rows] = await conn.query<RowDataPacket[]>(
      `SELECT binlog_file AS file, binlog_pos AS pos, gtid FROM ${this.meta}.apply_positions WHERE job_id = ? AND source = ? AND target = ?`,
      [this.opts.jobId, source, this.opts.target],
    );
    const r = rows[0];
    return r
      ? {
          source,
          file: String(r.file),
          pos: Number(r.pos),
          gtid: r.gtid === null ? undefined : String(r.gtid),
        }
      : undefined;
  }

  /**
   * Apply `ops` (and record `position`) in one transaction; retried as a whole on conflicts.
   * `beforeCommit` is awaited inside the transaction, after every write and before COMMIT (on
   * each attempt): for work that must be durable before this transaction is, which then
   * overlaps the writes instead of preceding them. `lookForFreed`: look for parked rows whose
   * key came free (promoteFreed) in this transaction, however recent the last look.
   */
  async apply(
    ops: RowOp[],
    position?: ApplyPosition,
    opts: { beforeCommit?: () => Promise<void>; lookForFreed?: boolean } = {},
  ): Promise<ApplyStats> {
    return withRetry(
      async () => {
        const conn = await this.connection();
        const stats: ApplyStats = { written: 0, deleted: 0, parked: 0, promoted: 0 };
        const st = new Statements(conn, this.opts.maxHeldChars ?? HELD_MAX_CHARS);
        try {
          await st.write('START TRANSACTION');
          for (const run of runs(ops)) {
            if (run[0]!.kind === 'upsert') await this.upsertRun(st, run, stats);
            else await this.deleteRun(st, run, stats);
          }
          if (stats.parked > 0) this.mayHaveParked = true;
          if (this.freedCheckDue(opts.lookForFreed)) {
            this.lastFreedCheck = Date.now();
            this.mayHaveParked = await this.promoteFreed(st, stats);
          }
          if (position) {
            await st.write(
              `INSERT INTO ${this.meta}.apply_positions (job_id, source, target, binlog_file, binlog_pos, gtid) VALUES (?, ?, ?, ?, ?, ?)
               ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), binlog_pos = VALUES(binlog_pos), gtid = VALUES(gtid)`,
              [
                this.opts.jobId,
                position.source,
                this.opts.target,
                position.file,
                position.pos,
                position.gtid ?? null,
              ],
            );
          }
          // The writes run on the server while beforeCommit's work is in flight. The copy's fence
          // is read in the same packet as the writes held until now.
          if (this.opts.copyFence)
            await checkCopyFence(
              (sql, params) => st.read(sql, params, false) as Promise<RowDataPacket[]>,
              this.opts.metaDb,
              this.opts.jobId,
              this.opts.target,
            );
          else await st.flush();
          await opts.beforeCommit?.();
          await conn.query('COMMIT');
          return stats;
        } catch (err) {
          if (classifyError(err) !== 'reconnect') await conn.query('ROLLBACK').catch(() => undefined);
          throw uniqueConflict(err, this.opts.target) ?? err;
        }
      },
      {
        label: `applying to target ${this.opts.target}`,
        attempts: this.opts.attempts ?? 12,
        ...(this.opts.signal ? { signal: this.opts.signal } : {}),
        onReconnect: () => this.reconnect(),
      },
    );
  }

  /** INSERT … ON DUPLICATE KEY UPDATE every column; `update: false`: a plain INSERT. */
  private async writeRows(st: Statements, t: TableMeta, rows: Row[], update = true): Promise<void> {
    if (rows.length === 0) return;
    const tuple = `(${t.columns.map(() => '?').join(', ')})`;
    const updates = t.columns.map((c) => `${q(c)} = VALUES(${q(c)})`).join(', ');
    const params: unknown[] = [];
    for (const r of rows) for (const v of r) params.push(sqlParam(v));
    await st.write(
      `INSERT INTO ${t.sql.table} (${t.sql.columns}) VALUES ${rows.map(() => tuple).join(', ')}${update ? ` ON DUPLICATE KEY UPDATE ${updates}` : ''}`,
      params,
    );
  }

  private pkWhere(t: TableMeta, rows: Row[], alias = ''): { sql: string; params: unknown[] } {
    const cols = t.pk.map((i) => `${alias}${q(t.columns[i]!)}`);
    const params: unknown[] = [];
    for (const r of rows) for (const i of t.pk) params.push(sqlParam(r[i] ?? null));
    if (cols.length === 1) return { sql: `${cols[0]} IN (${rows.map(() => '?').join(', ')})`, params };
    const tuple = `(${cols.map(() => '?').join(', ')})`;
    return { sql: `(${cols.join(', ')}) IN (${rows.map(() => tuple).join(', ')})`, params };
  }

  /**
   * For each row, the target's current row with the same primary key, locked: returns
   * index → [shard key, ...primary-key values as the target stores them].
   *
   * Fast path: one `WHERE pk IN (…) FOR UPDATE` and pairing by exact bytes. The server compares
   * with the columns' collations, so a stored key can equal an incoming one without being
   * byte-identical ('abc' vs 'ABC' under a _ci collation, trailing spaces under PAD SPACE);
   * when a returned row pairs with no incoming row, the rows are paired again by the server
   * itself through a join (slower, and only in that rare case).
   */
  private async existing(st: Statements, t: TableMeta, rows: Row[]): Promise<Map<number, Row>> {
    const pkCols = t.pk.map((i) => t.columns[i]!);
    const w = this.pkWhere(t, rows);
    const res = await st.read(
      `SELECT ${q(t.columns[t.shardKey]!)}, ${pkCols.map((c) => q(c)).join(', ')} FROM ${t.sql.table} WHERE ${w.sql} FOR UPDATE`,
      w.params,
      true,
    );
    const found = res as unknown as Value[][];
    const out = new Map<number, Row>();
    if (found.length === 0) return out;
    const byKey = new Map<string, number>();
    rows.forEach((r, idx) => {
      byKey.set(tupleKey(t.pk.map((i) => r[i] ?? null)), idx);
    });
    let unpaired = false;
    for (const f of found) {
      const idx = byKey.get(tupleKey(f.slice(1)));
      if (idx === undefined) unpaired = true;
      else out.set(idx, f);
    }
    return unpaired ? this.existingByJoin(st, t, rows) : out;
  }

  private async existingByJoin(st: Statements, t: TableMeta, rows: Row[]): Promise<Map<number, Row>> {
    const pkCols = t.pk.map((i) => t.columns[i]!);
    const params: unknown[] = [];
    const selects = rows.map((r, idx) => {
      params.push(idx);
      for (const i of t.pk) params.push(sqlParam(r[i] ?? null));
      return `SELECT ? AS _i, ${pkCols.map((_c, j) => `? AS ${q(`_k${j}`)}`).join(', ')}`;
    });
    const on = pkCols.map((c, j) => `t.${q(c)} = v.${q(`_k${j}`)}`).join(' AND ');
    const res = await st.read(
      `SELECT v._i AS _i, t.${q(t.columns[t.shardKey]!)} AS _key, ${pkCols.map((c) => `t.${q(c)}`).join(', ')}
              FROM (${selects.join(' UNION ALL ')}) AS v JOIN ${t.sql.table} AS t ON ${on} FOR UPDATE`,
      params,
      true,
    );
    const out = new Map<number, Row>();
    for (const r of res as unknown as Value[][]) out.set(Number(r[0]), r.slice(1));
    return out;
  }

  /**
   * Rows of the target (other than the incoming rows themselves) that hold a value of a UNIQUE
   * key one of `rows` of `source` is about to take, locked. One owned by `source` is deleted: the
   * stream replays older images over rows the copy read later (or a run carries a value from one
   * row to another), and the source was consistent at every event, so a row of the same source
   * holding the value now is rewritten by a later event of the stream, and applying in order
   * converges. One owned by another source is a real clash — each source enforces the key for
   * its own rows only — and stops the transaction with E_UNIQUE_CONFLICT.
   */
  private async clearUniqueClashes(st: Statements, t: TableMeta, rows: Row[], source: string): Promise<void> {
    if (rows.length === 0) return;
    for (const { name, columns: uk } of t.uniqueKeys) {
      // NULL never clashes in a unique index.
      const holders = rows.filter((r) => uk.every((i) => r[i] !== null && r[i] !== undefined));
      if (holders.length === 0) continue;
      const cols = uk.map((i) => q(t.columns[i]!));
      const tuple = `(${cols.map(() => '?').join(', ')})`;
      const params: unknown[] = [];
      for (const r of holders) for (const i of uk) params.push(sqlParam(r[i] ?? null));
      const found = (await st.read(
        `SELECT ${q(t.columns[t.shardKey]!)}, ${t.pk.map((i) => q(t.columns[i]!)).join(', ')}, ${cols.join(', ')} FROM ${t.sql.table} WHERE (${cols.join(', ')}) IN (${holders.map(() => tuple).join(', ')}) FOR UPDATE`,
        params,
        true,
      )) as unknown as Value[][];
      const same = new Set(
        holders.map((r) => tupleKey([...t.pk.map((i) => r[i] ?? null), ...uk.map((i) => r[i]!)])),
      );
      const clearing: Row[] = [];
      for (const f of found) {
        const pk = f.slice(1, 1 + t.pk.length);
        // The incoming row's own current version, holding the same bytes: no clash.
        if (same.has(tupleKey(f.slice(1)))) continue;
        if (this.opts.sourceOwnerOf(t, f[0] ?? null) !== source) {
          const shown = (vs: Value[]) =>
            vs.map((v) => (Buffer.isBuffer(v) ? `0x${v.toString('hex')}` : String(v)));
          throw uniqueConflictError(
            `target ${this.opts.target}: table ${t.name}: UNIQUE key ${name} (${uk.map((i) => t.columns[i]).join(', ')}) = (${shown(f.slice(1 + t.pk.length)).join(', ')}) is held by the row with primary key (${shown(pk).join(', ')}) of another source, and a row of source ${source} takes it`,
            name,
          );
        }
        // Deleted also when it is one of `rows` (a value moving between rows of one run): its
        // own upsert, later in the run, writes it again.
        clearing.push(
          t.columns.map((_, i) => {
            const j = t.pk.indexOf(i);
            return j >= 0 ? (pk[j] ?? null) : null;
          }),
        );
      }
      if (clearing.length) {
        const w = this.pkWhere(t, clearing);
        await st.write(`DELETE FROM ${t.sql.table} WHERE ${w.sql}`, w.params);
      }
    }
  }

  /** Parked rows are keyed by the primary key as the target stores it. */
  private parkedKey(pkValues: Row): Buffer {
    return tupleHash(pkValues);
  }

  private async upsertRun(st: Statements, run: RowOp[], stats: ApplyStats): Promise<void> {
    const t = run[0]!.table;
    const source = run[0]!.source;
    const rows = run.map((o) => o.row);
    if (t.shardKeyInPk && !t.secondaryUnique) {
      await this.writeRows(st, t, rows);
      stats.written += rows.length;
      return;
    }
    const found = await this.existing(st, t, rows);
    const winners: Row[] = [];
    const fresh: Row[] = [];
    const clear: Buffer[] = [];
    const park: [Buffer, Row][] = [];
    rows.forEach((r, idx) => {
      const ex = found.get(idx);
      // Parked rows are keyed by the primary key as the target stores it (collation-equal
      // variants of a string key share one entry).
      const pkValues = ex ? ex.slice(1) : t.pk.map((i) => r[i] ?? null);
      const h = this.parkedKey(pkValues);
      if (!ex || this.opts.sourceOwnerOf(t, ex[0] ?? null) === source) {
        // With a secondary UNIQUE key, a row new to the target goes in by plain INSERT: under
        // ON DUPLICATE KEY UPDATE, its clash on that key would update the other row instead,
        // primary key included, and that row would be gone. A row the target has (locked above)
        // is safe there: InnoDB finds the primary-key duplicate first, and a clash of its new
        // values on the unique key fails. Rows of one run have distinct primary keys and follow
        // source order, where a new row cannot free a value an existing one takes, so existing
        // rows go first.
        if (!ex && t.secondaryUnique) fresh.push(r);
        else winners.push(r);
        clear.push(h);
      } else {
        park.push([h, r]);
      }
    });
    if (t.secondaryUnique) await this.clearUniqueClashes(st, t, [...winners, ...fresh], source);
    await this.writeRows(st, t, winners);
    await this.writeRows(st, t, fresh, false);
    stats.written += winners.length + fresh.length;
    if (clear.length) {
      await st.write(
        `DELETE FROM ${this.meta}.parked_rows WHERE job_id = ? AND db = ? AND tbl = ? AND source = ? AND pk_hash IN (${clear.map(() => '?').join(', ')})`,
        [this.opts.jobId, t.database, t.name, source, ...clear],
      );
    }
    if (park.length) {
      await st.write(
        `INSERT INTO ${this.meta}.parked_rows (job_id, db, tbl, pk_hash, source, image) VALUES ${park.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}
         ON DUPLICATE KEY UPDATE image = VALUES(image)`,
        park.flatMap(([h, r]) => [this.opts.jobId, t.database, t.name, h, source, encodeImage(r)]),
      );
      stats.parked += park.length;
    }
  }

  /**
   * A look for parked rows whose key came free is due (promoteFreed): the tailer's worker, idle,
   * commits its unchanged position for it. `force`: now, however recent the last look.
   */
  freedCheckDue(force = false): boolean {
    return (
      this.opts.freedParked !== undefined &&
      this.mayHaveParked &&
      (force || Date.now() - this.lastFreedCheck >= FREED_CHECK_MS)
    );
  }

  /**
   * Make parked rows the live rows of their keys (the caller knows each key is free and holds it
   * locked): the first parked per key, in `parked_at` order. Each is new to the target, so on a
   * table with a UNIQUE key it goes in by plain INSERT (see upsertRun), after its own source's
   * clashing rows are cleared.
   */
  private async promote(
    st: Statements,
    t: TableMeta,
    parked: RowDataPacket[],
    stats: ApplyStats,
  ): Promise<void> {
    const promote = new Map<string, { source: string; image: string; hash: Buffer }>();
    for (const p of parked) {
      const k = (p.pk_hash as Buffer).toString('hex');
      if (!promote.has(k))
        promote.set(k, { source: String(p.source), image: String(p.image), hash: p.pk_hash as Buffer });
    }
    if (promote.size === 0) return;
    if (t.secondaryUnique)
      for (const src of new Set([...promote.values()].map((p) => p.source)))
        await this.clearUniqueClashes(
          st,
          t,
          [...promote.values()].filter((p) => p.source === src).map((p) => decodeImage(p.image)),
          src,
        );
    await this.writeRows(
      st,
      t,
      [...promote.values()].map((p) => decodeImage(p.image)),
      !t.secondaryUnique,
    );
    for (const p of promote.values()) {
      await st.write(
        `DELETE FROM ${this.meta}.parked_rows WHERE job_id = ? AND db = ? AND tbl = ? AND pk_hash = ? AND source = ?`,
        [this.opts.jobId, t.database, t.name, p.hash, p.source],
      );
    }
    stats.promoted += promote.size;
  }

  /**
   * Rows of `freedParked.source` parked against a live row whose key is free now, promoted. A
   * parked row waits for its key's row to be deleted through an applier of that row's source,
   * which then promotes it (deleteRun). On an in-place shard (the same database on both sides)
   * no such delete ever comes: the application deletes the row in the very table the tailer
   * writes, and that shard's own stream carries no change of a row whose segment stays. An order
   * moved from a staying user to a moved one (insert on the new shard, then delete on the old)
   * stayed parked for good: missing on its new owner (and, in reverse, on the old one, so a
   * rollback was refused). A key found free under a locking read (which also holds the gap
   * against a concurrent insert) is the state a delete through deleteRun would have left. Returns
   * whether any of the source's rows were parked (promoted now or not).
   */
  private async promoteFreed(st: Statements, stats: ApplyStats): Promise<boolean> {
    const { source, tables } = this.opts.freedParked!;
    let left = false;
    for (const t of tables()) {
      // A key with the shard key in it is never held by two sources: nothing parks. A character
      // key is parked under the bytes of the row it waited for, and cleared by the bytes of the
      // image that replaces it: 'abc' and 'ABC' are one row but two slots, so a slot found free
      // may hold an image its source has since overwritten and deleted. Such tables keep waiting
      // for a delete through the applier (an in-place move of a row keyed by text stays parked).
      if (t.shardKeyInPk || !t.pkBytes) continue;
      let after: Buffer | undefined;
      for (;;) {
        const page = await st.read(
          `SELECT pk_hash, image FROM ${this.meta}.parked_rows WHERE job_id = ? AND db = ? AND tbl = ? AND source = ?${after ? ' AND pk_hash > ?' : ''} ORDER BY pk_hash LIMIT 500`,
          [this.opts.jobId, t.database, t.name, source, ...(after ? [after] : [])],
          false,
        );
        if (page.length === 0) break;
        left = true;
        after = page[page.length - 1]!.pk_hash as Buffer;
        await this.promoteFreedPage(st, t, page, stats);
        if (page.length < 500) break;
      }
    }
    return left;
  }

  /** One page of a source's parked rows: those whose key is free now, promoted (promoteFreed). */
  private async promoteFreedPage(
    st: Statements,
    t: TableMeta,
    mine: RowDataPacket[],
    stats: ApplyStats,
  ): Promise<void> {
    const found = await this.existing(
      st,
      t,
      mine.map((p) => decodeImage(String(p.image))),
    );
    const free = mine.filter((_, idx) => !found.has(idx));
    if (free.length === 0) return;
    // Every row parked under a free key (any source), locked, in order: the first is promoted.
    const all = await st.read(
      `SELECT pk_hash, source, image FROM ${this.meta}.parked_rows WHERE job_id = ? AND db = ? AND tbl = ? AND pk_hash IN (${free.map(() => '?').join(', ')}) ORDER BY pk_hash, parked_at FOR UPDATE`,
      [this.opts.jobId, t.database, t.name, ...free.map((p) => p.pk_hash as Buffer)],
      false,
    );
    await this.promote(st, t, all, stats);
  }

  private async deleteRun(st: Statements, run: RowOp[], stats: ApplyStats): Promise<void> {
    const t = run[0]!.table;
    const source = run[0]!.source;
    const rows = run.map((o) => o.row);
    const counted = (r: ResultSetHeader) => {
      stats.deleted += r.affectedRows;
    };
    if (t.shardKeyInPk) {
      const w = this.pkWhere(t, rows);
      await st.write(`DELETE FROM ${t.sql.table} WHERE ${w.sql}`, w.params, counted);
      return;
    }
    const found = await this.existing(st, t, rows);
    const del: Row[] = [];
    const delHashes: Buffer[] = [];
    const clear: Buffer[] = [];
    rows.forEach((r, idx) => {
      const ex = found.get(idx);
      if (ex && this.opts.sourceOwnerOf(t, ex[0] ?? null) === source) {
        const pkValues = ex.slice(1);
        del.push(
          t.columns.map((_, i) => {
            const j = t.pk.indexOf(i);
            return j >= 0 ? (pkValues[j] ?? null) : null;
          }),
        );
        delHashes.push(this.parkedKey(pkValues));
      } else {
        clear.push(this.parkedKey(ex ? ex.slice(1) : t.pk.map((i) => r[i] ?? null)));
      }
    });
    if (del.length) {
      const w = this.pkWhere(t, del);
      await st.write(`DELETE FROM ${t.sql.table} WHERE ${w.sql}`, w.params, counted);
      // Another source may have parked a row under one of these keys while we held it: it is
      // the live row now. A row this source parked there itself is older than the delete that
      // its stream just sent: dropped, never promoted (the copy's bulk load can write a row
      // into a key freed in place while that row's earlier image is still parked).
      const parked = await st.read(
        `SELECT pk_hash, source, image FROM ${this.meta}.parked_rows WHERE job_id = ? AND db = ? AND tbl = ? AND pk_hash IN (${delHashes.map(() => '?').join(', ')}) ORDER BY pk_hash, parked_at FOR UPDATE`,
        [this.opts.jobId, t.database, t.name, ...delHashes],
        false,
      );
      const own = parked.filter((p) => String(p.source) === source);
      if (own.length)
        await st.write(
          `DELETE FROM ${this.meta}.parked_rows WHERE job_id = ? AND db = ? AND tbl = ? AND source = ? AND pk_hash IN (${own.map(() => '?').join(', ')})`,
          [this.opts.jobId, t.database, t.name, source, ...own.map((p) => p.pk_hash as Buffer)],
        );
      await this.promote(
        st,
        t,
        parked.filter((p) => String(p.source) !== source),
        stats,
      );
    }
    if (clear.length) {
      await st.write(
        `DELETE FROM ${this.meta}.parked_rows WHERE job_id = ? AND db = ? AND tbl = ? AND source = ? AND pk_hash IN (${clear.map(() => '?').join(', ')})`,
        [this.opts.jobId, t.database, t.name, source, ...clear],
      );
    }
  }
}

/** Build the source-side owner function for a router over that side's topology. */
export function sourceOwnerFn(
  ownerOf: (key: ReturnType<typeof routeKeyOf>) => string,
): (t: TableMeta, v: Value) => string {
  return (t, v) => ownerOf(routeKeyOf(t, v));
}

export { qt };
