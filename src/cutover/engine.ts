/**
 * The switch engine: one journaled sequence that cutover (old → new shards) and rollback (new →
 * old) both run, so the two cannot drift apart. See README.md for the crash semantics per step.
 *
 * Lifecycle of an attempt (`executeSwitch`):
 *   begin → freeze → final-positions → drain → verify → [arm-reverse] → flip → publish → unfreeze → end
 * Before the flip, any failure (or a crash, found by `recoverSwitch` on the next run) undoes the
 * freeze — only servers whose read_only was OFF before are turned back — and ends the attempt
 * 'aborted'; nothing else was changed. The flip is one control-schema transaction (routing
 * version, job state, reverse start positions, the journal's 'flip done' row); after it, the
 * remaining steps are idempotent and a re-run finishes them (`finishSwitch`).
 */

import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { RowDataPacket } from 'mysql2/promise';
import { type BinlogPosition, formatPosition } from '../binlog/position.js';
import { type Direction, recordStartPosition } from '../binlog/status.js';
import { readBinlogPosition } from '../copy/index.js';
import { MismatchError, PreconditionError, ReshardError, RetriesExhaustedError } from '../errors.js';
import type { JobContext } from '../job/context.js';
import { observeFreeze } from '../metrics/index.js';
import { appendEvent, checkTransition, type JobState, openControl } from '../state/control.js';
import { parseRouting, type RoutingDocument, recordRoutingVersion, routingHash } from '../status/routing.js';
import type { Drainer } from './drain.js';
import {
  type Attempt,
  appendJournal,
  beginHeader,
  checkAttempt,
  crashPoint,
  lastAttempt,
  type Op,
  readJournal,
  type ServerRecord,
  stepDetail,
  stepDone,
} from './journal.js';
import { type ActiveKind, classifyActive, type PublishResult, publishRouting } from './routing.js';
import {
  type FreezeServer,
  freezeServer,
  readReadOnly,
  type ServerSessions,
  type ShardRef,
  unfreezeServer,
} from './servers.js';

export interface EngineContext {
  ctx: JobContext;
  op: Op;
  sessions: ServerSessions;
  note: (text: string) => void;
  routingOut?: string | undefined;
  onFlip?: string | undefined;
}

export type { ServerRecord };

export interface SwitchPlan {
  direction: Direction;
  freeze: FreezeServer[];
  /** Freeze budget (ms): exceeded before the flip ⇒ undo. Undefined: no budget (rollback). */
  budgetMs?: number | undefined;
  /** Started; the engine stops it after the drain. */
  drainer: Drainer;
  /** Runs under the freeze; throws MismatchError on differences; returns the journal detail. */
  verify: (signal: AbortSignal | undefined) => Promise<Record<string, unknown>>;
  /** Shards whose binlog positions at the flip become the reverse stream's start (cutover). */
  armReverse?: ShardRef[];
  flip: {
    document: RoutingDocument;
    /** Active routing kinds the flip may replace. */
    expect: ActiveKind[];
    jobFrom: JobState[];
    jobTo: JobState;
    /** Recorded (inactive) first when no routing was ever recorded, as the history's start. */
    baseline?: RoutingDocument;
  };
  beginDetail: Record<string, unknown>;
}

export interface StepTiming {
  step: string;
  ms: number;
}

export interface SwitchOutcome {
  attempt: number;
  resumed: boolean;
  steps: StepTiming[];
  /** Freeze start → writes possible on the new routing (after publish and in-place unfreeze). */
  freezeMs: number | undefined;
  routingVersion: number | undefined;
  finalPositions: Record<string, string>;
  verify: Record<string, unknown> | undefined;
  reverseStart: Record<string, string>;
  publish: PublishResult | undefined;
  unfrozen: string[];
  keptFrozen: string[];
}

const DRAIN_TIMEOUT_NO_BUDGET_MS = 10 * 60_000;

function toRecord(s: FreezeServer): ServerRecord {
  return {
    key: s.key,
    address: s.address,
    via: s.via,
    shards: s.shards,
    inPlace: s.inPlace,
    priorReadOnly: s.priorReadOnly ?? false,
  };
}

/** The servers an attempt's freeze step recorded (validated: a malformed record is refused, not read as none). */
function serversOf(a: Attempt | undefined): ServerRecord[] {
  return ((a && stepDetail(a, 'freeze', 'started')?.servers) ?? []).map((s) => ({ ...s }));
}

