/**
 * `readStatus`: one consistent-enough read of a job's state from the control schema. Read-only,
 * a handful of indexed queries, cheap enough to run every second from `status --watch`.
 *
 * Rates are measured from what the control schema holds, not from the previous report, so a
 * one-shot `status` shows them too: copy rows/s = rows of chunks finished in the last
 * RATE_WINDOW seconds (shortened to the time since the newest `copy-worker-started` event, so a
 * copy that just started is not under-reported) divided by the window; tail rates and lag are
 * the tailer's own 5 s figures from `reshard_tail_status`.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { readCopyControl } from '../copy/control.js';
import { PreconditionError } from '../errors.js';
import {
  getJobByName,
  isTerminal,
  JOB_STATES,
  JOB_TRANSITIONS,
  type Job,
  type JobState,
} from '../state/control.js';
import { listRoutingVersions, type RoutingVersion, readActiveRouting } from './routing.js';
import {
  type BinlogPositionStatus,
  type CopyStatus,
  type CopyTableStatus,
  type CutoverStatus,
  type EventStatus,
  type JobStatus,
  type MachineStepStatus,
  type RoutingStatus,
  STATUS_VERSION,
  type StatusReport,
  type TailSourceStatus,
  type TailStatus,
  type VerifyRunStatus,
  type VerifyStatus,
} from './types.js';

/** Copy rates are measured over chunks finished in this many seconds. */
export const RATE_WINDOW_SECONDS = 30;
/** A tail status row older than this is reported stale (the tailer refreshes every few seconds). */
export const STALE_SECONDS = 30;

const FORWARD: readonly JobState[] = [
  'planned',
  'copying',
  'catching-up',
  'verified',
  'cut-over',
  'completed',
];

export interface ReadStatusOptions {
  /** How many of the last events to include (default 10). */
  events?: number;
  /** How many verify runs and routing versions to list (default 5). */
  history?: number;
  /** Estimated rows to copy per `source\u0000table` (from `estimateCopyRows`). */
  estimates?: ReadonlyMap<string, number>;
  /** Control label for the report (user@host:port/db). */
  label?: string;
}

export function estimateKey(source: string, table: string): string {
  return `${source}\u0000${table}`;
}

/** `2025-01-02 03:04:05.123456` (UTC, as stored) → `2025-01-02T03:04:05.123456Z`. */
export function isoUtc(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = String(v);
  return /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/.test(s) ? `${s.replace(' ', 'T')}Z` : s;
}

function ms(iso: string): number {
  // Date.parse wants at most millisecond precision.
  return Date.parse(iso.replace(/(\.\d{3})\d+Z$/, '$1Z'));
}

function secondsBetween(from: string | null, to: string | null): number | null {
  if (from === null || to === null) return null;
  const d = (ms(to) - ms(from)) / 1000;
  return Number.isFinite(d) ? Math.round(d * 1000) / 1000 : null;
}

function parseJson(text: unknown): unknown {
  if (text === null || text === undefined) return null;
  try {
    return JSON.parse(String(text));
  } catch {
    return String(text);
  }
}

const num = (v: unknown): number => Number(v ?? 0);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/**
 * The job a status command is about: by name, else the newest job (by id). Throws E_NO_JOB when
 * the control schema holds no such job.
 */
export async function resolveStatusJob(conn: Connection, name: string | undefined): Promise<Job> {
  if (name !== undefined) {
    const job = await getJobByName(conn, name);
    if (!job) {
      throw new PreconditionError('E_NO_JOB', `no job named '${name}' in the control schema`, {
        hint: 'list jobs with `SELECT name, state FROM reshard_jobs`, or pass --plan to find the job of a plan',
      });
    }
    return job;
  }
  const [rows] = await conn.query<RowDataPacket[]>('SELECT name FROM reshard_jobs ORDER BY id DESC LIMIT 1');
  const newest = rows[0];
  if (!newest) {
    throw new PreconditionError('E_NO_JOB', 'the control schema holds no job yet', {
      hint: 'start one with `reshard copy --plan plan.json --execute`',
    });
  }
  return (await getJobByName(conn, String(newest.name)))!;
}

