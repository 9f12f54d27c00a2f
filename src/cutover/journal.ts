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
 *
 * Format: every `op.begin` row records the journal format (`format`, JOURNAL_FORMAT) and the
 * reshard version that wrote it (`reshard`). The details of an attempt's rows are read back only
 * when its format is this binary's (`checkAttempt`), and then only through the schemas below, so
 * an attempt begun by another version — whose step details may have another shape — is refused
 * (E_JOURNAL_FORMAT), never read as "nothing frozen", and a detail that does not parse is refused
 * (E_JOURNAL_DETAIL) rather than read as empty. A begin row without `format` was written before
 * the field existed, by reshard 0.1.0 (this very version; the reads and cancel begin rows had no
 * `reshard` either): it is format 1 when its `reshard` is absent or this VERSION, and refused
 * otherwise. A new format number is needed whenever a detail read back changes shape.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import * as z from 'zod';
import { PreconditionError } from '../errors.js';
import { toJson } from '../output.js';
import { VERSION } from '../version.js';

export type Op = 'cutover' | 'rollback' | 'reads';
export type StepState = 'started' | 'done' | 'failed' | 'undone' | 'aborted';

const JOURNAL = '`reshard_cutover_journal`';

/** The shape of the step details this binary writes and reads back (see the header). */
export const JOURNAL_FORMAT = 1;

/** What every `op.begin` row starts with: the journal format and the writer. */
export function beginHeader(): { format: number; reshard: string } {
  return { format: JOURNAL_FORMAT, reshard: VERSION };
}

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

// ---------------------------------------------------------------------------------------------
// Reading an attempt back: format check and the step details, validated

const shardRef = z.object({ side: z.enum(['from', 'to']), shard: z.string() });

/** A frozen server as the journal records it (everything an undo or a later phase needs). */
const serverRecord = z.object({
  key: z.string(),
  address: z.string(),
  via: shardRef,
  shards: z.array(z.string()),
  inPlace: z.boolean(),
  priorReadOnly: z.boolean(),
});
export type ServerRecord = z.infer<typeof serverRecord>;

const beginDetail = z.looseObject({
  attempt: z.number().int().positive().optional(),
  format: z.number().int().optional(),
  reshard: z.string().optional(),
  kind: z.literal('cancel').optional(),
  purge: z.boolean().optional(),
});

/**
 * The details read back, per step and row state (other fields and other steps' details are only
 * displayed). Each is what this format's writer always puts there.
 */
const DETAILS = {
  freeze: {
    started: z.looseObject({ servers: z.array(serverRecord), startedAtMs: z.number() }),
  },
  'arm-reverse': { done: z.looseObject({ positions: z.record(z.string(), z.string()) }) },
  flip: { done: z.looseObject({ version: z.number().int().positive() }) },
  unfreeze: {
    done: z.looseObject({ unfrozen: z.array(z.string()), kept: z.array(serverRecord) }),
  },
} as const satisfies Record<string, Partial<Record<'started' | 'done', z.ZodType>>>;

type Details = typeof DETAILS;
type DetailOf<S extends keyof Details, W extends keyof Details[S]> = Details[S][W] extends z.ZodType
  ? z.infer<Details[S][W]>
  : never;

/** The reshard version and format that began an attempt (a begin row without `format`: see the header). */
export function attemptFormat(a: Attempt): { format: number | undefined; reshard: string | undefined } {
  const reshard = typeof a.begin.reshard === 'string' ? a.begin.reshard : undefined;
  if (a.begin.format === undefined) {
    return { format: reshard === undefined || reshard === VERSION ? JOURNAL_FORMAT : undefined, reshard };
  }
  return { format: typeof a.begin.format === 'number' ? a.begin.format : undefined, reshard };
}

function attemptLabel(a: Attempt): string {
  return `${a.open ? 'an unfinished' : 'the last'} ${a.op} attempt (attempt ${a.number}, begun ${a.beganAt} UTC)`;
}

/**
 * Throws unless this binary can read attempt `a` back: its format is JOURNAL_FORMAT and every
 * detail it would read parses. Pure; call it before writing anything on the attempt's behalf.
 */
export function checkAttempt(a: Attempt): void {
  const { format, reshard } = attemptFormat(a);
  if (format !== JOURNAL_FORMAT) {
    const by = reshard === undefined ? 'another reshard version' : `reshard ${reshard}`;
    throw new PreconditionError(
      'E_JOURNAL_FORMAT',
      `${attemptLabel(a)} of this job was written by ${by} (cutover journal format ${format ?? String(a.begin.format ?? 'unknown')}); this reshard ${VERSION} reads format ${JOURNAL_FORMAT} only, so it will not undo or finish it`,
      {
        hint: a.open
          ? `finish it with ${by}: re-run \`reshard ${a.op === 'rollback' ? 'rollback' : 'cutover'} --execute\` with that version (it undoes or finishes the attempt from its own journal), then re-run this command`
          : `this command reads that attempt's records back; run it with ${by}`,
        data: { op: a.op, attempt: a.number, format: a.begin.format ?? null, reshard: reshard ?? null },
      },
    );
  }
  const bad = (what: string, err: z.ZodError) =>
    new PreconditionError(
      'E_JOURNAL_DETAIL',
      `${attemptLabel(a)}: its ${what} row does not have the shape cutover journal format ${JOURNAL_FORMAT} writes (${z.prettifyError(err).replace(/\n/g, '; ')}); it is not read as empty`,
      {
        hint: `the journal (reshard_cutover_journal) was changed by hand or by another tool; restore the row, or finish the attempt with the reshard version that wrote it (reshard ${reshard ?? VERSION})`,
        data: { op: a.op, attempt: a.number, row: what },
      },
    );
  const begin = beginDetail.safeParse(a.begin);
  if (!begin.success) throw bad(`${a.op}.begin`, begin.error);
  for (const [step, rec] of a.steps) {
    const schemas = (DETAILS as Record<string, Partial<Record<'started' | 'done', z.ZodType>>>)[step];
    for (const which of ['started', 'done'] as const) {
      const schema = schemas?.[which];
      const detail = rec[which];
      if (!schema || detail === undefined) continue;
      const r = schema.safeParse(detail);
      if (!r.success) throw bad(`${a.op}.${step} '${which}'`, r.error);
    }
  }
}

/**
 * Refuse (before anything is written) when an open attempt of `ops` — or `also`, attempts whose
 * details will be read although they ended — is not readable by this binary (`checkAttempt`).
 */
export function checkJournal(
  rows: readonly JournalRow[],
  ops: readonly Op[],
  also: readonly (Attempt | undefined)[] = [],
): void {
  for (const op of ops) {
    const a = lastAttempt(rows, op);
    if (a?.open) checkAttempt(a);
  }
  for (const a of also) if (a) checkAttempt(a);
}

/**
 * A step's detail, validated (`checkAttempt` rules); undefined when the step has no such row.
 * Throws E_JOURNAL_FORMAT / E_JOURNAL_DETAIL like `checkAttempt`.
 */
export function stepDetail<S extends keyof Details, W extends keyof Details[S] & ('started' | 'done')>(
  a: Attempt,
  step: S,
  which: W,
): DetailOf<S, W> | undefined {
  const detail = a.steps.get(step)?.[which];
  if (detail === undefined) return undefined;
  checkAttempt(a);
  return (DETAILS[step][which] as z.ZodType).parse(detail) as DetailOf<S, W>;
}

/** The begin row's detail, validated. */
export function beginOf(a: Attempt): z.infer<typeof beginDetail> {
  checkAttempt(a);
  return beginDetail.parse(a.begin);
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