/** Unfreeze the servers we froze (read_only was OFF before); returns their addresses. */
async function unfreezeAll(e: EngineContext, servers: readonly ServerRecord[]): Promise<string[]> {
  const done: string[] = [];
  for (const s of servers) {
    if (s.priorReadOnly) continue;
    await e.sessions.run(s.via, `unfreezing ${s.address}`, unfreezeServer);
    done.push(s.address);
  }
  return done;
}

/**
 * Which servers turn writable after a flip: in-place servers of this attempt's freeze (they hold
 * shards the new routing writes to) and, for a rollback, the old shards the cutover kept frozen.
 */
function afterFlip(
  op: Op,
  attempt: Attempt,
  lastCutover: Attempt | undefined,
): { unfreeze: ServerRecord[]; kept: ServerRecord[] } {
  const mine = serversOf(attempt).filter((s) => !s.priorReadOnly);
  const unfreeze = mine.filter((s) => s.inPlace);
  const kept = mine.filter((s) => !s.inPlace);
  if (op === 'rollback') {
    const cutoverKept = (lastCutover && stepDetail(lastCutover, 'unfreeze', 'done')?.kept) ?? [];
    for (const s of cutoverKept) if (!unfreeze.some((u) => u.key === s.key)) unfreeze.push(s);
  }
  return { unfreeze, kept: kept.filter((k) => !unfreeze.some((u) => u.key === k.key)) };
}

export async function currentJobState(ctx: JobContext): Promise<JobState> {
  const [rows] = await ctx.control.conn.query<RowDataPacket[]>(
    'SELECT state FROM reshard_jobs WHERE id = ?',
    [ctx.job.id],
  );
  return String(rows[0]?.state) as JobState;
}

/**
 * Make sure a routing version is active before anything else happens: when none was ever recorded,
 * the job's `from` topology becomes the active version (as "the routing before any job"), so that
 * exactly one version is active from here on — the flip then replaces it. One transaction; the
 * unique active slot makes a concurrent insert fail instead of adding a second active row.
 */
export async function ensureActiveRouting(
  ctx: JobContext,
  document: RoutingDocument,
): Promise<number | undefined> {
  const conn = ctx.control.conn;
  await conn.beginTransaction();
  try {
    const [act] = await conn.query<RowDataPacket[]>(
      'SELECT version FROM reshard_routing_versions WHERE active = 1 FOR UPDATE',
    );
    if (act[0]) {
      await conn.commit();
      return undefined;
    }
    const version = await recordRoutingVersion(conn, { jobId: null, document, activate: true });
    await appendEvent(conn, ctx.job.id, 'routing', {
      op: 'baseline',
      version,
      routingHash: routingHash(document),
    });
    await conn.commit();
    return version;
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    throw err;
  }
}

/** Exclusive per job: one cutover or rollback at a time (released when the session ends). */
export async function lockJob(ctx: JobContext): Promise<() => Promise<void>> {
  const h = createHash('sha256').update(`${ctx.control.database}\0${ctx.job.id}`).digest('hex');
  const name = `reshard_cutover_${h.slice(0, 40)}`;
  const [rows] = await ctx.control.conn.query<RowDataPacket[]>('SELECT GET_LOCK(?, 0) AS got', [name]);
  if (String(rows[0]?.got) !== '1') {
    throw new PreconditionError(
      'E_CUTOVER_RUNNING',
      `another reshard cutover or rollback of job ${ctx.job.name} is running`,
      {
        hint: 'wait for it to finish; if it crashed, its session is gone within seconds and a re-run resumes from the journal',
      },
    );
  }
  return async () => {
    await ctx.control.conn.query('DO RELEASE_LOCK(?)', [name]).catch(() => undefined);
  };
}

/**
 * After a crash: an open attempt of `op` without a flip is undone (servers unfrozen, attempt
 * aborted) → 'undone'; one whose flip committed is left for `finishSwitch` → 'resume'.
 */
