/**
 * runCopy: one copy worker. Any number of them (on any hosts) may run for one job at once; they
 * share the work through chunk claims in the control schema. See README.md for the lifecycle.
 *
 *   preflight (nothing written before it passes) → open/create the job → identity lock →
 *   record start positions (once per job) → planned → copying → per source, N slots:
 *     admit (throttle) → claim an abandoned chunk, or create the next one → copy page(s) →
 *     mark done (checkpoint) → …
 *   → when every chunk of the job is done: copying → catching-up.
 */

import { hostname } from 'node:os';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import pLimit from 'p-limit';
import { jobOwner, sourceOwnerFn, TargetApplier } from '../apply/applier.js';
import { connectShard } from '../db/connect.js';
import { q } from '../db/quote.js';
import { classifyError, sleep } from '../db/retry.js';
import { PreconditionError, ReshardError, RetriesExhaustedError } from '../errors.js';
import { type JobContext, loadPlanContext, openJob } from '../job/context.js';
import { copyMetrics } from '../metrics/index.js';
import { log } from '../output.js';
import { assertPreflight, runPreflight } from '../preflight/index.js';
import { appendEvent, connectControl, getJob, type JobState, transitionJob } from '../state/control.js';
import type { Shard } from '../topology/types.js';
import { type Chunk, ChunkStore, ControlSession, chunkKey } from './claims.js';
import { readCopyControl } from './control.js';
import {
  SourceLostError,
  SourceSession,
  streamPage,
  type TableJob,
  TargetPool,
  TargetWriter,
  writeStreamedPage,
} from './copier.js';
import { type RecordedPosition, recordStartPositions } from './position.js';
import { createProgress, type Progress, type ProgressMode } from './progress.js';
import { buildTableJobs, sourcePlans } from './setup.js';
import { ChunkSizer, createThrottler, type Throttler } from './throttle.js';

export interface RunCopyOptions {
  planPath: string;
  /** Control DSN (else RESHARD_CONTROL_DSN). */
  control?: string;
  /** Rows/s this worker writes over all targets; 0 or undefined = unlimited. */
  rate?: number;
  /** Rows/s this worker writes to each target; 0 or undefined = unlimited. */
  targetRate?: number;
  /** Chunks in flight per source, and concurrent writers per target (default 2). */
  concurrency?: number;
  /** Target duration of one chunk (read + write), ms (default 500). */
  chunkTimeMs?: number;
  /** Wait while a source or target has more running threads than this (default 50). */
  maxThreadsRunning?: number;
  /** Database on each target for the applier's own tables (default `_reshard`). */
  metaDb?: string;
  /** This worker's name in chunk claims (default host:pid). */
  workerId?: string;
  /** Chunk claim lease, ms (default 60 s, or RESHARD_COPY_LEASE_MS). */
  leaseMs?: number;
  progress?: ProgressMode;
  /** Abort = graceful stop: no new chunks, chunks in flight finish, claims are given back. */
  signal?: AbortSignal;
  /** Install SIGUSR1 (pause) / SIGUSR2 (resume) / SIGINT, SIGTERM (graceful stop) handlers. */
  handleSignals?: boolean;
  /** Throttle: give up after a server's load is unreadable this long (default 5 min). */
  maxBlindMs?: number;
  /** false: write every row through the applier, never LOAD DATA (default true; RESHARD_COPY_BULK=0). */
  bulk?: boolean;
  /** Called after each chunk this worker finishes (tests, bench). */
  onChunkDone?: (e: {
    source: string;
    table: string;
    chunkId: number;
    rows: number;
    attempts: number;
  }) => void;
}

export interface CopyTableSummary {
  source: string;
  table: string;
  /** Rows this worker wrote. */
  rows: number;
  chunks: number;
  /** All workers, all runs. */
  rowsTotal: number;
  state: string;
  misplaced: number;
}

