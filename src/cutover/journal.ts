/**
 * The cutover journal (`reshard_cutover_journal`): a write-ahead log of cutover, rollback and
 * reads-flip steps, so that a command re-run after a crash knows exactly what was done.
 *
 * Lifecycle of one attempt of an operation `op` (cutover | rollback | reads):
 *   `op.begin` started → for each step: `op.step` started → (action) → `op.step` done
 *   → … → `op.end` done | aborted.
 * A step is journaled 'started' BEFORE its action runs (its detail holds what an undo needs, e.g.
 * the servers about to be frozen and their read_only state before), and 'done' after (its detail
 * holds the result, e.g. the final positions). An undone step gets an 'undone' row; a step that
 * failed after the flip gets 'failed' (the next run finishes it). The flip's 'done' row commits
 * in the flip's own control transaction, so "flip done" in the journal ⇔ the routing flipped.
 *
 * Rows are only ever appended. The current attempt of an op is everything after its last
 * `op.begin`; it is open until an `op.end` row follows.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { toJson } from '../output.js';

export type Op = 'cutover' | 'rollback' | 'reads';
export type StepState = 'started' | 'done' | 'failed' | 'undone' | 'aborted';

const JOURNAL = '`reshard_cutover_journal`';

export interface JournalRow {
  id: number;
  /** `op.step`, e.g. `cutover.freeze`. */
  step: string;
  state: StepState;
  detail: Record<string, unknown>;
  /** UTC DATETIME(6) text. */
  at: string;
}

export interface StepRecord {
  /** Latest state of the step in this attempt. */
  state: StepState;
  /** Detail of the 'started' row (what an undo needs). */
  started?: Record<string, unknown>;
  /** Detail of the 'done' row (the step's result). */
  done?: Record<string, unknown>;
  /** Detail of the latest row. */
  last: Record<string, unknown>;
  startedAt?: string;
  doneAt?: string;
}

export interface Attempt {
  op: Op;
  /** 1-based number of this attempt of `op` for the job. */
  number: number;
  beginId: number;
  begin: Record<string, unknown>;
  beganAt: string;
  /** No `op.end` row yet: the attempt crashed or failed after its flip. */
  open: boolean;
  endState?: StepState;
  end?: Record<string, unknown>;
  steps: Map<string, StepRecord>;
}

export async function readJournal(conn: Connection, jobId: number): Promise<JournalRow[]> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT id, step, state, detail, at FROM ${JOURNAL} WHERE job_id = ? ORDER BY id`,
    [jobId],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    step: String(r.step),
    state: String(r.state) as StepState,
    detail: r.detail === null ? {} : (JSON.parse(String(r.detail)) as Record<string, unknown>),
    at: String(r.at),
  }));
}

/** Append one row. No transaction of its own: inside the caller's, it commits with the caller's work. */
export async function appendJournal(
  conn: Connection,
  jobId: number,
  op: Op,
  step: string,
  state: StepState,
  detail: Record<string, unknown> = {},
): Promise<void> {
  await conn.query(`INSERT INTO ${JOURNAL} (job_id, step, state, detail) VALUES (?, ?, ?, ?)`, [
    jobId,
    `${op}.${step}`,
    state,
    toJson(detail, 0),
  ]);
}

/** The last attempt of `op` in the journal (pure). */
export function lastAttempt(rows: readonly JournalRow[], op: Op): Attempt | undefined {
  let beginIdx = -1;
  let number = 0;
  rows.forEach((r, i) => {
    if (r.step === `${op}.begin`) {
      beginIdx = i;
      number++;
    }
  });
  if (beginIdx < 0) return undefined;
  const b = rows[beginIdx]!;
  const attempt: Attempt = {
    op,
    number,
    beginId: b.id,
    begin: b.detail,
    beganAt: b.at,
    open: true,
    steps: new Map(),
  };
  const prefix = `${op}.`;
  for (const r of rows.slice(beginIdx + 1)) {
    if (!r.step.startsWith(prefix)) continue;
    const step = r.step.slice(prefix.length);
    if (step === 'end') {
      attempt.open = false;
      attempt.endState = r.state;
      attempt.end = r.detail;
      continue;
    }
    const rec = attempt.steps.get(step) ?? { state: r.state, last: r.detail };
    rec.state = r.state;
    rec.last = r.detail;
    if (r.state === 'started') {
      rec.started = r.detail;
      rec.startedAt = r.at;
    }
    if (r.state === 'done') {
      rec.done = r.detail;
      rec.doneAt = r.at;
    }
    attempt.steps.set(step, rec);
  }
  return attempt;
}

export function stepDone(a: Attempt | undefined, step: string): boolean {
  return a?.steps.get(step)?.done !== undefined;
}

/** The attempt has frozen (or may have frozen) something: its freeze step was at least started. */
export function stepStarted(a: Attempt | undefined, step: string): boolean {
  return a?.steps.get(step)?.started !== undefined;
}

/**
 * Test hook: `RESHARD_CRASH_AT=<step>[:before|:after]` (optionally `<op>.<step>`) kills this
 * process with SIGKILL at that point of a step — `before`: right after the step's 'started' row,
 * before its action; `after` (default): after its action, before its 'done' row (for the flip,
 * whose 'done' row commits with the action: right after the commit). Used by the kill -9 tests;
 * never set it in production.
 */
export function crashPoint(op: Op, step: string, when: 'before' | 'after'): void {
  const spec = process.env.RESHARD_CRASH_AT;
  if (!spec) return;
  const [name, at = 'after'] = spec.split(':');
  if ((name === step || name === `${op}.${step}`) && at === when) {
    process.stderr.write(`reshard: RESHARD_CRASH_AT=${spec}: killing myself (test hook)\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
