/**
 * What the applier needs to know about a tracked table: its columns in order, its primary key
 * and its shard key — read from the server, never assumed.
 */
import type { Connection } from 'mysql2/promise';
import { q, qcols, qt } from '../db/quote.js';
import { UsageError } from '../errors.js';
import type { RouteKey } from '../plan/router.js';
import {
  INTEGER_TYPES,
  isBinaryType,
  isIntegerType,
  refuseUnsupportedColumns,
  requireTableDefinition,
  selectList,
  type TableDefinition,
} from '../preflight/schema.js';
import type { TableSpec } from '../topology/types.js';
import type { Value } from './values.js';

export interface TableMeta {
  database: string;
  name: string;
  /** Column names in table order; rows are arrays in this order. Generated columns excluded. */
  columns: string[];
  /** Indexes into `columns` of the primary-key columns, in key order. */
  pk: number[];
  /** Index into `columns` of the shard-key column. */
  shardKey: number;
  /**
   * True when the shard key is part of the primary key: then a primary key determines its owner,
   * the same primary key can never live on two sources, and the applier takes its fast path.
   */
  shardKeyInPk: boolean;
  /**
   * Every primary-key column compares by its bytes (integers, DECIMAL, temporal, BINARY,
   * VARBINARY, BIT): two images are the same row exactly when their key values are equal. Not
   * for character columns, where a collation makes 'abc', 'ABC' and 'abc ' one row.
   */
  pkBytes: boolean;
  /**
   * The table has a UNIQUE key besides the primary key. An upsert of a row new to the target
   * then must not be INSERT … ON DUPLICATE KEY UPDATE: a clash on that key would update the
   * other row, primary key included, and lose it (see the applier's upsertRun).
   */
  secondaryUnique: boolean;
  /** Those UNIQUE keys, columns as indexes into `columns` (a key over a generated column is left out). */
  uniqueKeys: { name: string; columns: number[] }[];
  /** How a shard-key value becomes a routing key. */
  keyKind: 'int' | 'string' | 'binary';
  /** Precomputed quoted fragments. */
  /**
   * columns: for INSERT; select: for reading rows (FLOAT/DOUBLE exactly, see selectList);
   * shardKey: the shard key as an SQL expression whose bytes are the ones the router hashes and
   * compares (UTF-8 for text, see shardKeyExpr).
   */
  sql: { table: string; columns: string; select: string; pkColumns: string; shardKey: string };
}

/** Column types whose values compare by their bytes (TableMeta.pkBytes). */
const BYTE_KEY_TYPES: ReadonlySet<string> = new Set([
  ...INTEGER_TYPES,
  'decimal',
  'date',
  'datetime',
  'timestamp',
  'time',
  'year',
  'binary',
  'varbinary',
  'bit',
]);

/** Character sets whose bytes for any key are its UTF-8 bytes. */
const UTF8_BYTES = new Set(['utf8mb4', 'utf8mb3', 'utf8', 'ascii']);

/**
 * The shard key as SQL for the copy's filter: the router hashes and compares a text key's UTF-8
 * bytes, while CRC32(col) and CAST(col AS BINARY) see the column's own charset, so a latin1 key
 * like 'é' (E9, not C3 A9) would be filtered by another segment than the router's. Other
 * charsets are converted first; binary strings and numbers are used as they are.
 */
function shardKeyExpr(c: TableDefinition['columns'][number]): string {
  // A ZEROFILL integer is text with leading zeros to CRC32() and CAST(… AS BINARY): '000042',
  // where the router hashes and compares 42. ZEROFILL implies UNSIGNED.
  if (/\bzerofill\b/i.test(c.type)) return `CAST(${q(c.name)} AS UNSIGNED)`;
  if (c.charset === null || UTF8_BYTES.has(c.charset.toLowerCase())) return q(c.name);
  return `CONVERT(${q(c.name)} USING utf8mb4)`;
}

