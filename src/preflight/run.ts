/**
 * runPreflight: check every shard of the current (and target) topology concurrently, collect
 * every problem, and return a report; assertPreflight turns a report with failures into one
 * PreconditionError (exit 3) that lists them all.
 *
 * Lifecycle per shard: connect → server facts (version, binlog, server_id) → grants → tables;
 * then, across shards: server_id uniqueness per server, table definitions against a reference.
 * A check that cannot run (unreachable shard) is `skipped`, never silently `ok`.
 *
 * Read-only: each session is put in READ ONLY transaction mode and only SELECT/SHOW are sent.
 */
import type { Connection } from 'mysql2/promise';
import pLimit from 'p-limit';
import { connect, describeEndpoint } from '../db/connect.js';
import { q, qt } from '../db/quote.js';
import { PreconditionError, ReshardError } from '../errors.js';
import type { Shard, TableSpec, Topology } from '../topology/types.js';
import { accountForSql, hasPrivilege, parseGrants, readGrantLines } from './grants.js';
import {
  alterFor,
  diffTableDefinitions,
  isBinaryType,
  isIntegerType,
  isStringType,
  primaryKeyCandidate,
  readTableDefinitions,
  type TableDefinition,
  unsupportedColumns,
} from './schema.js';
import {
  judgeBinlogSettings,
  judgeVersion,
  readServerInfo,
  type ServerInfo,
  usesMariaDbPrivilegeNames,
} from './server.js';
import {
  CHECKS,
  type CheckName,
  type CheckStatus,
  type PreflightIssue,
  type PreflightReport,
  type Role,
  type ShardReport,
  type Side,
} from './types.js';

export interface PreflightOptions {
  /** The current topology: its shards are sources. */
  from: Topology;
  /** The target topology, when resharding: its shards are targets. */
  to?: Topology;
  /**
   * Roles per side. Default: both sides are source and target, because after cutover reverse
   * replication tails the targets' binlogs and writes into the old shards (and their meta
   * database), so that a rollback loses nothing.
   */
  roles?: { from?: readonly Role[]; to?: readonly Role[] };
  /** Shards checked at once (one connection each). Default 16. */
  concurrency?: number;
  /**
   * reshard's own database on each target (`--meta-db`, default `_reshard`): positions, parked
   * rows and the copy fence live there, so a target's account needs to create and write it.
   */
  metaDb?: string;
}

// The old shards are checked as targets too: lacking write rights there, the cutover froze,
// flipped, and only then did the reverse tailer fail at its first write — writes taken on the
// new shards from then on could not be carried back, and a rollback would have lost them.
export const DEFAULT_ROLES: { from: readonly Role[]; to: readonly Role[] } = {
  from: ['source', 'target'],
  to: ['target', 'source'],
};

interface Probe {
  index: number;
  side: Side;
  shard: Shard;
  topology: Topology;
  roles: Role[];
  server: string;
  address: string;
  connected: boolean;
  info?: ServerInfo;
  definitions: Map<string, TableDefinition>;
  issues: PreflightIssue[];
  ran: Set<CheckName>;
}

function addressOf(shard: Shard): string {
  const ep = shard.endpoint;
  return ep.socket ? `unix:${ep.socket}` : `${ep.host}:${ep.port}`;
}

function label(p: Pick<Probe, 'side' | 'shard'>): string {
  return `shard ${p.shard.name} (${p.side})`;
}

type IssueInput = Omit<PreflightIssue, 'severity' | 'side' | 'shard' | 'server' | 'check'> & {
  severity?: PreflightIssue['severity'];
};

function issue(p: Probe, check: CheckName, i: IssueInput): void {
  p.issues.push({
    severity: i.severity ?? 'error',
    side: p.side,
    shard: p.shard.name,
    server: p.server,
    check,
    ...i,
  });
}

