/**
 * Server-level facts (flavor, version, binlog settings, server_id, who we are) read once per
 * shard connection, and the pure rules that judge them. Only SELECT/SHOW statements.
 */
import type { Connection } from 'mysql2/promise';

export type Flavor = 'mysql' | 'mariadb';

export interface ServerVersion {
  flavor: Flavor;
  major: number;
  minor: number;
  patch: number;
  /** `10.11.19` */
  text: string;
}

export interface ServerInfo {
  version: ServerVersion;
  /** VERSION() verbatim. */
  versionString: string;
  serverId: number;
  logBin: boolean;
  binlogFormat: string;
  binlogRowImage: string;
  /** undefined where the variable does not exist (MySQL 5.7, MySQL < 8.0.1). */
  binlogRowMetadata: string | undefined;
  /** MySQL 8 only; `PARTIAL_JSON` logs JSON updates as diffs. */
  binlogRowValueOptions: string | undefined;
  lowerCaseTableNames: number;
  /** CURRENT_USER(): `user@host`. */
  currentUser: string;
  /**
   * What identifies the server process behind an endpoint, independent of the address used to
   * reach it: two endpoints with the same identity are one server (e.g. 127.0.0.1 vs a DNS name).
   */
  identity: string;
  /** host:port or unix socket, for messages. */
  address: string;
}

/**
 * Parse VERSION() (+ version_comment). MariaDB says so in the version string; MariaDB before 11
 * may also carry the `5.5.5-` replication prefix in some proxies.
 */
export function parseServerVersion(version: string, comment = ''): ServerVersion | undefined {
  const isMaria = /mariadb/i.test(version) || /mariadb/i.test(comment);
  const v = version.replace(/^5\.5\.5-(?=\d+\.\d+\.\d+-mariadb)/i, '');
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(v);
  if (!m) return undefined;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return { flavor: isMaria ? 'mariadb' : 'mysql', major, minor, patch, text: `${major}.${minor}.${patch}` };
}

export type VersionVerdict = { ok: true; untested?: string } | { ok: false; reason: string };

/** Supported: MySQL 5.7 and 8.x, MariaDB 10.5 and later. */
export function judgeVersion(v: ServerVersion): VersionVerdict {
  if (v.flavor === 'mariadb') {
    if (v.major < 10 || (v.major === 10 && v.minor < 5))
      return { ok: false, reason: 'MariaDB older than 10.5' };
    return { ok: true };
  }
  if (v.major < 5 || (v.major === 5 && v.minor < 7)) return { ok: false, reason: 'MySQL older than 5.7' };
  if (v.major > 5 && v.major < 8)
    return { ok: false, reason: `MySQL ${v.major}.x is not a released version` };
  if (v.major >= 9)
    return {
      ok: true,
      untested: `MySQL ${v.text} is newer than the versions reshard is tested with (5.7, 8.x)`,
    };
  return { ok: true };
}

/** MariaDB renamed REPLICATION CLIENT to BINLOG MONITOR in 10.5. */
export function usesMariaDbPrivilegeNames(v: ServerVersion): boolean {
  return v.flavor === 'mariadb' && (v.major > 10 || (v.major === 10 && v.minor >= 5));
}

const VARIABLES = [
  'version',
  'version_comment',
  'server_id',
  'log_bin',
  'binlog_format',
  'binlog_row_image',
  'binlog_row_metadata',
  'binlog_row_value_options',
  'hostname',
  'port',
  'datadir',
  'server_uuid',
  'lower_case_table_names',
  'socket',
];

