/**
 * Whether a stopped process (SIGSTOP) still has work in flight on a server: a statement it wrote
 * before it was stopped may sit in a socket buffer, or still be running on the server, and land
 * (a COMMIT, say) after the test looked. Linux only: it reads /proc.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Connection, RowDataPacket } from 'mysql2/promise';

interface TcpRow {
  localPort: number;
  remPort: number;
  txQueue: number;
  rxQueue: number;
  inode: string;
}

function tcpRows(): TcpRow[] {
  const rows: TcpRow[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const p = line.trim().split(/\s+/);
      if (p.length < 10) continue;
      const [tx, rx] = p[4]!.split(':');
      rows.push({
        localPort: Number.parseInt(p[1]!.split(':').at(-1)!, 16),
        remPort: Number.parseInt(p[2]!.split(':').at(-1)!, 16),
        txQueue: Number.parseInt(tx!, 16),
        rxQueue: Number.parseInt(rx!, 16),
        inode: p[9]!,
      });
    }
  }
  return rows;
}

/** The process's TCP connections to `serverPort`: its local ports, and whether any bytes it sent are still unread by the server. */
function connectionsTo(pid: number, serverPort: number): { ports: number[]; unread: boolean } {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const rows = tcpRows();
  const mine = rows.filter((r) => inodes.has(r.inode) && r.remPort === serverPort);
  const ports = mine.map((r) => r.localPort);
  const serverSide = rows.filter((r) => r.localPort === serverPort && ports.includes(r.remPort));
  // Sent by the process but not yet acknowledged, or received by the server but not yet read.
  const unread = mine.some((r) => r.txQueue > 0) || serverSide.some((r) => r.rxQueue > 0);
  return { ports, unread };
}

/**
 * Resolves once a stopped process has nothing in flight on the server `conn` is connected to
 * (at `serverPort`): every byte it sent was read by the server, and none of its sessions is
 * running a statement — twice in a row, 20 ms apart (the process is stopped, so nothing new can
 * arrive; the second look covers a statement read but not yet shown as running). From then on
 * what it wrote is all there is. Throws after `timeoutMs`.
 */
export async function untilQuiet(
  pid: number,
  serverPort: number,
  conn: Connection,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let quietInARow = 0;
  for (;;) {
    const { ports, unread } = connectionsTo(pid, serverPort);
    let busy = 0;
    if (!unread && ports.length > 0) {
      const [r] = await conn.query<RowDataPacket[]>(
        `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST
          WHERE COMMAND <> 'Sleep' AND SUBSTRING_INDEX(HOST, ':', -1) IN (?)`,
        [ports.map(String)],
      );
      busy = Number(r[0]!.n);
    }
    quietInARow = ports.length > 0 && !unread && busy === 0 ? quietInARow + 1 : 0;
    if (quietInARow >= 2) return;
    if (Date.now() > deadline)
      throw new Error(`process ${pid} still has work in flight on port ${serverPort} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