/** Run one check; a query error becomes a failure of that check instead of aborting the run. */
async function guarded(p: Probe, check: CheckName, fn: () => Promise<void>): Promise<void> {
  p.ran.add(check);
  try {
    await fn();
  } catch (e) {
    const err = e as { code?: string; errno?: number; message?: string };
    issue(p, check, {
      code: 'E_CHECK_QUERY',
      message: `${label(p)}: the ${check} check could not query ${p.address}: ${err.code ? `${err.code}: ` : ''}${err.message ?? String(e)}`,
      hint: 'make sure the server stays reachable and the account may read information_schema, then re-run preflight',
    });
  }
}

function privilegeName(priv: string, info: ServerInfo): string {
  return priv === 'REPLICATION CLIENT' && usesMariaDbPrivilegeNames(info.version) ? 'BINLOG MONITOR' : priv;
}

async function checkGrants(conn: Connection, p: Probe, info: ServerInfo, metaDb: string): Promise<void> {
  const grants = parseGrants(await readGrantLines(conn, info.version.flavor, info.version.major));
  const ci = info.lowerCaseTableNames !== 0;
  const db = p.shard.endpoint.database;
  const source = p.roles.includes('source');
  const target = p.roles.includes('target');
  // Why a shard must be written: rows are copied into a new shard; an old one receives what
  // reverse replication carries back after the cutover.
  const tableReason = !target
    ? 'needed to read rows'
    : p.side === 'from'
      ? 'reverse replication writes into the old shards after cutover, so rollback loses nothing'
      : 'needed to copy rows into the target';
  const globalNeeded = source ? ['REPLICATION SLAVE', 'REPLICATION CLIENT'] : [];
  const tableNeeded = target ? ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] : ['SELECT'];
  const missingGlobal = globalNeeded.filter((priv) => !hasPrivilege(grants, priv, {}, ci));
  // The meta database is created on first use and written in every target transaction: lacking
  // it, a copy wrote its job and start positions, then died at its first target write (exit 70).
  const metaNeeded = target ? ['CREATE', 'SELECT', 'INSERT', 'UPDATE', 'DELETE'] : [];
  const missingMeta = metaNeeded.filter((priv) => !hasPrivilege(grants, priv, { db: metaDb }, ci));
  const missingByTable = new Map<string, string[]>();
  for (const t of p.topology.tables) {
    const missing = tableNeeded.filter((priv) => !hasPrivilege(grants, priv, { db, table: t.name }, ci));
    if (missing.length > 0) missingByTable.set(t.name, missing);
  }
  if (missingGlobal.length === 0 && missingByTable.size === 0 && missingMeta.length === 0) return;
  const account = accountForSql(info.currentUser);
  const parts: string[] = [];
  const fixes: string[] = [];
  if (missingGlobal.length > 0) {
    const names = missingGlobal.map((x) => privilegeName(x, info)).join(', ');
    parts.push(
      `${names} ON *.* (needed to read the binlog${p.side === 'to' ? ': reverse replication tails targets after cutover' : ''})`,
    );
    fixes.push(`GRANT ${names} ON *.* TO ${account};`);
  }
  if (missingMeta.length > 0) {
    parts.push(
      `${missingMeta.join(', ')} ON ${q(metaDb)}.* (reshard's own database on each ${p.side === 'from' ? 'old shard for reverse replication' : 'target'}: positions, parked rows${p.side === 'from' ? '' : ', the copy fence'}; --meta-db)`,
    );
    fixes.push(`GRANT ${missingMeta.join(', ')} ON ${q(metaDb)}.* TO ${account};`);
  }
  if (missingByTable.size > 0) {
    const union = tableNeeded.filter((priv) => [...missingByTable.values()].some((m) => m.includes(priv)));
    const allSame =
      missingByTable.size === p.topology.tables.length &&
      [...missingByTable.values()].every((m) => m.length === union.length);
    const tables = [...missingByTable.entries()].map(([t, m]) => `${m.join(', ')} ON ${qt(db, t)}`);
    parts.push(`${tables.join('; ')} (${tableReason})`);
    if (allSame) fixes.push(`GRANT ${union.join(', ')} ON ${q(db)}.* TO ${account};`);
    else
      for (const [t, m] of missingByTable) fixes.push(`GRANT ${m.join(', ')} ON ${qt(db, t)} TO ${account};`);
  }
  issue(p, 'grants', {
    code: 'E_GRANTS',
    setting: 'privileges',
    message: `${label(p)}: user ${account} on ${p.address} lacks ${parts.join('; and ')}`,
    hint: `as an administrator run: ${fixes.join(' ')}`,
  });
}

