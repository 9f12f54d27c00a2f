/**
 * Draining a stream to a point: "every target has applied every source transaction up to P".
 *
 * The authority is each target's `<metaDb>.apply_positions`, committed with the rows it describes
 * (src/apply/README.md), never a mirror or a process's memory — so the check is the same whoever
 * applies: a `reshard tail` already running (detected by its per-source lock, or its fresh status
 * row), or a tailer this process starts for the sources nobody tails (`startTail`, resuming from
 * the targets' applied positions). Cutover drains forward (old → new shards), rollback reverse.
 *
 * Lifecycle: `start()` (choose external / in-process per source, start the in-process tailer) →
 * `probe()`* (measure) / `waitApplied(goals)` → `stop()`.
 *
 * A probe is the operation the freeze performs, measured under the live load: read every source's
 * binlog end, then wait until every (source, target) pair has applied it. Its duration is the time
 * to drain the backlog of that instant at the rate the tailer achieves; after writes stop, the
 * backlog only shrinks, so it bounds the drain under the freeze.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { fenceCopy, jobOwner, metaOwner, refuseOtherOwner } from '../apply/applier.js';
import { type BinlogPosition, comparePositions, formatPosition } from '../binlog/position.js';
import { type Direction, tailLockName } from '../binlog/status.js';
import { startTail, type TailHandle } from '../binlog/tailer.js';
import { readBinlogPosition } from '../copy/index.js';
import { connect } from '../db/connect.js';
import { q } from '../db/quote.js';
import { sleep } from '../db/retry.js';
import { ReshardError, RetriesExhaustedError } from '../errors.js';
import type { JobContext } from '../job/context.js';
import type { Plan } from '../plan/types.js';
import { type ControlConnection, openControl } from '../state/control.js';
import type { Shard, Topology } from '../topology/types.js';

/**
 * A tail status row older than this (s) is a stuck tailer's: `reshard tail` rewrites it every 2 s
 * (statusIntervalMs), idle or not.
 */
const STALE_STATUS_S = 10;

export interface Pair {
  /** Shard whose binlog is streamed (old shard forward, new shard reverse). */
  source: string;
  /** Shard it is applied to. */
  target: string;
}

