/**
 * The tailer: carries every change committed on the old shards after the copy started to the
 * new owners, until cutover (forward), and after cutover back to the old shards (reverse).
 *
 * Lifecycle: `startTail(opts)` (connect, resume, start streaming; resolves once every source
 * streams) → running (`status()`, `waitCaughtUp()`) → `stop()` (graceful: stop reading, commit
 * what was read, record positions) — or `done` rejects with the first fatal error.
 * `runTail(opts)` wraps that for the command: until caught up, or until a signal.
 *
 * Per source shard S one pipeline: a ZongjiSource (source.ts) yields whole transactions; the
 * dispatcher routes each row change (route.ts) to target operations and appends them, per target,
 * to that target's worker queue, in binlog order, and (forward) starts recording their keys for
 * verify --incremental (changes.ts). One worker per (S, target) pair with a moving segment: it
 * takes queued transactions in order — several per target transaction, up to `batchOps`
 * operations — and commits them through TargetApplier with the position of the last one (the
 * position commits in the same target transaction as the rows; the keys' record is awaited just
 * before that COMMIT, so it stays write-ahead without adding to the latency). Workers of
 * different targets run in parallel; each preserves the source's order. Why that converges
 * exactly: README.md.
 *
 * Resume: each worker reads its target's committed position for S; the stream restarts at the
 * minimum over the workers (else the start position the copier recorded), and each worker skips
 * transactions at or before its own. A transaction is applied to each target exactly once.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Connection } from 'mysql2/promise';
import { type ApplyPosition, jobOwner, type RowOp, sourceOwnerFn, TargetApplier } from '../apply/applier.js';
import type { TableMeta } from '../apply/table.js';
import { type Row, tupleKey } from '../apply/values.js';
import { connect, connectionOptions, describeEndpoint } from '../db/connect.js';
import { qt } from '../db/quote.js';
import { classifyError, sleep } from '../db/retry.js';
import {
  asReshardError,
  PreconditionError,
  ReshardError,
  RetriesExhaustedError,
  UsageError,
} from '../errors.js';
import type { PlanIndex } from '../plan/plan-index.js';
import type { Plan } from '../plan/types.js';
import { readTableDefinition, requireTableDefinition } from '../preflight/schema.js';
import {
  appendEvent,
  type ControlConnection,
  ControlLink,
  getJob,
  isTerminal,
  type Job,
} from '../state/control.js';
import type { Shard, TableSpec, Topology } from '../topology/types.js';
import { ChangeRecorder } from './changes.js';
import { compactOps } from './compact.js';
import { classifyDdl, ddlKey, shapeOfCreate } from './ddl.js';
import { imageKey, type TargetTable, targetTable } from './decode.js';
import { createTailMetrics, serveMetrics, type TailMetrics } from './metrics.js';
import {
  type BinlogPosition,
  binlogFiles,
  comparePositions,
  type Flavor,
  formatPosition,
  gtidAtPosition,
  minPosition,
  readMasterPosition,
  serverFlavor,
} from './position.js';
import { type Owners, type RoutedOp, routeChange, sameValue } from './route.js';
import {
  type BufferedChangeSource,
  type ChangeEvent,
  type SourceDdl,
  type SourceTransaction,
  StreamError,
  ZongjiSource,
  type ZongjiSourceOptions,
} from './source.js';
import { ThreadedSource } from './source-thread.js';
import {
  type Direction,
  type MirrorRow,
  mirror,
  readStartPosition,
  TAIL_STATES,
  tailLockName,
} from './status.js';

/** What the tailer needs from the job context (src/job/context.ts `openJob`). */
export interface TailContext {
  plan: Plan;
  from: Topology;
  to: Topology;
  index: PlanIndex;
  control: ControlConnection;
  job: Job;
}

export interface TailOptions {
  ctx: TailContext;
  direction?: Direction;
  /** Tail only these source shards (default: every source shard with a moving segment). */
  sources?: string[];
  /** Where to start when a target has no position yet, instead of the copier's recorded one. */
  fromPosition?: BinlogPosition;
  /** reshard's database on each target (apply positions, parked rows). */
  metaDb?: string;
  /** Replay schema-only DDL on tracked tables on the targets instead of stopping. */
  applyDdl?: boolean;
  /** Row operations per target transaction (several source transactions are batched up to it). */
  batchOps?: number;
  heartbeatMs?: number;
  statusIntervalMs?: number;
  progressIntervalMs?: number;
  onProgress?: (p: TailStatus) => void;
  /** Serve Prometheus metrics on this port. */
  metricsPort?: number;
  /** Give up on a source, or the control server, that cannot be reached for this long (ms). */
  reconnectForMs?: number;
  /** Human notes (reconnects, DDL applied); default: none. */
  onNote?: (text: string) => void;
  /** How often the job's state is re-read; the tailer stops once its direction may not run. */
  jobWatchMs?: number;
  /** How long to wait at start for a tailer of the other direction to stop before refusing. */
  otherDirectionWaitMs?: number;
}

export interface TargetStatus {
  target: string;
  committed: BinlogPosition | undefined;
  appliedOps: number;
  queuedOps: number;
}

export interface SourceStatus {
  source: string;
  state: MirrorRow['state'];
  /** Minimum committed position over the source's targets: where a restart resumes. */
  position: BinlogPosition | undefined;
  /** Last transaction boundary read from the stream. */
  received: BinlogPosition | undefined;
  lagSeconds: number;
  eventsPerSecond: number;
  rowsPerSecond: number;
  events: number;
  rows: number;
  transactions: number;
  reconnects: number;
  targets: TargetStatus[];
}

export interface TailStatus {
  direction: Direction;
  sources: SourceStatus[];
  /** Why the tailer stopped by itself (the job moved on), when it did. */
  stoppedBecause?: string;
}

export interface TailHandle {
  readonly metrics: TailMetrics;
  /** Where `--metrics-port` serves (http://host:port/metrics), when it does. */
  readonly metricsUrl: string | undefined;
  status(): TailStatus;
  /**
   * Resolves once every source's targets have committed everything the source had committed
   * when this was called (the source's binlog end, read then): lag 0 as of that instant.
   */
  waitCaughtUp(opts?: { timeoutMs?: number }): Promise<TailStatus>;
  /** Graceful stop: stop reading, commit what was read, mirror positions. */
  stop(): Promise<TailStatus>;
  /** Settles when the tailer stops: resolves after stop(), rejects with the first fatal error. */
  readonly done: Promise<TailStatus>;
}

const DEFAULTS = {
  metaDb: '_reshard',
  batchOps: 2000,
  heartbeatMs: 1000,
  statusIntervalMs: 2000,
  progressIntervalMs: 5000,
  reconnectForMs: 10 * 60_000,
  // Per target worker, and per source stream before routing: enough for 2.5 commits of batchOps.
  // 20 000 held up to ~0.4–0.5 GB during a catch-up for no speed (src/binlog/README.md, "Memory").
  maxQueuedOps: 5_000,
  idleFlushMs: 1000,
  jobWatchMs: 1000,
  // Long enough for a forward tailer to notice a cutover (jobWatchMs) and stop gracefully, so
  // `reshard cutover --execute && reshard tail --reverse` works without a manual pause.
  otherDirectionWaitMs: 15_000,
};

/** DDL errors that mean "already applied here" when a statement is replayed on a target. */
const ALREADY_APPLIED = new Set([
  1050, // ER_TABLE_EXISTS_ERROR
  1060, // ER_DUP_FIELDNAME
  1061, // ER_DUP_KEYNAME
  1068, // ER_MULTIPLE_PRI_KEY
  1091, // ER_CANT_DROP_FIELD_OR_KEY
  1826, // ER_FK_DUP_NAME
]);

/** A table's shape (shapeOfCreate), or undefined when it does not exist. */
async function shapeOf(c: Connection, database: string, table: string): Promise<string | undefined> {
  try {
    const [rows] = await c.query({ sql: `SHOW CREATE TABLE ${qt(database, table)}`, rowsAsArray: true });
    const text = (rows as unknown[][])[0]?.[1];
    return typeof text === 'string' ? shapeOfCreate(text) : undefined;
  } catch (e) {
    if ((e as { errno?: number }).errno === 1146) return undefined;
    throw e;
  }
}

/** Thrown out of a pipeline's handle() when it stops while waiting at a DDL (see replayDdl). */
const STOPPED_AT_DDL = Symbol('stopped at a DDL');

/**
 * Sources of this process that reached the same DDL (ddlKey): the change is made on a target once
 * every source of this process writing to it is here (see Tailer.replayDdl).
 */
interface DdlMeet {
  readonly key: string;
  readonly statement: string;
  readonly tables: readonly string[];
  /**
   * Pipeline name → the sources it waits for (writers of the targets it found without the
   * change). Kept after it goes on (`left`): a source still waiting may need to know it came.
   */
  readonly arrived: Map<string, { needs: Set<string>; left: boolean }>;
  /** Per target: the making of the change there (once, whoever gets there first). */
  readonly made: Map<string, Promise<void>>;
}

// ---------------------------------------------------------------------------------------------

/** A row's primary key as a string of its canonical bytes (equal exactly when the values are). */
function pkKey(meta: TableMeta, row: Row): string {
  return tupleKey(meta.pk.map((i) => row[i] ?? null));
}

interface Batch {
  ops: RowOp[];
  position: BinlogPosition;
  /** Estimated local commit time (ms) of the batch's first source transaction. */
  oldest: number;
  /**
   * Settles once the batch's changed keys are in verify's change filter (forward only): the
   * dispatcher starts recording when it routes the transaction, and the worker waits for it
   * before its target commit, so the record stays write-ahead but overlaps the queue wait.
   */
  recorded?: Promise<void>;
}

