/**
 * Connections to shards and to the control schema.
 *
 * Exactness: JavaScript `number` and `Date` lose data, so every connection is opened with
 *   - supportBigNumbers + bigNumberStrings: BIGINT and DECIMAL come back as exact strings;
 *   - dateStrings: DATETIME(6)/TIMESTAMP/DATE come back as the server's text, fractions intact;
 *   - JSON columns as their text (MySQL's native JSON would otherwise be parsed into objects,
 *     reordering keys and rounding numbers);
 *   - session time_zone = '+00:00', so TIMESTAMP text is identical on every server;
 *   - charset utf8mb4, so 4-byte characters survive;
 *   - BIT and binary strings stay Buffers (mysql2's default).
 * Secrets: passwords are resolved from env vars or files at connect time, registered for
 * redaction, and never put in argv, URLs we log, state or reports.
 */
import { readFileSync } from 'node:fs';
import mysql, { type Connection, type ConnectionOptions, type Pool, type PoolOptions } from 'mysql2/promise';
import { PreconditionError, UsageError } from '../errors.js';
import { registerSecret } from '../output.js';
import type { SecretRef, Shard, ShardEndpoint } from '../topology/types.js';
import { isPasswordParam } from './dsn.js';

export function resolveSecret(ref: SecretRef, where: string): string {
  if ('env' in ref) {
    const v = process.env[ref.env];
    if (v === undefined) {
      throw new UsageError('E_SECRET_MISSING', `${where}: environment variable ${ref.env} is not set`, {
        where,
        hint: `export ${ref.env}=… before running reshard (the password is read from it, never from argv)`,
      });
    }
    registerSecret(v, ref.env);
    return v;
  }
  let v: string;
  try {
    v = readFileSync(ref.file, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new UsageError('E_SECRET_MISSING', `${where}: cannot read password file ${ref.file}`, {
      where,
      hint: 'check the path and that reshard may read it (chmod 600 is fine)',
      cause: e,
    });
  }
  registerSecret(v);
  return v;
}

/** A printable endpoint that never includes credentials. */
export function describeEndpoint(ep: ShardEndpoint): string {
  return ep.socket
    ? `${ep.user}@unix:${ep.socket}/${ep.database}`
    : `${ep.user}@${ep.host}:${ep.port}/${ep.database}`;
}

/**
 * Driver options that keep every value exact (shared by all connections, the tailer's too).
 * jsonStrings: JSON arrives as its text — MySQL's JSON type and MariaDB's (LONGTEXT flagged as
 * JSON in extended metadata) alike — instead of being parsed, which would round big numbers.
 */
export const EXACT_VALUE_OPTIONS = {
  supportBigNumbers: true,
  bigNumberStrings: true,
  dateStrings: true,
  decimalNumbers: false,
  jsonStrings: true,
  charset: 'utf8mb4_bin',
  timezone: 'Z',
} as const satisfies ConnectionOptions;

export function connectionOptions(
  ep: ShardEndpoint,
  where: string,
  withDatabase = true,
  multipleStatements = false,
): ConnectionOptions {
  const opts: ConnectionOptions = {
    user: ep.user,
    ...(withDatabase && ep.database ? { database: ep.database } : {}),
    ...(ep.socket ? { socketPath: ep.socket } : { host: ep.host, port: ep.port }),
    ...EXACT_VALUE_OPTIONS,
    // Off except where every statement goes through `Statements` (src/db/statements.ts): the
    // applier's target connections and the change recorder's control connection, whose
    // statements reshard builds with quoted identifiers and values escaped by the driver.
    multipleStatements,
    connectTimeout: 10_000,
    // reshard never prepares statements (text protocol only); mysql2 would otherwise allocate a
    // 16 000-slot statement cache per connection, a measurable part of opening one.
    maxPreparedStatements: 8,
    // mysql2 otherwise captures a stack trace on every query (for the error it might throw):
    // about a tenth of the tailer's CPU in a profile under live load. Errors keep their message,
    // code and the context reshard wraps them in.
    trace: false,
  };
  if (ep.password) opts.password = resolveSecret(ep.password, `${where}.password`);
  if (ep.tls) {
    const read = (p: string | undefined, what: string) => {
      if (!p) return undefined;
      try {
        return readFileSync(p, 'utf8');
      } catch (e) {
        throw new UsageError('E_TLS_FILE', `${where}.tls.${what}: cannot read ${p}`, {
          where,
          hint: 'check the path',
          cause: e,
        });
      }
    };
    const ca = read(ep.tls.ca, 'ca');
    const cert = read(ep.tls.cert, 'cert');
    const key = read(ep.tls.key, 'key');
    opts.ssl = {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      rejectUnauthorized: ep.tls.verifyIdentity,
    };
  }
  return opts;
}

async function initSession(conn: Connection): Promise<void> {
  await conn.query(
    "SET SESSION time_zone = '+00:00', SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')",
  );
}

/** Where the user configured an endpoint, for hints: a shard in the topology, or the control DSN. */
export type EndpointSource = 'topology' | 'control';

const CONTROL_DSN = 'the control DSN (--control or RESHARD_CONTROL_DSN)';

function connectError(
  e: unknown,
  label: string,
  ep: ShardEndpoint,
  source: EndpointSource,
): PreconditionError {
  const err = e as { code?: string; errno?: number; message?: string };
  const target = describeEndpoint(ep);
  const control = source === 'control';
  if (err.code === 'ER_ACCESS_DENIED_ERROR' || err.errno === 1045) {
    return new PreconditionError('E_AUTH', `${label}: access denied for ${target}`, {
      where: label,
      hint: control
        ? `check the user in ${CONTROL_DSN} and the password in RESHARD_CONTROL_PASSWORD or the DSN's ?password-file=`
        : 'check the user and the password reference (env var or file) in the topology',
      cause: e,
    });
  }
  if (err.code === 'ER_BAD_DB_ERROR' || err.errno === 1049) {
    return new PreconditionError(
      'E_NO_DATABASE',
      `${label}: database '${ep.database}' does not exist on ${target}`,
      {
        where: label,
        hint: control
          ? `run \`reshard init\`, or fix the database named in ${CONTROL_DSN}`
          : 'create it, or fix `database` in the topology',
        cause: e,
      },
    );
  }
  return new PreconditionError(
    'E_CONNECT',
    `${label}: cannot connect to ${target}: ${err.code ?? err.message ?? String(e)}`,
    {
      where: label,
      hint: `check that the server is running and reachable from here, and the host/port/socket in ${
        control ? CONTROL_DSN : 'the topology'
      }`,
      cause: e,
    },
  );
}

/** Open one connection to an endpoint, with exact-value options and a UTC session. */
export async function connect(
  ep: ShardEndpoint,
  label: string,
  opts: { withDatabase?: boolean; multipleStatements?: boolean; source?: EndpointSource } = {},
): Promise<Connection> {
  const options = connectionOptions(ep, label, opts.withDatabase ?? true, opts.multipleStatements ?? false);
  let conn: Connection;
  try {
    conn = await mysql.createConnection(options);
  } catch (e) {
    throw connectError(e, label, ep, opts.source ?? 'topology');
  }
  await initSession(conn);
  return conn;
}

export function connectShard(shard: Shard, opts: { multipleStatements?: boolean } = {}): Promise<Connection> {
  return connect(shard.endpoint, `shard ${shard.name}`, opts);
}

/** A pool whose every connection gets the same exact-value session setup. */
export function createPool(ep: ShardEndpoint, label: string, size: number): Pool {
  const options: PoolOptions = {
    ...connectionOptions(ep, label),
    connectionLimit: size,
    waitForConnections: true,
  };
  const pool = mysql.createPool(options);
  pool.on('connection', (c) => {
    // Callback-style connection inside the pool: run the same session setup.
    (c as unknown as { query: (sql: string) => void }).query(
      "SET SESSION time_zone = '+00:00', SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')",
    );
  });
  return pool;
}

/**
 * Parse a control DSN given on the command line or in RESHARD_CONTROL_DSN. A password in it is
 * refused (argv is visible in `ps`); use RESHARD_CONTROL_PASSWORD or ?password-file=.
 */
export function parseControlDsn(dsn: string): ShardEndpoint {
  let url: URL;
  try {
    url = new URL(dsn);
  } catch {
    throw new UsageError('E_CONTROL_DSN', `control DSN is not a valid URL`, {
      hint: 'use mysql://user@host:port/reshard_control',
    });
  }
  if (!/^(mysql|mariadb):$/.test(url.protocol)) {
    throw new UsageError('E_CONTROL_DSN', `control DSN scheme must be mysql:// or mariadb://`, {
      hint: 'use mysql://user@host:port/reshard_control',
    });
  }
  const passwordHint = 'remove it and set RESHARD_CONTROL_PASSWORD, or add ?password-file=/path/to/file';
  if (url.password) {
    registerSecret(decodeURIComponent(url.password));
    throw new UsageError(
      'E_CONTROL_DSN',
      'control DSN contains a password, which would be visible in the process list',
      { hint: passwordHint },
    );
  }
  // The topology's DSN rules (topology/schema.ts): a parameter reshard does not read is refused,
  // not dropped — `?ssl=true` silently ignored would connect without TLS.
  for (const [key, value] of url.searchParams) {
    if (isPasswordParam(key)) {
      registerSecret(value);
      throw new UsageError(
        'E_CONTROL_DSN',
        `control DSN contains a password (query parameter '${key}'), which would be visible in the process list`,
        { hint: passwordHint },
      );
    }
    if (key !== 'socket' && key !== 'password-file') {
      throw new UsageError('E_CONTROL_DSN', `control DSN has unsupported query parameter '${key}'`, {
        hint: 'only ?socket=/path and ?password-file=/path are read from a control DSN; remove the others',
      });
    }
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || 'reshard_control';
  const passwordFile = url.searchParams.get('password-file');
  const socket = url.searchParams.get('socket');
  const password: SecretRef | undefined = passwordFile
    ? { file: passwordFile }
    : process.env.RESHARD_CONTROL_PASSWORD !== undefined
      ? { env: 'RESHARD_CONTROL_PASSWORD' }
      : undefined;
  const port = url.port ? Number(url.port) : 3306;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError('E_CONTROL_DSN', `control DSN has port ${url.port}, not 1–65535`, {
      hint: 'write the control server port in the DSN, e.g. mysql://user@host:3306/reshard_control',
    });
  return {
    // WHATWG URL keeps the brackets of an IPv6 literal; the driver wants the bare address.
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port,
    database,
    user: url.username ? decodeURIComponent(url.username) : 'root',
    ...(socket ? { socket } : {}),
    ...(password ? { password } : {}),
  };
}
