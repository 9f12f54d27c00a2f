/**
 * The preflight report: what `runPreflight` returns and what `reshard preflight --json` prints.
 * Every issue carries a stable code (see README.md in this folder); the report collects all of
 * them, so one run shows everything an operator has to fix.
 */

/** Which topology file a shard comes from. */
export type Side = 'from' | 'to';

/**
 * What reshard does with a shard, which decides what it must allow:
 *   reader – read rows (verify): SELECT;
 *   source – rows are copied and its binlog is tailed: binlog settings, REPLICATION SLAVE and
 *            REPLICATION CLIENT (MariaDB: BINLOG MONITOR), SELECT;
 *   target – rows are written: SELECT, INSERT, UPDATE, DELETE.
 */
export type Role = 'reader' | 'source' | 'target';

/** One column of the human table; every issue belongs to exactly one. */
export type CheckName = 'connect' | 'version' | 'binlog' | 'server_id' | 'grants' | 'tables' | 'schema';

export const CHECKS: readonly CheckName[] = [
  'connect',
  'version',
  'binlog',
  'server_id',
  'grants',
  'tables',
  'schema',
];

export type CheckStatus = 'ok' | 'fail' | 'warn' | 'skipped';

export type Severity = 'error' | 'warning';

export interface PreflightIssue {
  severity: Severity;
  /** Stable code: E_* for failures, W_* for warnings. */
  code: string;
  check: CheckName;
  side: Side;
  shard: string;
  /** `user@host:port/database` (describeEndpoint): never a password. */
  server: string;
  /** The server setting concerned, e.g. `binlog_format`. */
  setting?: string;
  table?: string;
  column?: string;
  /** For mismatches: the reference definition and the one found. */
  expected?: string;
  actual?: string;
  message: string;
  /** The exact fix. */
  hint: string;
}

export interface ShardReport {
  side: Side;
  shard: string;
  server: string;
  roles: Role[];
  reachable: boolean;
  flavor?: 'mysql' | 'mariadb';
  /** Numeric version, e.g. `10.11.19`. */
  version?: string;
  /** VERSION() as the server reports it. */
  versionString?: string;
  serverId?: number;
  /** The account reshard is authenticated as (CURRENT_USER()), e.g. `reshard@%`. */
  user?: string;
  checks: Record<CheckName, CheckStatus>;
}

export interface PreflightReport {
  ok: boolean;
  checkedAt: string;
  from: { file: string; name: string };
  to?: { file: string; name: string };
  shards: ShardReport[];
  failures: PreflightIssue[];
  warnings: PreflightIssue[];
}
