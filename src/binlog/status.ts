/**
 * The tailer's rows in the control schema: where each source's stream starts (written by the
 * copier before its first chunk, or by cutover for the reverse direction), and a mirror of where
 * it is, for `reshard status`.
 *
 * The mirror is informational. The authoritative position of each (source, target) pair is the
 * one committed with the data in the target's `<metaDb>.apply_positions`; the mirror holds the
 * minimum over a source's targets (the point a restart resumes from), refreshed every few seconds.
 *
 * Lag, rates and state go to `reshard_tail_status` (migration 0004).
 */
import { createHash } from 'node:crypto';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import type { BinlogPosition } from './position.js';

export type Direction = 'forward' | 'reverse';

/**
 * Job states in which each direction may stream. Forward carries the old shards' writes to the
 * new ones until cutover; after it the new shards are authoritative and only reverse may run
 * (it keeps the old shards current for a rollback). The two must never run at once: each
 * would read the other's writes from its own sources and apply them back, so a stale image
 * could overwrite a newer write, over and over (see Tailer.refuseOtherDirection).
 */
export const TAIL_STATES: Readonly<Record<Direction, readonly string[]>> = {
  forward: ['planned', 'copying', 'catching-up', 'verified'],
  reverse: ['verified', 'cut-over'],
};

/**
 * The advisory lock (GET_LOCK on the control server) a tailer holds per (job, direction,
 * source) while it streams: one stream per source and direction, and a way for cutover,
 * complete and the other direction to see that a tailer is running.
 */
export function tailLockName(controlDb: string, jobId: number, direction: Direction, source: string): string {
  const h = createHash('sha256').update(`${controlDb}\0${jobId}\0${direction}\0${source}`).digest('hex');
  return `reshard_tail_${h.slice(0, 48)}`;
}

const POSITIONS = '`reshard_binlog_positions`';
const STATUS = '`reshard_tail_status`';

export async function readStartPosition(
  conn: Connection,
  jobId: number,
  shard: string,
  direction: Direction,
): Promise<BinlogPosition | undefined> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT start_binlog_file AS file, start_binlog_pos AS pos, start_gtid_set AS gtid
       FROM ${POSITIONS} WHERE job_id = ? AND shard = ? AND direction = ?`,
    [jobId, shard, direction],
  );
  const r = rows[0];
  if (!r || r.file === null || r.pos === null) return undefined;
  return {
    file: String(r.file),
    pos: Number(r.pos),
    gtid: r.gtid === null || r.gtid === '' ? undefined : String(r.gtid),
  };
}

/** Record where a stream starts (the copier does this for `forward`; tests and cutover too). */
export async function recordStartPosition(
  conn: Connection,
  jobId: number,
  shard: string,
  direction: Direction,
  p: BinlogPosition,
): Promise<void> {
  await conn.query(
    `INSERT INTO ${POSITIONS} (job_id, shard, direction, start_binlog_file, start_binlog_pos, start_gtid_set)
     VALUES (?, ?, ?, ?, ?, ?)
     ON DUPLICATE KEY UPDATE start_binlog_file = VALUES(start_binlog_file), start_binlog_pos = VALUES(start_binlog_pos),
       start_gtid_set = VALUES(start_gtid_set)`,
    [jobId, shard, direction, p.file, p.pos, p.gtid ?? null],
  );
}

export interface MirrorRow {
  jobId: number;
  shard: string;
  direction: Direction;
  /** Minimum committed position over the source's targets. */
  position: BinlogPosition | undefined;
  lagSeconds: number;
  eventsPerSecond: number;
  rowsPerSecond: number;
  /** Local time (ms) the tailer last heard from the source (event or heartbeat). */
  lastEventAt: number | undefined;
  state: 'starting' | 'running' | 'reconnecting' | 'stopped' | 'failed';
  tailer: string;
}

function datetime(ms: number | undefined): string | null {
  return ms === undefined || ms <= 0 ? null : new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

export async function mirror(conn: Connection, r: MirrorRow): Promise<void> {
  if (r.position) {
    await conn.query(
      `INSERT INTO ${POSITIONS} (job_id, shard, direction, binlog_file, binlog_pos, gtid_set) VALUES (?, ?, ?, ?, ?, ?)
       ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), binlog_pos = VALUES(binlog_pos),
         gtid_set = VALUES(gtid_set), updated_at = CURRENT_TIMESTAMP(6)`,
      [r.jobId, r.shard, r.direction, r.position.file, r.position.pos, r.position.gtid ?? null],
    );
  }
  await conn.query(
    `INSERT INTO ${STATUS} (job_id, shard, direction, state, lag_seconds, events_per_second, rows_per_second, last_event_at, tailer)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON DUPLICATE KEY UPDATE state = VALUES(state), lag_seconds = VALUES(lag_seconds),
       events_per_second = VALUES(events_per_second), rows_per_second = VALUES(rows_per_second),
       last_event_at = VALUES(last_event_at), tailer = VALUES(tailer), updated_at = CURRENT_TIMESTAMP(6)`,
    [
      r.jobId,
      r.shard,
      r.direction,
      r.state,
      r.lagSeconds.toFixed(3),
      r.eventsPerSecond.toFixed(1),
      r.rowsPerSecond.toFixed(1),
      datetime(r.lastEventAt),
      r.tailer,
    ],
  );
}
