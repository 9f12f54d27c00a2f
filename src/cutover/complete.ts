/**
 * `reshard complete`: end the rollback window of a cut-over job (state cut-over → completed).
 *
 * After cutover the old shards are kept current by reverse replication, so `reshard rollback`
 * can route back without losing a write. Completing declares the new layout final: rollback is
 * refused from then on, and `reshard cleanup` (which deletes the moved rows from their old shards,
 * and so would make a rollback lose them) is allowed. That is why completion is a step of its own
 * and not a side effect of cutover or of stopping the reverse tailer.
 *
 * Preconditions, all checked before anything is written (exit 3 otherwise):
 *   - the job is `cut-over` (an already `completed` job is reported, not an error);
 *   - no cutover, rollback or reads-first switch of the job is running or left unfinished: with
 *     --execute we hold the job lock cutover and rollback hold, and an attempt still open in the
 *     journal (it crashed, e.g. a rollback killed after freezing the new shards) must be finished
 *     by re-running its command first — completing over it would close the rollback window with
 *     the authoritative shards still read-only;
 *   - the active routing is this job's new topology (nobody rolled back or re-routed by hand);
 *   - no reverse tailer of the job is running: it holds an advisory lock per source on the
 *     control server (see tailLockName), and a running one would keep writing to the old shards
 *     after the window closed. While completing we hold those locks ourselves, so a reverse
 *     tailer started at that moment cannot take them and exits (E_TAIL_RUNNING); one started
 *     afterwards refuses the `completed` state.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { tailLockName } from '../binlog/status.js';
import { PreconditionError } from '../errors.js';
import { openJob } from '../job/context.js';
import { transitionJob } from '../state/control.js';
import { readActiveRouting } from '../status/routing.js';
import type { Check } from './cutover.js';
import { movingPairs } from './drain.js';
import { lockJob } from './engine.js';
import { checkJournal, lastAttempt, type Op, readJournal } from './journal.js';
import { classifyActive } from './routing.js';

export interface CompleteOptions {
  planPath: string;
  control?: string | undefined;
  execute: boolean;
}

export interface CompleteResult {
  job: { name: string; state: string };
  /** 'dry-run' (checked only), 'completed' (moved now) or 'already-completed'. */
  mode: 'dry-run' | 'completed' | 'already-completed';
  ok: boolean;
  checks: Check[];
}

export async function runComplete(opts: CompleteOptions): Promise<CompleteResult> {
  const ctx = await openJob({ planPath: opts.planPath, control: opts.control, create: false });
  const conn = ctx.control.conn;
  const held: string[] = [];
  let release: (() => Promise<void>) | undefined;
  try {
    // One switch at a time: a rollback running now could otherwise flip the job back between
    // our checks and the transition, or freeze the new shards under a completed job.
    if (opts.execute) release = await lockJob(ctx);
    const job = ctx.job;
    if (job.state === 'completed')
      return { job: { name: job.name, state: job.state }, mode: 'already-completed', ok: true, checks: [] };
    if (job.state !== 'cut-over') {
      throw new PreconditionError(
        'E_COMPLETE_STATE',
        `job ${job.name} is '${job.state}': only a job that is cut over can be completed`,
        {
          hint:
            job.state === 'rolled-back' || job.state === 'cancelled'
              ? 'this job was undone; there is nothing to complete'
              : 'finish the reshard first: copy, tail, verify, `reshard cutover --execute`',
          data: { state: job.state },
        },
      );
    }

    const checks: Check[] = [];
    const journal = await readJournal(conn, job.id);
    // An unfinished switch of another reshard version: refused with the version that can finish it.
    checkJournal(journal, ['rollback', 'cutover', 'reads']);
    const unfinished = (['rollback', 'cutover', 'reads'] as const satisfies readonly Op[]).filter(
      (op) => lastAttempt(journal, op)?.open,
    );
    checks.push(
      unfinished.length === 0
        ? { name: 'journal', ok: true, detail: 'no cutover, rollback or reads switch is unfinished' }
        : {
            name: 'journal',
            ok: false,
            detail: `a ${unfinished[0]} of this job did not finish (it may have left shards read-only)`,
            hint: `re-run \`reshard ${unfinished[0] === 'rollback' ? 'rollback' : 'cutover'} --plan ${ctx.planPath} --execute\` to finish or undo it, then complete`,
          },
    );
    const active = await readActiveRouting(conn);
    const kind = classifyActive(active?.document, ctx.from, ctx.to, job.name);
    checks.push(
      kind === 'to'
        ? {
            name: 'routing',
            ok: true,
            detail: `active routing version ${active!.version.version} routes reads and writes by the new topology`,
          }
        : {
            name: 'routing',
            ok: false,
            detail: `the active routing (version ${active?.version.version ?? 'none'}) is not this job's new topology`,
            hint: 'someone changed the routing since the cutover; check `reshard status` before completing',
          },
    );

    const sources = [...new Set(movingPairs(ctx.plan, 'reverse').map((p) => p.source))];
    const running: string[] = [];
    for (const s of sources) {
      const name = tailLockName(ctx.control.database, job.id, 'reverse', s);
      if (opts.execute) {
        // Hold the lock through the transition: a reverse tailer starting now cannot run.
        const [rows] = await conn.query<RowDataPacket[]>('SELECT GET_LOCK(?, 0) AS got', [name]);
        if (Number(rows[0]?.got) === 1) held.push(name);
        else running.push(s);
      } else {
        const [rows] = await conn.query<RowDataPacket[]>('SELECT IS_USED_LOCK(?) AS holder', [name]);
        if (rows[0]?.holder !== null && rows[0]?.holder !== undefined) running.push(s);
      }
    }
    checks.push(
      running.length === 0
        ? { name: 'reverse tailer', ok: true, detail: 'no reverse tailer of this job is running' }
        : {
            name: 'reverse tailer',
            ok: false,
            detail: `reverse replication is still running from ${running.join(', ')}`,
            hint: 'stop `reshard tail --reverse` (SIGTERM; it finishes its current transactions) once you no longer need a rollback, then complete',
          },
    );

    const ok = checks.every((c) => c.ok);
    if (!opts.execute || !ok)
      return { job: { name: job.name, state: job.state }, mode: 'dry-run', ok, checks };
    const updated = await transitionJob(conn, job.id, 'cut-over', 'completed', {
      by: 'reshard complete',
      routingVersion: active?.version.version,
    });
    return { job: { name: updated.name, state: updated.state }, mode: 'completed', ok: true, checks };
  } finally {
    for (const name of held) await conn.query('SELECT RELEASE_LOCK(?)', [name]).catch(() => undefined);
    await release?.().catch(() => undefined);
    await ctx.close();
  }
}