export async function recoverSwitch(
  e: Pick<EngineContext, 'ctx' | 'sessions' | 'note'>,
  op: Op,
): Promise<{ state: 'none' | 'undone' | 'resume'; attempt?: Attempt }> {
  const conn = e.ctx.control.conn;
  const a = lastAttempt(await readJournal(conn, e.ctx.job.id), op);
  if (!a?.open) return { state: 'none' };
  // Another version's attempt (or a detail that does not parse) is refused before anything is
  // written: read with this version's idea of its details, its frozen servers would look like none.
  checkAttempt(a);
  if (stepDone(a, 'flip')) return { state: 'resume', attempt: a };
  const servers = serversOf(a);
  const unfrozen = await unfreezeAll({ ...e, op }, servers);
  if (a.steps.has('freeze')) await appendJournal(conn, e.ctx.job.id, op, 'freeze', 'undone', { unfrozen });
  await appendJournal(conn, e.ctx.job.id, op, 'end', 'aborted', {
    reason: `recovered: attempt ${a.number} stopped before its flip (crash); its freeze was undone`,
  });
  e.note(
    `${op}: attempt ${a.number} had stopped before the flip; undid its freeze${unfrozen.length ? ` (read_only OFF on ${unfrozen.join(', ')})` : ''}`,
  );
  return { state: 'undone', attempt: a };
}

export class Steps {
  readonly timings: StepTiming[] = [];
  constructor(
    private readonly e: EngineContext,
    private readonly op: Op,
  ) {}

  async run<T extends Record<string, unknown>>(
    step: string,
    started: Record<string, unknown>,
    action: () => Promise<T>,
  ): Promise<T> {
    const conn = this.e.ctx.control.conn;
    await appendJournal(conn, this.e.ctx.job.id, this.op, step, 'started', started);
    crashPoint(this.op, step, 'before');
    const t0 = Date.now();
    const result = await action();
    const ms = Date.now() - t0;
    crashPoint(this.op, step, 'after');
    await appendJournal(conn, this.e.ctx.job.id, this.op, step, 'done', { ...result, ms });
    this.timings.push({ step, ms });
    return result;
  }
}

function positionsText(m: ReadonlyMap<string, BinlogPosition>): Record<string, string> {
  return Object.fromEntries([...m].map(([k, v]) => [k, formatPosition(v)]));
}

