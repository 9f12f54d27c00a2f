/**
 * `reshard cutover`: move writes (and reads) from the old shards to the new ones. See README.md.
 *
 * Lifecycle of `runCutover`:
 *   1. recover   (--execute) finish or undo what a crashed run left (journal.ts, engine.ts)
 *   2. check     read-only preconditions: job state, active routing, a recent clean verify, the
 *                privileges the freeze needs (and a rollback would need)
 *   3. measure   start draining (a running `reshard tail`, or one in this process), catch up,
 *                probe the drain, predict the freeze; over --max-freeze ⇒ stop, nothing frozen
 *   4. switch    (--execute) the journaled engine: freeze → … → unfreeze (engine.ts)
 * Without --execute it stops after 3 (without starting a tailer: the drain is predicted only
 * when a `reshard tail` is already running) and reports.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { liveCopyWorkers } from '../copy/index.js';
import { PreconditionError, UsageError } from '../errors.js';
import { type JobContext, openJob } from '../job/context.js';
import { runPreflight } from '../preflight/index.js';
import type { PreflightIssue } from '../preflight/types.js';
import { type JobState, transitionJob } from '../state/control.js';
import { readActiveRouting, routingFromTopology } from '../status/routing.js';
import { runVerify } from '../verify/index.js';
import { Drainer } from './drain.js';
import {
  currentJobState,
  type EngineContext,
  ensureActiveRouting,
  executeSwitch,
  finishSwitch,
  flipTransaction,
  lockJob,
  mismatch,
  recoverSwitch,
  type StepTiming,
} from './engine.js';
import {
  appendJournal,
  beginHeader,
  checkJournal,
  crashPoint,
  lastAttempt,
  readJournal,
  stepDetail,
} from './journal.js';
import { EXTERNAL_FLUSH_MS, type Prediction, predictFreeze } from './predict.js';
import { canaryPairs, classifyActive, fullRouting, type PublishResult, readsRouting } from './routing.js';
import {
  type FreezeServer,
  freezePrivilegeProblems,
  freezeSet,
  ServerSessions,
  type ShardRef,
} from './servers.js';

export interface CutoverOptions {
  planPath: string;
  control?: string | undefined;
  /** reshard's database on each target (apply positions); default `_reshard`. */
  metaDb?: string | undefined;
  execute?: boolean;
  /** Longest tolerable write freeze (ms). Default 5 s. */
  maxFreezeMs?: number;
  /** Longest tolerable tail lag before freezing (ms). Default 2 s. */
  maxLagMs?: number;
  /** A clean verify must have finished within this (ms). Default 30 min. */
  verifyMaxAgeMs?: number;
  /** Shell command run after the flip (env: RESHARD_PHASE, RESHARD_JOB, RESHARD_ROUTING_VERSION, RESHARD_ROUTING_FILE). */
  onFlip?: string | undefined;
  /** Write the routing document here after the flip. */
  routingOut?: string | undefined;
  /** Flip reads only (writes stay on the old shards). */
  readsOnly?: boolean;
  /** With readsOnly: flip reads of this fraction of the moving (from → to) pairs only. */
  canary?: number | undefined;
  onNote?: (text: string) => void;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  hint?: string;
}

export interface ServerSummary {
  address: string;
  shards: string[];
  inPlace: boolean;
  /** Stays read-only after the cutover (old shards that are not also new shards). */
  staysFrozen: boolean;
}

export interface CutoverResult {
  ok: boolean;
  job: { id: number; name: string; state: JobState };
  mode: 'dry-run' | 'cutover' | 'reads-only' | 'resumed' | 'already-cut-over';
  checks: Check[];
  prediction?: Prediction & {
    verifyMode: 'incremental' | 'full';
    backlogBytes?: number | undefined;
    probesMs: number[];
  };
  freezeServers: ServerSummary[];
  drain?: Record<string, 'in-process' | 'external'>;
  steps: StepTiming[];
  freezeMs?: number | undefined;
  routingVersion?: number | undefined;
  finalPositions?: Record<string, string>;
  reverseStart?: Record<string, string>;
  verify?: Record<string, unknown> | undefined;
  publish?: PublishResult | undefined;
  unfrozen?: string[];
  keptFrozen?: string[];
  notes: string[];
}

