/**
 * Running the full pass's scans: in this thread, or spread over worker threads so that hashing
 * (the client's share of a verify) uses more than one core.
 *
 * Lifecycle: runScans() → start W workers (each builds the routers from the plan and topologies
 * once) → hand out (shard, table) tasks, `perWorker` at a time each → collect the partial sums →
 * terminate the workers (also on error or abort). A task's result is plain data (scan-part.ts).
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import pLimit from 'p-limit';
import { ReshardError } from '../errors.js';
import type { Plan } from '../plan/types.js';
import type { Topology } from '../topology/types.js';
import { startWorkerBeside } from '../util/worker.js';
import type { Routing, ShardRole } from './routing.js';
import { type ScanPart, type ScanPartData, scanPart, scanPartFromData, type TablePlan } from './scan-part.js';

export interface ScanTask {
  shard: ShardRole;
  plan: TablePlan;
}

/** What a worker needs to rebuild the routing (sent once, at start). */
export interface WorkerInit {
  plan: Plan;
  from: Topology;
  to: Topology;
}

export interface WorkerRequest {
  id: number;
  shard: string;
  plan: TablePlan;
  pageSize: number;
  maxMisplaced: number;
}

export type WorkerMessage =
  | { type: 'tick'; n: number }
  | { type: 'done'; id: number; part: ScanPartData }
  | { type: 'error'; id: number; error: SerializedError };

export interface SerializedError {
  kind?: string;
  code?: string;
  message: string;
  hint?: string;
  where?: string;
  stack?: string;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof ReshardError)
    return {
      kind: e.kind,
      code: e.code,
      message: e.message,
      ...(e.hint ? { hint: e.hint } : {}),
      ...(e.where ? { where: e.where } : {}),
    };
  const err = e as Error;
  return { message: err?.message ?? String(e), ...(err?.stack ? { stack: err.stack } : {}) };
}

function revive(e: SerializedError): Error {
  if (e.kind && e.code) {
    return new ReshardError(e.kind as ReshardError['kind'], e.code, e.message, {
      ...(e.hint ? { hint: e.hint } : {}),
      ...(e.where ? { where: e.where } : {}),
    });
  }
  const err = new Error(e.message);
  if (e.stack) err.stack = e.stack;
  return err;
}

export interface RunScansOptions {
  tasks: ScanTask[];
  routing: Routing;
  init: WorkerInit;
  /** Worker threads; 0 scans in this thread. */
  workers: number;
  /** Scans in flight over all threads. */
  concurrency: number;
  pageSize: number;
  maxMisplaced: number;
  tick: (n: number) => void;
  signal?: AbortSignal | undefined;
}

/** Worker threads worth starting for a pass of about `rows` rows (0: not worth the start-up). */
export function defaultWorkers(rows: number, tasks: number, concurrency: number): number {
  if (rows < 200_000) return 0;
  return Math.max(0, Math.min(availableParallelism(), concurrency, tasks));
}

export async function runScans(o: RunScansOptions): Promise<{ task: ScanTask; part: ScanPart }[]> {
  if (o.workers <= 0 || o.tasks.length === 0) {
    const limit = pLimit(Math.max(1, o.concurrency));
    return Promise.all(
      o.tasks.map((task) =>
        limit(async () => ({
          task,
          part: await scanPart(
            task.shard,
            task.plan,
            o.routing,
            o.pageSize,
            o.maxMisplaced,
            o.tick,
            o.signal,
          ),
        })),
      ),
    );
  }
  return runOnWorkers(o);
}

/** Start a scan worker (scan-worker.ts, beside this module). */
function startWorker(init: WorkerInit): Worker {
  return startWorkerBeside(import.meta.url, 'scan-worker', init);
}

async function runOnWorkers(o: RunScansOptions): Promise<{ task: ScanTask; part: ScanPart }[]> {
  const n = Math.min(o.workers, o.tasks.length);
  const perWorker = Math.max(1, Math.ceil(o.concurrency / n));
  const results: { task: ScanTask; part: ScanPart }[] = new Array(o.tasks.length);
  const workers: Worker[] = [];
  let next = 0;
  let done = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (e: unknown) => {
        if (failed) return;
        failed = true;
        reject(e);
      };
      o.signal?.addEventListener('abort', () => fail(o.signal?.reason), { once: true });
      const give = (w: Worker) => {
        if (failed || next >= o.tasks.length) return;
        const id = next++;
        const task = o.tasks[id]!;
        const req: WorkerRequest = {
          id,
          shard: task.shard.name,
          plan: task.plan,
          pageSize: o.pageSize,
          maxMisplaced: o.maxMisplaced,
        };
        w.postMessage(req);
      };
      for (let i = 0; i < n; i++) {
        const w = startWorker(o.init);
        workers.push(w);
        w.on('message', (m: WorkerMessage) => {
          if (m.type === 'tick') o.tick(m.n);
          else if (m.type === 'error') fail(revive(m.error));
          else {
            results[m.id] = { task: o.tasks[m.id]!, part: scanPartFromData(m.part) };
            if (++done === o.tasks.length) resolve();
            else give(w);
          }
        });
        w.on('error', fail);
        w.on('exit', (code) => {
          if (done < o.tasks.length)
            fail(
              new ReshardError(
                'bug',
                'E_BUG',
                `verify: a scan worker exited (code ${code}) before finishing`,
              ),
            );
        });
        for (let k = 0; k < perWorker; k++) give(w);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate().catch(() => undefined)));
  }
  return results;
}
