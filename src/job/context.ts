/**
 * The job context every stage command starts from: the plan file, the two topologies it was made
 * from (re-read and checked for drift), the plan index (segments, owners, SQL predicates), the
 * control connection, and the job row that executes the plan.
 *
 * One plan is executed by one job; the job is found by the plan's hash, so any command can be
 * re-run after a crash and picks up the same job.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { indexPlan, type PlanIndex } from '../plan/plan-index.js';
import { planHash as computePlanHash, readPlanFile, serializePlan } from '../plan/planfile.js';
import type { Plan } from '../plan/types.js';
import { type ControlConnection, createJob, getJobByName, type Job, openControl } from '../state/control.js';
import { loadTopology } from '../topology/load.js';
import type { Topology } from '../topology/types.js';
import { VERSION } from '../version.js';

export interface JobContext {
  planPath: string;
  plan: Plan;
  /** Plan hash without the "sha256:" prefix. */
  planHash: string;
  from: Topology;
  to: Topology;
  index: PlanIndex;
  control: ControlConnection;
  job: Job;
  close(): Promise<void>;
}

/** Topology paths in a plan are taken relative to the plan file, then to the working directory. */
export function resolveTopologyPath(planPath: string, file: string): string {
  if (isAbsolute(file)) return file;
  const nextToPlan = resolve(dirname(planPath), file);
  return existsSync(nextToPlan) ? nextToPlan : resolve(file);
}

export interface OpenJobOptions {
  planPath: string;
  /** Override the topology files recorded in the plan. */
  fromPath?: string;
  toPath?: string;
  /** --control DSN (else RESHARD_CONTROL_DSN). */
  control?: string;
  /** Create the job if none exists for this plan (copy does; later stages require it). */
  create: boolean;
}

export function jobNameFor(planHash: string): string {
  return `plan-${planHash.slice(0, 16)}`;
}

/** Load and check the plan and topologies (no server contact). */
export function loadPlanContext(opts: Pick<OpenJobOptions, 'planPath' | 'fromPath' | 'toPath'>): {
  plan: Plan;
  planHash: string;
  from: Topology;
  to: Topology;
  index: PlanIndex;
} {
  // First read without topologies to learn their paths, then re-read checked against them.
  const unchecked = readPlanFile(opts.planPath);
  const from = loadTopology(opts.fromPath ?? resolveTopologyPath(opts.planPath, unchecked.from.file));
  const to = loadTopology(opts.toPath ?? resolveTopologyPath(opts.planPath, unchecked.to.file));
  const plan = readPlanFile(opts.planPath, from, to);
  const planHash = planHashOf(plan);
  return { plan, planHash, from, to, index: indexPlan(plan, from, to) };
}

function planHashOf(plan: Plan): string {
  return computePlanHash(plan).replace(/^sha256:/, '');
}

/**
 * Whether checkpoints written by reshard `a` can be read by reshard `b`: the same major version,
 * and below 1.0 the same minor too (0.x minors may change what a checkpoint means). A job's
 * checkpoints (copy bounds, positions, verify runs) are read by the version that wrote them.
 */
export function sameStateFormat(a: string, b: string): boolean {
  const parse = (v: string) => /^(\d+)\.(\d+)\./.exec(v);
  const x = parse(a);
  const y = parse(b);
  if (!x || !y || x[1] !== y[1]) return false;
  return x[1] !== '0' || x[2] === y[2];
}

export async function openJob(opts: OpenJobOptions): Promise<JobContext> {
  const base = loadPlanContext(opts);
  const control = await openControl(opts.control);
  try {
    const name = jobNameFor(base.planHash);
    let job = await getJobByName(control.conn, name);
    if (!job) {
      if (!opts.create) {
        const { PreconditionError } = await import('../errors.js');
        throw new PreconditionError('E_NO_JOB', `no job executes plan ${opts.planPath} yet`, {
          hint: `start it with \`reshard copy --plan ${opts.planPath} --execute\``,
        });
      }
      await control.conn.query(
        `INSERT IGNORE INTO reshard_plans (plan_hash, format_version, source_topology_hash, target_topology_hash, body, reshard_version)
         VALUES (?, ?, ?, ?, ?, ?)`,
        [
          base.planHash,
          base.plan.planVersion,
          base.plan.from.topologyHash,
          base.plan.to.topologyHash,
          serializePlan(base.plan),
          VERSION,
        ],
      );
      try {
        job = await createJob(control.conn, { name, planHash: base.planHash });
      } catch (e) {
        // Another worker created it between our read and our insert: use theirs.
        if ((e as { code?: string }).code !== 'E_JOB_EXISTS') throw e;
        job = await getJobByName(control.conn, name);
        if (!job) throw e;
      }
    }
    if (!sameStateFormat(job.reshardVersion, VERSION)) {
      const { PreconditionError } = await import('../errors.js');
      throw new PreconditionError(
        'E_JOB_VERSION',
        `job ${job.name} was started by reshard ${job.reshardVersion}; this is reshard ${VERSION}, which may read its checkpoints differently`,
        {
          hint: `finish the job, or cancel it (reshard rollback --execute), with reshard ${job.reshardVersion} (the same major and minor version); then start new jobs with this one`,
          data: { job: job.name, startedBy: job.reshardVersion, version: VERSION },
        },
      );
    }
    return { planPath: opts.planPath, ...base, control, job, close: () => control.close() };
  } catch (e) {
    await control.close();
    throw e;
  }
}