const DEFAULTS = { maxFreezeMs: 5000, maxLagMs: 2000, verifyMaxAgeMs: 30 * 60_000, metaDb: '_reshard' };
const CATCH_UP_TIMEOUT_MS = 5 * 60_000;
const PROBES = 3;

// ---------------------------------------------------------------------------------------------
// Facts read from the control schema

interface VerifyFacts {
  last?: { runId: number; state: string; ageMs: number };
  lastFullMs?: number;
  lastIncrementalMs?: number;
  /** The tailer records changed rows (incremental verify is meaningful). */
  tracking: boolean;
}

export async function verifyFacts(ctx: JobContext): Promise<VerifyFacts> {
  const c = ctx.control.conn;
  const [runs] = await c.query<RowDataPacket[]>(
    `SELECT run_id, state, detail, TIMESTAMPDIFF(MICROSECOND, started_at, finished_at) AS us,
            TIMESTAMPDIFF(MICROSECOND, finished_at, NOW(6)) AS age_us
       FROM reshard_verify_runs WHERE job_id = ? AND state IN ('match', 'mismatch') AND finished_at IS NOT NULL
      ORDER BY finished_at DESC, run_id DESC LIMIT 200`,
    [ctx.job.id],
  );
  const out: VerifyFacts = { tracking: false };
  const first = runs[0];
  if (first)
    out.last = {
      runId: Number(first.run_id),
      state: String(first.state),
      ageMs: Number(first.age_us) / 1000,
    };
  for (const r of runs) {
    let mode = 'full';
    try {
      mode = String((JSON.parse(String(r.detail)) as { mode?: string }).mode ?? 'full');
    } catch {}
    const ms = Number(r.us) / 1000;
    if (mode === 'incremental') out.lastIncrementalMs ??= ms;
    else out.lastFullMs ??= ms;
  }
  const [bf] = await c.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n FROM reshard_bloom_filters WHERE job_id = ? AND inserted > 0',
    [ctx.job.id],
  );
  out.tracking = Number(bf[0]?.n) > 0;
  return out;
}