/** The shard key column must have a type the scheme can route (errors), and should be NOT NULL (warning). */
function checkShardKeyType(p: Probe, spec: TableSpec, def: TableDefinition): void {
  const col = def.columns.find((c) => c.name === spec.shardKey);
  if (!col) return;
  const scheme = p.topology.scheme;
  const where = `${qt(def.database, def.table)}.${q(col.name)}`;
  const common = { table: def.table, column: col.name, actual: col.type };
  if (scheme.type === 'hash-mod' && scheme.hash === 'identity' && !isIntegerType(col)) {
    issue(p, 'tables', {
      ...common,
      code: 'E_SHARD_KEY_TYPE',
      expected: 'an integer type',
      message: `${label(p)}: shard key ${where} is ${col.type}; hash-mod with hash: identity routes by the integer value itself`,
      hint: `use hash: crc32 in ${p.topology.file} (it hashes any key), or choose an integer column as shardKey`,
    });
  } else if (scheme.type === 'range' && scheme.keyType === 'int' && !isIntegerType(col)) {
    issue(p, 'tables', {
      ...common,
      code: 'E_SHARD_KEY_TYPE',
      expected: 'an integer type',
      message: `${label(p)}: shard key ${where} is ${col.type}, but the range scheme has keyType: int`,
      hint: `if the key is text, write every boundary of the range scheme in ${p.topology.file} as a quoted string (from: "m"): the key type follows the boundaries; or choose an integer column as shardKey`,
    });
  } else if (
    scheme.type === 'range' &&
    scheme.keyType === 'string' &&
    !isStringType(col) &&
    !isBinaryType(col)
  ) {
    issue(p, 'tables', {
      ...common,
      code: 'E_SHARD_KEY_TYPE',
      expected: 'a character or binary type',
      message: `${label(p)}: shard key ${where} is ${col.type}, but the range scheme has keyType: string`,
      hint: `for an integer key, write every boundary of the range scheme in ${p.topology.file} as a plain integer (from: 1000): the key type follows the boundaries; or choose a character column as shardKey`,
    });
  } else if (!isIntegerType(col) && !isStringType(col) && !isBinaryType(col)) {
    issue(p, 'tables', {
      ...common,
      severity: 'warning',
      code: 'W_SHARD_KEY_TYPE',
      message: `${label(p)}: shard key ${where} is ${col.type}; keys are hashed in their text form, which for this type depends on server formatting`,
      hint: 'prefer an integer, character or binary column as shardKey',
    });
  }
  if (col.nullable) {
    issue(p, 'tables', {
      ...common,
      severity: 'warning',
      code: 'W_SHARD_KEY_NULLABLE',
      message: `${label(p)}: shard key ${where} allows NULL; a row with a NULL key has no owner`,
      hint: `make it NOT NULL: ALTER TABLE ${qt(def.database, def.table)} MODIFY COLUMN ${q(col.name)} ${col.type} NOT NULL (after fixing any NULL rows)`,
    });
  }
}

