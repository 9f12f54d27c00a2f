/**
 * Binlog positions: where a source's stream is. A position is the end of a transaction (or of a
 * standalone event) in one server's binary log — `file:pos`, the point the next group starts —
 * plus, for the record, the server's GTID state at that point.
 *
 * Resume is by file:pos, not GTID: every position the tailer stores was read from, and will be
 * resumed on, the same server (the topology names it), where file:pos is exact and needs no
 * gtid_mode; GTID sets are kept beside it so an operator (or a later failover-aware version) can
 * map the position onto another server.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { UsageError } from '../errors.js';

export interface BinlogPosition {
  file: string;
  pos: number;
  /** MariaDB GTID position ('0-1-100,1-2-7') or MySQL GTID set ('uuid:1-5'), when known. */
  gtid?: string | undefined;
}

export type Flavor = 'mariadb' | 'mysql';

/** "binlog.000042:1234" → position (the GTID is not part of the text form). */
export function parsePosition(text: string, where = '--from-position'): BinlogPosition {
  const m = /^(.+):(\d+)$/.exec(text.trim());
  if (!m || Number(m[2]) < 4) {
    throw new UsageError('E_POSITION', `${where}: '${text}' is not FILE:POS`, {
      hint: 'give a binlog file and offset as SHOW MASTER STATUS prints them, e.g. mysql-bin.000042:1234',
    });
  }
  return { file: m[1]!, pos: Number(m[2]) };
}

export function formatPosition(p: BinlogPosition | undefined): string {
  return p ? `${p.file}:${p.pos}` : '-';
}

/** Split "name.000042" into its base and sequence number (the order the server writes files in). */
function fileKey(file: string): { base: string; seq: number } {
  const m = /^(.*)\.(\d+)$/.exec(file);
  return m ? { base: m[1]!, seq: Number(m[2]) } : { base: file, seq: -1 };
}

/** Order of two positions in one server's binary log: negative when a is before b. */
export function comparePositions(a: BinlogPosition, b: BinlogPosition): number {
  if (a.file !== b.file) {
    const ka = fileKey(a.file);
    const kb = fileKey(b.file);
    if (ka.base !== kb.base) return ka.base < kb.base ? -1 : 1;
    if (ka.seq !== kb.seq) return ka.seq - kb.seq;
  }
  return a.pos - b.pos;
}

export function minPosition(ps: readonly BinlogPosition[]): BinlogPosition | undefined {
  let best: BinlogPosition | undefined;
  for (const p of ps) if (!best || comparePositions(p, best) < 0) best = p;
  return best;
}

export async function serverFlavor(conn: Connection): Promise<{ flavor: Flavor; version: string }> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT VERSION() AS v');
  const version = String(rows[0]?.v ?? '');
  return { flavor: /mariadb/i.test(version) ? 'mariadb' : 'mysql', version };
}

/**
 * The server's current end of binlog (what SHOW MASTER STATUS prints) and its GTID state. A local
 * equivalent of the copier's `readBinlogPosition` (src/copy/position.ts), used for "caught up"
 * checks and tests.
 */
export async function readMasterPosition(conn: Connection, flavor?: Flavor): Promise<BinlogPosition> {
  const f = flavor ?? (await serverFlavor(conn)).flavor;
  let rows: RowDataPacket[];
  try {
    [rows] = await conn.query<RowDataPacket[]>(
      f === 'mysql' ? 'SHOW BINARY LOG STATUS' : 'SHOW MASTER STATUS',
    );
  } catch (e) {
    // MySQL before 8.2 knows only SHOW MASTER STATUS.
    if (f !== 'mysql') throw e;
    [rows] = await conn.query<RowDataPacket[]>('SHOW MASTER STATUS');
  }
  const r = rows[0];
  if (!r) {
    throw new UsageError('E_BINLOG_OFF', 'the server has no binary log (SHOW MASTER STATUS is empty)', {
      hint: 'enable log_bin with binlog_format=ROW; reshard tail reads the binary log',
    });
  }
  let gtid: string | undefined;
  if (f === 'mariadb') {
    const [g] = await conn.query<RowDataPacket[]>('SELECT @@GLOBAL.gtid_binlog_pos AS g');
    gtid = String(g[0]?.g ?? '');
  } else if (r.Executed_Gtid_Set !== undefined) {
    gtid = String(r.Executed_Gtid_Set).replace(/\s/g, '');
  }
  return { file: String(r.File), pos: Number(r.Position), gtid: gtid || undefined };
}

/** Binlog files the server still has, oldest first. */
export async function binlogFiles(conn: Connection): Promise<string[]> {
  const [rows] = await conn.query<RowDataPacket[]>('SHOW BINARY LOGS');
  return rows.map((r) => String(r.Log_name));
}

/**
 * GTID state at a file:pos on MariaDB (BINLOG_GTID_POS), the seed for tracking GTIDs from a
 * mid-file start. Undefined on MySQL (no such function) or when the server cannot tell.
 */
export async function gtidAtPosition(
  conn: Connection,
  flavor: Flavor,
  p: BinlogPosition,
): Promise<string | undefined> {
  if (flavor !== 'mariadb') return undefined;
  const [rows] = await conn.query<RowDataPacket[]>('SELECT BINLOG_GTID_POS(?, ?) AS g', [p.file, p.pos]);
  const g = rows[0]?.g;
  return g === null || g === undefined ? undefined : String(g);
}
