/**
 * Verify runs and their bucket results in the control schema (`reshard_verify_runs`,
 * `reshard_verify_buckets`).
 *
 * A run row is written `running` when the run starts and set to `match`, `mismatch` or `failed`
 * when it ends; its `detail` (JSON) holds what a later incremental run needs: the mode, the bucket
 * bits per table, and the change-filter epoch the run opened. A run that crashed stays `running`
 * and is ignored. Buckets are stored for mismatches only (both sides' partials, one row per side
 * and shard), plus one `misplaced` row per (bucket, shard) that holds rows it does not own: a
 * later incremental run re-checks all of them even if no change was recorded there.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { toJson } from '../output.js';
import { decodePk } from './changes.js';
import { type RawRow, textRowPayload } from './rowhash.js';

const RUNS = '`reshard_verify_runs`';
const BUCKETS = '`reshard_verify_buckets`';

export type RunState = 'running' | 'match' | 'mismatch' | 'failed';

export interface RunDetail {
  mode: 'full' | 'incremental';
  /** Run whose clean result an incremental run builds on. */
  baseRunId?: number | undefined;
  /** Change-filter epoch this run opened: {source shard: generation}. */
  epoch: Record<string, number>;
  /** Bucket bits per table. */
  bits: Record<string, number>;
  /**
   * The primary keys of every difference the run reported, per table (hex of the stored key
   * encoding, changes.ts `encodePk`), present only when none was left out: a later incremental
   * run re-checks these keys instead of the run's buckets.
   */
  diffKeys?: Record<string, string[]> | undefined;
  summary?: unknown;
}

/** The stored form of a difference's primary key (RunDetail.diffKeys). */
export function diffKeyOf(pk: readonly (Buffer | null)[]): string {
  return textRowPayload(pk).toString('hex');
}

export interface RunRecord {
  runId: number;
  state: RunState;
  detail: RunDetail;
}

export async function startRun(conn: Connection, jobId: number, detail: RunDetail): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const [rows] = await conn.query<RowDataPacket[]>(
      `SELECT COALESCE(MAX(run_id), 0) + 1 AS next FROM ${RUNS} WHERE job_id = ?`,
      [jobId],
    );
    const runId = Number(rows[0]?.next ?? 1);
    try {
      await conn.query(`INSERT INTO ${RUNS} (job_id, run_id, state, detail) VALUES (?, ?, 'running', ?)`, [
        jobId,
        runId,
        toJson(detail, 0),
      ]);
      return runId;
    } catch (e) {
      if ((e as { errno?: number }).errno !== 1062 || attempt >= 10) throw e;
    }
  }
}

export async function updateRunDetail(
  conn: Connection,
  jobId: number,
  runId: number,
  detail: RunDetail,
): Promise<void> {
  await conn.query(`UPDATE ${RUNS} SET detail = ? WHERE job_id = ? AND run_id = ?`, [
    toJson(detail, 0),
    jobId,
    runId,
  ]);
}

export async function finishRun(
  conn: Connection,
  jobId: number,
  runId: number,
  state: Exclude<RunState, 'running'>,
  mismatches: number,
  detail: RunDetail,
): Promise<void> {
  await conn.query(
    `UPDATE ${RUNS} SET state = ?, mismatches = ?, detail = ?, finished_at = CURRENT_TIMESTAMP(6) WHERE job_id = ? AND run_id = ?`,
    [state, mismatches, toJson(detail, 0), jobId, runId],
  );
}

function parseDetail(text: unknown): RunDetail {
  try {
    const d = JSON.parse(String(text)) as Partial<RunDetail>;
    return {
      mode: d.mode ?? 'full',
      baseRunId: d.baseRunId,
      epoch: d.epoch ?? {},
      bits: d.bits ?? {},
      diffKeys: d.diffKeys,
      summary: d.summary,
    };
  } catch {
    return { mode: 'full', epoch: {}, bits: {} };
  }
}

