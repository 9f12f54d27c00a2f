/**
 * Access to the control schema: the connection, and the job state machine.
 *
 * A job's state lives only in `reshard_jobs`; every command reads it from there (never from a
 * local file or memory), so any command can be re-run after a crash and continue from what was
 * committed. State changes are compare-and-set under `SELECT … FOR UPDATE`, and the `state`
 * event describing each change commits in the same transaction as the change itself.
 */
import type { Connection } from 'mysql2/promise';
import { connect, describeEndpoint, parseControlDsn } from '../db/connect.js';
import { q } from '../db/quote.js';
import { classifyError, sleep } from '../db/retry.js';
import { PreconditionError, ReshardError, RetriesExhaustedError, UsageError } from '../errors.js';
import { toJson } from '../output.js';
import { VERSION } from '../version.js';
import { checkControlSchema } from './migrate.js';

const JOBS = q('reshard_jobs');
const EVENTS = q('reshard_job_events');

export interface ControlConnection {
  readonly conn: Connection;
  /** The control database (schema) name. */
  readonly database: string;
  /** user@host:port/database, for messages; never holds a secret. */
  readonly label: string;
  /** The DSN as given (passwords are refused at parse time), for `--control …` in hints. */
  readonly dsnForHint: string;
  close(): Promise<void>;
}

/** `--control` wins over RESHARD_CONTROL_DSN; neither is a usage error. */
export function resolveControlDsn(flag: string | undefined): string {
  const dsn = flag ?? process.env.RESHARD_CONTROL_DSN;
  if (dsn === undefined || dsn.trim() === '') {
    throw new UsageError('E_NO_CONTROL_DSN', 'no control schema given', {
      hint: 'pass --control mysql://user@host:3306/reshard_control or set RESHARD_CONTROL_DSN (password in RESHARD_CONTROL_PASSWORD or ?password-file=)',
    });
  }
  return dsn.trim();
}

/**
 * Connect to the control server without selecting the database (it may not exist yet) and
 * without checking the schema. Only `init` should use this directly; see `openControl`.
 */
export async function connectControl(
  flag: string | undefined,
  opts: { multipleStatements?: boolean } = {},
): Promise<ControlConnection> {
  const dsn = resolveControlDsn(flag);
  const ep = parseControlDsn(dsn);
  const conn = await connect(ep, 'control', { withDatabase: false, ...opts, source: 'control' });
  return {
    conn,
    database: ep.database,
    label: describeEndpoint(ep),
    dsnForHint: dsn,
    close: () => conn.end(),
  };
}

