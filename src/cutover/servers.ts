/**
 * The write freeze: which servers are frozen, how, and which stay frozen afterwards.
 *
 * Method: `SET GLOBAL read_only = ON` on every server that holds a shard whose rows move (the
 * sources at cutover, the targets at rollback), then `KILL CONNECTION` of every other session with
 * an open transaction that has modified rows (a non-privileged session could never commit it —
 * its COMMIT fails with errno 1290 — and a privileged one must not). read_only refuses writes of
 * every account without READ_ONLY ADMIN (MariaDB ≥ 10.11; SUPER before) or SUPER/CONNECTION_ADMIN
 * (MySQL) with errno 1290, so application accounts must not hold those. reshard's own account
 * must (it writes reverse replication into the frozen old shards, and drains into frozen in-place
 * shards). read_only is server-wide: every database on a frozen server is frozen.
 *
 * Lifecycle per server: priorReadOnly read → journal 'freeze started' (with it) → freeze → …
 * → unfreeze (only a server whose read_only was OFF before we froze it).
 *
 * In-place servers — a frozen server that also holds a shard of the other side — must be
 * writable once routing points there, so they are unfrozen right after the flip. Every other
 * frozen server stays read-only: after a cutover the old shards refuse stragglers still routing
 * by the old topology (errno 1290 instead of a silent split brain), while the reverse tailer keeps
 * them current; rollback unfreezes them when it routes back.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { connect, describeEndpoint } from '../db/connect.js';
import { classifyError, withRetry } from '../db/retry.js';
import { PreconditionError } from '../errors.js';
import type { Plan, Side } from '../plan/types.js';
import { hasPrivilege, parseGrants, readGrantLines } from '../preflight/grants.js';
import { readServerInfo, type ServerInfo } from '../preflight/server.js';
import type { Shard, Topology } from '../topology/types.js';

export interface ShardRef {
  side: Side;
  shard: string;
}

export function refKey(r: ShardRef): string {
  return `${r.side}:${r.shard}`;
}

export interface FreezeServer {
  /** Server identity (same process behind two endpoints ⇒ one key). */
  key: string;
  /** host:port, for messages. */
  address: string;
  /** The shard we reach this server through. */
  via: ShardRef;
  /** Shards of the frozen side on this server. */
  shards: string[];
  /** The server also holds a shard of the other side: it is unfrozen right after the flip. */
  inPlace: boolean;
  /** read_only before we froze it (known once read; undefined in a pure plan). */
  priorReadOnly?: boolean;
}

/**
 * Which servers a phase freezes (pure). Cutover freezes the servers of every `from` shard that is
 * the old owner of a moving segment; rollback those of every `to` shard that is the new owner of
 * one. `identity` maps `side:shard` to the server identity and address.
 */
export function freezeSet(
  phase: 'cutover' | 'rollback',
  plan: Pick<Plan, 'segments'>,
  identity: ReadonlyMap<string, { key: string; address: string }>,
): FreezeServer[] {
  const side: Side = phase === 'cutover' ? 'from' : 'to';
  const other: Side = phase === 'cutover' ? 'to' : 'from';
  const frozenShards = new Set<string>();
  for (const s of plan.segments) if (s.moves) frozenShards.add(phase === 'cutover' ? s.from : s.to);
  const otherKeys = new Set<string>();
  for (const [k, v] of identity) if (k.startsWith(`${other}:`)) otherKeys.add(v.key);
  const out = new Map<string, FreezeServer>();
  for (const shard of [...frozenShards].sort()) {
    const id = identity.get(refKey({ side, shard }));
    if (!id) throw new Error(`no server identity for ${side} shard ${shard}`);
    const s = out.get(id.key);
    if (s) s.shards.push(shard);
    else
      out.set(id.key, {
        key: id.key,
        address: id.address,
        via: { side, shard },
        shards: [shard],
        inPlace: otherKeys.has(id.key),
      });
  }
  return [...out.values()];
}

/** Cached root-level sessions (no default database) to the servers behind the shards. */
export class ServerSessions {
  private readonly conns = new Map<string, Promise<Connection>>();
  readonly infos = new Map<string, ServerInfo>();

  constructor(private readonly topologies: { from: Topology; to: Topology }) {}

  shardOf(ref: ShardRef): Shard {
    const s = this.topologies[ref.side].shards.find((x) => x.name === ref.shard);
    if (!s) throw new PreconditionError('E_CUTOVER_SHARD', `${ref.side} topology has no shard ${ref.shard}`);
    return s;
  }

  conn(ref: ShardRef): Promise<Connection> {
    const k = refKey(ref);
    let c = this.conns.get(k);
    if (!c) {
      const shard = this.shardOf(ref);
      c = connect(shard.endpoint, `${ref.side} shard ${ref.shard}`, { withDatabase: false });
      c.catch(() => this.conns.delete(k));
      this.conns.set(k, c);
    }
    return c;
  }

  /** Drop a lost session so the next `conn` reconnects. */
  drop(ref: ShardRef): void {
    const k = refKey(ref);
    const c = this.conns.get(k);
    this.conns.delete(k);
    c?.then((x) => x.destroy()).catch(() => undefined);
  }