function fmtAge(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

async function rtt(run: () => Promise<unknown>): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await run();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** TO shards that receive moving segments: their positions at the flip start the reverse stream. */
function reverseSources(ctx: JobContext): ShardRef[] {
  const names = [...new Set(ctx.plan.segments.filter((s) => s.moves).map((s) => s.to))].sort();
  return names.map((shard) => ({ side: 'to', shard }));
}

// ---------------------------------------------------------------------------------------------

interface Prepared {
  checks: Check[];
  freeze: FreezeServer[];
  facts: VerifyFacts;
  rttMs: number[];
}

/** The read-only preconditions (no server is changed). */
async function check(
  ctx: JobContext,
  sessions: ServerSessions,
  opts: Required<Pick<CutoverOptions, 'verifyMaxAgeMs'>> & CutoverOptions,
  state: JobState,
): Promise<Prepared> {
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);

  add(
    state === 'catching-up' || state === 'verified'
      ? { name: 'copy complete', ok: true, detail: `job ${ctx.job.name} is '${state}'` }
      : {
          name: 'copy complete',
          ok: false,
          detail: `job ${ctx.job.name} is '${state}'; cutover needs 'catching-up' or 'verified'`,
          hint:
            state === 'planned' || state === 'copying'
              ? 'finish `reshard copy --execute` first'
              : 'this job can no longer be cut over',
        },
  );

  // A copy worker still alive (say stopped with SIGSTOP, or a paused VM, past its lease) could
  // wake after the flip and write a page of old rows over the new owners' newer ones. Its
  // identity lock on the control server says it is alive (src/copy/README.md, "Identity").
  const alive = await liveCopyWorkers(ctx.control.conn, ctx.job.id);
  add(
    alive.length === 0
      ? { name: 'copy workers', ok: true, detail: 'no reshard copy worker of this job is running' }
      : {
          name: 'copy workers',
          ok: false,
          detail: `reshard copy worker(s) still running: ${alive.join(', ')}`,
          hint: 'stop them (SIGTERM; kill -9 is safe too) before the cutover: a copy worker writing after the flip could overwrite newer rows on the new shards',
        },
  );

  const active = await readActiveRouting(ctx.control.conn);
  const kind = classifyActive(active?.document, ctx.from, ctx.to, ctx.job.name);
  add(
    kind === 'none' || kind === 'from' || kind === 'reads'
      ? {
          name: 'routing',
          ok: true,
          detail:
            kind === 'none'
              ? 'no routing recorded yet (--execute first records the old topology as the active version)'
              : `active routing version ${active!.version.version} routes ${kind === 'from' ? 'by the old topology' : 'reads first (this job)'}`,
        }
      : {
          name: 'routing',
          ok: false,
          detail: `active routing version ${active!.version.version} is ${kind === 'to' ? 'already the new topology' : 'not this job’s old topology'}`,
          hint: 'check `reshard status`; the cutover only replaces the routing this plan starts from',
        },
  );

  const facts = await verifyFacts(ctx);
  const maxAge = opts.verifyMaxAgeMs;
  add(
    facts.last && facts.last.state === 'match' && facts.last.ageMs <= maxAge
      ? {
          name: 'verify',
          ok: true,
          detail: `run ${facts.last.runId} was clean, ${fmtAge(facts.last.ageMs)} ago`,
        }
      : {
          name: 'verify',
          ok: false,
          detail: !facts.last
            ? 'no verify run has finished for this job'
            : facts.last.state !== 'match'
              ? `the last verify (run ${facts.last.runId}) found differences`
              : `the last clean verify (run ${facts.last.runId}) is ${fmtAge(facts.last.ageMs)} old (limit ${fmtAge(maxAge)})`,
          hint: `run \`reshard verify --plan ${ctx.planPath}${facts.last?.state === 'match' ? ' --incremental' : ''}\` first`,
        },
  );

  const identities = await sessions.identities();
  const freeze = opts.readsOnly ? [] : freezeSet('cutover', ctx.plan, identities);
  const rttMs: number[] = [await rtt(() => ctx.control.conn.query('SELECT 1'))];
  if (!opts.readsOnly) {
    // The freeze now, and a rollback later (which freezes the new shards), need the same rights.
    const rollbackFreeze = freezeSet('rollback', ctx.plan, identities);
    const problems: string[] = [];
    for (const s of [...freeze, ...rollbackFreeze.filter((r) => !freeze.some((f) => f.key === r.key))]) {
      const info = sessions.infos.get(`${s.via.side}:${s.via.shard}`)!;
      const p = await sessions.run(s.via, `checking privileges on ${s.address}`, (c) =>
        freezePrivilegeProblems(c, info),
      );
      for (const x of p) problems.push(`${s.address} (${info.currentUser}): ${x}`);
      rttMs.push(await sessions.run(s.via, `ping ${s.address}`, (c) => rtt(() => c.query('SELECT 1'))));
    }
    add(
      problems.length === 0
        ? {
            name: 'freeze privileges',
            ok: true,
            detail: `reshard may freeze ${freeze.map((s) => s.address).join(', ')} and write while they are read-only`,
          }
        : {
            name: 'freeze privileges',
            ok: false,
            detail: problems.join('; '),
            hint: "GRANT READ_ONLY ADMIN, CONNECTION ADMIN, PROCESS, SUPER ON *.* TO reshard's account (MariaDB; MySQL: SUPER or SYSTEM_VARIABLES_ADMIN + CONNECTION_ADMIN + PROCESS); application accounts must NOT have them",
          },
    );
  }
  if (!opts.readsOnly) {
    const problems = await reverseReplicationProblems(ctx, opts.metaDb ?? DEFAULTS.metaDb);
    add(
      problems.length === 0
        ? {
            name: 'reverse replication',
            ok: true,
            detail: `after the flip reshard may read the binlogs of ${ctx.to.shards.map((s) => s.name).join(', ')} and write into ${ctx.from.shards.map((s) => s.name).join(', ')}`,
          }
        : {
            name: 'reverse replication',
            ok: false,
            detail: problems.map((p) => p.message).join('; '),
            hint: problems.map((p) => p.hint).join('; '),
          },
    );
  }
  return { checks, freeze, facts, rttMs };
}

