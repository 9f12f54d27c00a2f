/**
 * `reshard rollback`: undo a reshard. See README.md.
 *
 * After cutover (job 'cut-over'): the switch engine in reverse — freeze the new shards, drain the
 * reverse stream (new → old) to their final positions, verify (full: targets vs old shards), flip
 * routing back (a new version routing by the old topology; job → rolled-back), unfreeze the old
 * shards. Every write made on the new shards after the cutover is then on the old ones.
 *
 * Before cutover: finish or undo a crashed cutover attempt, route reads back if a reads-first flip
 * is active, mark the job cancelled (running copy workers stop on it), and with --purge-targets
 * delete the copied rows from the targets. Journaled as a 'rollback' attempt whose begin row says
 * kind 'cancel'; a re-run finishes its missing steps.
 */

import { PreconditionError } from '../errors.js';
import { type JobContext, openJob } from '../job/context.js';
import type { JobState } from '../state/control.js';
import { transitionJob } from '../state/control.js';
import { readActiveRouting } from '../status/routing.js';
import { runVerify } from '../verify/index.js';
import { type Check, type ServerSummary, verifyFacts } from './cutover.js';
import { Drainer } from './drain.js';
import {
  currentJobState,
  type EngineContext,
  executeSwitch,
  finishSwitch,
  flipTransaction,
  lockJob,
  mismatch,
  publishStep,
  recoverSwitch,
  type StepTiming,
} from './engine.js';
import {
  type Attempt,
  appendJournal,
  beginHeader,
  beginOf,
  checkJournal,
  lastAttempt,
  readJournal,
  stepDetail,
  stepDone,
} from './journal.js';
import { type PurgeSummary, purgeTargets } from './purge.js';
import { classifyActive, fullRouting, type PublishResult } from './routing.js';
import { freezePrivilegeProblems, freezeSet, ServerSessions } from './servers.js';

export interface RollbackOptions {
  planPath: string;
  control?: string | undefined;
  metaDb?: string | undefined;
  execute?: boolean;
  /** Before cutover: delete the copied rows (moving segments only) from the targets. */
  purgeTargets?: boolean;
  routingOut?: string | undefined;
  onFlip?: string | undefined;
  onNote?: (text: string) => void;
}

export interface RollbackResult {
  ok: boolean;
  job: { id: number; name: string; state: JobState };
  mode: 'dry-run' | 'rolled-back' | 'cancelled' | 'resumed' | 'already-rolled-back';
  checks: Check[];
  freezeServers: ServerSummary[];
  drain?: Record<string, 'in-process' | 'external'>;
  steps: StepTiming[];
  freezeMs?: number | undefined;
  routingVersion?: number | undefined;
  finalPositions?: Record<string, string>;
  verify?: Record<string, unknown> | undefined;
  publish?: PublishResult | undefined;
  unfrozen?: string[];
  keptFrozen?: string[];
  purge?: PurgeSummary;
  notes: string[];
}

const CATCH_UP_TIMEOUT_MS = 10 * 60_000;
const BEFORE_CUTOVER: JobState[] = ['planned', 'copying', 'catching-up', 'verified'];

