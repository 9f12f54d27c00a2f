/**
 * Commands to running copy workers through the control schema (`reshard_copy_control`): pause,
 * resume, and rate changes. Every worker of the job polls the row about once a second, so a
 * change reaches workers on any host. (SIGUSR1 / SIGUSR2 pause and resume one process.)
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { appendEvent } from '../state/control.js';

export interface CopyControlState {
  paused: boolean;
  /** Rows/s per worker over all targets; 0 = unlimited; null = the worker's --rate. */
  rate: number | null;
  /** Rows/s per worker and target; 0 = unlimited; null = the worker's --target-rate. */
  targetRate: number | null;
}

export async function readCopyControl(conn: Connection, jobId: number): Promise<CopyControlState> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT paused, rate, target_rate FROM reshard_copy_control WHERE job_id = ?',
    [jobId],
  );
  const r = rows[0];
  if (!r) return { paused: false, rate: null, targetRate: null };
  return {
    paused: Number(r.paused) === 1,
    rate: r.rate === null ? null : Number(r.rate),
    targetRate: r.target_rate === null ? null : Number(r.target_rate),
  };
}

export interface CopyControlChange {
  paused?: boolean;
  /** undefined: unchanged; null: back to each worker's flag. */
  rate?: number | null;
  targetRate?: number | null;
}

/** Apply a change (with a `copy-control` event in the same transaction); returns the new state. */
export async function setCopyControl(
  conn: Connection,
  jobId: number,
  change: CopyControlChange,
): Promise<CopyControlState> {
  await conn.beginTransaction();
  try {
    await conn.query('INSERT IGNORE INTO reshard_copy_control (job_id) VALUES (?)', [jobId]);
    const sets: string[] = [];
    const params: unknown[] = [];
    if (change.paused !== undefined) {
      sets.push('paused = ?');
      params.push(change.paused ? 1 : 0);
    }
    if (change.rate !== undefined) {
      sets.push('rate = ?');
      params.push(change.rate);
    }
    if (change.targetRate !== undefined) {
      sets.push('target_rate = ?');
      params.push(change.targetRate);
    }
    if (sets.length) {
      await conn.query(`UPDATE reshard_copy_control SET ${sets.join(', ')} WHERE job_id = ?`, [
        ...params,
        jobId,
      ]);
    }
    await appendEvent(conn, jobId, 'copy-control', change);
    const state = await readCopyControl(conn, jobId);
    await conn.commit();
    return state;
  } catch (e) {
    await conn.rollback().catch(() => undefined);
    throw e;
  }
}