export interface CopySummary {
  ok: boolean;
  job: { id: number; name: string; state: JobState };
  workerId: string;
  /** The job was already past copying when this worker started. */
  alreadyCopied: boolean;
  /** Every chunk of the job is done. */
  complete: boolean;
  /** Stopped by a signal before the job was complete. */
  interrupted: boolean;
  positions: RecordedPosition[];
  tables: CopyTableSummary[];
  /** Rows this worker wrote. */
  rows: number;
  /** Rows found on a source that its topology routes elsewhere: skipped, reported. */
  misplaced: number;
  /** Of `rows`, those written by LOAD DATA (the rest went through the applier's upserts). */
  bulkRows: number;
  seconds: number;
  rowsPerSecond: number;
  throttledSeconds: number;
  peakRssBytes: number;
}

const DEFAULTS = {
  // One chunk per source and one writer per target: measured faster than 2 on 1- and 2-source
  // jobs (src/copy/README.md, "Slots per source"), and the gentlest load on production servers.
  concurrency: 1,
  chunkTimeMs: 500,
  maxThreadsRunning: 50,
  metaDb: '_reshard',
  leaseMs: 60_000,
};
const CHUNK_ATTEMPTS = 10;

export function defaultWorkerId(): string {
  return `${hostname()}:${process.pid}`;
}

/** Unwrap an applier's "retries exhausted" to what it retried, so a chunk can be retried whole. */
function chunkErrorClass(e: unknown): 'retry' | 'fatal' {
  if (e instanceof SourceLostError) return 'retry';
  if (e instanceof RetriesExhaustedError) {
    if (e.code === 'E_RETRIES_EXHAUSTED' && e.cause !== undefined)
      return classifyError(e.cause) === 'fatal' ? 'fatal' : 'retry';
    return 'fatal';
  }
  // A server that cannot be reached now (restarting) may be reachable soon: E_CONNECT carries the
  // driver error; access denied and the like stay fatal.
  if (e instanceof ReshardError && e.code === 'E_CONNECT' && e.cause !== undefined)
    return classifyError(e.cause) === 'fatal' ? 'fatal' : 'retry';
  if (e instanceof ReshardError) return 'fatal';
  return classifyError(e) === 'fatal' ? 'fatal' : 'retry';
}

function errText(e: unknown): string {
  const x = e as { code?: string; errno?: number; message?: string };
  return `${x?.code ?? x?.errno ?? ''} ${x?.message ?? String(e)}`.trim();
}

async function openControlSession(flag: string | undefined): Promise<Connection> {
  const ctl = await connectControl(flag);
  await ctl.conn.query(`USE ${q(ctl.database)}`);
  return ctl.conn;
}

export async function runCopy(opts: RunCopyOptions): Promise<CopySummary> {
  const started = Date.now();
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULTS.concurrency);
  const leaseMs = opts.leaseMs ?? (Number(process.env.RESHARD_COPY_LEASE_MS) || DEFAULTS.leaseMs);
  const workerId = opts.workerId ?? defaultWorkerId();
  const metaDb = opts.metaDb ?? DEFAULTS.metaDb;

  // 1. Plan and topologies (no server contact), then preflight: nothing is written before it passes.
  const base = loadPlanContext({ planPath: opts.planPath });
  assertPreflight(await runPreflight({ from: base.from, to: base.to, metaDb }));

  const ctx: JobContext = await openJob({
    planPath: opts.planPath,
    control: opts.control,
    create: true,
  }).catch((e) => {
    // Two workers starting at once both try to create the job; the loser opens the winner's.
    if ((e as ReshardError).code === 'E_JOB_EXISTS')
      return openJob({ planPath: opts.planPath, control: opts.control, create: false });
    throw e;
  });
  const cleanups: (() => Promise<void> | void)[] = [() => ctx.close()];
  const closeAll = async () => {
    for (const f of cleanups.reverse()) await Promise.resolve(f()).catch(() => undefined);
  };
  try {
    return await runJob(ctx, { ...opts, concurrency, leaseMs, workerId, metaDb }, started, cleanups);
  } finally {
    await closeAll();
  }
}

