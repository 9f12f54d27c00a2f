/**
 * Waiting for the tailer before re-checking a mismatch found under live writes.
 *
 * "Caught up" = for every source the tailer streams from, the position it last applied (the
 * mirror in `reshard_binlog_positions`, direction 'forward', written after the target commit) is
 * at or past the source's end of binlog read when the wait began. Everything committed on the
 * sources before the wait is then on the targets. Without a running tailer (no applied position
 * recorded) there is nothing to wait for but a short pause.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { connectShard } from '../db/connect.js';
import type { Shard } from '../topology/types.js';

export interface Position {
  file: string;
  pos: number;
}

/** Order of two positions of one server's binlog (file names end in a sequence number). */
export function comparePositions(a: Position, b: Position): number {
  if (a.file !== b.file) {
    const ma = /^(.*)\.(\d+)$/.exec(a.file);
    const mb = /^(.*)\.(\d+)$/.exec(b.file);
    if (ma && mb && ma[1] === mb[1]) return Number(ma[2]) - Number(mb[2]);
    return a.file < b.file ? -1 : 1;
  }
  return a.pos - b.pos;
}

async function endOfBinlog(conn: Connection): Promise<Position | undefined> {
  for (const sql of ['SHOW MASTER STATUS', 'SHOW BINARY LOG STATUS']) {
    try {
      const [rows] = await conn.query<RowDataPacket[]>(sql);
      const r = rows[0];
      if (!r) return undefined;
      return { file: String(r.File), pos: Number(r.Position) };
    } catch {
      // MySQL 8.4 dropped SHOW MASTER STATUS; older servers lack SHOW BINARY LOG STATUS.
    }
  }
  return undefined;
}

async function appliedPositions(control: Connection, jobId: number): Promise<Map<string, Position>> {
  const [rows] = await control.query<RowDataPacket[]>(
    `SELECT shard, binlog_file, binlog_pos FROM \`reshard_binlog_positions\`
      WHERE job_id = ? AND direction = 'forward' AND binlog_file IS NOT NULL`,
    [jobId],
  );
  return new Map(
    rows.map((r) => [String(r.shard), { file: String(r.binlog_file), pos: Number(r.binlog_pos) }]),
  );
}

export interface WaitResult {
  /** A tailer has recorded positions for this job. */
  tailer: boolean;
  caughtUp: boolean;
  waitedMs: number;
}

/** True when a tailer has recorded an applied position for the job. */
export async function tailerRunning(control: Connection, jobId: number): Promise<boolean> {
  return (await appliedPositions(control, jobId)).size > 0;
}

/**
 * Wait until the tailer has applied everything the sources had committed when this was called,
 * or `timeoutMs` passed; without a tailer, pause `pauseMs`.
 */
export async function waitForTailer(opts: {
  control: Connection;
  jobId: number;
  sources: readonly Shard[];
  timeoutMs: number;
  pauseMs: number;
  signal?: AbortSignal | undefined;
}): Promise<WaitResult> {
  const t0 = Date.now();
  const applied = await appliedPositions(opts.control, opts.jobId);
  if (applied.size === 0) {
    await sleep(opts.pauseMs, opts.signal);
    return { tailer: false, caughtUp: true, waitedMs: Date.now() - t0 };
  }
  const goals = new Map<string, Position>();
  for (const s of opts.sources) {
    if (!applied.has(s.name)) continue;
    const conn = await connectShard(s);
    try {
      const end = await endOfBinlog(conn);
      if (end) goals.set(s.name, end);
    } finally {
      await conn.end().catch(() => undefined);
    }
  }
  for (;;) {
    const now = await appliedPositions(opts.control, opts.jobId);
    const behind = [...goals].filter(([shard, goal]) => {
      const p = now.get(shard);
      return !p || comparePositions(p, goal) < 0;
    });
    if (behind.length === 0) return { tailer: true, caughtUp: true, waitedMs: Date.now() - t0 };
    if (Date.now() - t0 >= opts.timeoutMs)
      return { tailer: true, caughtUp: false, waitedMs: Date.now() - t0 };
    await sleep(200, opts.signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
