/**
 * Feeds verify's change records (src/verify/changes.ts) from the tailer, so `reshard verify
 * --incremental` re-checks exactly the rows the tailer touched since the last clean verify: their
 * primary keys (by lookup) while the epoch's key list is complete, else the buckets of their
 * change ids in the Bloom filter.
 *
 * Ordering: a change is recorded in the control schema — change id and key, one transaction —
 * *before* the target transaction that applies it commits (the tailer waits for `record` before
 * that commit), so an applied change is never missing from either record; a crash in between only
 * adds a harmless extra re-check.
 * Cost: at most one control-schema write per window (plus a compaction every COMPACT_EVERY
 * writes, on a connection of its own when the tailer gives one) and one in flight per recorder; whatever
 * arrives meanwhile shares the next write (so under a steady stream the writes grow, not their
 * queue). Writes on one control connection are serialized (recordChanges runs its own transaction).
 * Keys add one packed row per table to that write, and each key is written once per epoch.
 *
 * Control-server restarts: the tailer gives the recorder a ControlLink (src/state/control.ts),
 * which runs a write again on a new connection when the old one is lost, with backoff, until it
 * gives up (E_CONTROL_LOST; the tailer then fails). Meanwhile the records wait, and so do the
 * target commits behind them: write-ahead holds. Running a write again is safe even when its
 * COMMIT did land (only the reply was lost): it adds another generation with the same change ids
 * and keys; readers OR the filters and deduplicate the keys, so the worst case is an epoch's
 * key count reached early (the verifier then re-checks the Bloom-flagged buckets instead).
 * Compaction is one transaction over the generations it reads, so running it again is too.
 */
import type { RowOp } from '../apply/applier.js';
import { log } from '../output.js';
import { type ControlConnection, type ControlRunner, onConnection } from '../state/control.js';
import { type ChangedRow, compactChanges, recordChanges } from '../verify/changes.js';

/**
 * Fold the deltas into one filter every this many writes (about every 3 s at one write per 50 ms):
 * a reader then ORs a few dozen small rows, never thousands.
 */
const COMPACT_EVERY = 64;

/** Per connection (or ControlLink): the last write queued on it, so writes on it never overlap. */
const chains = new WeakMap<object, Promise<unknown>>();

export class ChangeRecorder {
  private pending: ChangedRow[] = [];
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing = false;
  private lastWriteAt = Number.NEGATIVE_INFINITY;
  private writes = 0;
  private lastCompactionWarning = Number.NEGATIVE_INFINITY;
  private compacting: Promise<void> | undefined;
  private readonly control: ControlRunner;
  /** What writes are serialized on: the link, or the one connection. */
  private readonly chainKey: object;

  constructor(
    control: ControlRunner | Pick<ControlConnection, 'conn'>,
    private readonly jobId: number,
    private readonly source: string,
    private readonly windowMs = 50,
    /**
     * Where compactions run. Given (the tailer gives all its recorders one connection apart from
     * their records', where they take turns), they never wait for, nor hold up, a record: records
     * are what every target commit waits for. Else they run on the records' connection, between
     * two records.
     */
    private readonly compactor?: ControlRunner,
  ) {
    if ('run' in control) {
      this.control = control;
      this.chainKey = control;
    } else {
      this.control = onConnection(control);
      this.chainKey = control.conn;
    }
  }

  /**
   * Resolves once the primary keys of the operations are persisted (filter and, while it is kept,
   * key list), each with the target it is applied to: verify looks a key up only there and on
   * this source, so every target an operation goes to must be named here.
   */
  record(perTarget: ReadonlyMap<string, readonly RowOp[]>): Promise<void> {
    let n = 0;
    for (const [target, ops] of perTarget) {
      for (const o of ops)
        this.pending.push({ table: o.table.name, pk: o.table.pk.map((i) => o.row[i] ?? null), target });
      n += ops.length;
    }
    if (n === 0) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.schedule();
    return p;
  }

  /** Resolves once no compaction is running (before its connection is closed). */
  async settle(): Promise<void> {
    await this.compacting;
  }

  /** Logged at most once a minute: deltas pile up (readers still OR them) until one succeeds. */
  private compactionFailed(e: unknown): void {
    const now = Date.now();
    if (now - this.lastCompactionWarning < 60_000) return;
    this.lastCompactionWarning = now;
    log().warn(
      { source: this.source, err: e instanceof Error ? e.message : String(e) },
      `could not fold ${this.source}'s change-filter deltas (verify still reads them all); retrying every ${COMPACT_EVERY} writes`,
    );
  }

  private schedule(): void {
    if (this.timer || this.writing || this.pending.length === 0) return;
    const wait = Math.max(0, this.windowMs - (Date.now() - this.lastWriteAt));
    this.timer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    this.writing = true;
    this.lastWriteAt = Date.now();
    const rows = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    const key = this.chainKey;
    const prev = chains.get(key) ?? Promise.resolve();
    const next = prev
      .catch(() => undefined)
      .then(() =>
        this.control.run(`recording ${this.source}'s changed keys`, (conn) =>
          recordChanges({ conn }, this.jobId, this.source, rows),
        ),
      );
    // Compaction is housekeeping, after the record (whose waiters it does not hold up). A failure
    // leaves the deltas for the next try: readers OR them either way.
    const compact = ++this.writes % COMPACT_EVERY === 0;
    const fold = () =>
      (this.compactor ?? this.control).run(`folding ${this.source}'s change filter`, (conn) =>
        compactChanges(conn, this.jobId, this.source),
      );
    if (!compact) chains.set(key, next);
    else if (!this.compactor) {
      // On the records' connection: before the next record, which then waits for it.
      chains.set(
        key,
        next
          .catch(() => undefined)
          .then(fold)
          .catch((e: unknown) => this.compactionFailed(e)),
      );
    } else {
      chains.set(key, next);
      // Its own connection, which other recorders may share (they take turns on it): one fold of
      // this recorder's at a time, and one still running when the next is due is skipped.
      if (!this.compacting) {
        const turn = chains.get(this.compactor) ?? Promise.resolve();
        const folded = Promise.all([next.catch(() => undefined), turn.catch(() => undefined)]).then(fold);
        chains.set(this.compactor, folded);
        this.compacting = folded
          .then(
            () => undefined,
            (e: unknown) => this.compactionFailed(e),
          )
          .finally(() => {
            this.compacting = undefined;
          });
      }
    }
    next
      .then(
        () => {
          for (const w of waiters) w.resolve();
        },
        (e: unknown) => {
          for (const w of waiters) w.reject(e);
        },
      )
      .finally(() => {
        this.writing = false;
        this.schedule();
      });
  }
}