/** One (source, target) pair: applies the source's operations for the target, in order. */
class Worker {
  readonly queue: Batch[] = [];
  queuedOps = 0;
  committed: BinlogPosition | undefined;
  /** The target's committed position when the run started: transactions up to it are skipped. */
  skipUntil: BinlogPosition | undefined;
  applying: Batch | undefined;
  appliedOps = 0;
  lastCommitAt = Date.now();
  flushWanted = false;
  /** The look for freed parked keys made on stopping (run once). */
  private finalFreedCheck = false;
  /**
   * Rounds of looks for freed parked keys asked for (settleFreed) and made: a caller waiting
   * for the tailer to catch up waits for one made after it asked.
   */
  freedAsked = 0;
  freedDone = 0;
  stopping = false;
  failed: unknown;
  private wakeUp: (() => void) | undefined;
  private roomWaiters: (() => void)[] = [];
  loop: Promise<void> = Promise.resolve();

  constructor(
    readonly target: string,
    readonly shard: Shard,
    readonly applier: TargetApplier,
    private readonly p: Pipeline,
  ) {}

  enqueue(b: Batch): void {
    this.queue.push(b);
    this.queuedOps += b.ops.length;
    this.wake();
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  /**
   * Ask for a look for freed parked keys now (TargetApplier.promoteFreed); the round it will be
   * done in is returned (`freedDone` reaches it). No stream event says such a key came free, so
   * a catch-up that ended at positions alone could leave the row missing for up to a second.
   */
  settleFreed(): number {
    this.freedAsked++;
    this.wake();
    return this.freedAsked;
  }

  /** Resolves when the queue has room (or the worker failed). */
  room(max: number): Promise<void> {
    if (this.queuedOps <= max || this.failed) return Promise.resolve();
    return new Promise((r) => this.roomWaiters.push(r));
  }

  private freeRoom(): void {
    const ws = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of ws) w();
  }

  /** True when everything read so far (up to `pos`) is committed here. */
  reached(pos: BinlogPosition): boolean {
    return this.committed !== undefined && comparePositions(this.committed, pos) >= 0;
  }

  oldestPending(): number | undefined {
    return this.applying?.oldest ?? this.queue[0]?.oldest;
  }

  start(): void {
    this.loop = this.run().catch((e: unknown) => {
      this.failed = e;
      this.freeRoom();
      this.p.tailer.fail(e);
    });
  }

  private async commit(
    ops: RowOp[],
    position: BinlogPosition,
    recorded: readonly Promise<void>[] = [],
    lookForFreed = false,
  ): Promise<void> {
    const pos: ApplyPosition = {
      source: this.p.posKey,
      file: position.file,
      pos: position.pos,
      gtid: position.gtid,
    };
    // Write-ahead: every key of these operations is in verify's change filter before they
    // commit. The dispatcher started recording when it routed them; what is left of that wait
    // overlaps the writes. A failed record is not the target's fault: it must not be retried
    // as a target error (the applier retries those), so it leaves as the tailer's own.
    const beforeCommit = async () => {
      try {
        await Promise.all(recorded);
      } catch (e) {
        if (e instanceof ReshardError) throw e;
        throw new RetriesExhaustedError(
          'E_TAIL_CHANGES',
          `${this.p.label}: could not record changed keys for verify --incremental in the control schema: ${(e as Error)?.message ?? e}`,
          {
            hint: 'check the control server; re-running reshard tail resumes from the committed positions',
            cause: e,
          },
        );
      }
    };
    await this.applier.apply(ops, pos, {
      ...(recorded.length > 0 ? { beforeCommit } : {}),
      ...(lookForFreed ? { lookForFreed } : {}),
    });
    this.committed = position;
    this.lastCommitAt = Date.now();
  }