async function checkTables(conn: Connection, p: Probe, info: ServerInfo): Promise<void> {
  const db = p.shard.endpoint.database;
  const defs = await readTableDefinitions(
    conn,
    db,
    p.topology.tables.map((spec) => spec.name),
    { flavor: info.version.flavor },
  );
  for (const spec of p.topology.tables) {
    const def = defs.get(spec.name);
    const t = qt(db, spec.name);
    if (!def || def.tableType === 'VIEW' || def.tableType === 'SYSTEM VIEW' || def.tableType === 'SEQUENCE') {
      issue(p, 'tables', {
        code: 'E_TABLE_MISSING',
        table: spec.name,
        message: def
          ? `${label(p)}: ${t} on ${p.address} is a ${def.tableType}, not a table`
          : `${label(p)}: table ${t} does not exist on ${p.address}`,
        hint: `create it with the same definition as on the other shards (SHOW CREATE TABLE ${q(spec.name)} there), or remove it from tables in ${p.topology.file}`,
      });
      continue;
    }
    p.definitions.set(spec.name, def);
    if (def.primaryKey.length === 0) {
      const candidate = primaryKeyCandidate(def);
      issue(p, 'tables', {
        code: 'E_NO_PRIMARY_KEY',
        table: spec.name,
        message: `${label(p)}: table ${t} has no PRIMARY KEY; reshard pages through rows and applies binlog changes by primary key`,
        hint: candidate
          ? `add one, e.g. ALTER TABLE ${t} ADD PRIMARY KEY (${candidate}); (a unique index on NOT NULL columns already exists)`
          : `add one: ALTER TABLE ${t} ADD PRIMARY KEY (<unique NOT NULL columns>);` +
            (def.columns.some((c) => c.name === 'id')
              ? ''
              : ` or a surrogate key: ALTER TABLE ${t} ADD COLUMN ${q('id')} BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY FIRST;`),
      });
    }
    if (!def.columns.some((c) => c.name === spec.shardKey)) {
      issue(p, 'tables', {
        code: 'E_SHARD_KEY_MISSING',
        table: spec.name,
        column: spec.shardKey,
        message: `${label(p)}: shard key column ${q(spec.shardKey)} does not exist in ${t} (columns: ${def.columns.map((c) => q(c.name)).join(', ')})`,
        hint: `fix shardKey of table ${spec.name} in ${p.topology.file}, or add the column on this shard`,
      });
    } else {
      checkShardKeyType(p, spec, def);
    }
    for (const u of unsupportedColumns(def)) {
      issue(p, 'tables', {
        code: u.code,
        table: spec.name,
        column: u.column,
        message: `${label(p)}: ${u.message}`,
        hint: u.hint,
      });
    }
    if (def.engine !== null && def.engine.toLowerCase() !== 'innodb') {
      issue(p, 'tables', {
        severity: 'warning',
        code: 'W_ENGINE',
        table: spec.name,
        actual: def.engine,
        expected: 'InnoDB',
        message: `${label(p)}: table ${t} uses ${def.engine}; reshard commits each copied chunk with its checkpoint in one transaction, which a non-transactional engine cannot roll back`,
        hint: `ALTER TABLE ${t} ENGINE=InnoDB;`,
      });
    }
  }
}