/** Connect and refuse unless the control schema is initialised and at this binary's version. */
export async function openControl(
  flag: string | undefined,
  opts: { multipleStatements?: boolean } = {},
): Promise<ControlConnection> {
  const ctl = await connectControl(flag, opts);
  try {
    await checkControlSchema(ctl);
    return ctl;
  } catch (e) {
    await ctl.close().catch(() => undefined);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// A control connection that outlives a control-server restart

/** Runs a unit of control-schema work on a connection (ControlLink, or one plain connection). */
export interface ControlRunner {
  run<T>(what: string, fn: (conn: Connection) => Promise<T>): Promise<T>;
}

/** A runner on one connection, without retries (tests, short-lived commands). */
export function onConnection(ctl: Pick<ControlConnection, 'conn'>): ControlRunner {
  return { run: (_what, fn) => fn(ctl.conn) };
}

export interface ControlLinkOptions {
  multipleStatements?: boolean;
  /** Give up on a control server that cannot be reached for this long (ms). */
  giveUpAfterMs: number;
  /** Stops the waiting between retries (a call then makes one attempt and gives up). */
  signal?: AbortSignal;
  /** Run on every new connection before any work (session state, re-taking advisory locks). */
  onConnect?: (conn: Connection) => Promise<void>;
  /** Human notes: the connection was lost, and when it is back. */
  onNote?: (text: string) => void;
}

/**
 * A control-schema connection for long-running work (the tailer's change recorder, status mirror
 * and job watch) that survives a restart of the control server: a unit of work that fails because
 * the connection is gone (by errno / driver code, `classifyError` 'reconnect') is run again on a
 * new connection, after an exponential backoff (100 ms doubling, at most 2 s, with jitter), until
 * it has been failing for `giveUpAfterMs`; then E_CONTROL_LOST (RetriesExhaustedError, exit 5)
 * names the control server. Any other error is the caller's. The unit must be idempotent: a
 * COMMIT whose reply was lost is run again. New connections are checked like `openControl` (a
 * control server that comes back with another schema version is refused, not written to), and
 * `onConnect` runs on each before any work.
 *
 * Lifecycle: `ControlLink.open` (the first connection; fails at once, like openControl) →
 * `run` … → `close`.
 */
export class ControlLink implements ControlRunner {
  private current: ControlConnection | undefined;
  private pending: Promise<ControlConnection> | undefined;
  private closed = false;
  private lostSince: number | undefined;

  private constructor(
    readonly dsn: string,
    readonly label: string,
    private readonly opts: ControlLinkOptions,
  ) {}

  static async open(dsn: string, opts: ControlLinkOptions): Promise<ControlLink> {
    const first = await openControl(dsn, { multipleStatements: opts.multipleStatements ?? false });
    quiet(first.conn);
    const link = new ControlLink(dsn, first.label, opts);
    try {
      await opts.onConnect?.(first.conn);
    } catch (e) {
      await first.close().catch(() => undefined);
      throw e;
    }
    link.current = first;
    return link;
  }

  private connection(): Promise<ControlConnection> {
    if (this.closed) return Promise.reject(new Error(`control connection to ${this.label} closed`));
    if (this.current) return Promise.resolve(this.current);
    // Concurrent callers during a reconnect share one attempt.
    this.pending ??= (async () => {
      const ctl = await openControl(this.dsn, { multipleStatements: this.opts.multipleStatements ?? false });
      quiet(ctl.conn);
      try {
        await this.opts.onConnect?.(ctl.conn);
        if (this.closed) throw new Error(`control connection to ${this.label} closed`);
      } catch (e) {
        ctl.conn.destroy();
        throw e;
      }
      this.current = ctl;
      if (this.lostSince !== undefined) {
        this.opts.onNote?.(
          `control server ${this.label}: connection re-established after ${((Date.now() - this.lostSince) / 1000).toFixed(1)} s`,
        );
        this.lostSince = undefined;
      }
      return ctl;
    })().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  async run<T>(what: string, fn: (conn: Connection) => Promise<T>): Promise<T> {
    let failingSince: number | undefined;
    for (let attempt = 0; ; attempt++) {
      let used: ControlConnection | undefined;
      try {
        used = await this.connection();
        return await fn(used.conn);
      } catch (e) {
        if (this.closed || classifyError(e) !== 'reconnect') throw e;
        if (used && this.current === used) {
          this.current = undefined;
          used.conn.destroy();
        }
        const now = Date.now();
        failingSince ??= now;
        if (this.lostSince === undefined) {
          this.lostSince = now;
          this.opts.onNote?.(
            `control server ${this.label}: connection lost (${errText(e)}); reconnecting for up to ${Math.round(this.opts.giveUpAfterMs / 1000)} s`,
          );
        }
        const gaveUp = () =>
          new RetriesExhaustedError(
            'E_CONTROL_LOST',
            `${what}: the control server ${this.label} could not be reached for ${Math.round((Date.now() - failingSince!) / 1000)} s: ${errText(e)}`,
            {
              hint: `check that the control server ${this.label} is up and reachable; re-running the command resumes from what was committed`,
              cause: e,
            },
          );
        if (now - failingSince >= this.opts.giveUpAfterMs || this.opts.signal?.aborted) throw gaveUp();
        const delay = Math.min(2000, 100 * 2 ** Math.min(attempt, 10)) * (0.5 + Math.random() / 2);
        await sleep(Math.min(delay, failingSince + this.opts.giveUpAfterMs - now), this.opts.signal).catch(
          () => {
            throw gaveUp();
          },
        );
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.current;
    this.current = undefined;
    await c?.close().catch(() => c.conn.destroy());
    await this.pending?.then((p) => p.conn.destroy()).catch(() => undefined);
  }
}

/**
 * An idle connection whose server goes away emits 'error' (an unhandled one would end the
 * process); the loss shows on the next query, which the link retries on a new connection.
 */
function quiet(conn: Connection): void {
  conn.on('error', () => undefined);
}

function errText(e: unknown): string {
  const x = e as { code?: string; errno?: number; message?: string; cause?: unknown };
  // connect() wraps the driver error (E_CONNECT): the driver's says what happened.
  const inner = x?.code === 'E_CONNECT' && x.cause !== undefined ? (x.cause as typeof x) : x;
  return `${inner?.code ?? inner?.errno ?? ''} ${inner?.message ?? String(e)}`.trim();
}

// ---------------------------------------------------------------------------------------------
// Jobs

/** In forward order; `rolled-back` and `cancelled` are the two ways out. */
export const JOB_STATES = [
  'planned',
  'copying',
  'catching-up',
  'verified',
  'cut-over',
  'completed',
  'rolled-back',
  'cancelled',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/**
 * Legal transitions. Forward moves go one step at a time. Before cutover a job is abandoned by
 * `cancelled` (the old shards never stopped serving). `rolled-back` needs a cutover to undo: it
 * is allowed from `cut-over`, and from `verified` because a cutover that failed part-way leaves
 * the job `verified` with steps in the cutover journal that rollback must reverse. `completed`
 * means reverse replication has stopped, so there is nothing left to roll back to.
 */
export const JOB_TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  planned: ['copying', 'cancelled'],
  copying: ['catching-up', 'cancelled'],
  'catching-up': ['verified', 'cancelled'],
  verified: ['cut-over', 'rolled-back', 'cancelled'],
  'cut-over': ['completed', 'rolled-back'],
  completed: [],
  'rolled-back': [],
  cancelled: [],
};

export function isJobState(s: string): s is JobState {
  return (JOB_STATES as readonly string[]).includes(s);
}

export function isTerminal(s: JobState): boolean {
  return JOB_TRANSITIONS[s].length === 0;
}

/** Throws unless `from → to` is a legal transition. Pure. */
export function checkTransition(from: JobState, to: JobState, jobLabel = 'job'): void {
  const allowed = JOB_TRANSITIONS[from];
  if (!allowed.includes(to)) {
    throw new PreconditionError(
      'E_JOB_ILLEGAL_TRANSITION',
      `${jobLabel}: cannot go from '${from}' to '${to}'; from '${from}' a job can only go to ${allowed.length ? allowed.map((s) => `'${s}'`).join(' or ') : 'nowhere (it is finished)'}`,
      { data: { from, to, allowed } },
    );
  }
}

export interface Job {
  id: number;
  name: string;
  planHash: string;
  state: JobState;
  /** The reshard version that created the job. */
  reshardVersion: string;
  /** UTC, DATETIME(6) text as the server stores it. */
  createdAt: string;
  updatedAt: string;
}

const JOB_COLUMNS = 'id, name, plan_hash, state, reshard_version, created_at, updated_at';

function toJob(r: Record<string, unknown>): Job {
  const state = String(r.state);
  if (!isJobState(state)) {
    throw new PreconditionError(
      'E_JOB_STATE_UNKNOWN',
      `job '${String(r.name)}' is in state '${state}', which this reshard ${VERSION} does not know: a newer reshard wrote it`,
      { hint: 'use the reshard version that is running this job (or a newer one)' },
    );
  }
  return {
    id: Number(r.id),
    name: String(r.name),
    planHash: String(r.plan_hash),
    state,
    reshardVersion: String(r.reshard_version),
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
  };
}

/**
 * Create a job in state `planned` for a plan, with its `created` event. Runs its own
 * transaction, so do not call it inside another. A duplicate name is refused.
 */
export async function createJob(conn: Connection, input: { name: string; planHash: string }): Promise<Job> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,190}$/.test(input.name)) {
    throw new UsageError('E_JOB_NAME', `job name '${input.name}' is not allowed`, {
      hint: 'use 1–191 letters, digits, _ . - starting with a letter or digit',
    });
  }
  if (!/^[0-9a-f]{64}$/.test(input.planHash)) {
    throw new ReshardError(
      'bug',
      'E_BUG',
      `createJob: plan hash must be 64 lowercase hex digits, got '${input.planHash}'`,
    );
  }
  await conn.beginTransaction();
  try {
    const [res] = await conn.query(
      `INSERT INTO ${JOBS} (name, plan_hash, state, reshard_version) VALUES (?, ?, ?, ?)`,
      [input.name, input.planHash, 'planned' satisfies JobState, VERSION],
    );
    const id = Number((res as { insertId: number | string }).insertId);
    await appendEvent(conn, id, 'created', {
      planHash: input.planHash,
      state: 'planned',
      reshardVersion: VERSION,
    });
    const job = await selectJob(conn, 'id = ?', id, false);
    await conn.commit();
    return job!;
  } catch (e) {
    await conn.rollback().catch(() => undefined);
    if ((e as { errno?: number }).errno === 1062) {
      throw new PreconditionError('E_JOB_EXISTS', `a job named '${input.name}' already exists`, {
        hint: 'pick another --name, or resume the existing job',
        cause: e,
      });
    }
    throw e;
  }
}

export function getJob(conn: Connection, id: number): Promise<Job | undefined> {
  return selectJob(conn, 'id = ?', id, false);
}

export function getJobByName(conn: Connection, name: string): Promise<Job | undefined> {
  return selectJob(conn, 'name = ?', name, false);
}

/**
 * Move job `jobId` from `from` to `to`, atomically with its `state` event. Refuses an illegal
 * transition (E_JOB_ILLEGAL_TRANSITION) and a job that is no longer in `from`
 * (E_JOB_STATE_CONFLICT: another process moved it, or the caller read a stale state). Runs its
 * own transaction.
 */
export async function transitionJob(
  conn: Connection,
  jobId: number,
  from: JobState,
  to: JobState,
  detail?: Record<string, unknown>,
): Promise<Job> {
  checkTransition(from, to, `job ${jobId}`);
  await conn.beginTransaction();
  try {
    const job = await selectJob(conn, 'id = ?', jobId, true);
    if (!job) {
      throw new PreconditionError('E_JOB_NOT_FOUND', `job ${jobId} does not exist in the control schema`, {
        hint: 'check the job name or id (and that --control names the right control schema)',
      });
    }
    if (job.state !== from) {
      throw new PreconditionError(
        'E_JOB_STATE_CONFLICT',
        `job '${job.name}' is in state '${job.state}', not '${from}', so it cannot go to '${to}'`,
        {
          hint: 'another reshard process may have moved it; re-run the command, which reads the current state',
          data: { job: job.id, state: job.state, expected: from, to },
        },
      );
    }
    await conn.query(`UPDATE ${JOBS} SET state = ?, updated_at = CURRENT_TIMESTAMP(6) WHERE id = ?`, [
      to,
      jobId,
    ]);
    await appendEvent(conn, jobId, 'state', { ...detail, from, to });
    const updated = await selectJob(conn, 'id = ?', jobId, false);
    await conn.commit();
    return updated!;
  } catch (e) {
    await conn.rollback().catch(() => undefined);
    throw e;
  }
}

/**
 * Append to the job's event log. Does not open a transaction, so an event can commit together
 * with the work it describes. `detail` is stored as JSON text (bigints as decimal strings), exactly
 * as given: no password reaches an event, and names in it (a table `password_resets`) are data.
 */
export async function appendEvent(
  conn: Connection,
  jobId: number,
  kind: string,
  detail?: unknown,
): Promise<number> {
  const [res] = await conn.query(`INSERT INTO ${EVENTS} (job_id, kind, detail) VALUES (?, ?, ?)`, [
    jobId,
    kind,
    detail === undefined ? null : toJson(detail, 0),
  ]);
  return Number((res as { insertId: number | string }).insertId);
}

export interface JobEvent {
  id: number;
  jobId: number;
  at: string;
  kind: string;
  detail: unknown;
}

/** The job's events in the order they were appended. */
export async function listEvents(conn: Connection, jobId: number): Promise<JobEvent[]> {
  const [rows] = await conn.query(
    `SELECT id, job_id, at, kind, detail FROM ${EVENTS} WHERE job_id = ? ORDER BY id`,
    [jobId],
  );
  return (rows as Record<string, unknown>[]).map((r) => ({
    id: Number(r.id),
    jobId: Number(r.job_id),
    at: String(r.at),
    kind: String(r.kind),
    detail: r.detail === null ? null : JSON.parse(String(r.detail)),
  }));
}

async function selectJob(
  conn: Connection,
  where: string,
  arg: unknown,
  forUpdate: boolean,
): Promise<Job | undefined> {
  const [rows] = await conn.query(
    `SELECT ${JOB_COLUMNS} FROM ${JOBS} WHERE ${where}${forUpdate ? ' FOR UPDATE' : ''}`,
    [arg],
  );
  const r = (rows as Record<string, unknown>[])[0];
  return r ? toJob(r) : undefined;
}