/** The highest run id of the job (the run started last). */
export async function latestRunId(conn: Connection, jobId: number): Promise<number> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT COALESCE(MAX(run_id), 0) AS n FROM ${RUNS} WHERE job_id = ?`,
    [jobId],
  );
  return Number(rows[0]?.n ?? 0);
}

/** The most recent run that ended clean. */
export async function lastCleanRun(conn: Connection, jobId: number): Promise<RunRecord | undefined> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT run_id, state, detail FROM ${RUNS} WHERE job_id = ? AND state = 'match' ORDER BY run_id DESC LIMIT 1`,
    [jobId],
  );
  const r = rows[0];
  return r ? { runId: Number(r.run_id), state: 'match', detail: parseDetail(r.detail) } : undefined;
}

export interface BucketRow {
  table: string;
  bucket: number;
  side: 'source' | 'target';
  shard: string;
  rowCount: number;
  /** 16 hex digits. */
  sum: string;
  status: 'mismatch' | 'misplaced';
}

export async function saveBuckets(
  conn: Connection,
  jobId: number,
  runId: number,
  rows: readonly BucketRow[],
): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) {
    const batch = rows.slice(i, i + 500);
    await conn.query(
      `INSERT INTO ${BUCKETS} (job_id, run_id, table_name, bucket, side, shard, row_count, sum64, status) VALUES ${batch
        .map(() => '(?, ?, ?, ?, ?, ?, ?, CAST(CONV(?, 16, 10) AS UNSIGNED), ?)')
        .join(', ')}
       ON DUPLICATE KEY UPDATE row_count = VALUES(row_count), sum64 = VALUES(sum64), status = VALUES(status)`,
      batch.flatMap((b) => [jobId, runId, b.table, b.bucket, b.side, b.shard, b.rowCount, b.sum, b.status]),
    );
  }
}

export interface Unresolved {
  /** Buckets (with the bits their run used) that runs after the base found mismatched or holding misplaced rows. */
  buckets: { table: string; bucket: number; bits: number }[];
  /** The primary keys of those runs' differences, per table (RunDetail.diffKeys). */
  keys: Map<string, RawRow[]>;
  /** Tables with such buckets from a run that did not keep all its differences' keys. */
  uncovered: Set<string>;
  /**
   * A run after the base found differences and did not keep them all (more than it lists, or
   * misplaced rows past its cap, which belong to no table it names): what it left out is known
   * nowhere, so the next incremental run verifies every table in full.
   */
  lost: boolean;
}

/**
 * What runs found wrong that the clean run `afterRunId` (the base) may not have looked at: every
 * run started after it, and every mismatch that finished after it started. Runs overlap (a long
 * full verify beside a scheduled incremental one): a run started earlier can report a difference
 * after a later one finished clean, and ordering by run id alone forgot it. An incremental run
 * re-checks these even if nothing changed there.
 */
export async function unresolvedSince(
  conn: Connection,
  jobId: number,
  afterRunId: number,
): Promise<Unresolved> {
  const out: Unresolved = { buckets: [], keys: new Map(), uncovered: new Set(), lost: false };
  const [runs] = await conn.query<RowDataPacket[]>(
    `SELECT run_id, state, detail FROM ${RUNS}
      WHERE job_id = ? AND (run_id > ? OR (state = 'mismatch' AND finished_at >=
            (SELECT started_at FROM ${RUNS} WHERE job_id = ? AND run_id = ?)))`,
    [jobId, afterRunId, jobId, afterRunId],
  );
  if (runs.length === 0) return out;
  for (const r of runs)
    if (String(r.state) === 'mismatch' && !parseDetail(r.detail).diffKeys) out.lost = true;
  const details = new Map(runs.map((r) => [Number(r.run_id), parseDetail(r.detail)]));
  for (const d of details.values()) {
    for (const [table, list] of Object.entries(d.diffKeys ?? {})) {
      let l = out.keys.get(table);
      if (!l) {
        l = [];
        out.keys.set(table, l);
      }
      for (const hex of list) l.push(decodePk(Buffer.from(hex, 'hex')));
    }
  }
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT DISTINCT run_id, table_name, bucket FROM ${BUCKETS} WHERE job_id = ? AND run_id IN (?)`,
    [jobId, [...details.keys()]],
  );
  for (const r of rows) {
    const d = details.get(Number(r.run_id));
    const table = String(r.table_name);
    const bits = d?.bits[table];
    if (bits === undefined) continue;
    out.buckets.push({ table, bucket: Number(r.bucket), bits });
    if (!d?.diffKeys) out.uncovered.add(table);
  }
  return out;
}