export async function runRollback(options: RollbackOptions): Promise<RollbackResult> {
  const metaDb = options.metaDb ?? '_reshard';
  const ctx = await openJob({ planPath: options.planPath, control: options.control, create: false });
  const sessions = new ServerSessions(ctx);
  const notes: string[] = [];
  const note = (t: string) => {
    notes.push(t);
    options.onNote?.(t);
  };
  const e: EngineContext = {
    ctx,
    op: 'rollback',
    sessions,
    note,
    routingOut: options.routingOut,
    onFlip: options.onFlip,
  };
  const jobOf = (state: JobState) => ({ id: ctx.job.id, name: ctx.job.name, state });
  let release: (() => Promise<void>) | undefined;
  let drainer: Drainer | undefined;
  try {
    if (options.execute) {
      release = await lockJob(ctx);
      const journal = await readJournal(ctx.control.conn, ctx.job.id);
      // Refused before anything is written: an unfinished switch of another reshard version, and
      // a flipped cutover of one (its kept servers are read back to unfreeze them at the end).
      const cutover = lastAttempt(journal, 'cutover');
      checkJournal(journal, ['rollback', 'cutover', 'reads'], stepDone(cutover, 'flip') ? [cutover] : []);
      const open = lastAttempt(journal, 'rollback');
      if (open?.open && beginOf(open).kind === 'cancel') {
        return { ...(await cancel(ctx, e, metaDb, options, open)), notes };
      }
      const rec = await recoverSwitch(e, 'rollback');
      if (rec.state === 'resume') {
        note(
          `rollback: attempt ${rec.attempt!.number} had flipped the routing back; finishing its remaining steps`,
        );
        const fin = await finishSwitch(e, rec.attempt!);
        return {
          ok: true,
          job: jobOf(await currentJobState(ctx)),
          mode: 'resumed',
          checks: [],
          freezeServers: [],
          notes,
          ...fin,
        };
      }
      const reads = await recoverSwitch(e, 'reads');
      if (reads.state === 'resume') await finishSwitch({ ...e, op: 'reads' }, reads.attempt!);
      const cut = await recoverSwitch(e, 'cutover');
      if (cut.state === 'resume') {
        // The cutover flipped but did not finish: finish it first (in-place servers writable,
        // attempt ended) so the rollback starts from a complete cutover.
        note('rollback: finishing the interrupted cutover first');
        await finishSwitch(
          { ...e, op: 'cutover', routingOut: undefined, onFlip: undefined },
          cut.attempt!,
        ).catch(async (err: unknown) => {
          // Only a failed publish may be passed over: the rollback publishes its own routing.
          // Any other step (the unfreeze above all) must have finished, or the rollback would
          // take the still-frozen servers' state for their own and leave them read-only.
          const after = lastAttempt(await readJournal(ctx.control.conn, ctx.job.id), 'cutover');
          if (!stepDone(after, 'unfreeze')) throw err;
          note(`rollback: the cutover's publish step failed again (${(err as Error).message}); continuing`);
        });
      }
    }
    const state = await currentJobState(ctx);
    if (state === 'rolled-back') {
      return {
        ok: true,
        job: jobOf(state),
        mode: 'already-rolled-back',
        checks: [],
        freezeServers: [],
        steps: [],
        notes,
      };
    }
    if (BEFORE_CUTOVER.includes(state) || (state === 'cancelled' && options.purgeTargets)) {
      if (!options.execute) {
        const active = await readActiveRouting(ctx.control.conn);
        const kind = classifyActive(active?.document, ctx.from, ctx.to, ctx.job.name);
        return {
          ok: true,
          job: jobOf(state),
          mode: 'dry-run',
          checks: [
            {
              name: 'job',
              ok: true,
              detail: `job ${ctx.job.name} is '${state}': ${state === 'cancelled' ? 'would purge the targets' : `would ${kind === 'reads' ? 'route reads back to the old shards, ' : ''}cancel it${options.purgeTargets ? ' and purge the copied rows from the targets' : ''}`}`,
            },
          ],
          freezeServers: [],
          steps: [],
          notes,
        };
      }
      return { ...(await cancel(ctx, e, metaDb, options, undefined)), notes };
    }
    if (state !== 'cut-over') {
      throw new PreconditionError(
        'E_ROLLBACK_STATE',
        `job ${ctx.job.name} is '${state}': there is nothing to roll back`,
        {
          hint:
            state === 'completed'
              ? 'reverse replication has stopped; the old shards are no longer current'
              : undefined,
        },
      );
    }

    // ---- after cutover
    const checks: Check[] = [];
    const active = await readActiveRouting(ctx.control.conn);
    const kind = classifyActive(active?.document, ctx.from, ctx.to, ctx.job.name);
    checks.push(
      kind === 'to'
        ? {
            name: 'routing',
            ok: true,
            detail: `active routing version ${active!.version.version} routes by the new topology`,
          }
        : {
            name: 'routing',
            ok: false,
            detail: `the active routing (version ${active?.version.version ?? 'none'}) is not this job's new topology`,
            hint: 'someone changed the routing since the cutover; check `reshard status`',
          },
    );
    const identities = await sessions.identities();
    const freeze = freezeSet('rollback', ctx.plan, identities);
    const writeBack = freezeSet('cutover', ctx.plan, identities);
    const problems: string[] = [];
    for (const s of [...freeze, ...writeBack.filter((w) => !freeze.some((f) => f.key === w.key))]) {
      const info = sessions.infos.get(`${s.via.side}:${s.via.shard}`)!;
      for (const x of await sessions.run(s.via, `checking privileges on ${s.address}`, (c) =>
        freezePrivilegeProblems(c, info),
      ))
        problems.push(`${s.address}: ${x}`);
    }
    checks.push(
      problems.length
        ? {
            name: 'freeze privileges',
            ok: false,
            detail: problems.join('; '),
            hint: 'see `reshard cutover` for the grants reshard needs',
          }
        : {
            name: 'freeze privileges',
            ok: true,
            detail: `reshard may freeze ${freeze.map((s) => s.address).join(', ')}`,
          },
    );
    const freezeServers = freeze.map((s) => ({
      address: s.address,
      shards: s.shards,
      inPlace: s.inPlace,
      staysFrozen: !s.inPlace,
    }));
    drainer = new Drainer({ ctx, direction: 'reverse', metaDb, onNote: (t) => note(`tail --reverse: ${t}`) });
    if (!options.execute) {
      for (const s of drainer.sources)
        drainer.mode.set(s, (await drainer.externalTailer(s)) ? 'external' : 'in-process');
      return {
        ok: checks.every((c) => c.ok),
        job: jobOf(state),
        mode: 'dry-run',
        checks,
        freezeServers,
        drain: Object.fromEntries(drainer.mode),
        steps: [],
        notes,
      };
    }
    const bad = checks.filter((c) => !c.ok);
    if (bad.length) {
      throw new PreconditionError(
        'E_ROLLBACK_PRECONDITION',
        `rollback preconditions failed: ${bad.map((c) => `${c.name}: ${c.detail}`).join('; ')}`,
        {
          hint:
            bad
              .map((c) => c.hint)
              .filter(Boolean)
              .join('; ') || undefined,
          data: { checks },
        },
      );
    }
    await drainer.start();
    const caught = await drainer.probe(Date.now() + CATCH_UP_TIMEOUT_MS);
    note(`reverse stream caught up in ${caught.ms} ms`);
    const facts = await verifyFacts(ctx);
    const outcome = await executeSwitch(e, {
      direction: 'reverse',
      freeze,
      drainer,
      verify: async (signal) => {
        // Full: the reverse stream records no changed rows, so nothing narrower is sound.
        const report = await runVerify({
          ctx,
          preflight: false,
          recheck: { rounds: 1, tailerTimeoutMs: 200, pauseMs: 0 },
          ...(signal ? { signal } : {}),
        });
        if (!report.ok) throw mismatch('rollback', report);
        return { runId: report.runId, mode: report.mode, seconds: report.seconds };
      },
      flip: {
        document: fullRouting(ctx.from, ctx.job.name),
        expect: ['to'],
        jobFrom: ['cut-over'],
        jobTo: 'rolled-back',
      },
      beginDetail: { lastFullVerifyMs: facts.lastFullMs },
    });
    return {
      ok: true,
      job: jobOf(await currentJobState(ctx)),
      mode: 'rolled-back',
      checks,
      freezeServers,
      drain: Object.fromEntries(drainer.mode),
      notes,
      ...outcome,
    };
  } finally {
    await drainer?.close().catch(() => undefined);
    await release?.().catch(() => undefined);
    await sessions.close();
    await ctx.close();
  }
}