type Resolved = RunCopyOptions & { concurrency: number; leaseMs: number; workerId: string; metaDb: string };

async function runJob(
  ctx: JobContext,
  opts: Resolved,
  started: number,
  cleanups: (() => Promise<void> | void)[],
): Promise<CopySummary> {
  const { plan, index, job } = ctx;
  const jobId = job.id;
  const summaryBase = { workerId: opts.workerId, positions: [] as RecordedPosition[] };
  if (job.state === 'cancelled' || job.state === 'rolled-back') {
    throw new PreconditionError(
      'E_JOB_STATE',
      `job '${job.name}' is ${job.state}; there is nothing to copy`,
      {
        hint: 'plan again and start a new job',
      },
    );
  }
  if (job.state !== 'planned' && job.state !== 'copying') {
    return {
      ok: true,
      job: { id: jobId, name: job.name, state: job.state },
      ...summaryBase,
      alreadyCopied: true,
      complete: true,
      interrupted: false,
      tables: [],
      rows: 0,
      misplaced: 0,
      bulkRows: 0,
      seconds: (Date.now() - started) / 1000,
      rowsPerSecond: 0,
      throttledSeconds: 0,
      peakRssBytes: process.memoryUsage().rss,
    };
  }

  // 2. Identity: the main control session holds this worker's lock for the whole run.
  const store = new ChunkStore({
    jobId,
    workerId: opts.workerId,
    database: ctx.control.database,
    leaseMs: opts.leaseMs,
  });
  const main = new ControlSession(
    () => openControlSession(opts.control),
    (c) => store.register(c),
  );
  cleanups.push(() => main.close());
  await main.connection();

  // 3. Servers: one setup connection per shard; table metadata on sources and targets.
  const sources = sourcePlans(plan, ctx.from);
  const shardsByName = new Map<string, Shard>();
  for (const s of [...ctx.from.shards, ...ctx.to.shards]) shardsByName.set(s.name, s);
  const targetNames = [...new Set(sources.flatMap((s) => s.targets))];
  const setupConns = new Map<string, Connection>();
  cleanups.push(async () => {
    for (const c of setupConns.values()) await c.end().catch(() => c.destroy());
  });
  for (const name of new Set([...sources.map((s) => s.shard.name), ...targetNames])) {
    setupConns.set(name, await connectShard(shardsByName.get(name)!));
  }
  const tableJobs = await buildTableJobs({
    plan,
    index,
    from: ctx.from,
    to: ctx.to,
    sources,
    conns: setupConns,
    bulk: opts.bulk ?? process.env.RESHARD_COPY_BULK !== '0',
  });

  // 4. Start positions, before any chunk is read by any worker (a re-run keeps the first ones).
  const positions = await main.run('recording start positions', (c) =>
    recordStartPositions(
      c,
      jobId,
      ctx.from.shards.map((s) => ({ name: s.name, connect: () => connectShard(s) })),
    ),
  );
  summaryBase.positions = positions;
  if (positions.some((p) => p.recordedNow)) {
    await appendEvent(ctx.control.conn, jobId, 'copy-positions', {
      positions: positions.map((p) => ({ shard: p.shard, file: p.file, pos: p.pos, gtid: p.gtid })),
    });
  }
  if (job.state === 'planned') {
    try {
      await transitionJob(ctx.control.conn, jobId, 'planned', 'copying', { worker: opts.workerId });
    } catch (e) {
      if ((e as ReshardError).code !== 'E_JOB_STATE_CONFLICT') throw e;
    }
  }
  await main.run('registering tables', (c) =>
    store.ensureCheckpoints(
      c,
      tableJobs.map((t) => ({ source: t.source, table: t.table })),
    ),
  );
  await appendEvent(ctx.control.conn, jobId, 'copy-worker-started', {
    worker: opts.workerId,
    concurrency: opts.concurrency,
    rate: opts.rate ?? 0,
  });

  // 5. Throttle: load observers on every source and target, rates, pause.
  const monitors = new Map<string, Connection>();
  let monitorsClosed = false;
  cleanups.push(async () => {
    monitorsClosed = true;
    for (const c of monitors.values()) await c.end().catch(() => c.destroy());
  });
  const observe = async (server: string): Promise<number> => {
    if (monitorsClosed) throw new Error('stopped');
    let c = monitors.get(server);
    try {
      if (!c) {
        c = await connectShard(shardsByName.get(server)!);
        if (monitorsClosed) throw new Error('stopped');
        monitors.set(server, c);
      }
      const [rows] = await c.query<RowDataPacket[]>("SHOW GLOBAL STATUS LIKE 'Threads_running'");
      const v = rows[0]?.Value;
      if (v === undefined) throw new Error('Threads_running is not reported');
      return Number(v);
    } catch (e) {
      monitors.delete(server);
      c?.destroy();
      throw e;
    }
  };
  const servers = [...new Set([...sources.map((s) => s.shard.name), ...targetNames])];
  let lastWait = '';
  const throttle: Throttler = createThrottler({
    servers,
    observe,
    rate: opts.rate ?? 0,
    targetRate: opts.targetRate ?? 0,
    maxThreadsRunning: opts.maxThreadsRunning ?? DEFAULTS.maxThreadsRunning,
    ...(opts.maxBlindMs !== undefined ? { maxBlindMs: opts.maxBlindMs } : {}),
    onWait: (why) => {
      // Waiting for the rate limit is the normal pace, not news; load and pauses are.
      const notable = why.filter((w) => !w.endsWith('rate limit'));
      const key = notable.join('; ');
      if (key === lastWait) return;
      lastWait = key;
      if (notable.length) log().info({ worker: opts.workerId, waiting: notable }, 'copy throttled');
      else log().info({ worker: opts.workerId }, 'copy resumed');
    },
  });
  throttle.start();
  cleanups.push(() => throttle.stop());

  // 6. Target writers: `concurrency` per target, each an applier and a bulk connection.
  const pools = new Map<string, TargetPool>();
  cleanups.push(async () => {
    for (const p of pools.values()) await p.close();
  });
  const sourceOwnerOf = sourceOwnerFn((k) => index.ownerOf('from', k));
  for (const t of targetNames) {
    const shard = shardsByName.get(t)!;
    const connectTarget = async (multipleStatements = false) => {
      const c = await connectShard(shard, { multipleStatements });
      await c.query('SET SESSION innodb_lock_wait_timeout = 10');
      return c;
    };
    const bulkState = { disabled: false, target: t };
    const writers: TargetWriter[] = [];
    for (let i = 0; i < opts.concurrency; i++) {
      const a = new TargetApplier({
        jobId,
        owner: jobOwner(ctx.control.database, ctx.job),
        target: t,
        metaDb: opts.metaDb,
        sourceOwnerOf,
        attempts: 5,
        connect: () => connectTarget(true),
        copyFence: true,
      });
      try {
        await a.open();
      } catch (e) {
        // Not in a pool yet: its connection (and the writers' before it) would outlive the
        // command (seen: 5 s past an access-denied error on the meta database).
        await a.close().catch(() => undefined);
        for (const w of writers) await w.close().catch(() => undefined);
        throw e;
      }
      writers.push(new TargetWriter(a, () => connectTarget(), bulkState));
    }
    pools.set(t, new TargetPool(t, writers));
  }

  // 7. Progress, control polling, leases, signals.
  const initial = await main.run('reading checkpoints', (c) => store.checkpoints(c));
  const progress: Progress = createProgress(opts.progress ?? 'auto', { throttle: () => throttle.status() });
  progress.start(
    tableJobs.map((t) => {
      const cp = initial.find((x) => x.source === t.source && x.table === t.table);
      return { source: t.source, table: t.table, done: cp?.rowsCopied ?? 0, estimate: t.estimatedRows };
    }),
  );
  let progressStopped = false;
  const stopProgress = () => {
    if (!progressStopped) {
      progressStopped = true;
      progress.stop();
    }
  };
  cleanups.push(stopProgress);
  for (const cp of initial) if (cp.state === 'done') progress.finish(cp.source, cp.table);

  const stopper = new AbortController();
  let fatal: unknown;
  const stop = (reason: string, err?: unknown) => {
    if (err !== undefined && fatal === undefined) fatal = err;
    if (!stopper.signal.aborted) {
      log().info({ worker: opts.workerId, reason }, 'copy stopping');
      stopper.abort(new Error(reason));
    }
  };
  if (opts.signal) {
    if (opts.signal.aborted) stop('stopped by caller');
    else opts.signal.addEventListener('abort', () => stop('stopped by caller'), { once: true });
  }

  let peakRss = process.memoryUsage().rss;
  const timers: NodeJS.Timeout[] = [];
  cleanups.push(() => {
    for (const t of timers) clearInterval(t);
  });
  timers.push(
    setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 500).unref(),
  );
  let lastControlOk = Date.now();
  // Pause, rates and the job's state, from the control schema: once before the first page (a
  // worker started while the job is paused must not copy a row), then every second.
  const pollControl = async () => {
    try {
      const st = await main.run('reading copy control', (c) => readCopyControl(c, jobId));
      // The job's state before the pause is lifted: a job that moved on must not get one more
      // page in between.
      const j = await main.run('reading job state', (c) => getJob(c, jobId));
      if (j && j.state !== 'copying' && j.state !== 'catching-up') {
        throttle.setPaused('control', true);
        stop(
          `job is now ${j.state}`,
          new PreconditionError(
            'E_JOB_STATE',
            `job '${j.name}' became '${j.state}' while copying; this worker stopped`,
            {
              hint:
                j.state === 'cancelled'
                  ? 'the job was cancelled: plan again to start over'
                  : 'check `reshard status`',
            },
          ),
        );
        return;
      }
      throttle.setPaused('control', st.paused);
      throttle.setRates({
        rate: st.rate ?? opts.rate ?? 0,
        targetRate: st.targetRate ?? opts.targetRate ?? 0,
      });
      lastControlOk = Date.now();
    } catch (e) {
      if (main.isClosed) return; // the run is over; a tick that fired meanwhile has nothing to do
      // Fail closed: commands we cannot read might be a pause.
      if (Date.now() - lastControlOk > 5000) throttle.setPaused('control', true);
      log().warn({ err: errText(e) }, 'cannot read copy control; pausing until it can');
    }
  };
  await pollControl();
  timers.push(setInterval(pollControl, 1000).unref());
  timers.push(
    setInterval(
      async () => {
        try {
          await main.run('renewing chunk leases', (c) => store.renew(c));
        } catch (e) {
          if (main.isClosed) return;
          if ((e as ReshardError).code === 'E_WORKER_ID_IN_USE') stop('worker id taken over', e);
          else log().warn({ err: errText(e) }, 'cannot renew chunk leases');
        }
      },
      Math.max(200, Math.floor(opts.leaseMs / 3)),
    ).unref(),
  );
  if (opts.handleSignals) {
    let interrupts = 0;
    const onInt = () => {
      interrupts++;
      if (interrupts > 1) process.exit(130);
      note('stopping after the chunks in flight (press Ctrl-C again to quit at once)');
      stop('interrupted');
    };
    const onPause = () => {
      throttle.setPaused('signal', true);
      note('paused by SIGUSR1 (send SIGUSR2 to resume)');
    };
    const onResume = () => {
      throttle.setPaused('signal', false);
      note('resumed by SIGUSR2');
    };
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onInt);
    process.on('SIGUSR1', onPause);
    process.on('SIGUSR2', onResume);
    cleanups.push(() => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onInt);
      process.off('SIGUSR1', onPause);
      process.off('SIGUSR2', onResume);
    });
  }
  function note(m: string) {
    progress.note(m);
  }

  // 8. The slots.
  const sizer = new ChunkSizer({ targetMs: opts.chunkTimeMs ?? DEFAULTS.chunkTimeMs });
  for (const t of tableJobs) sizer.seed(`${t.source}.${t.table}`, t.avgRowBytes, t.source);
  const stats = new Map<string, { rows: number; chunks: number; misplaced: number }>();
  for (const t of tableJobs) stats.set(`${t.source}\u0000${t.table}`, { rows: 0, chunks: 0, misplaced: 0 });
  const fullyChunked = new Set<string>();
  let bulkRows = 0;
  const extendLock = new KeyedMutex();
  const slotCurrent: (string | undefined)[] = [];
  const inFlight = () => new Set(slotCurrent.filter((x): x is string => x !== undefined));
  const jobsBySource = new Map<string, TableJob[]>();
  for (const t of tableJobs) {
    const list = jobsBySource.get(t.source) ?? [];
    list.push(t);
    jobsBySource.set(t.source, list);
  }

  const rateCap = () => {
    const st = throttle.status();
    const caps = [st.rate, st.targetRate].filter((r) => r > 0);
    return caps.length
      ? Math.min(...caps) * ((opts.chunkTimeMs ?? DEFAULTS.chunkTimeMs) / 1000)
      : Number.POSITIVE_INFINITY;
  };

  const slot = async (sourceName: string, slotIndex: number) => {
    const sp = sources.find((s) => s.shard.name === sourceName)!;
    const admitServers = [sourceName, ...sp.targets];
    const src = new SourceSession(() => connectShard(sp.shard), 5);
    const ctl = new ControlSession(() => openControlSession(opts.control), undefined, stopper.signal);
    const mySlot = slotCurrent.length;
    slotCurrent.push(undefined);
    const tables = jobsBySource.get(sourceName) ?? [];

    const account = (
      tj: TableJob,
      written: number,
      misplaced: number,
      perTarget: Map<string, number>,
      bulk: number,
    ) => {
      bulkRows += bulk;
      const s = stats.get(`${tj.source}\u0000${tj.table}`)!;
      s.rows += written;
      s.misplaced += misplaced;
      for (const [t, n] of perTarget) throttle.charge(t, n);
      progress.add(tj.source, tj.table, written);
      copyMetrics.rows.inc({ source: tj.source, table: tj.table }, written);
    };

    const finish = async (tj: TableJob, chunk: Chunk, written: number) => {
      const r = await ctl.tx('finishing a chunk', (c) => store.done(c, chunk, written));
      const s = stats.get(`${tj.source}\u0000${tj.table}`)!;
      s.chunks++;
      if (r.tableDone) progress.finish(tj.source, tj.table);
      opts.onChunkDone?.({
        source: tj.source,
        table: tj.table,
        chunkId: chunk.chunkId,
        rows: written,
        attempts: chunk.attempts,
      });
    };

    /** Copy a registered chunk page by page (a retaken chunk, or a retry of our own). */
    const copyExisting = async (chunk: Chunk) => {
      const tj = tables.find((t) => t.table === chunk.table);
      if (!tj) throw new PreconditionError('E_PLAN_TABLE', `chunk of unknown table ${chunk.table}`);
      const sk = `${tj.source}.${tj.table}`;
      let lower = chunk.lower;
      let written = 0;
      for (;;) {
        await throttle.admit(admitServers, stopper.signal);
        const size = sizer.next(sk, rateCap());
        const t0 = Date.now();
        try {
          const conn = await src.begin();
          const streamed = await streamPage(conn, tj, index, pools, lower, chunk.upper, size);
          const page = await writeStreamedPage(streamed, conn, tj, index, pools, lower);
          await src.commit();
          sizer.feedback(sk, page.read, Date.now() - t0, page.bytes);
          account(tj, page.written, page.misplaced, page.perTarget, page.bulk);
          written += page.written;
          if (page.read < size || page.lastPk === null) break;
          lower = page.lastPk;
        } catch (e) {
          await src.rollback();
          src.fail(e);
          throw e;
        }
      }
      await finish(tj, chunk, written);
    };

    /**
     * Create and copy the next chunk of a table: false when the table is fully chunked, true
     * when another worker registered the chunk first (the caller simply loops).
     */
    const copyNew = async (tj: TableJob): Promise<Chunk | boolean> => {
      const sk = `${tj.source}.${tj.table}`;
      const size = sizer.next(sk, rateCap());
      // The chunk's time starts when this slot may extend the table: the wait for another slot's
      // first page is not this chunk's work (counted, it would shrink every next size).
      let t0 = Date.now();
      // This process's slots extend a table one at a time (other workers may race: insertChunk).
      const created = await extendLock.run(sk, async () => {
        t0 = Date.now();
        try {
          const b = await ctl.run('planning a chunk', (c) => store.nextBounds(c, tj.source, tj.table));
          if (!b) return false as const;
          slotCurrent[mySlot] = chunkKey(tj.source, tj.table, b.chunkId);
          const conn = await src.begin();
          const streamed = await streamPage(conn, tj, index, pools, b.lower, null, size);
          const upper = streamed.read < size ? null : streamed.lastPk;
          const chunk = await ctl.run('registering a chunk', (c) =>
            store.insertChunk(c, tj.source, tj.table, b.chunkId, b.lower, upper),
          );
          if (!chunk) return true as const;
          return { chunk, streamed, conn };
        } catch (e) {
          slotCurrent[mySlot] = undefined;
          await src.rollback();
          src.fail(e);
          throw e;
        }
      });
      if (typeof created === 'boolean') {
        slotCurrent[mySlot] = undefined;
        await src.rollback();
        return created;
      }
      const { chunk, streamed, conn } = created;
      try {
        const page = await writeStreamedPage(streamed, conn, tj, index, pools, chunk.lower);
        await src.commit();
        sizer.feedback(sk, page.read, Date.now() - t0, page.bytes);
        account(tj, page.written, page.misplaced, page.perTarget, page.bulk);
        await finish(tj, chunk, page.written);
      } catch (e) {
        await src.rollback();
        src.fail(e);
        // The chunk is registered (claimed by us): the retry copies it as an existing chunk.
        (e as { chunk?: Chunk }).chunk = chunk;
        throw e;
      }
      return chunk;
    };

    /** Run one unit of work with chunk-level retries (locks released between attempts). */
    const retrying = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn();
        } catch (e) {
          if (stopper.signal.aborted || chunkErrorClass(e) === 'fatal' || attempt >= CHUNK_ATTEMPTS) throw e;
          const delay = Math.min(30_000, 500 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
          log().warn(
            { worker: opts.workerId, err: errText(e), attempt, delayMs: Math.round(delay) },
            `${label}: retrying`,
          );
          await sleep(delay, stopper.signal);
        }
      }
    };

    try {
      while (!stopper.signal.aborted) {
        await throttle.admit(admitServers, stopper.signal);
        // 1. A chunk nobody is working on any more (its worker died or lost its lease).
        const taken = await ctl.tx('claiming a chunk', async (c) =>
          store.claimAbandoned(c, sourceName, inFlight()),
        );
        if (taken) {
          slotCurrent[mySlot] = chunkKey(taken.source, taken.table, taken.chunkId);
          if (taken.previousWorker !== null && taken.previousWorker !== opts.workerId) {
            log().info(
              {
                worker: opts.workerId,
                source: taken.source,
                table: taken.table,
                chunk: taken.chunkId,
                from: taken.previousWorker,
              },
              'retaking an abandoned chunk',
            );
          }
          await retrying(`copying ${taken.source}.${taken.table} chunk ${taken.chunkId}`, () =>
            copyExisting(taken),
          );
          slotCurrent[mySlot] = undefined;
          continue;
        }
        // 2. The next chunk of the first table not yet fully chunked.
        const tj = tables.find((t) => !fullyChunked.has(`${t.source}\u0000${t.table}`));
        if (tj) {
          let registered: Chunk | undefined;
          const r = await retrying(`copying ${tj.source}.${tj.table}`, async () => {
            if (registered) {
              await copyExisting(registered);
              return registered;
            }
            await throttle.admit(admitServers, stopper.signal);
            try {
              return await copyNew(tj);
            } catch (e) {
              registered = (e as { chunk?: Chunk }).chunk;
              throw e;
            }
          });
          slotCurrent[mySlot] = undefined;
          if (r === false) fullyChunked.add(`${tj.source}\u0000${tj.table}`);
          continue;
        }
        // 3. Everything is chunked; done unless other workers still hold chunks of this source.
        if (await ctl.run('checking progress', (c) => store.sourceDone(c, sourceName))) break;
        await sleep(300 + slotIndex * 50, stopper.signal);
      }
    } catch (e) {
      // Waits abort with the stop reason: that is a stop, not an error of this slot.
      if (!(stopper.signal.aborted && e === stopper.signal.reason)) stop(`error: ${errText(e)}`, e);
    } finally {
      slotCurrent[mySlot] = undefined;
      await src.close();
      await ctl.close();
    }
  };

  const runs: Promise<void>[] = [];
  for (const sp of sources) {
    const limit = pLimit(opts.concurrency);
    for (let i = 0; i < opts.concurrency; i++) runs.push(limit(() => slot(sp.shard.name, i)));
  }
  await Promise.all(runs);
  stopProgress();

  // 9. Finish: give back what we hold if we stopped early; move the job on if all is done.
  const finalCps = await main.run('reading checkpoints', (c) => store.checkpoints(c));
  const complete = finalCps.every((c) => c.state === 'done') && tableJobs.length === finalCps.length;
  if (!complete) await main.run('releasing claims', (c) => store.releaseHeld(c)).catch(() => undefined);
  if (fatal !== undefined) throw fatal;
  let state: JobState = (await getJob(ctx.control.conn, jobId))?.state ?? 'copying';
  if (complete && state === 'copying') {
    try {
      state = (
        await transitionJob(ctx.control.conn, jobId, 'copying', 'catching-up', {
          worker: opts.workerId,
          rows: finalCps.reduce((a, c) => a + c.rowsCopied, 0),
        })
      ).state;
    } catch (e) {
      if ((e as ReshardError).code !== 'E_JOB_STATE_CONFLICT') throw e;
      state = (await getJob(ctx.control.conn, jobId))?.state ?? state;
    }
  }
  const tables: CopyTableSummary[] = tableJobs.map((t) => {
    const s = stats.get(`${t.source}\u0000${t.table}`)!;
    const cp = finalCps.find((c) => c.source === t.source && c.table === t.table);
    return {
      source: t.source,
      table: t.table,
      rows: s.rows,
      chunks: s.chunks,
      rowsTotal: cp?.rowsCopied ?? 0,
      state: cp?.state ?? 'pending',
      misplaced: s.misplaced,
    };
  });
  const misplaced = tables.reduce((a, t) => a + t.misplaced, 0);
  if (misplaced > 0) {
    log().warn(
      {
        misplaced: tables
          .filter((t) => t.misplaced > 0)
          .map((t) => ({ source: t.source, table: t.table, rows: t.misplaced })),
      },
      'rows found on a source that does not own them under the current topology were not copied',
    );
  }
  const rows = tables.reduce((a, t) => a + t.rows, 0);
  const seconds = (Date.now() - started) / 1000;
  await appendEvent(ctx.control.conn, jobId, 'copy-worker-finished', {
    worker: opts.workerId,
    rows,
    seconds,
    complete,
    interrupted: !complete,
  }).catch(() => undefined);
  return {
    ok: complete,
    job: { id: jobId, name: job.name, state },
    ...summaryBase,
    alreadyCopied: false,
    complete,
    interrupted: !complete,
    tables,
    rows,
    misplaced,
    bulkRows,
    seconds,
    rowsPerSecond: seconds > 0 ? Math.round(rows / seconds) : 0,
    throttledSeconds: Math.round(throttle.status().waitedMs / 100) / 10,
    peakRssBytes: Math.max(peakRss, process.memoryUsage().rss),
  };
}

/** Runs functions one at a time per key (in this process). */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
