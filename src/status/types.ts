/**
 * The status report: what `reshard status --json` prints and `readStatus` returns. Read from the
 * control schema only (plus, with a plan, row estimates from the sources), so it works from any
 * host, while any command runs or after a crash.
 *
 * Stability: `statusVersion` is 1. Within a version, fields are only added, never renamed or
 * removed, and never change type. Times are UTC ISO-8601 strings (`2025-01-02T03:04:05.123456Z`)
 * or null; durations and ages are seconds (numbers); counts are numbers. Arrays have a stated
 * order so a diff of two reports is meaningful.
 */
import type { JobState } from '../state/control.js';

export const STATUS_VERSION = 1;

export interface StatusReport {
  statusVersion: typeof STATUS_VERSION;
  /** The control server's clock when the report was read (every `ageSeconds` is against it). */
  at: string;
  /** user@host:port/database of the control schema (never a password). */
  control: string;
  job: JobStatus;
  copy: CopyStatus;
  tail: TailStatus;
  verify: VerifyStatus;
  routing: RoutingStatus;
  cutover: CutoverStatus;
  /** The job's last events, oldest first. */
  events: EventStatus[];
}

export type MachineStepStatus = 'done' | 'current' | 'pending' | 'skipped';

export interface JobStatus {
  id: number;
  name: string;
  planHash: string;
  state: JobState;
  /** No transition leaves this state (completed, rolled-back, cancelled). */
  terminal: boolean;
  createdAt: string;
  updatedAt: string;
  /**
   * Every state of the machine in order (the forward path, then the two exits), each with where
   * the job stands: done (entered and left), current, pending (may still come), skipped (the job
   * ended without it). `enteredAt` comes from the job's `state` events.
   */
  machine: {
    state: JobState;
    path: 'forward' | 'exit';
    status: MachineStepStatus;
    enteredAt: string | null;
  }[];
  /** Index of the current state in `machine`. */
  position: number;
}

export interface CopyTableStatus {
  source: string;
  table: string;
  /** pending, copying, done (reshard_copy_checkpoints.state). */
  state: string;
  rowsCopied: number;
  /** information_schema estimate × moving share (only with --plan); null when unknown. */
  estimatedRows: number | null;
  /** 0–100, null when no estimate; 100 once done. */
  percent: number | null;
  chunksDone: number;
  chunksClaimed: number;
  /** Chunks created so far: chunks are cut as the copy goes, so this grows until `chunkedAll`. */
  chunks: number;
  /** The last (unbounded) chunk exists: `chunks` is the final total. */
  chunkedAll: boolean;
  /** Rows of chunks finished in the rate window, per second. */
  rowsPerSecond: number;
  /** Seconds until done at the current rate; 0 when done; null when unknown. */
  etaSeconds: number | null;
  updatedAt: string;
}

export interface CopyStatus {
  /** Copy has started for this job (checkpoints exist). */
  started: boolean;
  /** Every (source, table) is done. */
  complete: boolean;
  rowsCopied: number;
  estimatedRows: number | null;
  percent: number | null;
  rowsPerSecond: number;
  etaSeconds: number | null;
  chunksDone: number;
  chunks: number;
  /** Length of the window rates are measured over, seconds. */
  rateWindowSeconds: number;
  /**
   * From `reshard_copy_control`: paused by `reshard copy --pause`; rate limits per worker
   * (null: each worker's flag). Load-based throttling is only visible in the copy's metrics.
   */
  throttle: { paused: boolean; rate: number | null; targetRate: number | null };
  /** Ordered by source, table. */
  tables: CopyTableStatus[];
}

export interface BinlogPositionStatus {
  file: string | null;
  pos: number | null;
  gtid: string | null;
}

export interface TailSourceStatus {
  /** Source shard (forward: an old shard; reverse: a new one). */
  source: string;
  direction: 'forward' | 'reverse';
  /** starting, running, reconnecting, stopped, failed; null when no tailer has reported. */
  state: string | null;
  lagSeconds: number | null;
  eventsPerSecond: number | null;
  rowsPerSecond: number | null;
  /** Last applied position (minimum over the source's targets). */
  position: BinlogPositionStatus | null;
  startPosition: BinlogPositionStatus | null;
  lastEventAt: string | null;
  /** When the tailer last refreshed its status row. */
  updatedAt: string | null;
  ageSeconds: number | null;
  /** The status row is older than STALE_SECONDS: the tailer may be gone; lag is not current. */
  stale: boolean;
  /** host:pid of the tailer that wrote the status. */
  tailer: string | null;
}

export interface TailStatus {
  /** Largest lag over fresh running forward sources; null when none reports. */
  maxLagSeconds: number | null;
  /** Ordered by direction (forward first), then source. */
  sources: TailSourceStatus[];
}

export interface VerifyRunStatus {
  runId: number;
  /** running, match, mismatch, failed. */
  state: string;
  mode: 'full' | 'incremental' | null;
  mismatches: number;
  startedAt: string;
  finishedAt: string | null;
  durationSeconds: number | null;
}

export interface VerifyStatus {
  /** The newest run that ended `match`, if any. */
  lastClean: VerifyRunStatus | null;
  /** Newest first. */
  runs: VerifyRunStatus[];
}

export interface RoutingVersionStatus {
  version: number;
  jobId: number | null;
  job: string | null;
  routingHash: string;
  active: boolean;
  createdAt: string;
}

export interface RoutingStatus {
  /** The active routing version; null when none was ever recorded. */
  active:
    | (RoutingVersionStatus & {
        /** Name of the topology writes are routed by. */
        writes: string;
        /** Name of the topology reads are routed by (differs during a reads-first cutover). */
        reads: string;
        /** Segment canary of writes: the (from → to) pairs already flipped; empty when none. */
        canary: { from: string; to: string }[];
        /** Segment canary of reads (a reads-first canary); empty when none. */
        readCanary: { from: string; to: string }[];
      })
    | null;
  /** Recent versions, newest first. */
  versions: RoutingVersionStatus[];
}

export interface CutoverStepStatus {
  id: number;
  step: string;
  /** started, done, failed (as journaled). */
  state: string;
  at: string;
  detail: unknown;
}

export interface CutoverStatus {
  /** The job's journal, in order. */
  steps: CutoverStepStatus[];
}

export interface EventStatus {
  id: number;
  at: string;
  kind: string;
  detail: unknown;
}