/** Run one attempt from the freeze to the end. See the header for the failure rules. */
export async function executeSwitch(e: EngineContext, p: SwitchPlan): Promise<SwitchOutcome> {
  const { ctx, op } = e;
  const conn = ctx.control.conn;
  const jobId = ctx.job.id;
  const steps = new Steps(e, op);
  const journalBefore = await readJournal(conn, jobId);
  const number = journalBefore.filter((r) => r.step === `${op}.begin`).length + 1;
  await appendJournal(conn, jobId, op, 'begin', 'started', {
    attempt: number,
    host: hostname(),
    pid: process.pid,
    ...p.beginDetail,
    ...beginHeader(),
  });
  crashPoint(op, 'begin', 'after');

  for (const s of p.freeze) {
    s.priorReadOnly = await e.sessions.run(s.via, `reading read_only on ${s.address}`, readReadOnly);
  }
  const records = p.freeze.map(toRecord);
  const freezeStart = Date.now();
  const deadline = p.budgetMs === undefined ? undefined : freezeStart + p.budgetMs;
  const overBudget = (what: string) => {
    if (deadline !== undefined && Date.now() >= deadline) {
      throw new PreconditionError(
        'E_CUTOVER_FREEZE_EXCEEDED',
        `${op}: the freeze reached its budget of ${p.budgetMs} ms ${what}; undone, nothing was switched`,
        {
          hint: 'the prediction was too optimistic (load spike, slow verify): re-run, or raise --max-freeze',
        },
      );
    }
  };
  let flipped = false;
  let finalPositions: Record<string, string> = {};
  let verifyDetail: Record<string, unknown> | undefined;
  let reverseStart: Record<string, string> = {};
  let version: number | undefined;
  try {
    await steps.run('freeze', { servers: records, startedAtMs: freezeStart }, async () => {
      const killed = await Promise.all(
        records.map(async (s) => ({
          address: s.address,
          ...(await e.sessions.run(
            s.via,
            `freezing ${s.address}`,
            (c) => freezeServer(c, p.budgetMs === undefined ? 10 : Math.max(1, Math.ceil(p.budgetMs / 2000))),
            2,
          )),
        })),
      );
      return { frozenAtMs: Date.now(), killed: killed.filter((k) => k.killed.length > 0) };
    });

    const goals = new Map<string, BinlogPosition>();
    await steps.run('final-positions', {}, async () => {
      const ends = await p.drainer.ends();
      for (const [k, v] of ends) goals.set(k, v);
      finalPositions = positionsText(goals);
      return { positions: finalPositions };
    });

    await steps.run('drain', { goals: finalPositions }, async () => {
      const ms = await p.drainer
        .waitApplied(goals, deadline ?? Date.now() + DRAIN_TIMEOUT_NO_BUDGET_MS)
        .catch((err: unknown) => {
          // Out of freeze budget while draining is the budget's error (exit 3, as documented),
          // not the drain's timeout (exit 5), which is for a drain without a budget.
          if ((err as { code?: string }).code === 'E_CUTOVER_DRAIN_TIMEOUT') overBudget('during the drain');
          throw err;
        });
      const applied = await p.drainer.applied();
      await p.drainer.stop();
      return {
        drainMs: ms,
        applied: Object.fromEntries([...applied].map(([k, v]) => [k, formatPosition(v)])),
      };
    });
    overBudget('after the drain');

    verifyDetail = await steps.run('verify', {}, async () => {
      const ac = new AbortController();
      const timer =
        deadline === undefined
          ? undefined
          : setTimeout(
              () => ac.abort(new Error('freeze budget reached')),
              Math.max(1, deadline - Date.now()),
            );
      try {
        return await p.verify(deadline === undefined ? undefined : ac.signal);
      } catch (err) {
        if (ac.signal.aborted) overBudget('during the verify');
        throw err;
      } finally {
        if (timer) clearTimeout(timer);
      }
    });
    overBudget('after the verify');

    const reverse = new Map<string, BinlogPosition>();
    if (p.armReverse?.length) {
      await steps.run('arm-reverse', { shards: p.armReverse.map((r) => r.shard) }, async () => {
        await Promise.all(
          p.armReverse!.map(async (ref) => {
            const pos = await e.sessions.run(ref, `reading the binlog position of ${ref.shard}`, (c) =>
              readBinlogPosition(c),
            );
            reverse.set(ref.shard, { file: pos.file, pos: pos.pos, gtid: pos.gtid ?? undefined });
          }),
        );
        reverseStart = positionsText(reverse);
        return { positions: reverseStart };
      });
    }
    overBudget('before the flip');

    await appendJournal(conn, jobId, op, 'flip', 'started', { routingHash: routingHash(p.flip.document) });
    crashPoint(op, 'flip', 'before');
    const tFlip = Date.now();
    try {
      version = await flipTransaction(e, p.flip, reverse);
    } catch (err) {
      const committed = await flipCommitted(e, number).catch(() => undefined);
      if (committed === undefined) {
        // Cannot tell: leave everything frozen; the next run reads the journal and decides.
        throw new RetriesExhaustedError(
          'E_CUTOVER_FLIP_UNKNOWN',
          `${op}: the flip transaction failed and the control schema cannot be read to tell whether it committed: ${(err as Error).message}`,
          {
            hint: `the servers stay frozen; re-run the same command once the control server is reachable: it resumes or undoes from the journal`,
            cause: err,
          },
        );
      }
      if (!committed.done) throw err;
      version = committed.version;
    }
    flipped = true;
    crashPoint(op, 'flip', 'after');
    steps.timings.push({ step: 'flip', ms: Date.now() - tFlip });
  } catch (err) {
    if (flipped) throw err;
    // Before the flip: undo the freeze, end the attempt; nothing else changed.
    await p.drainer.stop().catch(() => undefined);
    try {
      const unfrozen = await unfreezeAll(e, records);
      await appendJournal(conn, jobId, op, 'freeze', 'undone', { unfrozen });
      await appendJournal(conn, jobId, op, 'end', 'aborted', {
        error: err instanceof ReshardError ? err.toJSON() : String((err as Error)?.message ?? err),
      });
      if (unfrozen.length)
        e.note(`${op}: aborted before the flip; read_only OFF again on ${unfrozen.join(', ')}`);
    } catch (undoErr) {
      e.note(
        `${op}: aborted before the flip, and undoing the freeze failed (${(undoErr as Error).message}); re-run the command to undo it`,
      );
    }
    throw err;
  }

  const attempt = lastAttempt(await readJournal(conn, jobId), op)!;
  const finished = await finishSwitch(e, attempt, steps.timings);
  return {
    ...finished,
    attempt: number,
    resumed: false,
    routingVersion: version,
    finalPositions,
    verify: verifyDetail,
    reverseStart,
  };
}