/**
 * Before cutover: route reads back (if a reads-first flip is active) and cancel — in one control
 * transaction when there is routing to restore — then purge if asked. Resumable from `attempt`.
 */
async function cancel(
  ctx: JobContext,
  e: EngineContext,
  metaDb: string,
  options: RollbackOptions,
  attempt: Attempt | undefined,
): Promise<Omit<RollbackResult, 'notes'>> {
  const conn = ctx.control.conn;
  const jobId = ctx.job.id;
  const steps: StepTiming[] = [];
  const purge = attempt ? beginOf(attempt).purge === true : options.purgeTargets === true;
  if (!attempt) {
    const number = (await readJournal(conn, jobId)).filter((r) => r.step === 'rollback.begin').length + 1;
    await appendJournal(conn, jobId, 'rollback', 'begin', 'started', {
      attempt: number,
      kind: 'cancel',
      purge,
      pid: process.pid,
      ...beginHeader(),
    });
  }
  let a = lastAttempt(await readJournal(conn, jobId), 'rollback')!;
  if (purge) {
    // A tailer would write the rows back while we delete them.
    const d = new Drainer({ ctx, direction: 'forward', metaDb });
    for (const s of d.sources) {
      if (await d.externalTailer(s)) {
        throw new PreconditionError(
          'E_ROLLBACK_TAIL_RUNNING',
          `reshard tail is still streaming source ${s} of job ${ctx.job.name}`,
          {
            hint: 'stop it (SIGTERM), then re-run the rollback: it purges what the tailer could re-create',
          },
        );
      }
    }
  }
  let routingVersion: number | undefined;
  let publish: PublishResult | undefined;
  const state = await currentJobState(ctx);
  if (state !== 'cancelled') {
    const active = await readActiveRouting(conn);
    const kind = classifyActive(active?.document, ctx.from, ctx.to, ctx.job.name);
    const t0 = Date.now();
    if (kind === 'reads') {
      await appendJournal(conn, jobId, 'rollback', 'flip', 'started', {});
      const document = fullRouting(ctx.from, ctx.job.name);
      routingVersion = await flipTransaction(e, {
        document,
        expect: ['reads'],
        jobFrom: [state],
        jobTo: 'cancelled',
      });
      steps.push({ step: 'flip', ms: Date.now() - t0 });
    } else {
      await appendJournal(conn, jobId, 'rollback', 'cancel', 'started', { from: state });
      await transitionJob(conn, jobId, state, 'cancelled', { by: 'rollback' });
      await appendJournal(conn, jobId, 'rollback', 'cancel', 'done', { from: state });
      steps.push({ step: 'cancel', ms: Date.now() - t0 });
    }
    a = lastAttempt(await readJournal(conn, jobId), 'rollback')!;
  }
  // Reads were routed back: tell the applications, as a step of its own. A failed publish
  // (routing file, hook) leaves the attempt open, and the re-run the error asks for does it
  // again — the job is already cancelled by then, so only this step is left.
  const flipped = stepDetail(a, 'flip', 'done');
  if (flipped && !stepDone(a, 'publish')) {
    const t0 = Date.now();
    routingVersion = flipped.version;
    publish = await publishStep(e, routingVersion);
    steps.push({ step: 'publish', ms: Date.now() - t0 });
  }
  let purged: PurgeSummary | undefined;
  if (purge && !stepDone(a, 'purge')) {
    const t0 = Date.now();
    await appendJournal(conn, jobId, 'rollback', 'purge', 'started', {});
    purged = await purgeTargets(ctx, metaDb, e.note);
    await appendJournal(conn, jobId, 'rollback', 'purge', 'done', { deleted: purged.deleted });
    steps.push({ step: 'purge', ms: Date.now() - t0 });
  }
  await appendJournal(conn, jobId, 'rollback', 'end', 'done', { kind: 'cancel' });
  return {
    ok: true,
    job: { id: jobId, name: ctx.job.name, state: await currentJobState(ctx) },
    mode: 'cancelled',
    checks: [],
    freezeServers: [],
    steps,
    ...(routingVersion !== undefined ? { routingVersion } : {}),
    ...(publish ? { publish } : {}),
    ...(purged ? { purge: purged } : {}),
  };
}