/** Read the whole report for `job` (re-read from the control schema: the row may be stale). */
export async function readStatus(
  conn: Connection,
  job: Job | string,
  opts: ReadStatusOptions = {},
): Promise<StatusReport> {
  const name = typeof job === 'string' ? job : job.name;
  const fresh = await resolveStatusJob(conn, name);
  const [nowRows] = await conn.query<RowDataPacket[]>('SELECT UTC_TIMESTAMP(6) AS now');
  const at = isoUtc(nowRows[0]?.now)!;
  const history = opts.history ?? 5;
  const [jobStatus, copy, tail, verify, routing, cutover, events] = await sequential([
    () => readJob(conn, fresh),
    () => readCopy(conn, fresh.id, at, opts.estimates),
    () => readTail(conn, fresh.id, at),
    () => readVerify(conn, fresh.id, history),
    () => readRouting(conn, history),
    () => readCutover(conn, fresh.id),
    () => readEvents(conn, fresh.id, opts.events ?? 10),
  ] as const);
  return {
    statusVersion: STATUS_VERSION,
    at,
    control: opts.label ?? '',
    job: jobStatus,
    copy,
    tail,
    verify,
    routing,
    cutover,
    events,
  };
}

/** One connection runs one query at a time: run the readers in order. */
async function sequential<T extends readonly (() => Promise<unknown>)[]>(
  fns: T,
): Promise<{ [K in keyof T]: Awaited<ReturnType<T[K]>> }> {
  const out: unknown[] = [];
  for (const f of fns) out.push(await f());
  return out as { [K in keyof T]: Awaited<ReturnType<T[K]>> };
}

// ---------------------------------------------------------------------------------------------
// job

async function readJob(conn: Connection, job: Job): Promise<JobStatus> {
  const [rows] = await conn.query<RowDataPacket[]>(
    "SELECT kind, at, detail FROM reshard_job_events WHERE job_id = ? AND kind IN ('created', 'state') ORDER BY id",
    [job.id],
  );
  const entered = new Map<JobState, string>();
  for (const r of rows) {
    const at = isoUtc(r.at)!;
    if (r.kind === 'created') entered.set('planned', at);
    else {
      const to = (parseJson(r.detail) as { to?: string } | null)?.to;
      if (to && (JOB_STATES as readonly string[]).includes(to)) entered.set(to as JobState, at);
    }
  }
  return jobStatus(job, entered);
}

/** The state machine view of a job. Pure. */
export function jobStatus(job: Job, entered: ReadonlyMap<JobState, string> = new Map()): JobStatus {
  const terminal = isTerminal(job.state);
  const currentForward = FORWARD.indexOf(job.state);
  const machine = JOB_STATES.map((state) => {
    const path: 'forward' | 'exit' = FORWARD.includes(state) ? 'forward' : 'exit';
    let status: MachineStepStatus;
    if (state === job.state) status = 'current';
    else if (entered.has(state) || (path === 'forward' && currentForward > FORWARD.indexOf(state)))
      status = 'done';
    else if (terminal) status = 'skipped';
    else status = reachable(job.state, state) ? 'pending' : 'skipped';
    return { state, path, status, enteredAt: entered.get(state) ?? null };
  });
  return {
    id: job.id,
    name: job.name,
    planHash: job.planHash,
    state: job.state,
    terminal,
    createdAt: isoUtc(job.createdAt)!,
    updatedAt: isoUtc(job.updatedAt)!,
    machine,
    position: JOB_STATES.indexOf(job.state),
  };
}