  private async run(): Promise<void> {
    const batchOps = this.p.tailer.opts.batchOps;
    for (;;) {
      if (this.queue.length > 0) {
        // Several source transactions in one target transaction, with the last one's position.
        // Operations are grouped by table (operations on different tables commute: the
        // applier's rows and parked rows are per table), and each table's are reduced by
        // compact.ts to few runs of one kind, which the applier writes one statement per run.
        // Where foreign keys link the tracked tables (fkOrdered) a parent's delete may only
        // follow its children's, as on the source: the batch keeps source order across tables,
        // in runs of one table, and only adjacent operations on one key are reduced. Disabling
        // the checks instead would be wrong: InnoDB cascades are not in the binlog, the target's
        // own cascade is what keeps its children in step.
        const first = this.queue.shift()!;
        const recorded = new Set<Promise<void>>();
        const taken: Batch[] = [];
        let count = 0;
        let position = first.position;
        const add = (b: Batch) => {
          taken.push(b);
          if (b.recorded) recorded.add(b.recorded);
          count += b.ops.length;
          position = b.position;
        };
        add(first);
        while (this.queue.length > 0 && count + this.queue[0]!.ops.length <= batchOps)
          add(this.queue.shift()!);
        const inOrder = this.p.fkOrdered.has(this.target);
        const ops: RowOp[] = [];
        for (const group of inOrder ? tableRuns(taken) : byTable(taken)) {
          const meta = group[0]!.table;
          const exact = !inOrder && (this.p.exactPk.get(meta) ?? false);
          for (const op of compactOps(group, (o) => pkKey(meta, o.row), exact)) ops.push(op);
        }
        this.applying = { ops, position, oldest: first.oldest };
        await this.commit(ops, position, [...recorded]);
        this.applying = undefined;
        this.queuedOps -= count;
        this.appliedOps += count;
        this.p.tailer.metrics.appliedOps.inc({ source: this.p.name, target: this.target }, count);
        this.freeRoom();
        continue;
      }
      // Idle: move the committed position over transactions that had nothing for this target,
      // at most once a second (or at once when a flush is wanted), so restarts and status see it.
      const latest = this.p.latest?.position;
      if (
        latest &&
        !this.reached(latest) &&
        (this.flushWanted || this.stopping || Date.now() - this.lastCommitAt >= DEFAULTS.idleFlushMs)
      ) {
        await this.commit([], latest);
        continue;
      }
      // Rows this source parked may have had their key freed by a write no stream carries (an
      // in-place shard's own application): looked for once a second while idle, at once when a
      // caller waits for the tailer to catch up (settleFreed), and once more before stopping
      // (TargetApplier.promoteFreed).
      const asked = this.freedAsked;
      const forced = asked > this.freedDone || (this.stopping && !this.finalFreedCheck);
      if (this.committed && this.applier.freedCheckDue(forced)) {
        this.finalFreedCheck ||= this.stopping;
        await this.commit([], this.committed, [], forced);
        this.freedDone = asked;
        continue;
      }
      // Nothing parked (or nothing committed yet): the asked rounds have nothing to look for.
      this.freedDone = asked;
      if (this.stopping) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, DEFAULTS.idleFlushMs);
        this.wakeUp = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------

interface Latest {
  position: BinlogPosition;
}

/** One source shard: its stream, its dispatcher and its workers. */
class Pipeline {
  readonly posKey: string;
  readonly workers = new Map<string, Worker>();
  /**
   * Changed keys for `reshard verify --incremental` (forward only: verify compares the old shards
   * with the new ones), recorded as transactions are routed, before any target commits them.
   * On its own control connection: the recorder's writes then never queue behind another
   * source's or the status mirror's. It reconnects when the control server restarts (ControlLink;
   * the records, and the target commits behind them, wait meanwhile).
   */
  private changes: ChangeRecorder | undefined;
  private changesControl: ControlLink | undefined;
  /** Per target, per table: how to decode images for that target. */
  private readonly targetTables = new Map<string, Map<string, TargetTable>>();
  /** Target tables whose primary keys compare by bytes (compact.ts may reorder their ops). */
  readonly exactPk = new WeakMap<TableMeta, boolean>();
  /** Targets where tracked tables are linked by foreign keys: batches keep source order. */
  readonly fkOrdered = new Set<string>();
  /** The source's own tables: shard-key extraction and primary-key comparison. */
  private readonly sourceTables = new Map<string, TargetTable>();
  /** Tracked tables whose source engine cannot roll back (see ZongjiSourceOptions). */
  private readonly nonTransactional = new Set<string>();
  latest: Latest | undefined;
  state: MirrorRow['state'] = 'starting';
  private conn: Connection | undefined;
  private flavor: Flavor = 'mariadb';
  private clockOffsetMs = 0;
  private source: BufferedChangeSource | undefined;
  private current: ChangeEvent | undefined;
  stopping = false;
  private loop: Promise<void> = Promise.resolve();
  private startPosition: BinlogPosition | undefined;
  private readonly tables: TableSpec[];
  private lastHeard = Date.now();
  events = 0;
  rows = 0;
  transactions = 0;
  reconnects = 0;
  private samples: { t: number; events: number; rows: number }[] = [];

  constructor(
    readonly tailer: Tailer,
    readonly name: string,
    readonly shard: Shard,
    readonly targets: Shard[],
  ) {
    this.posKey = tailer.direction === 'forward' ? name : `reverse:${name}`;
    this.tables = tailer.sourceSide.tables;
  }

  get label(): string {
    return `source ${this.name}`;
  }

  private async sourceConn(): Promise<Connection> {
    if (!this.conn) this.conn = await connect(this.shard.endpoint, this.label, { withDatabase: false });
    return this.conn;
  }

  /** Run a query on the source's own connection, replacing it once if it was lost. */
  private async onSource<T>(fn: (c: Connection) => Promise<T>): Promise<T> {
    try {
      return await fn(await this.sourceConn());
    } catch (e) {
      if (classifyError(e) !== 'reconnect' && !(e instanceof PreconditionError && e.code === 'E_CONNECT'))
        throw e;
      this.conn?.destroy();
      this.conn = undefined;
      return fn(await this.sourceConn());
    }
  }

  async setup(): Promise<void> {
    const t = this.tailer;
    const conn = await this.sourceConn();
    this.flavor = (await serverFlavor(conn)).flavor;
    if (t.direction === 'forward') {
      // Its own connection, taking several statements per packet: a record is two round trips.
      // A new connection records nothing before the tailer's stream locks are held again.
      this.changesControl = await t.openLink({ multipleStatements: true, onConnect: () => t.ensureLocked() });
      // Compactions of the change filter on a connection of their own, one for all sources
      // (they take turns): records never queue behind them.
      this.changes = new ChangeRecorder(
        this.changesControl,
        t.ctx.job.id,
        this.name,
        50,
        await t.compactions(),
      );
    }
    await this.checkBinlogSettings(conn);
    await this.measureClock(conn);
    const db = this.shard.endpoint.database;
    for (const spec of this.tables) {
      const def = await requireTableDefinition(conn, db, spec.name, this.label, { flavor: this.flavor });
      this.sourceTables.set(spec.name, targetTable(def, spec));
      this.noteEngine(spec.name, def.engine);
    }
    // One worker per target this source has a moving segment to.
    for (const target of this.targets) {
      const applier = new TargetApplier({
        jobId: t.ctx.job.id,
        owner: jobOwner(t.ctx.control.database, t.ctx.job),
        target: target.name,
        metaDb: t.opts.metaDb,
        sourceOwnerOf: t.sourceOwnerOf,
        connect: () => connect(target.endpoint, `target ${target.name}`, { multipleStatements: true }),
        attempts: 30,
        freedParked: {
          source: this.name,
          tables: () => [...(this.targetTables.get(target.name)?.values() ?? [])].map((tt) => tt.meta),
        },
      });
      await applier.open();
      const w = new Worker(target.name, target, applier, this);
      const applied = await applier.appliedPosition(this.posKey);
      if (applied) {
        w.skipUntil = { file: applied.file, pos: applied.pos, gtid: applied.gtid };
        w.committed = w.skipUntil;
      }
      this.workers.set(target.name, w);
      await this.loadTargetTables(target);
    }
    const applied = [...this.workers.values()].map((w) => w.skipUntil);
    let start: BinlogPosition | undefined;
    if (applied.every((p) => p !== undefined)) {
      start = minPosition(applied as BinlogPosition[]);
    } else {
      const initial =
        t.opts.fromPosition ??
        (await readStartPosition(t.ctx.control.conn, t.ctx.job.id, this.name, t.direction));
      if (!initial) {
        throw new PreconditionError(
          'E_TAIL_NO_START',
          `${this.label}: no start position is recorded for the ${t.direction} stream and no target has applied anything yet`,
          {
            hint:
              t.direction === 'forward'
                ? 'start the copy first (`reshard copy` records where tailing begins), or pass --source and --from-position FILE:POS'
                : 'cutover records where reverse tailing begins; or pass --source and --from-position FILE:POS',
          },
        );
      }
      // A target with a position resumes there; the others start from the initial position.
      const known = applied.filter((p): p is BinlogPosition => p !== undefined);
      start = minPosition([initial, ...known]);
    }
    if (start && start.gtid === undefined) {
      start = { ...start, gtid: await gtidAtPosition(conn, this.flavor, start).catch(() => undefined) };
    }
    this.startPosition = start;
    await this.checkNotPurged(start!);
  }

  private noteEngine(table: string, engine: string | null): void {
    if (engine !== null && engine.toLowerCase() !== 'innodb') this.nonTransactional.add(table);
    else this.nonTransactional.delete(table);
  }

  private async loadTargetTables(target: Shard): Promise<void> {
    const c = await connect(target.endpoint, `target ${target.name}`);
    try {
      const m = new Map<string, TargetTable>();
      for (const spec of this.tables) {
        const def = await requireTableDefinition(
          c,
          target.endpoint.database,
          spec.name,
          `target ${target.name}`,
        );
        const tt = targetTable(def, spec);
        this.exactPk.set(tt.meta, tt.pkExact);
        m.set(spec.name, tt);
      }
      this.targetTables.set(target.name, m);
      const linked = await foreignKeyTables(c, target.endpoint.database);
      if (this.tables.some((t) => linked.has(t.name))) this.fkOrdered.add(target.name);
      else this.fkOrdered.delete(target.name);
    } finally {
      await c.end().catch(() => c.destroy());
    }
  }

  private async checkBinlogSettings(conn: Connection): Promise<void> {
    const [rows] = await conn.query(
      'SELECT @@GLOBAL.log_bin AS logBin, @@GLOBAL.binlog_format AS fmt, @@GLOBAL.binlog_row_image AS img',
    );
    const r = (rows as Record<string, unknown>[])[0] ?? {};
    const where = describeEndpoint(this.shard.endpoint);
    if (String(r.logBin) !== '1' && String(r.logBin).toUpperCase() !== 'ON') {
      throw new PreconditionError('E_BINLOG_OFF', `${this.label} (${where}) has no binary log`, {
        hint: 'enable log_bin (with binlog_format=ROW, binlog_row_image=FULL) and restart the server',
      });
    }
    if (String(r.fmt).toUpperCase() !== 'ROW') {
      throw new PreconditionError(
        'E_BINLOG_FORMAT',
        `${this.label} (${where}) has binlog_format=${String(r.fmt)}; the tailer needs ROW`,
        { hint: "SET GLOBAL binlog_format = 'ROW' (and binlog_format=ROW under [mysqld]), then re-copy" },
      );
    }
    if (String(r.img).toUpperCase() !== 'FULL') {
      throw new PreconditionError(
        'E_ROW_IMAGE',
        `${this.label} (${where}) has binlog_row_image=${String(r.img)}; the tailer upserts full after-images and needs FULL`,
        { hint: "SET GLOBAL binlog_row_image = 'FULL' (and in the config file), then re-copy" },
      );
    }
  }

  private async measureClock(conn: Connection): Promise<void> {
    const t0 = Date.now();
    const [rows] = await conn.query('SELECT UNIX_TIMESTAMP(NOW(6)) AS now');
    const t1 = Date.now();
    const src = Number((rows as Record<string, unknown>[])[0]?.now) * 1000;
    if (Number.isFinite(src)) this.clockOffsetMs = src - (t0 + t1) / 2;
  }

  private async checkNotPurged(p: BinlogPosition): Promise<void> {
    const files = await this.onSource((c) => binlogFiles(c));
    if (!files.includes(p.file)) {
      throw new PreconditionError(
        'E_BINLOG_PURGED',
        `${this.label}: binlog ${p.file} (needed to continue from ${formatPosition(p)}) is no longer on the server; the oldest it has is ${files[0] ?? 'none'}`,
        {
          hint: 'the changes since that position are lost to the tailer: a re-copy is needed (cancel this job and start a new copy); keep binlogs longer (binlog_expire_logs_seconds / expire_logs_days) than the copy and catch-up take',
          data: { source: this.name, position: formatPosition(p), oldest: files[0] },
        },
      );
    }
  }

  /** Commit time of a source event on the local clock (event timestamps have 1 s resolution). */
  private commitEstimate(ts: number, receivedAt: number): number {
    if (ts <= 0) return receivedAt;
    return Math.min(ts - this.clockOffsetMs + 500, receivedAt);
  }

  start(): void {
    for (const w of this.workers.values()) w.start();
    this.loop = this.dispatch().catch((e: unknown) => {
      this.state = 'failed';
      this.tailer.fail(e);
    });
  }

  private async dispatch(): Promise<void> {
    const t = this.tailer;
    let attempt = 0;
    let failingSince: number | undefined;
    while (!this.stopping) {
      const from = this.latest?.position ?? this.startPosition!;
      const sourceOptions: ZongjiSourceOptions = {
        connection: connectionOptions(this.shard.endpoint, this.label, false),
        flavor: this.flavor,
        serverId: t.serverIdFor(this.name),
        database: this.shard.endpoint.database,
        tables: this.tables.map((s) => s.name),
        nonTransactional: [...this.nonTransactional],
        heartbeatMs: t.opts.heartbeatMs,
        maxBufferedRows: DEFAULTS.maxQueuedOps,
      };
      // The binlog is read and decoded on a thread of its own (source-thread.ts);
      // RESHARD_TAIL_READER_THREAD=0 reads it on this one, as before (for comparison).
      const src: BufferedChangeSource =
        process.env.RESHARD_TAIL_READER_THREAD === '0'
          ? new ZongjiSource(sourceOptions)
          : new ThreadedSource(sourceOptions);
      this.source = src;
      let streamError: unknown;
      try {
        await src.start(from);
      } catch (e) {
        streamError = e;
      }
      if (streamError === undefined) {
        this.state = 'running';
        for (;;) {
          let ev: ChangeEvent;
          try {
            ev = await src.next();
          } catch (e) {
            streamError = e;
            break;
          }
          attempt = 0;
          failingSince = undefined;
          this.lastHeard = Date.now();
          this.current = ev;
          try {
            await this.handle(ev);
          } catch (e) {
            // Stopped while waiting for the other sources at a DDL: nothing of it was applied,
            // and the positions committed stop before it.
            if (e === STOPPED_AT_DDL && this.stopping) break;
            throw e;
          }
          this.current = undefined;
        }
      }
      await src.stop();
      if (this.stopping) break;
      await this.classifyStreamError(streamError, from);
      // Reconnectable: back off, then resume from the last boundary read.
      this.state = 'reconnecting';
      this.reconnects++;
      t.metrics.reconnects.inc({ source: this.name });
      failingSince ??= Date.now();
      if (Date.now() - failingSince > t.opts.reconnectForMs) {
        const e = streamError as Error;
        throw new RetriesExhaustedError(
          'E_TAIL_SOURCE_LOST',
          `${this.label}: the binlog stream could not be re-established for ${Math.round(t.opts.reconnectForMs / 1000)} s: ${e?.message ?? String(e)}`,
          {
            hint: 'check that the source server is up and reachable; re-running reshard tail resumes from the committed positions',
            cause: e,
          },
        );
      }
      const delay = Math.min(10_000, 200 * 2 ** attempt++) * (0.5 + Math.random() / 2);
      t.note(
        `${this.label}: binlog stream lost (${(streamError as Error)?.message ?? streamError}); reconnecting in ${Math.round(delay)} ms from ${formatPosition(this.latest?.position ?? from)}`,
      );
      await sleep(delay, t.stopSignal).catch(() => undefined);
      this.conn?.destroy();
      this.conn = undefined;
    }
  }

  /** Throws the fatal error a stream error stands for; returns when reconnecting may help. */
  private async classifyStreamError(e: unknown, from: BinlogPosition): Promise<void> {
    const err = e as { errno?: number; code?: string; message?: string };
    if (err?.errno === 1236 || err?.errno === 1945 || err?.errno === 1955) {
      const p = this.latest?.position ?? from;
      let files: string[] | undefined;
      try {
        files = await this.onSource((c) => binlogFiles(c));
      } catch {
        files = undefined;
      }
      if (files && !files.includes(p.file)) await this.checkNotPurged(p);
      throw new PreconditionError(
        'E_BINLOG_POSITION',
        `${this.label}: the server refused to stream from ${formatPosition(p)}: ${err.message ?? ''}`,
        {
          hint: 'the binlog no longer holds that position (purged, or lost in a crash of the source): a re-copy is needed',
          cause: e,
        },
      );
    }
    if (err?.errno === 1045 || err?.errno === 1227 || err?.errno === 1142) {
      throw new PreconditionError(
        'E_TAIL_GRANTS',
        `${this.label}: the server refused the binlog stream: ${err.message}`,
        {
          hint: 'the topology user needs REPLICATION SLAVE and REPLICATION CLIENT (GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO …); `reshard preflight` checks grants',
          cause: e,
        },
      );
    }
    if (err?.code === 'E_TAIL_STATEMENT_FORMAT') {
      throw new PreconditionError(err.code, `${this.label}: ${err.message}`, {
        hint: 'every session writing to the shard must log rows: SET GLOBAL binlog_format=ROW, reconnect the applications, and make sure none sets binlog_format per session. The tailer cannot pass this statement (its rows are unknown): cancel this job (reshard rollback --execute) and start over with a new copy',
        cause: e,
      });
    }
    if (err?.code === 'E_ROW_IMAGE') {
      throw new PreconditionError(err.code, `${this.label}: ${err.message}`, {
        hint: 'every session writing to the shard must log full row images: SET GLOBAL binlog_row_image=FULL, reconnect the applications, and make sure none sets binlog_row_image per session. Nothing of that transaction was applied and positions stop before it, but its rows are not in the binlog whole: cancel this job (reshard rollback --execute) and start over with a new copy',
        cause: e,
      });
    }
    if (err?.code === 'E_TAIL_XA' || err?.code === 'E_TAIL_UNDECODABLE' || err?.code === 'E_TAIL_SAVEPOINT') {
      throw new PreconditionError(err.code, `${this.label}: ${err.message}`, {
        hint: 'see the message; reshard tail cannot continue past this event',
        cause: e,
      });
    }
    if (e instanceof StreamError && e.code === 'PROTOCOL_CONNECTION_LOST') return;
    if (e instanceof ReshardError) throw e;
    if (classifyError(e) !== 'fatal') return;
    throw new ReshardError(
      'bug',
      'E_TAIL_STREAM',
      `${this.label}: binlog stream failed: ${err?.message ?? e}`,
      {
        hint: 'this is unexpected; re-running reshard tail resumes from the committed positions. Please report it.',
        cause: e,
      },
    );
  }

  private async handle(ev: ChangeEvent): Promise<void> {
    const t = this.tailer;
    this.events += ev.kind === 'ddl' ? 1 : ev.events;
    t.metrics.events.inc({ source: this.name }, ev.kind === 'ddl' ? 1 : ev.events);
    if (ev.kind === 'transaction') {
      this.rows += ev.changes.length;
      this.transactions++;
      t.metrics.rows.inc({ source: this.name }, ev.changes.length);
      t.metrics.transactions.inc({ source: this.name });
      // Backpressure before routing, so the transaction's operations enter the queues together.
      for (const w of this.workers.values()) {
        await w.room(DEFAULTS.maxQueuedOps);
        if (w.failed) throw w.failed;
      }
      this.dispatchTransaction(ev);
    } else if (ev.kind === 'ddl') {
      await this.handleDdl(ev);
    }
    this.latest = { position: ev.position };
    for (const w of this.workers.values()) w.wake();
  }

  private owners(table: string, img: Record<string, unknown>): Owners {
    const key = imageKey(this.sourceTables.get(table)!, img);
    const seg = this.tailer.ctx.index.segmentOf(key);
    return this.tailer.direction === 'forward'
      ? { old: seg.from, new: seg.to, moves: seg.moves }
      : { old: seg.to, new: seg.from, moves: seg.moves };
  }

  private readonly routeCtx = {
    source: '',
    owners: (table: string, img: Record<string, unknown>) => this.owners(table, img),
    samePk: (table: string, a: Record<string, unknown>, b: Record<string, unknown>) => {
      const m = this.sourceTables.get(table)!.meta;
      return m.pk.every((i) => sameValue(a[m.columns[i]!], b[m.columns[i]!]));
    },
  };

  private dispatchTransaction(txn: SourceTransaction): void {
    this.routeCtx.source = this.name;
    const routed: RoutedOp[] = [];
    for (const ch of txn.changes) routeChange(ch, this.routeCtx, routed);
    if (routed.length === 0) return;
    const perTarget = new Map<string, RowOp[]>();
    for (const r of routed) {
      const w = this.workers.get(r.target);
      if (!w) {
        throw new ReshardError(
          'bug',
          'E_BUG',
          `${this.label}: a row routes to target ${r.target}, but the plan has no moving segment ${this.name} → ${r.target}`,
          { hint: 'this is a defect in reshard (plan and router disagree); please report it' },
        );
      }
      if (w.skipUntil && comparePositions(txn.position, w.skipUntil) <= 0) continue;
      const tt = this.targetTables.get(r.target)!.get(r.table)!;
      let ops = perTarget.get(r.target);
      if (!ops) {
        ops = [];
        perTarget.set(r.target, ops);
      }
      ops.push({ kind: r.kind, table: tt.meta, source: this.name, row: tt.decode(r.image) });
    }
    const oldest = this.commitEstimate(txn.timestamp, txn.receivedAt);
    let recorded: Promise<void> | undefined;
    if (this.changes && perTarget.size > 0) {
      recorded = this.changes.record(perTarget);
      // Observed by the worker that commits these operations; a stop before that must not turn
      // a failed record into an unhandled rejection.
      recorded.catch(() => undefined);
    }
    for (const [target, ops] of perTarget)
      this.workers
        .get(target)!
        .enqueue({ ops, position: txn.position, oldest, ...(recorded ? { recorded } : {}) });
  }

  /** Wait until every worker has committed everything dispatched so far. */
  private async flushAll(): Promise<void> {
    const latest = this.latest;
    if (!latest) return;
    for (const w of this.workers.values()) {
      w.flushWanted = true;
      w.wake();
    }
    try {
      while (![...this.workers.values()].every((w) => w.queue.length === 0 && w.reached(latest.position))) {
        for (const w of this.workers.values()) if (w.failed) throw w.failed;
        await sleep(20);
      }
    } finally {
      for (const w of this.workers.values()) w.flushWanted = false;
    }
  }

  private async handleDdl(ev: SourceDdl): Promise<void> {
    const t = this.tailer;
    await this.flushAll();
    const pending = [...this.workers.values()].filter(
      (w) => !(w.skipUntil && comparePositions(ev.position, w.skipUntil) <= 0),
    );
    if (pending.length === 0) return;
    const stmt = ev.statement.length > 2000 ? `${ev.statement.slice(0, 2000)}…` : ev.statement;
    if (!t.opts.applyDdl || !ev.safeToApply) {
      const hint = ev.safeToApply
        ? 'positions are committed up to just before it. Re-run reshard tail with --apply-ddl to replay it on the targets (a change already made there by hand is recognised), and make the same change on the other sources'
        : `a ${classifyDdl(ev.statement)?.kind ?? 'DDL'} on a tracked table cannot be replayed on targets, which hold other sources' rows too: the copy of ${ev.tables.join(', ')} is no longer valid — cancel this job and start a new one (re-copy)`;
      throw new PreconditionError(
        'E_TAIL_DDL',
        `${this.label}: DDL on tracked table ${ev.tables.join(', ')} at ${formatPosition(ev.position)}: ${stmt}`,
        {
          hint,
          data: { source: this.name, statement: ev.statement, tables: ev.tables, position: ev.position },
        },
      );
    }
    const made = await this.tailer.replayDdl(
      this,
      ev,
      pending.map((w) => w.shard),
    );
    if (made === 'stopped') throw STOPPED_AT_DDL;
    for (const w of pending) await this.loadTargetTables(w.shard);
    const conn = await this.sourceConn();
    for (const spec of this.tables.filter((s) => ev.tables.includes(s.name))) {
      const def = await readTableDefinition(conn, this.shard.endpoint.database, spec.name);
      if (def) {
        this.sourceTables.set(spec.name, targetTable(def, spec));
        this.noteEngine(spec.name, def.engine);
      }
    }
    t.note(`${this.label}: applied DDL to ${pending.map((w) => w.target).join(', ')}: ${stmt}`);
  }

  async applyDdlOn(target: Shard, ev: SourceDdl): Promise<void> {
    const info = classifyDdl(ev.statement);
    const tdb = target.endpoint.database;
    for (const ref of info?.tables ?? []) {
      if (ref.schema !== undefined && ref.schema !== tdb) {
        throw new PreconditionError(
          'E_TAIL_DDL_QUALIFIED',
          `${this.label}: the DDL names database ${ref.schema}, but target ${target.name} uses database ${tdb}: ${ev.statement}`,
          { hint: `make the change on ${target.name} by hand, then re-run with --apply-ddl` },
        );
      }
    }
    const c = await connect(target.endpoint, `target ${target.name}`);
    try {
      await c.query(ev.statement);
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      if (errno !== undefined && ALREADY_APPLIED.has(errno)) return;
      if (classifyError(e) !== 'fatal') throw e;
      throw new PreconditionError(
        'E_TAIL_DDL_APPLY',
        `${this.label}: replaying DDL on target ${target.name} failed: ${(e as Error).message}: ${ev.statement}`,
        {
          hint: `make ${ev.tables.join(', ')} on ${target.name} the same as on ${this.name} (compare SHOW CREATE TABLE on both) by hand, then re-run reshard tail --apply-ddl: a target whose table already matches the source's is left as it is`,
          cause: e,
        },
      );
    } finally {
      await c.end().catch(() => c.destroy());
    }
  }

  /**
   * Of `targets`, those where a table of `tables` differs from this source's own right now
   * (SHOW CREATE TABLE but for the AUTO_INCREMENT counter): the targets a DDL the source has
   * made is still to be replayed on.
   */
  async targetsWithout(targets: readonly Shard[], tables: readonly string[]): Promise<Shard[]> {
    const mine = new Map<string, string | undefined>();
    for (const t of tables)
      mine.set(t, await this.onSource((c) => shapeOf(c, this.shard.endpoint.database, t)));
    const out: Shard[] = [];
    for (const target of targets) {
      const c = await connect(target.endpoint, `target ${target.name}`);
      try {
        for (const t of tables) {
          const theirs = await shapeOf(c, target.endpoint.database, t);
          if (theirs === undefined || theirs !== mine.get(t)) {
            out.push(target);
            break;
          }
        }
      } finally {
        await c.end().catch(() => c.destroy());
      }
    }
    return out;
  }

  /** The source's binlog end right now (waiting, until `deadline`, while the source is unreachable). */
  async masterPosition(deadline = Number.POSITIVE_INFINITY): Promise<BinlogPosition> {
    for (;;) {
      try {
        return await this.onSource((c) => readMasterPosition(c, this.flavor));
      } catch (e) {
        const reconnect =
          classifyError(e) !== 'fatal' || (e instanceof PreconditionError && e.code === 'E_CONNECT');
        if (!reconnect || Date.now() > deadline) throw e;
        this.tailer.throwIfFailed();
        await sleep(500);
      }
    }
  }

  startAt(): BinlogPosition | undefined {
    return this.startPosition;
  }

  committedMin(): BinlogPosition | undefined {
    const ps = [...this.workers.values()].map((w) => w.committed);
    if (ps.some((p) => p === undefined)) return undefined;
    return minPosition(ps as BinlogPosition[]);
  }

  lagSeconds(): number {
    const now = Date.now();
    let oldest: number | undefined;
    const consider = (x: number | undefined) => {
      if (x !== undefined && (oldest === undefined || x < oldest)) oldest = x;
    };
    for (const w of this.workers.values()) consider(w.oldestPending());
    const cur = this.current;
    if (cur && cur.kind !== 'progress') consider(this.commitEstimate(cur.timestamp, cur.receivedAt));
    const buffered = this.source?.oldestBuffered();
    if (buffered && buffered.kind !== 'progress')
      consider(this.commitEstimate(buffered.timestamp, buffered.receivedAt));
    if (oldest !== undefined) return Math.max(0, (now - oldest) / 1000);
    const heard = Math.max(this.lastHeard, this.source?.lastMessage ?? 0);
    const live = this.state === 'running' && now - heard < 2 * this.tailer.opts.heartbeatMs + 1000;
    return live ? 0 : Math.max(0, (now - heard) / 1000);
  }

  lastHeardAt(): number {
    return Math.max(this.lastHeard, this.source?.lastMessage ?? 0);
  }

  sample(now: number): void {
    this.samples.push({ t: now, events: this.events, rows: this.rows });
    while (this.samples.length > 2 && now - this.samples[0]!.t > 5000) this.samples.shift();
  }

  rates(): { eventsPerSecond: number; rowsPerSecond: number } {
    const a = this.samples[0];
    const b = this.samples.at(-1);
    if (!a || !b || b.t === a.t) return { eventsPerSecond: 0, rowsPerSecond: 0 };
    const dt = (b.t - a.t) / 1000;
    return { eventsPerSecond: (b.events - a.events) / dt, rowsPerSecond: (b.rows - a.rows) / dt };
  }

  status(): SourceStatus {
    return {
      source: this.name,
      state: this.state,
      position: this.committedMin(),
      received: this.latest?.position,
      lagSeconds: this.lagSeconds(),
      ...this.rates(),
      events: this.events,
      rows: this.rows,
      transactions: this.transactions,
      reconnects: this.reconnects,
      targets: [...this.workers.values()].map((w) => ({
        target: w.target,
        committed: w.committed,
        appliedOps: w.appliedOps,
        queuedOps: w.queuedOps,
      })),
    };
  }

  /** Resolves once every worker committed at least `pos` (the stream read past it). */
  async waitFor(pos: BinlogPosition, deadline: number): Promise<void> {
    for (const w of this.workers.values()) w.flushWanted = true;
    let rounds: Map<Worker, number> | undefined;
    try {
      for (;;) {
        this.tailer.throwIfFailed();
        const latest = this.latest;
        if (latest && comparePositions(latest.position, pos) >= 0) {
          for (const w of this.workers.values()) w.wake();
          if ([...this.workers.values()].every((w) => w.reached(pos))) {
            // Positions reached; then one look for parked rows whose key came free (in place).
            rounds ??= new Map([...this.workers.values()].map((w) => [w, w.settleFreed()]));
            if ([...rounds].every(([w, r]) => w.freedDone >= r)) return;
          }
        }
        if (Date.now() > deadline) {
          throw new RetriesExhaustedError(
            'E_TAIL_NOT_CAUGHT_UP',
            `${this.label}: not caught up with ${formatPosition(pos)} in time (read up to ${formatPosition(latest?.position)}, committed ${formatPosition(this.committedMin())})`,
            {
              hint: 'the tailer is slower than the write load or a server is unreachable; see the progress lines',
            },
          );
        }
        await sleep(25);
      }
    } finally {
      for (const w of this.workers.values()) w.flushWanted = false;
    }
  }

  /** Graceful stop: stop reading, let the workers commit what was read. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.source?.stop();
    await this.loop;
    for (const w of this.workers.values()) {
      w.stopping = true;
      w.wake();
    }
    await Promise.all([...this.workers.values()].map((w) => w.loop));
    if (this.state !== 'failed') this.state = 'stopped';
  }

  async close(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.applier.close().catch(() => undefined)));
    await this.conn?.end().catch(() => this.conn?.destroy());
    this.conn = undefined;
    await this.changesControl?.close().catch(() => undefined);
    this.changesControl = undefined;
    await this.changes?.settle();
  }
}

// ---------------------------------------------------------------------------------------------

/** A batch's operations per table, each table's in source order. */
function byTable(batches: readonly Batch[]): Iterable<RowOp[]> {
  const out = new Map<RowOp['table'], RowOp[]>();
  for (const b of batches) {
    for (const op of b.ops) {
      const list = out.get(op.table);
      if (list) list.push(op);
      else out.set(op.table, [op]);
    }
  }
  return out.values();
}

/** A batch's operations in source order, cut into maximal runs of one table. */
function tableRuns(batches: readonly Batch[]): RowOp[][] {
  const out: RowOp[][] = [];
  for (const b of batches) {
    for (const op of b.ops) {
      const last = out[out.length - 1];
      if (last && last[0]!.table === op.table) last.push(op);
      else out.push([op]);
    }
  }
  return out;
}

/** Tables of `database` that have a foreign key or are referenced by one. */
async function foreignKeyTables(conn: Connection, database: string): Promise<Set<string>> {
  const [rows] = await conn.query(
    `SELECT TABLE_NAME AS child, REFERENCED_TABLE_NAME AS parent
       FROM information_schema.REFERENTIAL_CONSTRAINTS
      WHERE CONSTRAINT_SCHEMA = ?`,
    [database],
  );
  const out = new Set<string>();
  for (const r of rows as { child: string; parent: string }[]) {
    out.add(String(r.child));
    out.add(String(r.parent));
  }
  return out;
}

class Tailer implements TailHandle {
  readonly opts: Required<
    Omit<TailOptions, 'ctx' | 'sources' | 'fromPosition' | 'onProgress' | 'metricsPort' | 'onNote'>
  > &
    TailOptions;
  readonly direction: Direction;
  readonly sourceSide: Topology;
  readonly targetSide: Topology;
  readonly sourceOwnerOf: ReturnType<typeof sourceOwnerFn>;
  readonly metrics: TailMetrics;
  readonly pipelines: Pipeline[] = [];
  private readonly stopController = new AbortController();
  private failure: unknown;
  private stopping: Promise<TailStatus> | undefined;
  private timers: NodeJS.Timeout[] = [];
  private mirroring: Promise<void> = Promise.resolve();
  private server: import('node:http').Server | undefined;
  metricsUrl: string | undefined;
  private resolveDone!: (s: TailStatus) => void;
  private rejectDone!: (e: unknown) => void;
  readonly done: Promise<TailStatus>;
  private readonly locks: string[] = [];
  private stoppedBecause: string | undefined;
  /** The job's state when this tailer started (watchJob acts on a change from it). */
  private startState: string | undefined;
  /** A job-state read is in flight (watchJob): ticks do not pile up behind a slow control server. */
  private watching = false;
  /**
   * The tailer's control connection: stream locks, status mirror, job watch, events. It survives a
   * control-server restart (ControlLink): a new connection first takes the stream locks again
   * (retakeLocks), and work on it is retried until `reconnectForMs`.
   */
  private control: ControlLink | undefined;
  /** The change recorders' compactions, every source's, on one control connection (compactions()). */
  private compactLink: Promise<ControlLink> | undefined;
  /** Mirrors queued or running: the timer adds none while one waits for the control server. */
  private mirrorsQueued = 0;

  constructor(
    readonly ctx: TailContext,
    opts: TailOptions,
  ) {
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as TailOptions;
    this.opts = {
      direction: 'forward',
      metaDb: DEFAULTS.metaDb,
      applyDdl: false,
      batchOps: DEFAULTS.batchOps,
      heartbeatMs: DEFAULTS.heartbeatMs,
      statusIntervalMs: DEFAULTS.statusIntervalMs,
      progressIntervalMs: DEFAULTS.progressIntervalMs,
      reconnectForMs: DEFAULTS.reconnectForMs,
      jobWatchMs: DEFAULTS.jobWatchMs,
      otherDirectionWaitMs: DEFAULTS.otherDirectionWaitMs,
      ...given,
    };
    this.direction = this.opts.direction;
    this.sourceSide = this.direction === 'forward' ? ctx.from : ctx.to;
    this.targetSide = this.direction === 'forward' ? ctx.to : ctx.from;
    const side = this.direction === 'forward' ? 'from' : 'to';
    this.sourceOwnerOf = sourceOwnerFn((k) => ctx.index.ownerOf(side, k));
    this.metrics = createTailMetrics(() => {
      const m = new Map<string, { lagSeconds: number; eventsPerSecond: number; rowsPerSecond: number }>();
      for (const p of this.pipelines) m.set(p.name, { lagSeconds: p.lagSeconds(), ...p.rates() });
      return m;
    });
    this.done = new Promise<TailStatus>((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    // `done` is observed by whoever awaits it; never let it be an unhandled rejection meanwhile.
    this.done.catch(() => undefined);
  }

  get stopSignal(): AbortSignal {
    return this.stopController.signal;
  }

  note(text: string): void {
    this.opts.onNote?.(text);
  }

  /** A replication server id stable per (control schema, job, direction, source), unlikely to clash. */
  serverIdFor(source: string): number {
    const h = createHash('sha256')
      .update(`${this.ctx.control.database}\0${this.ctx.job.name}\0${this.direction}\0${source}`)
      .digest();
    return 0x40000000 + (h.readUInt32BE(0) % 0x3fffffff);
  }

  fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e ?? new Error('unknown failure');
    // The failure surfaces through `done` (and stop()'s callers); this call only winds down.
    this.stop().catch(() => undefined);
  }

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private readonly ddlMeets = new Map<string, DdlMeet>();

  /**
   * Replay a DDL that source pipeline `p` read on its `targets` (with --apply-ddl), once.
   *
   * A target holds rows of several sources. Its table may change shape only when every source
   * that writes to it has committed all its rows of the old shape: a column renamed on the target
   * while another source's stream still carries rows naming the old column would fail them
   * (error 1054), for good. The operator makes the change on every source (the tailer's hint
   * says so); each source's stream stops at its DDL, after committing everything before it, and
   * waits here. The change is made on a target as soon as every source of this process writing
   * to that target has reached the same statement (sources sharing only some targets each wait
   * for the writers of their own targets); then those go on with the new shape.
   *
   * Targets whose table already has the source's shape (SHOW CREATE TABLE equal but for the
   * AUTO_INCREMENT counter) are left alone: another source's replay made the change, or a replay
   * made it before a crash, or the operator did by hand. Only sources this process tails can be
   * waited for; with others tailed by other processes (--source), the change is made at once.
   * Two streams each waiting at a different DDL for the other (the same changes made in another
   * order on two sources) can never meet: E_TAIL_DDL_ORDER.
   */
  async replayDdl(p: Pipeline, ev: SourceDdl, targets: readonly Shard[]): Promise<'made' | 'stopped'> {
    const stmt = ev.statement.length > 200 ? `${ev.statement.slice(0, 200)}…` : ev.statement;
    let todo = await p.targetsWithout(targets, ev.tables);
    if (todo.length === 0) {
      this.note(`${p.label}: ${targets.map((t) => t.name).join(', ')} already have the change: ${stmt}`);
      return 'made';
    }
    const pairs = this.plannedPairs();
    const writersOf = (target: string) =>
      [...pairs].filter(([src, dsts]) => src !== p.name && dsts.includes(target)).map(([src]) => src);
    const here = new Set(this.pipelines.map((q) => q.name));
    const elsewhere = [...new Set(todo.flatMap((t) => writersOf(t.name)))].filter((n) => !here.has(n));
    if (elsewhere.length > 0) {
      this.note(
        `${p.label}: source(s) ${elsewhere.join(', ')} also write to ${todo.map((t) => t.name).join(', ')} but are tailed by another process: the change is made now, without waiting for their streams to reach it (tail every source in one process to have DDL replays wait for each other)`,
      );
    }
    const needsOf = (t: Shard) => writersOf(t.name).filter((n) => here.has(n));
    const needs = new Set(todo.flatMap(needsOf));
    const key = ddlKey(ev.tables, ev.statement);
    for (const m of this.ddlMeets.values()) {
      if (m.key === key || !m.tables.some((t) => ev.tables.includes(t))) continue;
      const there = [...m.arrived].filter(([n, a]) => n !== p.name && !a.left).map(([n]) => n);
      if (there.length === 0) continue;
      throw new PreconditionError(
        'E_TAIL_DDL_DIFFERS',
        `${p.label} reached a different DDL on ${ev.tables.join(', ')} than source(s) ${there.join(', ')}: "${stmt}" against "${m.statement}"`,
        {
          hint: "targets are shared by the sources, so a schema change is replayed only when every source made the same statement; make the change on the targets by hand (each table like the sources' own), then re-run reshard tail --apply-ddl: targets that already have it are left as they are",
          data: { source: p.name, statement: ev.statement, other: m.statement, otherSources: there },
        },
      );
    }
    let meet = this.ddlMeets.get(key);
    if (!meet) {
      meet = { key, statement: ev.statement, tables: ev.tables, arrived: new Map(), made: new Map() };
      this.ddlMeets.set(key, meet);
    }
    const m = meet;
    m.arrived.set(p.name, { needs, left: false });
    try {
      let noted = Date.now();
      let checked = Date.now();
      for (;;) {
        this.throwIfFailed();
        if (p.stopping) return 'stopped';
        const came = (n: string) => m.arrived.has(n);
        // Make the change on every target whose writers are all here (each target once).
        const ready = todo.filter((t) => needsOf(t).every(came));
        for (const t of ready) {
          let making = m.made.get(t.name);
          if (!making) {
            making = (async () => {
              if ((await p.targetsWithout([t], ev.tables)).length > 0) await p.applyDdlOn(t, ev);
            })();
            making.catch(() => undefined);
            m.made.set(t.name, making);
          }
          await making;
        }
        todo = todo.filter((t) => !ready.includes(t));
        if (todo.length === 0) return 'made';
        const missing = [...new Set(todo.flatMap(needsOf))].filter((n) => !came(n));
        // A source we wait for that waits at another DDL for us never comes.
        for (const n of missing) {
          const other = [...this.ddlMeets.values()].find((x) => {
            const a = x.arrived.get(n);
            return x !== m && a !== undefined && !a.left && a.needs.has(p.name) && !x.arrived.has(p.name);
          });
          if (other) {
            throw new PreconditionError(
              'E_TAIL_DDL_ORDER',
              `${p.label} waits at "${stmt}" for source ${n}, which waits at "${other.statement.length > 200 ? `${other.statement.slice(0, 200)}…` : other.statement}" for ${p.label}: the sources made their schema changes in different orders`,
              {
                hint: "targets are shared by the sources, so each change is replayed only when every source writing to a target has reached it, in the same order; make the changes on the targets by hand (each table like the sources' own), then re-run reshard tail --apply-ddl: targets that already have them are left as they are",
                data: { source: p.name, statement: ev.statement, other: n, otherStatement: other.statement },
              },
            );
          }
        }
        if (Date.now() - checked >= 2000) {
          checked = Date.now();
          // Made on the targets meanwhile (by hand, or by a process that does not wait): go on.
          todo = await p.targetsWithout(todo, ev.tables);
          if (todo.length === 0) return 'made';
        }
        if (Date.now() - noted >= 10_000) {
          noted = Date.now();
          this.note(
            `${p.label}: waiting for source(s) ${missing.join(', ')} to reach the same DDL before it is made on ${todo.map((t) => t.name).join(', ')} (make it on every source): ${stmt}`,
          );
        }
        await sleep(100);
      }
    } finally {
      const a = m.arrived.get(p.name);
      if (a) a.left = true;
      if ([...m.arrived.values()].every((x) => x.left) && this.ddlMeets.get(key) === m)
        this.ddlMeets.delete(key);
    }
  }

  private plannedPairs(): Map<string, string[]> {
    const pairs = new Map<string, Set<string>>();
    for (const s of this.ctx.plan.segments) {
      if (!s.moves) continue;
      const [src, dst] = this.direction === 'forward' ? [s.from, s.to] : [s.to, s.from];
      let set = pairs.get(src);
      if (!set) {
        set = new Set();
        pairs.set(src, set);
      }
      set.add(dst);
    }
    return new Map([...pairs].map(([k, v]) => [k, [...v].sort()]));
  }

  async start(): Promise<void> {
    const pairs = this.plannedPairs();
    const shardOf = (topo: Topology, name: string) => topo.shards.find((s) => s.name === name);
    let names = this.sourceSide.shards.map((s) => s.name).filter((n) => pairs.has(n));
    if (this.opts.sources?.length) {
      for (const n of this.opts.sources) {
        if (!shardOf(this.sourceSide, n)) {
          throw new UsageError(
            'E_TAIL_SOURCE',
            `--source ${n}: no such shard on the ${this.direction === 'forward' ? 'from' : 'to'} side`,
            { hint: `use one of: ${this.sourceSide.shards.map((s) => s.name).join(', ')}` },
          );
        }
      }
      const idle = this.opts.sources.filter((n) => !pairs.has(n));
      if (idle.length) {
        throw new UsageError(
          'E_TAIL_SOURCE',
          `--source ${idle.join(', ')}: no segment moves away from ${idle.length === 1 ? 'it' : 'them'} in this plan, so there is nothing to tail`,
          { hint: `sources with moving segments: ${[...pairs.keys()].sort().join(', ') || 'none'}` },
        );
      }
      names = names.filter((n) => this.opts.sources!.includes(n));
    }
    if (names.length === 0) this.note('no segment of this plan moves: nothing to tail');
    if (this.opts.fromPosition && names.length !== 1) {
      throw new UsageError('E_TAIL_FROM_POSITION', '--from-position needs exactly one source', {
        hint: 'add --source NAME (a binlog position belongs to one server)',
      });
    }
    for (const n of names) {
      const targets = pairs.get(n)!.map((t) => shardOf(this.targetSide, t)!);
      this.pipelines.push(new Pipeline(this, n, shardOf(this.sourceSide, n)!, targets));
    }
    this.control = await this.openLink({ onConnect: (c) => this.retakeLocks(c) });
    try {
      for (const p of this.pipelines) await this.lock(p.name);
      await this.refuseFinishedJob();
      await this.refuseOtherDirection();
      await Promise.all(this.pipelines.map((p) => p.setup()));
      if (this.opts.metricsPort !== undefined) {
        this.server = await serveMetrics(this.metrics.registry, this.opts.metricsPort);
        const addr = this.server.address();
        if (addr && typeof addr === 'object') this.metricsUrl = `http://127.0.0.1:${addr.port}/metrics`;
        this.note(`metrics at ${this.metricsUrl}`);
      }
      await this.control.run('recording the tail start', (c) =>
        appendEvent(c, this.ctx.job.id, 'tail-start', {
          direction: this.direction,
          tailer: `${hostname()}:${process.pid}`,
          sources: this.pipelines.map((p) => ({
            source: p.name,
            from: p.startAt(),
            targets: p.targets.map((t) => t.name),
          })),
        }),
      );
    } catch (e) {
      await Promise.all(this.pipelines.map((p) => p.close()));
      await this.closeCompactions();
      await this.unlock();
      await this.control.close();
      throw e;
    }
    for (const p of this.pipelines) p.start();
    const tick = setInterval(() => {
      const now = Date.now();
      for (const p of this.pipelines) p.sample(now);
    }, 1000);
    const mirrorTimer = setInterval(() => {
      if (this.mirrorsQueued === 0) void this.mirrorNow();
    }, this.opts.statusIntervalMs);
    const jobTimer = setInterval(() => this.watchJob(), this.opts.jobWatchMs);
    this.timers.push(tick, mirrorTimer, jobTimer);
    if (this.opts.onProgress) {
      const onProgress = this.opts.onProgress;
      this.timers.push(setInterval(() => onProgress(this.status()), this.opts.progressIntervalMs));
    }
    for (const t of this.timers) t.unref();
    const now = Date.now();
    for (const p of this.pipelines) p.sample(now);
  }

  /** The control connection the change recorders fold their filters on (opened on first use). */
  compactions(): Promise<ControlLink> {
    this.compactLink ??= this.openLink({ onConnect: () => this.ensureLocked() });
    return this.compactLink;
  }

  private async closeCompactions(): Promise<void> {
    const link = this.compactLink;
    this.compactLink = undefined;
    await (await link?.catch(() => undefined))?.close().catch(() => undefined);
  }

  /** A control connection of this tailer's (see ControlLink): retried until `reconnectForMs`. */
  openLink(o: {
    multipleStatements?: boolean;
    onConnect?: (c: Connection) => Promise<void>;
  }): Promise<ControlLink> {
    return ControlLink.open(this.ctx.control.dsnForHint, {
      ...o,
      giveUpAfterMs: this.opts.reconnectForMs,
      signal: this.stopSignal,
      onNote: (t) => this.note(t),
    });
  }

  /**
   * Resolves once the tailer's own control connection is up with its stream locks held. It asks
   * the server: a connection that died unnoticed (no query has failed on it yet) would otherwise
   * pass for live, and its locks for held — the recorder's new connection then recorded, and the
   * targets committed, while another session held the lock.
   */
  async ensureLocked(): Promise<void> {
    const names = [...this.locks];
    if (!this.control || names.length === 0) return;
    await this.control.run('checking the stream locks', async (c) => {
      const [rows] = await c.query(
        `SELECT CONNECTION_ID() AS me, ${names.map((_, i) => `IS_USED_LOCK(?) AS h${i}`).join(', ')}`,
        names,
      );
      const r = (rows as Record<string, unknown>[])[0]!;
      const lost = names.findIndex((_, i) => String(r[`h${i}`]) !== String(r.me));
      if (lost >= 0) throw this.lockLost(names[lost]!);
    });
  }

  private lockLost(name: string): PreconditionError {
    const source = this.pipelines.find((p) => this.lockName(p.name) === name)?.name ?? name;
    const err = new PreconditionError(
      'E_TAIL_LOCK_LOST',
      `the control connection was replaced and another session now holds the stream lock of source ${source} (${this.direction}) for job ${this.ctx.job.name}: another reshard tail or cutover took it while the control server was unreachable`,
      {
        hint: 'this tailer stopped; check `reshard status` for the tailer that runs now, and re-run reshard tail only if none does',
      },
    );
    this.fail(err);
    return err;
  }

  /**
   * On a replacement control connection, before any other work on it: a control-server restart
   * ends our session and frees its advisory locks, so take the stream locks again. If another
   * session holds one now, another tailer may be streaming the same source: stop (nothing of
   * ours commits on the targets without the record, whose new connection waits for this).
   */
  private async retakeLocks(c: Connection): Promise<void> {
    // The first connection, before start() took any lock, has nothing to take back; start()
    // checks the other direction (with its wait) and the job itself.
    if (this.locks.length === 0) return;
    for (const name of this.locks) {
      const [rows] = await c.query('SELECT GET_LOCK(?, 10) AS got', [name]);
      if (String((rows as Record<string, unknown>[])[0]?.got) !== '1') throw this.lockLost(name);
    }
    // While the control server was away our locks were free, so checks made against them may
    // have passed meanwhile: a tailer of the other direction may have started (a reverse one
    // after a cutover), or the job moved on. Either way this tailer must not apply more.
    const held = await this.otherDirectionHeld(c);
    if (held.length > 0) {
      const err = new PreconditionError(
        'E_TAIL_OTHER_DIRECTION',
        `the control connection was replaced and a ${this.direction === 'forward' ? 'reverse' : 'forward'} reshard tail now streams ${held.map((x) => x.shard).join(', ')} for job ${this.ctx.job.name}; forward and reverse tailing must never run together`,
        { hint: 'this tailer stopped; the other one keeps running' },
      );
      this.fail(err);
      throw err;
    }
    const job = await getJob(c, this.ctx.job.id);
    if (job && job.state !== this.startState && !TAIL_STATES[this.direction].includes(job.state)) {
      const err = new PreconditionError(
        'E_TAIL_JOB_STATE',
        `job ${job.name} became '${job.state}' while the control server was unreachable: ${this.direction} tailing stopped`,
        { hint: 'nothing was applied after the control connection came back' },
      );
      this.fail(err);
      throw err;
    }
  }

  /** Shards whose stream lock of the other direction some session holds (over `c`). */
  private async otherDirectionHeld(c: Connection): Promise<{ shard: string; holder: string }[]> {
    const other: Direction = this.direction === 'forward' ? 'reverse' : 'forward';
    // The other direction's sources are this direction's targets: every shard a moving segment
    // goes to, whichever sources this process was asked to tail.
    const shards = [...new Set([...this.plannedPairs().values()].flat())].sort();
    const held: { shard: string; holder: string }[] = [];
    for (const shard of shards) {
      const [rows] = await c.query('SELECT IS_USED_LOCK(?) AS holder', [this.lockName(shard, other)]);
      const holder = (rows as Record<string, unknown>[])[0]?.holder;
      if (holder !== null && holder !== undefined) held.push({ shard, holder: String(holder) });
    }
    return held;
  }

  private lockName(source: string, direction: Direction = this.direction): string {
    return tailLockName(this.ctx.control.database, this.ctx.job.id, direction, source);
  }

  /**
   * Forward and reverse tailing of one job must never overlap. Each applies to the other's
   * sources, and neither can tell its own writes from the application's in the binlog it
   * reads. If they overlapped, each would carry the other's writes back. A row written twice
   * in quick succession on the new shards would then flip between its two images. Checked
   * after our own locks are held: two tailers starting at once in opposite directions each see
   * the other and both refuse, rather than both starting. A forward tailer stops by itself
   * once the job is cut over (watchJob), so a reverse start waits a little for it before
   * refusing.
   */
  private async refuseOtherDirection(): Promise<void> {
    const other: Direction = this.direction === 'forward' ? 'reverse' : 'forward';
    const deadline = Date.now() + this.opts.otherDirectionWaitMs;
    let noted = false;
    for (;;) {
      const held = await this.otherDirectionHeld(this.ctx.control.conn);
      if (held.length === 0) return;
      if (Date.now() >= deadline) {
        const h = held[0]!;
        throw new PreconditionError(
          'E_TAIL_OTHER_DIRECTION',
          `a ${other} reshard tail is still streaming ${held.map((x) => x.shard).join(', ')} for job ${this.ctx.job.name} (control connection ${h.holder}); forward and reverse tailing must never run together: each would apply the other's writes back, and a stale image could overwrite a newer row`,
          {
            hint:
              other === 'forward'
                ? 'a forward tailer stops by itself within seconds of the cutover; if it does not, stop it (SIGTERM), then start reshard tail --reverse again'
                : 'stop the reverse tailer (SIGTERM) first; forward tailing is only for before the cutover',
          },
        );
      }
      if (!noted) {
        this.note(
          `waiting up to ${Math.round(this.opts.otherDirectionWaitMs / 1000)} s for the ${other} tailer of ${held.map((x) => x.shard).join(', ')} to stop`,
        );
        noted = true;
      }
      await sleep(Math.min(250, Math.max(0, deadline - Date.now())));
    }
  }

  /**
   * Stop gracefully once the job leaves the states this direction may run in: a forward tailer
   * after the cutover flips routing (the old shards are frozen, so it has nothing left to
   * apply, and the reverse tailer may start only once it is gone), a reverse one once the job
   * is completed or rolled back.
   */
  private watchJob(): void {
    if (this.watching || this.stopping) return;
    this.watching = true;
    this.control!.run('reading the job state', (c) => getJob(c, this.ctx.job.id))
      .then((job) => {
        // A change of state, not the state itself: the command checks the state at start
        // (`reshard tail`), and a tailer started in-process for another state (tests, a drain)
        // runs until the job moves on.
        if (!job || this.stopping || job.state === this.startState) return;
        if (TAIL_STATES[this.direction].includes(job.state)) return;
        this.stoppedBecause = `job ${job.name} is now '${job.state}': ${this.direction} tailing stopped`;
        this.note(
          `${this.stoppedBecause}${this.direction === 'forward' && job.state === 'cut-over' ? ' (start reshard tail --reverse to keep the old shards current for a rollback)' : ''}`,
        );
        this.stop().catch(() => undefined);
      })
      // A control hiccup is not a reason to stop: the link reconnects and retries, and another
      // error is retried at the next tick. A control server gone for `reconnectForMs` (or a stream
      // lock lost meanwhile) is: the job may have moved on without this tailer seeing it.
      .catch((e: unknown) => {
        const code = (e as { code?: string })?.code;
        if (code === 'E_CONTROL_LOST' || code === 'E_TAIL_LOCK_LOST') this.fail(e);
      })
      .finally(() => {
        this.watching = false;
      });
  }

  private async lock(source: string): Promise<void> {
    const name = this.lockName(source);
    const [rows] = await this.control!.run('taking the stream lock', (c) =>
      c.query('SELECT GET_LOCK(?, 10) AS got', [name]),
    );
    if (String((rows as Record<string, unknown>[])[0]?.got) !== '1') {
      throw new PreconditionError(
        'E_TAIL_RUNNING',
        `another reshard tail is already streaming source ${source} (${this.direction}) for job ${this.ctx.job.name}`,
        { hint: 'stop the other tailer first; one stream per source keeps positions consistent' },
      );
    }
    this.locks.push(name);
  }

  /**
   * Re-read the job once our locks are held: `reshard complete` (and a finished rollback) hold or
   * follow these locks, so a tailer that checked the state before one of them moved the job to
   * a terminal state finds out here instead of streaming for a finished job.
   */
  private async refuseFinishedJob(): Promise<void> {
    const job = await getJob(this.ctx.control.conn, this.ctx.job.id);
    this.startState = job?.state;
    if (job && isTerminal(job.state)) {
      throw new PreconditionError(
        'E_TAIL_JOB_STATE',
        `job ${job.name} is '${job.state}': there is nothing left to tail`,
        {
          hint:
            job.state === 'completed'
              ? 'the rollback window is closed; reverse tailing is no longer needed'
              : undefined,
        },
      );
    }
  }

  private async unlock(): Promise<void> {
    for (const name of this.locks.splice(0)) {
      await this.control
        ?.run('releasing the stream lock', (c) => c.query('DO RELEASE_LOCK(?)', [name]))
        .catch(() => undefined);
    }
  }

  private mirrorNow(): Promise<void> {
    this.mirrorsQueued++;
    this.mirroring = this.mirroring.then(async () => {
      for (const p of this.pipelines) {
        const s = p.status();
        try {
          await this.control!.run(`recording ${p.name}'s tail status`, (c) =>
            mirror(c, {
              jobId: this.ctx.job.id,
              shard: p.name,
              direction: this.direction,
              position: s.position,
              lagSeconds: s.lagSeconds,
              eventsPerSecond: s.eventsPerSecond,
              rowsPerSecond: s.rowsPerSecond,
              lastEventAt: p.lastHeardAt(),
              state: s.state,
              tailer: `${hostname()}:${process.pid}`,
            }),
          );
        } catch (e) {
          this.note(`could not record ${p.name}'s position in the control schema: ${(e as Error).message}`);
        }
      }
      this.mirrorsQueued--;
    });
    return this.mirroring;
  }

  status(): TailStatus {
    return {
      direction: this.direction,
      sources: this.pipelines.map((p) => p.status()),
      ...(this.stoppedBecause ? { stoppedBecause: this.stoppedBecause } : {}),
    };
  }

  async waitCaughtUp(opts: { timeoutMs?: number } = {}): Promise<TailStatus> {
    const deadline = Date.now() + (opts.timeoutMs ?? Number.POSITIVE_INFINITY);
    this.throwIfFailed();
    const targets = await Promise.all(this.pipelines.map((p) => p.masterPosition(deadline)));
    await Promise.all(this.pipelines.map((p, i) => p.waitFor(targets[i]!, deadline)));
    return this.status();
  }

  stop(): Promise<TailStatus> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.stopController.abort(new Error('stopped'));
        for (const t of this.timers) clearInterval(t);
        await Promise.all(this.pipelines.map((p) => p.stop()));
        const failed = this.failure !== undefined;
        for (const p of this.pipelines) if (failed && p.state !== 'stopped') p.state = 'failed';
        await this.mirrorNow();
        const e = this.failure === undefined ? undefined : asReshardError(this.failure);
        await this.control
          ?.run('recording the tail stop', (c) =>
            appendEvent(c, this.ctx.job.id, e ? 'tail-failed' : 'tail-stop', {
              direction: this.direction,
              sources: this.pipelines.map((p) => ({ source: p.name, position: p.committedMin() })),
              ...(e ? { error: e.toJSON() } : {}),
            }),
          )
          .catch(() => undefined);
        await Promise.all(this.pipelines.map((p) => p.close()));
        await this.closeCompactions();
        await this.unlock();
        await this.control?.close();
        await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
        const s = this.status();
        if (this.failure !== undefined) this.rejectDone(this.failure);
        else this.resolveDone(s);
        return s;
      })();
    }
    return this.stopping.then((s) => {
      if (this.failure !== undefined) throw this.failure;
      return s;
    });
  }
}

/** Start tailing; resolves once every source streams (see the header for the lifecycle). */
export async function startTail(opts: TailOptions): Promise<TailHandle> {
  const t = new Tailer(opts.ctx, opts);
  await t.start();
  return t;
}

/**
 * Tail until every source is caught up (`untilCaughtUp`), or until `signal` aborts; then stop
 * gracefully. Rejects with the first fatal error (after stopping everything else cleanly).
 */
export async function runTail(
  opts: TailOptions & { untilCaughtUp?: boolean; signal?: AbortSignal },
): Promise<TailStatus> {
  const t = await startTail(opts);
  try {
    if (opts.untilCaughtUp) {
      await Promise.race([t.waitCaughtUp(), t.done]);
    } else {
      await Promise.race([
        t.done,
        new Promise<void>((resolve) => {
          if (!opts.signal || opts.signal.aborted) return resolve();
          opts.signal.addEventListener('abort', () => resolve(), { once: true });
        }),
      ]);
    }
  } catch (e) {
    await t.stop().catch(() => undefined);
    throw e;
  }
  return t.stop();
}