export async function readServerInfo(conn: Connection, address: string): Promise<ServerInfo> {
  // SHOW GLOBAL VARIABLES (not @@var): a variable this server lacks is simply absent instead
  // of an error, and GLOBAL is what new application sessions inherit.
  const [rows] = await conn.query(
    `SHOW GLOBAL VARIABLES WHERE Variable_name IN (${VARIABLES.map(() => '?').join(', ')})`,
    VARIABLES,
  );
  const vars = new Map<string, string>();
  for (const r of rows as { Variable_name: string; Value: string | null }[])
    vars.set(r.Variable_name.toLowerCase(), r.Value ?? '');
  const [who] = await conn.query('SELECT CURRENT_USER() AS u');
  const currentUser = String((who as { u: string }[])[0]?.u ?? '');
  const versionString = vars.get('version') ?? '';
  const version = parseServerVersion(versionString, vars.get('version_comment')) ?? {
    flavor: 'mysql',
    major: 0,
    minor: 0,
    patch: 0,
    text: versionString || 'unknown',
  };
  const upper = (name: string) => vars.get(name)?.toUpperCase();
  return {
    version,
    versionString,
    serverId: Number(vars.get('server_id') ?? 0),
    logBin: /^(ON|1)$/i.test(vars.get('log_bin') ?? ''),
    binlogFormat: upper('binlog_format') ?? '',
    binlogRowImage: upper('binlog_row_image') ?? '',
    binlogRowMetadata: upper('binlog_row_metadata'),
    binlogRowValueOptions: vars.get('binlog_row_value_options'),
    lowerCaseTableNames: Number(vars.get('lower_case_table_names') ?? 0),
    currentUser,
    identity: [
      vars.get('hostname'),
      vars.get('port'),
      vars.get('socket'),
      vars.get('datadir'),
      vars.get('server_uuid') ?? '',
    ]
      .map((p) => p ?? '')
      .join('|'),
    address,
  };
}

export interface SettingProblem {
  severity: 'error' | 'warning';
  code: string;
  setting: string;
  message: string;
  hint: string;
}

function dynamicFix(setting: string, value: string): string {
  return (
    `run SET GLOBAL ${setting} = '${value}'; and add ${setting}=${value} under [mysqld] in my.cnf so it survives a restart ` +
    '(sessions that are already open keep the old value: reconnect the application pools afterwards)'
  );
}

/**
 * The binlog rules for a server whose binlog reshard tails (sources, and targets because
 * reverse replication tails them after cutover).
 */
export function judgeBinlogSettings(s: ServerInfo): SettingProblem[] {
  const out: SettingProblem[] = [];
  if (!s.logBin) {
    out.push({
      severity: 'error',
      code: 'E_BINLOG_OFF',
      setting: 'log_bin',
      message: `binary logging is off (log_bin = OFF) on ${s.address}; reshard streams changes from the binlog`,
      hint:
        'log_bin cannot be changed at runtime: add log_bin=binlog and a server_id unique in the estate under [mysqld] in my.cnf, ' +
        'then restart the server',
    });
  }
  if (s.binlogFormat !== 'ROW') {
    out.push({
      severity: 'error',
      code: 'E_BINLOG_FORMAT',
      setting: 'binlog_format',
      message: `binlog_format is ${s.binlogFormat || 'unset'} on ${s.address}, must be ROW: statement events cannot be applied row by row to other shards`,
      hint: dynamicFix('binlog_format', 'ROW'),
    });
  }
  if (s.binlogRowImage !== 'FULL') {
    out.push({
      severity: 'error',
      code: 'E_ROW_IMAGE',
      setting: 'binlog_row_image',
      message: `binlog_row_image is ${s.binlogRowImage || 'unset'} on ${s.address}, must be FULL: reshard needs every column of the before and after image to route and apply a change`,
      hint: dynamicFix('binlog_row_image', 'FULL'),
    });
  }
  // A warning, not a failure: MySQL 5.7 (supported) has no such variable, so correctness cannot
  // depend on it. With FULL, each TableMap event describes its own columns and the tailer need
  // not look them up in INFORMATION_SCHEMA, which can disagree with an event written before a
  // concurrent ALTER. It is cheap to turn on, so we say so.
  if (s.binlogRowMetadata !== undefined && s.binlogRowMetadata !== 'FULL') {
    out.push({
      severity: 'warning',
      code: 'W_ROW_METADATA',
      setting: 'binlog_row_metadata',
      message: `binlog_row_metadata is ${s.binlogRowMetadata || 'unset'} on ${s.address}; FULL makes every binlog event self-describing, so a schema change during the run cannot make the tailer misread a row`,
      hint: dynamicFix('binlog_row_metadata', 'FULL'),
    });
  }
  if (s.binlogRowValueOptions !== undefined && /PARTIAL_JSON/i.test(s.binlogRowValueOptions)) {
    out.push({
      severity: 'error',
      code: 'E_ROW_VALUE_OPTIONS',
      setting: 'binlog_row_value_options',
      message: `binlog_row_value_options is PARTIAL_JSON on ${s.address}: JSON updates are logged as diffs, not as the full value reshard applies`,
      hint:
        "run SET GLOBAL binlog_row_value_options = ''; and add binlog_row_value_options= (empty) under [mysqld] in my.cnf " +
        '(reconnect the application pools afterwards)',
    });
  }
  return out;
}