export function tableMetaFromDefinition(def: TableDefinition, spec: TableSpec): TableMeta {
  refuseUnsupportedColumns(def);
  const cols = def.columns.filter((c) => c.generated === null);
  const columns = cols.map((c) => c.name);
  const pk = def.primaryKey.map((n) => columns.indexOf(n));
  if (pk.length === 0 || pk.some((i) => i < 0)) {
    throw new UsageError('E_NO_PRIMARY_KEY', `table ${def.database}.${def.table} has no usable primary key`, {
      hint: 'add a primary key; reshard pages, applies and verifies rows by primary key',
    });
  }
  const shardKey = columns.indexOf(spec.shardKey);
  if (shardKey < 0) {
    throw new UsageError(
      'E_SHARD_KEY_MISSING',
      `table ${def.database}.${def.table} has no column ${spec.shardKey}`,
      {
        hint: 'fix shardKey in the topology',
      },
    );
  }
  const keyCol = cols[shardKey]!;
  // BIT arrives as bytes (a Buffer): routed by them, as verify routes the bytes it reads. As a
  // string its bytes 0x80 and above became U+FFFD and went to another owner.
  const keyKind = isIntegerType(keyCol)
    ? 'int'
    : isBinaryType(keyCol) || keyCol.dataType === 'bit'
      ? 'binary'
      : 'string';
  return {
    database: def.database,
    name: def.table,
    columns,
    pk,
    shardKey,
    shardKeyInPk: pk.includes(shardKey),
    pkBytes: pk.every((i) => BYTE_KEY_TYPES.has(cols[i]!.dataType)),
    secondaryUnique: def.uniqueKeys.length > 0,
    uniqueKeys: def.uniqueKeys
      .map((k) => ({ name: k.name, columns: k.columns.map((c) => columns.indexOf(c.name)) }))
      .filter((k) => k.columns.every((i) => i >= 0)),
    keyKind,
    sql: {
      table: qt(def.database, def.table),
      columns: qcols(columns),
      select: selectList(cols),
      pkColumns: qcols(pk.map((i) => columns[i]!)),
      shardKey: shardKeyExpr(keyCol),
    },
  };
}

export async function loadTableMeta(
  conn: Connection,
  database: string,
  spec: TableSpec,
  where: string,
): Promise<TableMeta> {
  const def = await requireTableDefinition(conn, database, spec.name, where);
  return tableMetaFromDefinition(def, spec);
}

/** The routing key of a shard-key value, as the router expects it for this column's type. */
export function routeKeyOf(meta: TableMeta, v: Value): RouteKey {
  if (v === null) {
    throw new UsageError('E_NULL_SHARD_KEY', `a row of ${meta.database}.${meta.name} has a NULL shard key`, {
      hint: 'a row with a NULL shard key has no owner; make the column NOT NULL and fix the rows',
    });
  }
  switch (meta.keyKind) {
    case 'int':
      return typeof v === 'number' ? v : BigInt(Buffer.isBuffer(v) ? v.toString() : v.toString());
    case 'binary':
      return Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8');
    default:
      return Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'string' ? v : v.toString();
  }
}

/**
 * An integer shard key from its decimal text, bytes buf[start, end) as the server sends them: a
 * number when it has at most 15 characters (always a safe integer), else a bigint — the same key
 * routeKeyOf makes of the driver's value. Parsed in place: no string per row.
 */
export function intKeyOfText(buf: Uint8Array, start: number, end: number): number | bigint {
  if (end > start && end - start <= 15) {
    let i = start;
    let neg = false;
    if (buf[i] === 45) {
      neg = true;
      i++;
    }
    let n = 0;
    let ok = i < end;
    for (; i < end; i++) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) {
        ok = false;
        break;
      }
      n = n * 10 + d;
    }
    if (ok) return neg ? -n : n;
  }
  return BigInt(Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('latin1'));
}

/**
 * The routing key of a shard key given as its text-protocol bytes buf[start, end): integers
 * parsed in place (intKeyOfText), strings and binary strings as a view of their bytes — the router
 * hashes, compares and looks up string keys by their UTF-8 bytes, which is what the server sent.
 */
export function routeKeyOfText(
  keyKind: TableMeta['keyKind'],
  buf: Buffer,
  start: number,
  end: number,
): RouteKey {
  return keyKind === 'int' ? intKeyOfText(buf, start, end) : buf.subarray(start, end);
}