async function probeShard(p: Probe, metaDb: string): Promise<void> {
  p.ran.add('connect');
  let conn: Connection;
  try {
    conn = await connect(p.shard.endpoint, label(p));
  } catch (e) {
    const err = e instanceof ReshardError ? e : undefined;
    issue(p, 'connect', {
      code: err?.code ?? 'E_CONNECT',
      message:
        err?.message ?? `${label(p)}: cannot connect to ${p.server}: ${(e as Error).message ?? String(e)}`,
      hint:
        err?.hint ??
        'check that the server is running and reachable from here, and the host/port/socket in the topology',
    });
    return;
  }
  p.connected = true;
  try {
    // Belt and braces: preflight never writes, and a session that cannot write proves it.
    await conn.query('SET SESSION TRANSACTION READ ONLY');
    await conn.query('SET SESSION lock_wait_timeout = 30');
    await guarded(p, 'version', async () => {
      const info = await readServerInfo(conn, p.address);
      p.info = info;
      const verdict = judgeVersion(info.version);
      if (!verdict.ok) {
        issue(p, 'version', {
          code: 'E_SERVER_VERSION',
          setting: 'version',
          actual: info.versionString,
          expected: 'MySQL 5.7 or 8.x, or MariaDB 10.5 or later',
          message: `${label(p)}: ${p.address} runs ${info.version.flavor === 'mariadb' ? 'MariaDB' : 'MySQL'} ${info.versionString} (${verdict.reason}), which reshard does not support`,
          hint: 'upgrade the server to MySQL 5.7/8.x or MariaDB 10.5+ before resharding',
        });
      } else if (verdict.untested) {
        issue(p, 'version', {
          severity: 'warning',
          code: 'W_SERVER_VERSION',
          setting: 'version',
          actual: info.versionString,
          message: `${label(p)}: ${verdict.untested}`,
          hint: 'try the run against a copy first (reshard sandbox), or use a tested version',
        });
      }
    });
    const info = p.info;
    if (!info) return;
    if (p.roles.includes('source')) {
      await guarded(p, 'binlog', async () => {
        for (const s of judgeBinlogSettings(info))
          issue(p, 'binlog', { ...s, message: `${label(p)}: ${s.message}` });
      });
    }
    await guarded(p, 'grants', () => checkGrants(conn, p, info, metaDb));
    await guarded(p, 'tables', () => checkTables(conn, p, info));
  } finally {
    await conn.end().catch(() => undefined);
  }
}

/**
 * server_id must be unique per server process (MySQL/MariaDB replication and binlog events
 * identify their origin by it). Shards may share one server with different databases, so group
 * by the server's identity, not by shard or address.
 */
function checkServerIds(probes: Probe[]): void {
  const byId = new Map<number, Map<string, Probe[]>>();
  for (const p of probes) {
    if (!p.info) continue;
    p.ran.add('server_id');
    const servers = byId.get(p.info.serverId) ?? new Map<string, Probe[]>();
    byId.set(p.info.serverId, servers);
    const list = servers.get(p.info.identity) ?? [];
    list.push(p);
    servers.set(p.info.identity, list);
  }
  for (const [id, servers] of byId) {
    if (servers.size < 2) continue;
    const describe = (ps: Probe[]) => `${ps[0]!.address} (${ps.map((x) => label(x)).join(', ')})`;
    for (const [identity, ps] of servers) {
      const others = [...servers.entries()].filter(([k]) => k !== identity).map(([, v]) => describe(v));
      for (const p of ps) {
        issue(p, 'server_id', {
          code: 'E_SERVER_ID_DUPLICATE',
          setting: 'server_id',
          actual: String(id),
          message: `${label(p)}: server_id ${id} of ${p.address} is also the server_id of ${others.join(', ')}; each server needs its own`,
          hint: `give every server a distinct server_id: SET GLOBAL server_id = <unique number>; and server_id=<same number> under [mysqld] in my.cnf`,
        });
      }
    }
  }
}

/**
 * One database is one shard. Topologies compare endpoints as written, so `127.0.0.1` and
 * `localhost` (or two names of one host) made two shards of one database: every row had two
 * owners, or a target was a source under another name and rows were copied onto themselves.
 * Here the servers say who they are (hostname, port, socket, datadir, server_uuid): within a
 * side a database may back one shard only, and across sides only the same shard name (an
 * in-place shard).
 */
function checkShardIdentities(probes: Probe[]): void {
  const byDb = new Map<string, Probe[]>();
  for (const p of probes) {
    if (!p.info) continue;
    const k = `${p.info.identity}\u0000${p.shard.endpoint.database}`;
    const list = byDb.get(k) ?? [];
    list.push(p);
    byDb.set(k, list);
  }
  for (const ps of byDb.values()) {
    for (const p of ps) {
      const clash = ps.filter((o) => o !== p && (o.side === p.side || o.shard.name !== p.shard.name));
      if (clash.length === 0) continue;
      const names = clash.map((o) => `${label(o)} (${o.address})`).join(', ');
      issue(p, 'server_id', {
        code: 'E_SHARD_SAME_DATABASE',
        message: `${label(p)}: database ${p.shard.endpoint.database} on ${p.address} is the same database as ${names}: one database can be one shard only (the same shard name on both sides, in place)`,
        hint: `give each shard its own server and database in ${p.topology.file}, or, for a shard kept in place, use the same shard name and address in both topologies`,
      });
    }
  }
}