/** The (source, target) pairs of a direction: one per moving segment's shard pair (pure). */
export function movingPairs(plan: Pick<Plan, 'segments'>, direction: Direction): Pair[] {
  const seen = new Set<string>();
  const out: Pair[] = [];
  for (const s of plan.segments) {
    if (!s.moves) continue;
    const p = direction === 'forward' ? { source: s.from, target: s.to } : { source: s.to, target: s.from };
    const k = `${p.source}\0${p.target}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(p);
  }
  return out.sort((a, b) => (a.source + a.target < b.source + b.target ? -1 : 1));
}

export function positionKey(direction: Direction, source: string): string {
  return direction === 'forward' ? source : `reverse:${source}`;
}

export interface ProbeResult {
  ms: number;
  /** Binlog bytes between the applied positions and the sources' ends when the probe began. */
  backlogBytes: number;
}

export interface DrainerOptions {
  ctx: JobContext;
  direction: Direction;
  metaDb: string;
  onNote?: (text: string) => void;
}

export class Drainer {
  readonly pairs: Pair[];
  readonly sources: string[];
  /** Per source: who applies its stream. */
  readonly mode = new Map<string, 'in-process' | 'external'>();
  private readonly sourceSide: Topology;
  private readonly targetSide: Topology;
  private handle: TailHandle | undefined;
  private tailControl: ControlConnection | undefined;
  private readonly conns = new Map<string, Promise<Connection>>();

  constructor(private readonly opts: DrainerOptions) {
    this.pairs = movingPairs(opts.ctx.plan, opts.direction);
    this.sources = [...new Set(this.pairs.map((p) => p.source))];
    this.sourceSide = opts.direction === 'forward' ? opts.ctx.from : opts.ctx.to;
    this.targetSide = opts.direction === 'forward' ? opts.ctx.to : opts.ctx.from;
  }

  private shard(topo: Topology, name: string): Shard {
    const s = topo.shards.find((x) => x.name === name);
    if (!s) throw new ReshardError('bug', 'E_BUG', `plan names shard ${name}, which its topology lacks`);
    return s;
  }

  private conn(topo: Topology, name: string): Promise<Connection> {
    const k = `${topo === this.sourceSide ? 's' : 't'}:${name}`;
    let c = this.conns.get(k);
    if (!c) {
      c = connect(this.shard(topo, name).endpoint, `shard ${name}`, { withDatabase: false });
      c.catch(() => this.conns.delete(k));
      this.conns.set(k, c);
    }
    return c;
  }

  private async onConn<T>(topo: Topology, name: string, fn: (c: Connection) => Promise<T>): Promise<T> {
    try {
      return await fn(await this.conn(topo, name));
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      if (errno !== undefined && errno < 2000 && errno !== 1927 && errno !== 1053) throw e;
      // A lost session: once more on a fresh one.
      const k = `${topo === this.sourceSide ? 's' : 't'}:${name}`;
      this.conns
        .get(k)
        ?.then((c) => c.destroy())
        .catch(() => undefined);
      this.conns.delete(k);
      return fn(await this.conn(topo, name));
    }
  }

  /** Is a `reshard tail` of this job, direction and source running (its lock is held)? */
  async externalTailer(source: string): Promise<boolean> {
    const ctl = this.opts.ctx.control;
    const name = tailLockName(ctl.database, this.opts.ctx.job.id, this.opts.direction, source);
    const [rows] = await ctl.conn.query<RowDataPacket[]>('SELECT IS_USED_LOCK(?) AS holder', [name]);
    return rows[0]?.holder !== null && rows[0]?.holder !== undefined;
  }

  /** Decide per source and start a tailer here for the sources nobody tails. */
  async start(): Promise<void> {
    const mine: string[] = [];
    for (const s of this.sources) {
      const ext = await this.externalTailer(s);
      this.mode.set(s, ext ? 'external' : 'in-process');
      if (!ext) mine.push(s);
    }
    if (mine.length === 0) return;
    const ctx = this.opts.ctx;
    this.tailControl = await openControl(ctx.control.dsnForHint);
    try {
      this.handle = await startTail({
        ctx: {
          plan: ctx.plan,
          from: ctx.from,
          to: ctx.to,
          index: ctx.index,
          job: ctx.job,
          control: this.tailControl,
        },
        direction: this.opts.direction,
        sources: mine,
        metaDb: this.opts.metaDb,
        statusIntervalMs: 1000,
        ...(this.opts.onNote ? { onNote: this.opts.onNote } : {}),
      });
    } catch (e) {
      await this.tailControl.close().catch(() => undefined);
      this.tailControl = undefined;
      if (e instanceof ReshardError && e.code === 'E_TAIL_RUNNING') {
        // Someone else tails (our lock-name guess missed it): rely on that tailer.
        for (const s of mine) this.mode.set(s, 'external');
        this.opts.onNote?.('another reshard tail holds a stream lock: relying on it');
        return;
      }
      throw e;
    }
  }

  /** Each source's binlog end now. */
  async ends(): Promise<Map<string, BinlogPosition>> {
    const out = new Map<string, BinlogPosition>();
    await Promise.all(
      this.sources.map(async (s) => {
        const p = await this.onConn(this.sourceSide, s, (c) => readBinlogPosition(c));
        out.set(s, { file: p.file, pos: p.pos, gtid: p.gtid ?? undefined });
      }),
    );
    return out;
  }

  /**
   * Set the copy's fence on every target (applier.ts fenceCopy): a copy worker that lost its
   * control connection with a page in flight cannot write it once this returns. Waits for such
   * a write that already holds the fence row's shared lock (it commits before the flip).
   */
  async fenceCopy(): Promise<void> {
    const targets = [...new Set(this.pairs.map((p) => p.target))];
    await Promise.all(
      targets.map((t) =>
        this.onConn(this.targetSide, t, (c) => fenceCopy(c, this.opts.metaDb, this.opts.ctx.job.id)),
      ),
    );
  }

  /** The applied position of one pair, from the target (authoritative); undefined before the first. */
  async appliedOf(p: Pair): Promise<BinlogPosition | undefined> {
    const key = positionKey(this.opts.direction, p.source);
    return this.onConn(this.targetSide, p.target, async (c) => {
      // Positions under this job id are another job's when the meta database names another owner
      // (META_VERSION 3); with no owner recorded (a meta database a tailer of the previous meta
      // version keeps writing), they are this job's, as they always were.
      const ctx = this.opts.ctx;
      const owner = jobOwner(ctx.control.database, ctx.job);
      const found = await metaOwner(c, this.opts.metaDb, ctx.job.id);
      if (found !== undefined && found !== owner)
        refuseOtherOwner(this.opts.metaDb, p.target, ctx.job.id, owner, found);
      try {
        const [rows] = await c.query<RowDataPacket[]>(
          `SELECT binlog_file AS file, binlog_pos AS pos, gtid FROM ${q(this.opts.metaDb)}.apply_positions WHERE job_id = ? AND source = ? AND target = ?`,
          [this.opts.ctx.job.id, key, p.target],
        );
        const r = rows[0];
        return r
          ? { file: String(r.file), pos: Number(r.pos), gtid: r.gtid === null ? undefined : String(r.gtid) }
          : undefined;
      } catch (e) {
        // No meta database / table yet: nothing applied.
        const errno = (e as { errno?: number }).errno;
        if (errno === 1049 || errno === 1146) return undefined;
        throw e;
      }
    });
  }

  async applied(): Promise<Map<string, BinlogPosition | undefined>> {
    const out = new Map<string, BinlogPosition | undefined>();
    await Promise.all(
      this.pairs.map(async (p) => out.set(`${p.source}>${p.target}`, await this.appliedOf(p))),
    );
    return out;
  }

  /**
   * Resolve once every pair has applied its source's goal position; throw at `deadline` (epoch ms)
   * or when the in-process tailer fails.
   */
  async waitApplied(
    goals: ReadonlyMap<string, BinlogPosition>,
    deadline: number,
    what = 'drain',
  ): Promise<number> {
    const t0 = Date.now();
    let pending = this.pairs.filter((p) => goals.has(p.source));
    let failed: unknown;
    this.handle?.done.catch((e: unknown) => {
      failed = e;
    });
    // The in-process tailer flushes idle positions at once while someone waits for them (its own
    // timeout or failure surfaces through `done` or our deadline, not here), and, once there,
    // promotes parked rows whose key came free in place (TargetApplier.promoteFreed), which no
    // position shows: the drain ends when that is done too. (A tailer in another process looks
    // once a second by itself.)
    const caughtUp = this.handle
      ?.waitCaughtUp({ timeoutMs: Math.max(1, deadline - Date.now()) })
      .then(() => undefined)
      .catch(() => undefined);
    for (;;) {
      if (failed !== undefined) throw failed;
      const still: Pair[] = [];
      await Promise.all(
        pending.map(async (p) => {
          const a = await this.appliedOf(p);
          if (!a || comparePositions(a, goals.get(p.source)!) < 0) still.push(p);
        }),
      );
      pending = still;
      if (pending.length === 0) {
        await caughtUp;
        if (failed !== undefined) throw failed;
        return Date.now() - t0;
      }
      if (Date.now() > deadline) {
        const p = pending[0]!;
        const a = await this.appliedOf(p).catch(() => undefined);
        throw new RetriesExhaustedError(
          'E_CUTOVER_DRAIN_TIMEOUT',
          `${what}: ${p.target} has applied ${p.source} up to ${formatPosition(a)}, not yet ${formatPosition(goals.get(p.source))} (${pending.length} pair(s) behind after ${Date.now() - t0} ms)`,
          {
            hint:
              this.mode.get(p.source) === 'external'
                ? 'the running `reshard tail` is not keeping up (or has stopped): check its progress lines'
                : 'the tailer is slower than the write load or a server is unreachable',
          },
        );
      }
      await sleep(40);
    }
  }

  /** Binlog bytes between two positions of one server (same file: exact; else approximated by pos). */
  static bytesBetween(a: BinlogPosition | undefined, b: BinlogPosition): number {
    if (!a) return b.pos;
    if (comparePositions(a, b) >= 0) return 0;
    return a.file === b.file ? b.pos - a.pos : b.pos;
  }

  /** Measure one drain under the live load (see the header). */
  async probe(deadline: number): Promise<ProbeResult> {
    const goals = await this.ends();
    const applied = await this.applied();
    let backlogBytes = 0;
    for (const s of this.sources) {
      let worst = 0;
      for (const p of this.pairs.filter((x) => x.source === s))
        worst = Math.max(worst, Drainer.bytesBetween(applied.get(`${p.source}>${p.target}`), goals.get(s)!));
      backlogBytes += worst;
    }
    const ms = await this.waitApplied(goals, deadline, 'catch-up');
    return { ms, backlogBytes };
  }

  /**
   * Lag per source as the tailer reports it (in-process status, or a running tailer's status row).
   * `external`: the sources a tailer of another process streams; by default those start() found
   * so. A reads-first check never calls start() and passes the ones whose locks it saw held
   * (before, it got no lag at all for them and passed whatever the lag was).
   */
  async reportedLag(
    external: readonly string[] = this.sources.filter((s) => this.mode.get(s) === 'external'),
  ): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const s of this.handle?.status().sources ?? []) out.set(s.source, s.lagSeconds);
    if (external.length) {
      // The row's age by the control server's clock, which wrote it.
      const [rows] = await this.opts.ctx.control.conn.query<RowDataPacket[]>(
        `SELECT shard, lag_seconds, TIMESTAMPDIFF(MICROSECOND, updated_at, NOW(6)) / 1000000 AS age
           FROM reshard_tail_status WHERE job_id = ? AND direction = ?`,
        [this.opts.ctx.job.id, this.opts.direction],
      );
      for (const r of rows) {
        if (!external.includes(String(r.shard))) continue;
        // A tailer rewrites its row every couple of seconds, idle or not. One that has not for
        // longer is stuck (its lock still held), and its lag has grown by at least that much
        // since: a reads-first switch must not trust the figure it last wrote.
        const age = Number(r.age);
        const lag = Number(r.lag_seconds);
        out.set(String(r.shard), age > STALE_STATUS_S ? lag + age : lag);
      }
    }
    return out;
  }

  get inProcess(): boolean {
    return this.handle !== undefined;
  }

  /** Stop the in-process tailer (graceful: commits what it read) and close sessions. */
  async stop(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    try {
      if (h) await h.stop();
    } finally {
      await this.tailControl?.close().catch(() => undefined);
      this.tailControl = undefined;
    }
  }

  async close(): Promise<void> {
    await this.stop().catch(() => undefined);
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.end().catch(() => undefined)));
  }
}