/** Read the journal on a fresh session: did attempt `number`'s flip commit? */
async function flipCommitted(e: EngineContext, number: number): Promise<{ done: boolean; version?: number }> {
  const ctl = await openControl(e.ctx.control.dsnForHint);
  try {
    const a = lastAttempt(await readJournal(ctl.conn, e.ctx.job.id), e.op);
    if (!a || a.number !== number) return { done: false };
    const d = stepDetail(a, 'flip', 'done');
    return d ? { done: true, version: d.version } : { done: false };
  } finally {
    await ctl.close().catch(() => undefined);
  }
}

/**
 * The flip: one control transaction — job state compare-and-set, routing (the active version
 * replaced by the new one: exactly one active at any instant), reverse start positions, and the
 * journal's 'flip done' row.
 */
export async function flipTransaction(
  e: EngineContext,
  flip: SwitchPlan['flip'],
  reverse: ReadonlyMap<string, BinlogPosition> = new Map(),
): Promise<number> {
  const { ctx, op } = e;
  const conn = ctx.control.conn;
  const jobId = ctx.job.id;
  await conn.beginTransaction();
  try {
    const [jobs] = await conn.query<RowDataPacket[]>(
      'SELECT state FROM reshard_jobs WHERE id = ? FOR UPDATE',
      [jobId],
    );
    const state = String(jobs[0]?.state) as JobState;
    if (!flip.jobFrom.includes(state)) {
      throw new PreconditionError(
        'E_JOB_STATE_CONFLICT',
        `job ${ctx.job.name} is '${state}' at the flip, not ${flip.jobFrom.map((s) => `'${s}'`).join(' or ')}`,
        { hint: 'another reshard process changed it; re-run the command' },
      );
    }
    if (state !== flip.jobTo) checkTransition(state, flip.jobTo, `job ${ctx.job.name}`);
    // Locking read: the latest committed active row, whatever this transaction's snapshot.
    const [act] = await conn.query<RowDataPacket[]>(
      'SELECT version, routing FROM reshard_routing_versions WHERE active = 1 FOR UPDATE',
    );
    const activeDoc = act[0]
      ? parseRouting(String(act[0].routing), `routing version ${act[0].version}`)
      : undefined;
    const kind = classifyActive(activeDoc, ctx.from, ctx.to, ctx.job.name);
    if (!flip.expect.includes(kind)) {
      throw new PreconditionError(
        'E_CUTOVER_ROUTING_CHANGED',
        `the active routing (version ${act[0]?.version ?? 'none'}) is ${kind === 'foreign' ? 'not this job’s' : `'${kind}'`}, so the ${op} will not replace it`,
        { hint: 'someone changed the routing meanwhile; check `reshard status`' },
      );
    }
    if (kind === 'none' && flip.baseline) {
      await recordRoutingVersion(conn, { jobId: null, document: flip.baseline, activate: false });
    }
    const version = await recordRoutingVersion(conn, { jobId, document: flip.document, activate: true });
    if (state !== flip.jobTo) {
      await conn.query('UPDATE reshard_jobs SET state = ?, updated_at = CURRENT_TIMESTAMP(6) WHERE id = ?', [
        flip.jobTo,
        jobId,
      ]);
      await appendEvent(conn, jobId, 'state', { from: state, to: flip.jobTo, op, routingVersion: version });
    }
    await appendEvent(conn, jobId, 'routing', { op, version, routingHash: routingHash(flip.document) });
    for (const [shard, pos] of reverse) await recordStartPosition(conn, jobId, shard, 'reverse', pos);
    await appendJournal(conn, jobId, op, 'flip', 'done', {
      version,
      routingHash: routingHash(flip.document),
      jobState: flip.jobTo,
      ...(reverse.size ? { reverseStart: positionsText(reverse) } : {}),
    });
    await conn.commit();
    return version;
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    throw err;
  }
}

/**
 * The publish step of a committed flip: write --routing-out and run --on-flip, journaled as
 * `publish` (started, then done — or failed, and the error thrown). The routing version is
 * already active in the control schema, so the error says so and how to finish: the same
 * command, re-run, runs only the steps not done (the hook must be idempotent).
 */