/**
 * Every shard of both topologies must hold the same definition of each table: the first source
 * shard holding the table is the reference, every other shard is compared with it.
 */
function checkSchemas(probes: Probe[]): void {
  const names = new Set(probes.flatMap((p) => p.topology.tables.map((t) => t.name)));
  for (const name of names) {
    const holders = probes.filter((p) => p.definitions.has(name));
    const ref = holders.find((p) => p.side === 'from') ?? holders[0];
    if (!ref) continue;
    const refDef = ref.definitions.get(name)!;
    for (const p of holders) {
      p.ran.add('schema');
      if (p === ref) continue;
      const def = p.definitions.get(name)!;
      for (const d of diffTableDefinitions(refDef, def)) {
        const [r, o] = [label(ref), label(p)];
        const t = q(name);
        let message: string;
        let expected: string;
        let actual: string;
        let column: string | undefined;
        switch (d.kind) {
          case 'column-missing':
            [column, expected, actual] = [d.column, d.expected, '(missing)'];
            message = `table ${t}: column ${q(d.column)} (${d.expected}) exists on ${r} but is missing on ${o}`;
            break;
          case 'column-extra':
            [column, expected, actual] = [d.column, '(absent)', d.actual];
            message = `table ${t}: column ${q(d.column)} (${d.actual}) exists on ${o} but not on ${r}`;
            break;
          case 'column-name':
            [column, expected, actual] = [d.column, d.column, d.actualName];
            message = `table ${t}: column ${q(d.column)} on ${r} is spelled ${q(d.actualName)} on ${o}`;
            break;
          case 'column-definition':
            [column, expected, actual] = [d.column, d.expected, d.actual];
            message = `table ${t}: column ${q(d.column)} is ${d.expected} on ${r} but ${d.actual} on ${o}`;
            break;
          case 'column-order':
            [column, expected, actual] = [d.column, d.expected, d.actual];
            message = `table ${t}: columns are in order ${d.expected} on ${r} but ${d.actual} on ${o}`;
            break;
          case 'primary-key':
            [column, expected, actual] = [undefined, d.expected, d.actual];
            message = `table ${t}: ${d.expected} on ${r} but ${d.actual} on ${o}`;
            break;
          case 'unique-key-missing':
            [column, expected, actual] = [undefined, `UNIQUE KEY (${d.columns})`, '(absent)'];
            message = `table ${t}: UNIQUE KEY ${q(d.key)} (${d.columns}) exists on ${r} but not on ${o}`;
            break;
          case 'unique-key-extra':
            [column, expected, actual] = [undefined, '(absent)', `UNIQUE KEY (${d.columns})`];
            message = `table ${t}: UNIQUE KEY ${q(d.key)} (${d.columns}) exists on ${o} but not on ${r}`;
            break;
          case 'check-missing':
            [column, expected, actual] = [undefined, `CHECK (${d.clause})`, '(absent)'];
            message = `table ${t}: CHECK constraint ${q(d.name)} (${d.clause}) exists on ${r} but not on ${o}`;
            break;
          case 'check-extra':
            [column, expected, actual] = [undefined, '(absent)', `CHECK (${d.clause})`];
            message = `table ${t}: CHECK constraint ${q(d.name)} (${d.clause}) exists on ${o} but not on ${r}`;
            break;
        }
        const alter = alterFor(d, refDef, p.shard.endpoint.database);
        issue(p, 'schema', {
          code: 'E_SCHEMA_MISMATCH',
          table: name,
          ...(column !== undefined ? { column } : {}),
          expected,
          actual,
          message,
          hint:
            p.side === 'to'
              ? `make the target match the source: on ${label(p)} run ${alter}`
              : `source shards must agree on every table definition: on ${label(p)} run ${alter} (or change ${label(ref)} to match it)`,
        });
      }
    }
  }
}