function reachable(from: JobState, to: JobState): boolean {
  const seen = new Set<JobState>([from]);
  const queue: JobState[] = [from];
  while (queue.length) {
    for (const n of JOB_TRANSITIONS[queue.shift()!]) {
      if (n === to) return true;
      if (!seen.has(n)) {
        seen.add(n);
        queue.push(n);
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// copy

async function readCopy(
  conn: Connection,
  jobId: number,
  at: string,
  estimates: ReadonlyMap<string, number> | undefined,
): Promise<CopyStatus> {
  const [started] = await conn.query<RowDataPacket[]>(
    "SELECT MAX(at) AS at FROM reshard_job_events WHERE job_id = ? AND kind = 'copy-worker-started'",
    [jobId],
  );
  const since = secondsBetween(isoUtc(started[0]?.at), at);
  const window = Math.max(1, Math.min(RATE_WINDOW_SECONDS, since ?? RATE_WINDOW_SECONDS));
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT p.source_shard, p.table_name, p.state, p.rows_copied, p.updated_at,
            COUNT(k.chunk_id) AS chunks,
            COALESCE(SUM(k.state = 'done'), 0) AS chunks_done,
            COALESCE(SUM(k.state = 'claimed'), 0) AS chunks_claimed,
            COALESCE(SUM(k.chunk_id IS NOT NULL AND k.upper_pk IS NULL), 0) AS last_chunks,
            COALESCE(SUM(CASE WHEN k.state = 'done' AND k.updated_at >= UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND
                              THEN k.rows_copied ELSE 0 END), 0) AS recent_rows
       FROM reshard_copy_checkpoints p
       LEFT JOIN reshard_copy_chunks k
         ON k.job_id = p.job_id AND k.source_shard = p.source_shard AND k.table_name = p.table_name
      WHERE p.job_id = ?
      GROUP BY p.source_shard, p.table_name, p.state, p.rows_copied, p.updated_at
      ORDER BY p.source_shard, p.table_name`,
    [Math.round(window * 1e6), jobId],
  );
  const tables: CopyTableStatus[] = rows.map((r) => {
    const source = String(r.source_shard);
    const table = String(r.table_name);
    const state = String(r.state);
    const rowsCopied = num(r.rows_copied);
    const chunks = num(r.chunks);
    const chunksDone = num(r.chunks_done);
    const chunkedAll = num(r.last_chunks) > 0;
    const rowsPerSecond = Math.round((num(r.recent_rows) / window) * 10) / 10;
    const estimatedRows = estimates?.get(estimateKey(source, table)) ?? null;
    const done = state === 'done';
    return {
      source,
      table,
      state,
      rowsCopied,
      estimatedRows,
      percent: percentOf(rowsCopied, estimatedRows, done),
      chunksDone,
      chunksClaimed: num(r.chunks_claimed),
      chunks,
      chunkedAll,
      rowsPerSecond,
      etaSeconds: done
        ? 0
        : etaOf(remainingRows({ rowsCopied, estimatedRows, chunks, chunksDone, chunkedAll }), rowsPerSecond),
      updatedAt: isoUtc(r.updated_at)!,
    };
  });
  const control = await readCopyControl(conn, jobId);
  const sum = (f: (t: CopyTableStatus) => number) => tables.reduce((a, t) => a + f(t), 0);
  const rowsCopied = sum((t) => t.rowsCopied);
  const complete = tables.length > 0 && tables.every((t) => t.state === 'done');
  const estimatedRows =
    tables.length > 0 && tables.every((t) => t.estimatedRows !== null || t.state === 'done')
      ? sum((t) => (t.state === 'done' ? t.rowsCopied : Math.max(t.estimatedRows ?? 0, t.rowsCopied)))
      : null;
  const rowsPerSecond = Math.round(sum((t) => t.rowsPerSecond) * 10) / 10;
  const remaining = tables.map((t) => (t.state === 'done' ? 0 : remainingRows({ ...t })));
  const totalRemaining = remaining.some((r) => r === null)
    ? null
    : remaining.reduce<number>((a, r) => a + r!, 0);
  return {
    started: tables.length > 0,
    complete,
    rowsCopied,
    estimatedRows,
    percent: tables.length === 0 ? null : percentOf(rowsCopied, estimatedRows, complete),
    rowsPerSecond,
    etaSeconds: complete ? 0 : etaOf(totalRemaining, rowsPerSecond),
    chunksDone: sum((t) => t.chunksDone),
    chunks: sum((t) => t.chunks),
    rateWindowSeconds: Math.round(window * 10) / 10,
    throttle: control,
    tables,
  };
}

function percentOf(rows: number, estimate: number | null, done: boolean): number | null {
  if (done) return 100;
  if (estimate === null) return null;
  if (estimate <= 0) return 0;
  // Estimates come from information_schema and may be low: never show 100 before it is done.
  return Math.min(99.9, Math.round((rows / estimate) * 1000) / 10);
}

/**
 * Rows left: from the estimate; without one, once the table is fully chunked, the open chunks
 * times the mean rows of a finished chunk.
 */
function remainingRows(t: {
  rowsCopied: number;
  estimatedRows: number | null;
  chunks: number;
  chunksDone: number;
  chunkedAll: boolean;
}): number | null {
  if (t.estimatedRows !== null) return Math.max(0, t.estimatedRows - t.rowsCopied);
  if (t.chunkedAll && t.chunksDone > 0) return ((t.chunks - t.chunksDone) * t.rowsCopied) / t.chunksDone;
  return null;
}

function etaOf(remaining: number | null, rate: number): number | null {
  if (remaining === null) return null;
  if (remaining === 0) return 0;
  return rate > 0 ? Math.round(remaining / rate) : null;
}

// ---------------------------------------------------------------------------------------------
// tail

function position(file: unknown, pos: unknown, gtid: unknown): BinlogPositionStatus | null {
  if ((file === null || file === undefined) && (gtid === null || gtid === undefined)) return null;
  return {
    file: file === null || file === undefined ? null : String(file),
    pos: numOrNull(pos),
    gtid: gtid === null || gtid === undefined || gtid === '' ? null : String(gtid),
  };
}

async function readTail(conn: Connection, jobId: number, at: string): Promise<TailStatus> {
  const [pos] = await conn.query<RowDataPacket[]>(
    `SELECT shard, direction, binlog_file, binlog_pos, gtid_set, start_binlog_file, start_binlog_pos, start_gtid_set
       FROM reshard_binlog_positions WHERE job_id = ?`,
    [jobId],
  );
  const [st] = await conn.query<RowDataPacket[]>(
    `SELECT shard, direction, state, lag_seconds, events_per_second, rows_per_second, last_event_at, tailer, updated_at
       FROM reshard_tail_status WHERE job_id = ?`,
    [jobId],
  );
  const byKey = new Map<string, TailSourceStatus>();
  const entry = (shard: unknown, direction: unknown): TailSourceStatus => {
    const k = `${String(direction)}\u0000${String(shard)}`;
    let e = byKey.get(k);
    if (!e) {
      e = {
        source: String(shard),
        direction: String(direction) === 'reverse' ? 'reverse' : 'forward',
        state: null,
        lagSeconds: null,
        eventsPerSecond: null,
        rowsPerSecond: null,
        position: null,
        startPosition: null,
        lastEventAt: null,
        updatedAt: null,
        ageSeconds: null,
        stale: false,
        tailer: null,
      };
      byKey.set(k, e);
    }
    return e;
  };
  for (const r of pos) {
    const e = entry(r.shard, r.direction);
    e.position = position(r.binlog_file, r.binlog_pos, r.gtid_set);
    e.startPosition = position(r.start_binlog_file, r.start_binlog_pos, r.start_gtid_set);
  }
  for (const r of st) {
    const e = entry(r.shard, r.direction);
    e.state = String(r.state);
    e.lagSeconds = Number(r.lag_seconds);
    e.eventsPerSecond = Number(r.events_per_second);
    e.rowsPerSecond = Number(r.rows_per_second);
    e.lastEventAt = isoUtc(r.last_event_at);
    e.updatedAt = isoUtc(r.updated_at);
    e.ageSeconds = secondsBetween(e.updatedAt, at);
    e.stale = e.ageSeconds !== null && e.ageSeconds > STALE_SECONDS && e.state !== 'stopped';
    e.tailer = String(r.tailer);
  }
  const sources = [...byKey.values()].sort(
    (a, b) =>
      (a.direction === b.direction ? 0 : a.direction === 'forward' ? -1 : 1) ||
      (a.source < b.source ? -1 : a.source > b.source ? 1 : 0),
  );
  const live = sources.filter(
    (s) => s.lagSeconds !== null && !s.stale && s.state !== 'stopped' && s.state !== 'failed',
  );
  return {
    maxLagSeconds: live.length ? Math.max(...live.map((s) => s.lagSeconds!)) : null,
    sources,
  };
}

// ---------------------------------------------------------------------------------------------
// verify

function verifyRun(r: RowDataPacket): VerifyRunStatus {
  const detail = parseJson(r.detail) as { mode?: unknown } | null;
  const startedAt = isoUtc(r.started_at)!;
  const finishedAt = isoUtc(r.finished_at);
  const mode = detail?.mode === 'full' || detail?.mode === 'incremental' ? detail.mode : null;
  return {
    runId: Number(r.run_id),
    state: String(r.state),
    mode,
    mismatches: num(r.mismatches),
    startedAt,
    finishedAt,
    durationSeconds: secondsBetween(startedAt, finishedAt),
  };
}

async function readVerify(conn: Connection, jobId: number, history: number): Promise<VerifyStatus> {
  const cols = 'run_id, state, mismatches, detail, started_at, finished_at';
  const [runs] = await conn.query<RowDataPacket[]>(
    `SELECT ${cols} FROM reshard_verify_runs WHERE job_id = ? ORDER BY run_id DESC LIMIT ?`,
    [jobId, history],
  );
  const [clean] = await conn.query<RowDataPacket[]>(
    `SELECT ${cols} FROM reshard_verify_runs WHERE job_id = ? AND state = 'match' ORDER BY run_id DESC LIMIT 1`,
    [jobId],
  );
  return { lastClean: clean[0] ? verifyRun(clean[0]) : null, runs: runs.map(verifyRun) };
}

// ---------------------------------------------------------------------------------------------
// routing, cutover, events

function versionStatus(v: RoutingVersion) {
  return {
    version: v.version,
    jobId: v.jobId,
    job: v.jobName,
    routingHash: v.routingHash,
    active: v.active,
    createdAt: isoUtc(v.createdAt)!,
  };
}

async function readRouting(conn: Connection, history: number): Promise<RoutingStatus> {
  const versions = (await listRoutingVersions(conn, history)).map(versionStatus);
  let active: RoutingStatus['active'] = null;
  try {
    const a = await readActiveRouting(conn);
    if (a) {
      const d = a.document;
      active = {
        ...versionStatus(a.version),
        writes: d.writes.canary
          ? `${d.writes.topology.name} → ${d.writes.canary.next.name}`
          : d.writes.topology.name,
        reads: d.reads.canary
          ? `${d.reads.topology.name} → ${d.reads.canary.next.name}`
          : d.reads.topology.name,
        canary: d.writes.canary?.flipped ?? [],
        readCanary: d.reads.canary?.flipped ?? [],
      };
    }
  } catch (e) {
    // A routing this binary cannot read is still worth showing by number.
    const v = versions.find((x) => x.active);
    if (!v) throw e;
    const why = `unreadable (${(e as Error).message})`;
    active = { ...v, writes: why, reads: why, canary: [], readCanary: [] };
  }
  return { active, versions };
}

async function readCutover(conn: Connection, jobId: number): Promise<CutoverStatus> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT id, step, state, detail, at FROM reshard_cutover_journal WHERE job_id = ? ORDER BY id',
    [jobId],
  );
  return {
    steps: rows.map((r) => ({
      id: Number(r.id),
      step: String(r.step),
      state: String(r.state),
      at: isoUtc(r.at)!,
      detail: parseJson(r.detail),
    })),
  };
}

async function readEvents(conn: Connection, jobId: number, limit: number): Promise<EventStatus[]> {
  if (limit <= 0) return [];
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT id, at, kind, detail FROM reshard_job_events WHERE job_id = ? ORDER BY id DESC LIMIT ?',
    [jobId, limit],
  );
  return rows
    .map((r) => ({ id: Number(r.id), at: isoUtc(r.at)!, kind: String(r.kind), detail: parseJson(r.detail) }))
    .reverse();
}