export async function publishStep(
  e: EngineContext,
  version: number,
  steps: Steps = new Steps(e, e.op),
): Promise<PublishResult> {
  const { ctx, op } = e;
  const conn = ctx.control.conn;
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT routing FROM reshard_routing_versions WHERE version = ?',
    [version],
  );
  if (!rows[0])
    throw new ReshardError('bug', 'E_BUG', `routing version ${version} of the journal's flip is missing`);
  const document = parseRouting(String(rows[0].routing), `routing version ${version}`);
  const again = `routing version ${version} is active; fix the cause and re-run the same command: it re-runs only the remaining steps (the hook must be idempotent)`;
  try {
    return await steps.run('publish', { version }, async () => {
      let r: PublishResult;
      try {
        r = await publishRouting({
          document,
          version,
          jobName: ctx.job.name,
          phase: op,
          routingOut: e.routingOut,
          onFlip: e.onFlip,
        });
      } catch (err) {
        throw new RetriesExhaustedError(
          'E_PUBLISH_ROUTING',
          `could not publish routing version ${version}: ${(err as Error)?.message ?? err}`,
          { hint: again, cause: err },
        );
      }
      if (r.hook && r.hook.exitCode !== 0) {
        throw new RetriesExhaustedError(
          'E_CUTOVER_HOOK',
          `--on-flip exited with ${r.hook.exitCode ?? r.hook.signal}: ${r.hook.command}`,
          { hint: again },
        );
      }
      return { ...r };
    });
  } catch (err) {
    await appendJournal(conn, ctx.job.id, op, 'publish', 'failed', {
      error: err instanceof ReshardError ? err.toJSON() : String((err as Error)?.message ?? err),
    }).catch(() => undefined);
    throw err;
  }
}

/**
 * After the flip (now, or on a re-run after a crash): publish (routing file, hook), unfreeze the
 * in-place servers (and, for a rollback, the old shards), end the attempt. Idempotent.
 */
export async function finishSwitch(
  e: EngineContext,
  attempt: Attempt,
  timings: StepTiming[] = [],
): Promise<
  Omit<
    SwitchOutcome,
    'attempt' | 'resumed' | 'finalPositions' | 'verify' | 'reverseStart' | 'routingVersion'
  > & {
    routingVersion: number;
  }
> {
  const { ctx, op } = e;
  const conn = ctx.control.conn;
  const jobId = ctx.job.id;
  const steps = new Steps(e, op);
  steps.timings.push(...timings);
  // Everything read back is read (and validated) before the first write.
  const flip = stepDetail(attempt, 'flip', 'done');
  if (!flip)
    throw new ReshardError(
      'bug',
      'E_BUG',
      `${op}: finishSwitch called on attempt ${attempt.number} without a flip`,
    );
  const version = flip.version;
  const journal = await readJournal(conn, jobId);
  const lastCutover = op === 'rollback' ? lastAttempt(journal, 'cutover') : undefined;
  const plan = afterFlip(op, attempt, lastCutover);
  const unfreezeDone = stepDetail(attempt, 'unfreeze', 'done');
  const startedAtMs = stepDetail(attempt, 'freeze', 'started')?.startedAtMs;
  let publish: PublishResult | undefined;
  let publishError: unknown;
  if (!stepDone(attempt, 'publish')) {
    try {
      publish = await publishStep(e, version, steps);
    } catch (err) {
      publishError = err;
    }
  }

  // Unfreezing never waits for the publish: in-place servers must take writes now.
  let unfrozen: string[] = [];
  if (unfreezeDone) {
    unfrozen = unfreezeDone.unfrozen;
  } else {
    await steps.run('unfreeze', { servers: plan.unfreeze.map((s) => s.address) }, async () => {
      unfrozen = await unfreezeAll(e, plan.unfreeze);
      return { unfrozen, kept: plan.kept };
    });
  }
  if (publishError) throw publishError;

  const freezeMs =
    startedAtMs !== undefined && Number.isFinite(startedAtMs) ? Date.now() - startedAtMs : undefined;
  if (freezeMs !== undefined) observeFreeze(freezeMs / 1000);
  await appendJournal(conn, jobId, op, 'end', 'done', { freezeMs, routingVersion: version });
  return {
    steps: steps.timings,
    freezeMs,
    routingVersion: version,
    publish,
    unfrozen,
    keptFrozen: plan.kept.map((s) => s.address),
  };
}

export function mismatch(op: Op, report: { runId: number; totals: Record<string, number> }): MismatchError {
  const t = report.totals;
  return new MismatchError(
    'E_CUTOVER_VERIFY',
    `${op}: the verify under the freeze (run ${report.runId}) found ${t.missing} missing, ${t.extra} extra, ${t.different} different and ${t.misplaced} misplaced rows; the freeze was undone and nothing was switched`,
    {
      hint: 'inspect it with `reshard verify --report`, repair (re-copy or --fix-sql), verify again, then re-run',
      data: { runId: report.runId, totals: report.totals },
    },
  );
}
