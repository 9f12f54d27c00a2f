/**
 * Feeds verify's change filter (src/verify/changes.ts) from the tailer, so `reshard verify
 * --incremental` re-checks exactly the buckets the tailer touched since the last clean verify.
 *
 * Ordering: a change is recorded in the control schema *before* the target transaction that
 * applies it commits (the worker awaits `record` first), so an applied change is never missing
 * from the filter — a crash in between only adds a harmless extra re-check.
 * Cost: every caller within one short window shares one control-schema write, and writes on
 * one control connection are serialized (recordChanges runs its own transaction).
 */
import type { RowOp } from '../apply/applier.js';
import type { ControlConnection } from '../state/control.js';
import { type ChangedRow, recordChanges } from '../verify/changes.js';

const chains = new WeakMap<object, Promise<unknown>>();

export class ChangeRecorder {
  private pending: ChangedRow[] = [];
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly control: Pick<ControlConnection, 'conn'>,
    private readonly jobId: number,
    private readonly source: string,
    private readonly windowMs = 50,
  ) {}

  /** Resolves once the primary keys of `ops` are in the persisted filter. */
  record(ops: readonly RowOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    for (const o of ops)
      this.pending.push({ table: o.table.name, pk: o.table.pk.map((i) => o.row[i] ?? null) });
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.timer) this.timer = setTimeout(() => this.flush(), this.windowMs);
    return p;
  }

  private flush(): void {
    this.timer = undefined;
    const rows = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    const conn = this.control.conn as object;
    const prev = chains.get(conn) ?? Promise.resolve();
    const next = prev
      .catch(() => undefined)
      .then(() => recordChanges(this.control, this.jobId, this.source, rows));
    chains.set(conn, next);
    next.then(
      () => {
        for (const w of waiters) w.resolve();
      },
      (e: unknown) => {
        for (const w of waiters) w.reject(e);
      },
    );
  }
}