  /** Run an idempotent statement sequence on a shard's server, reconnecting on a lost session. */
  run<T>(ref: ShardRef, label: string, fn: (c: Connection) => Promise<T>, attempts = 6): Promise<T> {
    return withRetry(async () => fn(await this.conn(ref)), {
      label,
      attempts,
      baseMs: 100,
      maxMs: 2000,
      onReconnect: async () => this.drop(ref),
    });
  }

  /** Identity of the server behind every shard of both topologies (`side:shard` → identity). */
  async identities(): Promise<Map<string, { key: string; address: string }>> {
    const out = new Map<string, { key: string; address: string }>();
    const refs: ShardRef[] = [
      ...this.topologies.from.shards.map((s) => ({ side: 'from' as const, shard: s.name })),
      ...this.topologies.to.shards.map((s) => ({ side: 'to' as const, shard: s.name })),
    ];
    await Promise.all(
      refs.map(async (ref) => {
        const ep = this.shardOf(ref).endpoint;
        const address = ep.socket ? `unix:${ep.socket}` : `${ep.host}:${ep.port}`;
        const info = await this.run(ref, `reading ${describeEndpoint(ep)}`, (c) =>
          readServerInfo(c, address),
        );
        this.infos.set(refKey(ref), info);
        out.set(refKey(ref), { key: info.identity, address });
      }),
    );
    return out;
  }

  async close(): Promise<void> {
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.end().catch(() => undefined)));
  }
}

export async function readReadOnly(c: Connection): Promise<boolean> {
  const [rows] = await c.query<RowDataPacket[]>('SELECT @@GLOBAL.read_only AS ro');
  return Number(rows[0]?.ro) === 1;
}

/**
 * Freeze one server: read_only ON, then kill the other sessions that hold uncommitted writes.
 * Idempotent. `lock_wait_timeout` bounds the wait for a session holding LOCK TABLES / FTWRL.
 */
export async function freezeServer(c: Connection, lockWaitSeconds = 10): Promise<{ killed: number[] }> {
  await c.query(`SET SESSION lock_wait_timeout = ${Math.max(1, Math.floor(lockWaitSeconds))}`);
  await c.query('SET GLOBAL read_only = ON');
  const [rows] = await c.query<RowDataPacket[]>(
    `SELECT trx_mysql_thread_id AS id FROM information_schema.INNODB_TRX
      WHERE trx_rows_modified > 0 AND trx_mysql_thread_id <> CONNECTION_ID() AND trx_mysql_thread_id > 0`,
  );
  const killed: number[] = [];
  for (const r of rows) {
    const id = Number(r.id);
    if (!Number.isSafeInteger(id) || id <= 0) continue;
    try {
      await c.query(`KILL CONNECTION ${id}`);
      killed.push(id);
    } catch (e) {
      // 1094: the session ended meanwhile.
      if ((e as { errno?: number }).errno !== 1094) throw e;
    }
  }
  return { killed };
}

export async function unfreezeServer(c: Connection): Promise<void> {
  await c.query('SET GLOBAL read_only = OFF');
}

/**
 * What reshard's account lacks on a server it will freeze (empty = fine): setting read_only,
 * seeing and killing other sessions' transactions, and writing while read_only is ON (reverse
 * replication into frozen old shards, drains into frozen in-place shards).
 */
export async function freezePrivilegeProblems(c: Connection, info: ServerInfo): Promise<string[]> {
  const problems: string[] = [];
  try {
    // Assigning the current value changes nothing but checks the privilege.
    await c.query('SET GLOBAL read_only = @@GLOBAL.read_only');
  } catch (e) {
    if (classifyError(e) !== 'fatal') throw e;
    problems.push(`cannot SET GLOBAL read_only (errno ${(e as { errno?: number }).errno ?? '?'})`);
  }
  try {
    await c.query('SELECT COUNT(*) FROM information_schema.INNODB_TRX');
  } catch (e) {
    if (classifyError(e) !== 'fatal') throw e;
    problems.push('cannot read information_schema.INNODB_TRX (needs PROCESS)');
  }
  const v = info.version;
  const grants = parseGrants(await readGrantLines(c, v.flavor, v.major));
  const has = (p: string) => hasPrivilege(grants, p);
  const mariaSuperExempt = v.flavor === 'mariadb' && (v.major < 10 || (v.major === 10 && v.minor < 11));
  const writeExempt =
    v.flavor === 'mariadb'
      ? has('READ_ONLY ADMIN') || (mariaSuperExempt && has('SUPER'))
      : has('SUPER') || has('CONNECTION_ADMIN');
  if (!writeExempt) {
    problems.push(
      v.flavor === 'mariadb'
        ? `cannot write while read_only is ON (needs READ_ONLY ADMIN${mariaSuperExempt ? ' or SUPER' : ''})`
        : 'cannot write while read_only is ON (needs CONNECTION_ADMIN or SUPER)',
    );
  }
  const canKill =
    v.flavor === 'mariadb'
      ? has('CONNECTION ADMIN') || has('SUPER')
      : has('CONNECTION_ADMIN') || has('SUPER');
  if (!canKill)
    problems.push(
      `cannot kill other sessions' write transactions (needs ${v.flavor === 'mariadb' ? 'CONNECTION ADMIN' : 'CONNECTION_ADMIN'} or SUPER)`,
    );
  return problems;
}
