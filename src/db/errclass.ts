/**
 * Driver and server errors by class, by MySQL errno and driver code — never by message text.
 * No imports: both the retry policy (retry.ts) and the error taxonomy (errors.ts, which names a
 * lost connection that outlived the retries as transient rather than a defect) use it.
 */

export type ErrorClass = 'retry' | 'reconnect' | 'fatal';

/** Transaction-level conflicts: roll back and run the same transaction again. */
const RETRY_ERRNO = new Set([
  1205, // ER_LOCK_WAIT_TIMEOUT
  1213, // ER_LOCK_DEADLOCK
  1020, // ER_CHECKREAD (record changed since last read)
  1412, // ER_TABLE_DEF_CHANGED
  3572, // ER_LOCK_NOWAIT
]);

/** The connection is gone or the server is going away: reconnect, then retry. */
const RECONNECT_ERRNO = new Set([
  1040, // ER_CON_COUNT_ERROR (too many connections)
  1053, // ER_SERVER_SHUTDOWN
  1077, // ER_NORMAL_SHUTDOWN
  1152, // ER_ABORTING_CONNECTION
  1158, // ER_NET_READ_ERROR
  1159, // ER_NET_READ_INTERRUPTED
  1160, // ER_NET_ERROR_ON_WRITE
  1161, // ER_NET_WRITE_INTERRUPTED
  1927, // ER_CONNECTION_KILLED (MariaDB: KILL of our connection)
  2002, // CR_CONNECTION_ERROR
  2003, // CR_CONN_HOST_ERROR
  2006, // CR_SERVER_GONE_ERROR
  2013, // CR_SERVER_LOST
  4031, // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
]);

const RECONNECT_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTCONN',
  'ER_CONNECTION_KILLED',
]);

export function classifyError(err: unknown): ErrorClass {
  const e = err as { errno?: number; code?: string; fatal?: boolean; cause?: unknown };
  // connect() wraps a refused or dropped connection in E_CONNECT for the user; for retrying,
  // what counts is the driver error underneath (a restarting server refuses for a while).
  if (e?.code === 'E_CONNECT' && e.cause !== undefined) return classifyError(e.cause);
  if (typeof e?.errno === 'number' && RETRY_ERRNO.has(e.errno)) return 'retry';
  if (typeof e?.errno === 'number' && RECONNECT_ERRNO.has(e.errno)) return 'reconnect';
  if (typeof e?.code === 'string' && RECONNECT_CODES.has(e.code)) return 'reconnect';
  // mysql2 marks errors that closed the connection as fatal ("Can't add new command when
  // connection is in closed state" and the like): the connection must be replaced.
  if (e?.fatal === true) return 'reconnect';
  return 'fatal';
}