function statusOf(p: Probe, check: CheckName): CheckStatus {
  const mine = p.issues.filter((i) => i.check === check);
  if (mine.some((i) => i.severity === 'error')) return 'fail';
  if (mine.some((i) => i.severity === 'warning')) return 'warn';
  return p.ran.has(check) ? 'ok' : 'skipped';
}

export async function runPreflight(opts: PreflightOptions): Promise<PreflightReport> {
  const checkedAt = new Date().toISOString();
  const roles = { from: opts.roles?.from ?? DEFAULT_ROLES.from, to: opts.roles?.to ?? DEFAULT_ROLES.to };
  const sides: [Side, Topology | undefined][] = [
    ['from', opts.from],
    ['to', opts.to],
  ];
  const probes: Probe[] = [];
  for (const [side, topology] of sides) {
    if (!topology) continue;
    for (const shard of topology.shards) {
      probes.push({
        index: probes.length,
        side,
        shard,
        topology,
        roles: [...new Set(roles[side])],
        server: describeEndpoint(shard.endpoint),
        address: addressOf(shard),
        connected: false,
        definitions: new Map(),
        issues: [],
        ran: new Set(),
      });
    }
  }
  const limit = pLimit(Math.max(1, opts.concurrency ?? 16));
  await Promise.all(probes.map((p) => limit(() => probeShard(p, opts.metaDb ?? '_reshard'))));
  checkServerIds(probes);
  checkShardIdentities(probes);
  checkSchemas(probes);

  const all = probes.flatMap((p) => p.issues.map((i) => ({ p, i })));
  all.sort((a, b) => a.p.index - b.p.index || CHECKS.indexOf(a.i.check) - CHECKS.indexOf(b.i.check));
  const failures = all.filter((x) => x.i.severity === 'error').map((x) => x.i);
  const warnings = all.filter((x) => x.i.severity === 'warning').map((x) => x.i);
  const shards: ShardReport[] = probes.map((p) => ({
    side: p.side,
    shard: p.shard.name,
    server: p.server,
    roles: p.roles,
    reachable: p.connected,
    ...(p.info
      ? {
          flavor: p.info.version.flavor,
          version: p.info.version.text,
          versionString: p.info.versionString,
          serverId: p.info.serverId,
          user: p.info.currentUser,
        }
      : {}),
    checks: Object.fromEntries(CHECKS.map((c) => [c, statusOf(p, c)])) as Record<CheckName, CheckStatus>,
  }));
  return {
    ok: failures.length === 0,
    checkedAt,
    from: { file: opts.from.file, name: opts.from.name },
    ...(opts.to ? { to: { file: opts.to.file, name: opts.to.name } } : {}),
    shards,
    failures,
    warnings,
  };
}

function indent(text: string, pad: string): string {
  return text.split('\n').join(`\n${pad}`);
}

/** Throw one PreconditionError (E_PREFLIGHT, exit 3) listing every failure; return quietly otherwise. */
export function assertPreflight(report: PreflightReport): void {
  if (report.failures.length === 0) return;
  const n = report.failures.length;
  const shardCount = new Set(report.failures.map((f) => `${f.side}/${f.shard}`)).size;
  const lines = report.failures.map(
    (f) =>
      `  ${f.code} on ${f.server}\n      ${indent(f.message, '      ')}\n      fix: ${indent(f.hint, '      ')}`,
  );
  throw new PreconditionError(
    'E_PREFLIGHT',
    `preflight found ${n} problem${n === 1 ? '' : 's'} on ${shardCount} shard${shardCount === 1 ? '' : 's'}; nothing was written:\n${lines.join('\n')}`,
    {
      hint: 'fix each problem as shown, then re-run `reshard preflight`',
      data: { failures: report.failures, warnings: report.warnings, shards: report.shards },
    },
  );
}