/**
 * What reverse replication needs, read again before anything is frozen: it tails the new shards
 * (binlog settings, replication rights) and writes into the old shards' tables and meta database.
 * Copy's preflight checked the same, but settings and grants may have changed since; found
 * missing only after the flip, the reverse tailer would stop while the application writes to
 * the new shards, and a rollback would lose those writes.
 */
async function reverseReplicationProblems(ctx: JobContext, metaDb: string): Promise<PreflightIssue[]> {
  const report = await runPreflight({
    from: ctx.from,
    to: ctx.to,
    roles: { from: ['target'], to: ['source'] },
    metaDb,
  });
  // Table definitions are the tailer's to follow (DDL) once the copy has begun; not re-judged here.
  return report.failures.filter((f) => f.check === 'connect' || f.check === 'grants' || f.check === 'binlog');
}

function summary(freeze: FreezeServer[]): ServerSummary[] {
  return freeze.map((s) => ({
    address: s.address,
    shards: s.shards,
    inPlace: s.inPlace,
    staysFrozen: !s.inPlace,
  }));
}

function failedChecks(checks: Check[]): PreconditionError {
  const bad = checks.filter((c) => !c.ok);
  return new PreconditionError(
    'E_CUTOVER_PRECONDITION',
    `cutover preconditions failed: ${bad.map((c) => `${c.name}: ${c.detail}`).join('; ')}`,
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

// ---------------------------------------------------------------------------------------------

export async function runCutover(options: CutoverOptions): Promise<CutoverResult> {
  const opts = {
    ...options,
    maxFreezeMs: options.maxFreezeMs ?? DEFAULTS.maxFreezeMs,
    maxLagMs: options.maxLagMs ?? DEFAULTS.maxLagMs,
    verifyMaxAgeMs: options.verifyMaxAgeMs ?? DEFAULTS.verifyMaxAgeMs,
    metaDb: options.metaDb ?? DEFAULTS.metaDb,
  };
  if (opts.canary !== undefined && !opts.readsOnly) {
    throw new UsageError(
      'E_CUTOVER_CANARY',
      '--canary needs --reads-only: only reads can be flipped per segment',
      {
        hint: 'a write canary would need the tailers to split segments between the two directions, which they do not; use --reads-only --canary F, then a full cutover',
      },
    );
  }
  if (opts.canary !== undefined && !(opts.canary > 0 && opts.canary <= 1)) {
    throw new UsageError('E_CUTOVER_CANARY', `--canary must be a fraction in (0, 1], got ${opts.canary}`);
  }
  const ctx = await openJob({ planPath: opts.planPath, control: opts.control, create: false });
  const sessions = new ServerSessions(ctx);
  const notes: string[] = [];
  const note = (t: string) => {
    notes.push(t);
    opts.onNote?.(t);
  };
  const e: EngineContext = {
    ctx,
    op: opts.readsOnly ? 'reads' : 'cutover',
    sessions,
    note,
    routingOut: opts.routingOut,
    onFlip: opts.onFlip,
  };
  let release: (() => Promise<void>) | undefined;
  let drainer: Drainer | undefined;
  const jobOf = (state: JobState) => ({ id: ctx.job.id, name: ctx.job.name, state });
  try {
    if (opts.execute) {
      release = await lockJob(ctx);
      const journal = await readJournal(ctx.control.conn, ctx.job.id);
      // An unfinished switch of another reshard version is refused before anything is written.
      checkJournal(journal, ['cutover', 'rollback', 'reads']);
      if (lastAttempt(journal, 'rollback')?.open) {
        throw new PreconditionError(
          'E_ROLLBACK_IN_PROGRESS',
          `a rollback of job ${ctx.job.name} did not finish`,
          {
            hint: `re-run \`reshard rollback --plan ${ctx.planPath} --execute\` to finish it`,
          },
        );
      }
      // A crashed reads flip: finish (after its flip) or drop it (before).
      const reads = await recoverSwitch({ ...e }, 'reads');
      if (reads.state === 'resume') await finishSwitch({ ...e, op: 'reads' }, reads.attempt!);
      const rec = await recoverSwitch(e, 'cutover');
      if (rec.state === 'resume') {
        note(
          `cutover: attempt ${rec.attempt!.number} had flipped the routing; finishing its remaining steps`,
        );
        const fin = await finishSwitch({ ...e, op: 'cutover' }, rec.attempt!);
        const servers: FreezeServer[] = stepDetail(rec.attempt!, 'freeze', 'started')?.servers ?? [];
        return {
          ok: true,
          job: jobOf(await currentJobState(ctx)),
          mode: 'resumed',
          checks: [],
          freezeServers: summary(servers),
          notes,
          ...fin,
          reverseStart: stepDetail(rec.attempt!, 'arm-reverse', 'done')?.positions ?? {},
        };
      }
    }

    const state = await currentJobState(ctx);
    if (state === 'cut-over' && !opts.readsOnly) {
      return {
        ok: true,
        job: jobOf(state),
        mode: 'already-cut-over',
        checks: [{ name: 'job', ok: true, detail: `job ${ctx.job.name} is already cut over` }],
        freezeServers: [],
        steps: [],
        notes,
      };
    }
    const prep = await check(ctx, sessions, opts, state);
    const { checks, freeze, facts } = prep;
    const verifyMode: 'incremental' | 'full' = facts.tracking ? 'incremental' : 'full';
    const verifyMs =
      verifyMode === 'incremental' ? (facts.lastIncrementalMs ?? facts.lastFullMs) : facts.lastFullMs;
    if (!facts.tracking && !opts.readsOnly) {
      note('the tailer records no changed rows for this job, so the verify under the freeze is a full one');
    }

    drainer = new Drainer({
      ctx,
      direction: 'forward',
      metaDb: opts.metaDb,
      onNote: (t) => note(`tail: ${t}`),
    });
    const external: string[] = [];
    for (const s of drainer.sources) if (await drainer.externalTailer(s)) external.push(s);

    if (opts.readsOnly) {
      // Reads go to the new shards while writes stay: a running tailer must keep them fresh.
      const lag = await drainer.reportedLag(external);
      const missing = drainer.sources.filter((s) => !external.includes(s));
      // A tailer that holds its lock but has reported no lag yet (it is starting, or its status
      // write failed) could be any distance behind: not ready, rather than passed unchecked.
      const unknown = external.filter((s) => !lag.has(s));
      const slow = [...lag].filter(([s, l]) => external.includes(s) && l * 1000 > opts.maxLagMs);
      checks.push(
        missing.length === 0 && unknown.length === 0 && slow.length === 0
          ? {
              name: 'tail lag',
              ok: true,
              detail: `reshard tail is running for every source, lag ≤ ${opts.maxLagMs} ms`,
            }
          : {
              name: 'tail lag',
              ok: false,
              detail: missing.length
                ? `no reshard tail is running for ${missing.join(', ')}`
                : unknown.length
                  ? `the reshard tail of ${unknown.join(', ')} has not reported its lag yet`
                  : `lag over ${opts.maxLagMs} ms on ${slow.map(([s, l]) => `${s} (${l.toFixed(1)} s)`).join(', ')}`,
              hint: 'reads-first needs `reshard tail` running (it keeps the new shards fresh while writes stay on the old ones)',
            },
      );
      if (!opts.execute) {
        return {
          ok: checks.every((c) => c.ok),
          job: jobOf(state),
          mode: 'dry-run',
          checks,
          freezeServers: [],
          steps: [],
          notes,
        };
      }
      if (!checks.every((c) => c.ok)) throw failedChecks(checks);
      await ensureActiveRouting(ctx, routingFromTopology(ctx.from, null));
      return { ...(await executeReads(e, opts, checks, jobOf)), notes };
    }

    // ---- measure: catch up, probe the drain, predict the freeze
    const probesMs: number[] = [];
    let backlogBytes: number | undefined;
    if (opts.execute) {
      if (!checks.every((c) => c.ok)) throw failedChecks(checks);
      const baseline = await ensureActiveRouting(ctx, routingFromTopology(ctx.from, null));
      if (baseline !== undefined) note(`recorded the old topology as active routing version ${baseline}`);
      await drainer.start();
      const first = await drainer.probe(Date.now() + CATCH_UP_TIMEOUT_MS).catch((err: unknown) => {
        throw new PreconditionError(
          'E_CUTOVER_LAG',
          `cutover: could not catch up before freezing: ${(err as Error).message}`,
          {
            hint: 'let `reshard tail` catch up first (its lag must be under --max-lag), then re-run',
            cause: err,
          },
        );
      });
      note(`caught up in ${first.ms} ms (backlog ${first.backlogBytes} binlog bytes)`);
      for (let i = 0; i < PROBES; i++) {
        const p = await drainer.probe(Date.now() + 60_000);
        probesMs.push(p.ms);
        backlogBytes = p.backlogBytes;
      }
    } else if (external.length === drainer.sources.length && drainer.sources.length > 0) {
      for (const s of drainer.sources) drainer.mode.set(s, 'external');
      for (let i = 0; i < 2; i++) {
        const p = await drainer.probe(Date.now() + 30_000);
        probesMs.push(p.ms);
        backlogBytes = p.backlogBytes;
      }
    } else {
      note(
        'no `reshard tail` is running: the drain is measured by --execute, which catches up in-process first',
      );
    }
    const lagMs = probesMs.length ? probesMs[probesMs.length - 1]! : undefined;
    const reported = await drainer.reportedLag();
    const reportedMax = Math.max(0, ...[...reported.values()].map((l) => l * 1000));
    if (lagMs !== undefined) {
      const worst = Math.max(lagMs, reportedMax);
      checks.push(
        worst <= opts.maxLagMs
          ? {
              name: 'tail lag',
              ok: true,
              detail: `the targets apply the sources' writes within ${Math.round(worst)} ms`,
            }
          : {
              name: 'tail lag',
              ok: false,
              detail: `the targets are ${Math.round(worst)} ms behind (limit ${opts.maxLagMs} ms)`,
              hint: 'wait until the tailer keeps up (lower the write load or raise --max-lag), then re-run',
            },
      );
    }
    const viaOtherProcess = [...drainer.mode.values()].includes('external');
    const prediction = predictFreeze({
      probesMs,
      flushMs: viaOtherProcess ? EXTERNAL_FLUSH_MS : 0,
      verifyMs,
      rttMs: prep.rttMs,
      budgetMs: opts.maxFreezeMs,
    });
    if (prediction.totalMs !== undefined || opts.execute) {
      checks.push(
        prediction.fits
          ? {
              name: 'freeze budget',
              ok: true,
              detail: `predicted freeze ${prediction.totalMs} ms ≤ ${opts.maxFreezeMs} ms`,
            }
          : {
              name: 'freeze budget',
              ok: false,
              detail:
                prediction.totalMs === undefined
                  ? 'the freeze cannot be predicted (no verify duration known)'
                  : `predicted freeze ${prediction.totalMs} ms (drain ${prediction.drainMs} + verify ${prediction.verifyMs} + overhead ${prediction.overheadMs}) exceeds --max-freeze ${opts.maxFreezeMs} ms`,
              hint: 'nothing was frozen; lower the load, verify incrementally closer to the cutover, or raise --max-freeze',
            },
      );
    }
    const drainModes = Object.fromEntries(drainer.mode);
    const base = {
      job: jobOf(state),
      checks,
      prediction: { ...prediction, verifyMode, backlogBytes, probesMs },
      freezeServers: summary(freeze),
      drain: drainModes,
      notes,
    };
    if (!opts.execute) {
      await drainer.close();
      return { ...base, ok: checks.every((c) => c.ok), mode: 'dry-run', steps: [] };
    }
    const bad = checks.filter((c) => !c.ok);
    if (bad.length) {
      await drainer.close();
      const budget = bad.find((c) => c.name === 'freeze budget');
      if (budget && bad.length === 1) {
        throw new PreconditionError('E_CUTOVER_FREEZE_BUDGET', `cutover: ${budget.detail}`, {
          hint: budget.hint,
          data: { prediction },
        });
      }
      throw failedChecks(checks);
    }

    // ---- switch
    const fence = drainer;
    const outcome = await executeSwitch(e, {
      direction: 'forward',
      freeze,
      budgetMs: opts.maxFreezeMs,
      drainer,
      verify: async (signal) => {
        // Writes are frozen and drained: from here no copy page in flight may land (the flip
        // follows the verify).
        await fence.fenceCopy();
        const report = await runVerify({
          ctx,
          incremental: verifyMode === 'incremental',
          preflight: false,
          recheck: { rounds: 1, tailerTimeoutMs: 200, pauseMs: 0 },
          ...(signal ? { signal } : {}),
        });
        if (!report.ok) throw mismatch('cutover', report);
        if ((await currentJobState(ctx)) === 'catching-up') {
          await transitionJob(ctx.control.conn, ctx.job.id, 'catching-up', 'verified', {
            verifyRun: report.runId,
            by: 'cutover',
          });
        }
        return { runId: report.runId, mode: report.mode, seconds: report.seconds };
      },
      armReverse: reverseSources(ctx),
      flip: {
        document: fullRouting(ctx.to, ctx.job.name),
        expect: ['none', 'from', 'reads'],
        jobFrom: ['verified'],
        jobTo: 'cut-over',
        baseline: fullRouting(ctx.from, ctx.job.name),
      },
      beginDetail: { maxFreezeMs: opts.maxFreezeMs, prediction, verifyMode },
    });
    if (Object.values(drainModes).includes('external')) {
      note(
        'stop the forward `reshard tail` now (the old shards are frozen: it has nothing left to apply) and start `reshard tail --reverse`',
      );
    } else {
      note('start `reshard tail --reverse` to keep the old shards current for a rollback');
    }
    return { ...base, ok: true, mode: 'cutover', job: jobOf(await currentJobState(ctx)), ...outcome };
  } finally {
    await drainer?.close().catch(() => undefined);
    await release?.().catch(() => undefined);
    await sessions.close();
    await ctx.close();
  }
}

/** Reads first: one routing version whose reads go to the new shards (or a canary of them). */
async function executeReads(
  e: EngineContext,
  opts: CutoverOptions,
  checks: Check[],
  jobOf: (s: JobState) => CutoverResult['job'],
): Promise<CutoverResult> {
  const { ctx } = e;
  const conn = ctx.control.conn;
  const state = await currentJobState(ctx);
  const canary = opts.canary === undefined ? undefined : canaryPairs(ctx.plan, opts.canary);
  const document = readsRouting(ctx.from, ctx.to, ctx.job.name, canary);
  const number = (await readJournal(conn, ctx.job.id)).filter((r) => r.step === 'reads.begin').length + 1;
  await appendJournal(conn, ctx.job.id, 'reads', 'begin', 'started', {
    attempt: number,
    pid: process.pid,
    ...(canary ? { canary } : {}),
    ...beginHeader(),
  });
  await appendJournal(conn, ctx.job.id, 'reads', 'flip', 'started', {});
  crashPoint('reads', 'flip', 'before');
  const t0 = Date.now();
  await flipTransaction(
    { ...e, op: 'reads' },
    {
      document,
      expect: ['none', 'from', 'reads'],
      jobFrom: [state],
      jobTo: state,
      baseline: fullRouting(ctx.from, ctx.job.name),
    },
  );
  crashPoint('reads', 'flip', 'after');
  const attempt = lastAttempt(await readJournal(conn, ctx.job.id), 'reads')!;
  const fin = await finishSwitch({ ...e, op: 'reads' }, attempt, [{ step: 'flip', ms: Date.now() - t0 }]);
  if (canary)
    e.note(`reads canary: ${canary.map((p) => `${p.from}→${p.to}`).join(', ')} read from the new shards`);
  return {
    ok: true,
    job: jobOf(state),
    mode: 'reads-only',
    checks,
    freezeServers: [],
    notes: [],
    steps: fin.steps,
    routingVersion: fin.routingVersion,
    publish: fin.publish,
  };
}
