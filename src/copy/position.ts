/**
 * Binlog positions: where a source's change stream is now (readBinlogPosition, shared with the
 * tailer) and the start position of a job's forward stream (recordStartPositions: exactly once
 * per job and source, before the copier reads its first chunk).
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { PreconditionError } from '../errors.js';

export interface BinlogPosition {
  file: string;
  pos: number;
  /** MariaDB: the GTID position of file:pos (domain-server-seq list). MySQL: gtid_executed. Null when GTIDs are off. */
  gtid: string | null;
}

async function isMariaDb(conn: Connection): Promise<boolean> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT VERSION() AS v');
  return /mariadb/i.test(String(rows[0]?.v ?? ''));
}

async function masterStatus(conn: Connection, mariadb: boolean): Promise<RowDataPacket | undefined> {
  try {
    const [rows] = await conn.query<RowDataPacket[]>('SHOW MASTER STATUS');
    return rows[0];
  } catch (e) {
    // MySQL 8.4 removed SHOW MASTER STATUS in favour of SHOW BINARY LOG STATUS (8.2+).
    if (mariadb || (e as { errno?: number }).errno !== 1064) throw e;
    const [rows] = await conn.query<RowDataPacket[]>('SHOW BINARY LOG STATUS');
    return rows[0];
  }
}

/**
 * The server's current binlog position. On MariaDB the GTID is computed for exactly that file
 * and offset (BINLOG_GTID_POS), so both forms name the same point even while transactions
 * commit; reading `@@gtid_binlog_pos` separately could name a later point and make a tailer
 * starting from the GTID skip a transaction. MySQL reports file, offset and gtid_executed in one
 * row.
 */
export async function readBinlogPosition(conn: Connection): Promise<BinlogPosition> {
  const mariadb = await isMariaDb(conn);
  const row = await masterStatus(conn, mariadb);
  if (!row?.File) {
    throw new PreconditionError(
      'E_BINLOG_OFF',
      'the server has no binary log (SHOW MASTER STATUS is empty)',
      {
        hint: 'enable log_bin (my.cnf, restart) with binlog_format=ROW; reshard tails the binlog to keep copies current',
      },
    );
  }
  const file = String(row.File);
  const pos = Number(row.Position);
  if (!mariadb) {
    const g =
      row.Executed_Gtid_Set === undefined || row.Executed_Gtid_Set === null
        ? ''
        : String(row.Executed_Gtid_Set);
    return { file, pos, gtid: g.trim() === '' ? null : g.replace(/\s+/g, '') };
  }
  const [g] = await conn.query<RowDataPacket[]>('SELECT BINLOG_GTID_POS(?, ?) AS g', [file, pos]);
  const gtid = g[0]?.g;
  if (gtid !== null && gtid !== undefined) return { file, pos, gtid: String(gtid) };
  // BINLOG_GTID_POS answers NULL when the file is not found (purged between the two statements)
  // or the offset is not an event boundary: take both again until they agree.
  for (let i = 0; i < 20; i++) {
    const [a] = await conn.query<RowDataPacket[]>('SELECT @@GLOBAL.gtid_binlog_pos AS g');
    const again = await masterStatus(conn, true);
    const [b] = await conn.query<RowDataPacket[]>('SELECT @@GLOBAL.gtid_binlog_pos AS g');
    if (again?.File && String(a[0]?.g) === String(b[0]?.g)) {
      const gg = String(a[0]?.g ?? '');
      return { file: String(again.File), pos: Number(again.Position), gtid: gg === '' ? null : gg };
    }
  }
  throw new PreconditionError('E_BINLOG_POSITION', 'could not read a consistent binlog position and GTID', {
    hint: 'the server is committing too fast to read both at one point; re-run the command',
  });
}

export interface RecordedPosition extends BinlogPosition {
  shard: string;
  /** False when an earlier run (or another worker) had already recorded this source's start. */
  recordedNow: boolean;
}

/**
 * Record each source's start position for the forward tail of `jobId`, once: a row that already
 * has a start position keeps it (a re-run must never move the start forward: changes between the
 * old and new position would be lost). Returns the positions as stored.
 *
 * Must complete before any chunk is read: every change committed after the stored position is in
 * the tailer's stream, every change committed before it is visible to the copier's reads.
 */
export async function recordStartPositions(
  control: Connection,
  jobId: number,
  sources: { name: string; connect: () => Promise<Connection> }[],
): Promise<RecordedPosition[]> {
  const out: RecordedPosition[] = [];
  for (const s of sources) {
    const existing = await readStart(control, jobId, s.name);
    if (existing) {
      out.push({ ...existing, shard: s.name, recordedNow: false });
      continue;
    }
    const conn = await s.connect();
    let p: BinlogPosition;
    try {
      p = await readBinlogPosition(conn);
    } finally {
      await conn.end().catch(() => conn.destroy());
    }
    // Assignment order matters (each sees the previous ones): file is tested by the others, so it
    // is assigned last. A concurrent worker's insert wins; ours then changes nothing.
    const [res] = await control.query(
      `INSERT INTO reshard_binlog_positions (job_id, shard, direction, start_binlog_file, start_binlog_pos, start_gtid_set)
       VALUES (?, ?, 'forward', ?, ?, ?)
       ON DUPLICATE KEY UPDATE
         start_binlog_pos = IF(start_binlog_file IS NULL, VALUES(start_binlog_pos), start_binlog_pos),
         start_gtid_set = IF(start_binlog_file IS NULL, VALUES(start_gtid_set), start_gtid_set),
         start_binlog_file = COALESCE(start_binlog_file, VALUES(start_binlog_file))`,
      [jobId, s.name, p.file, p.pos, p.gtid],
    );
    const stored = await readStart(control, jobId, s.name);
    if (!stored) throw new Error(`start position of ${s.name} vanished after it was written`);
    const affected = (res as { affectedRows: number }).affectedRows;
    out.push({
      ...stored,
      shard: s.name,
      recordedNow: affected > 0 && stored.file === p.file && stored.pos === p.pos,
    });
  }
  return out;
}

/** The recorded forward start position of one source, if any. */
export async function readStart(
  control: Connection,
  jobId: number,
  shard: string,
): Promise<BinlogPosition | undefined> {
  const [rows] = await control.query<RowDataPacket[]>(
    `SELECT start_binlog_file AS file, start_binlog_pos AS pos, start_gtid_set AS gtid
       FROM reshard_binlog_positions WHERE job_id = ? AND shard = ? AND direction = 'forward'`,
    [jobId, shard],
  );
  const r = rows[0];
  if (!r || r.file === null) return undefined;
  return { file: String(r.file), pos: Number(r.pos), gtid: r.gtid === null ? null : String(r.gtid) };
}
