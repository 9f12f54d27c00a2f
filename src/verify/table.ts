/**
 * What the verifier knows about one table: its columns (in table order, generated columns
 * excluded, as the copier writes them), their kinds, the primary key, the shard key, and the SQL
 * fragments built from them — every identifier quoted, every value an exact literal.
 */
import { intKeyOfText, routeKeyOfText } from '../apply/table.js';
import { q, qcols, qt } from '../db/quote.js';
import { PreconditionError, ReshardError } from '../errors.js';
import type { RouteKey } from '../plan/router.js';
import {
  columnSql,
  isBinaryType,
  isIntegerType,
  refuseUnsupportedColumns,
  selectList,
  type TableDefinition,
} from '../preflight/schema.js';
import type { TableSpec } from '../topology/types.js';
import { type ColumnKind, columnKind, type RawValue } from './rowhash.js';
import type { RowView } from './scan.js';

export interface VerifyColumn {
  name: string;
  kind: ColumnKind;
  dataType: string;
  /** True for character columns (the server converts them to utf8mb4 for us). */
  character: boolean;
}

export interface VerifyTable {
  name: string;
  spec: TableSpec;
  columns: VerifyColumn[];
  /** Indexes into `columns` of the primary key, in key order. */
  pk: number[];
  shardKey: number;
  keyKind: 'int' | 'string' | 'binary';
  /**
   * Every primary-key column is an integer without ZEROFILL: a SELECT returns exactly the
   * decimal text the key was recorded as, so `pk IN (…)` returns each row once and under the
   * very bytes of one key (YEAR and ZEROFILL columns print with leading zeros; strings and
   * temporal values compare by collation or value).
   */
  exactPk: boolean;
  /**
   * Why a SELECT may print a primary-key value otherwise than the tailer records it (undefined:
   * it prints the same text): ZEROFILL integers and YEAR print with leading zeros, BINARY(n) with
   * the 0x00 padding the binlog leaves out, BIT as bytes. The change ids of such keys (hashes of
   * the recorded text) flag other buckets than the rows'; exact key lookups still match by value.
   */
  keyPrintsOtherwise?: string | undefined;
  /** Canonical column definitions: every shard must show the same. */
  shape: string[];
  sql: {
    /** Quoted column list in table order (INSERT, repair SQL). */
    columns: string;
    /** The SELECT list rows are read with (FLOAT/DOUBLE exactly, see selectList). */
    select: string;
    /** Quoted primary-key columns, for ORDER BY. */
    orderBy: string;
    /** SQL for pkHash (CRC32 over the primary-key columns' canonical bytes); see bucket.ts. */
    pkHash: string;
  };
}

const CHARACTER = new Set(['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext', 'enum', 'set']);

export function verifyTableFrom(def: TableDefinition, spec: TableSpec): VerifyTable {
  refuseUnsupportedColumns(def);
  const cols = def.columns.filter((c) => c.generated === null);
  const columns: VerifyColumn[] = cols.map((c) => ({
    name: c.name,
    kind: columnKind(c.dataType),
    dataType: c.dataType,
    character: CHARACTER.has(c.dataType),
  }));
  const names = columns.map((c) => c.name);
  const pk = def.primaryKey.map((n) => names.indexOf(n));
  if (pk.length === 0 || pk.some((i) => i < 0)) {
    throw new PreconditionError(
      'E_NO_PRIMARY_KEY',
      `table ${qt(def.database, def.table)} has no usable primary key`,
      {
        hint: 'add a primary key; reshard pages, copies and verifies rows by primary key',
      },
    );
  }
  const shardKey = names.indexOf(spec.shardKey);
  if (shardKey < 0) {
    throw new PreconditionError(
      'E_SHARD_KEY_MISSING',
      `table ${qt(def.database, def.table)} has no column ${spec.shardKey}`,
      { hint: 'fix shardKey in the topology' },
    );
  }
  const keyCol = cols[shardKey]!;
  const exactPk = pk.every((i) => isIntegerType(cols[i]!) && !/\bzerofill\b/i.test(cols[i]!.type));
  const keyPrintsOtherwise = pk
    .map((i) => cols[i]!)
    .map((c) =>
      /\bzerofill\b/i.test(c.type)
        ? `${c.name} is ZEROFILL`
        : c.dataType === 'year' || c.dataType === 'binary' || c.dataType === 'bit'
          ? `${c.name} is ${c.dataType.toUpperCase()}`
          : undefined,
    )
    .find((r) => r !== undefined);
  const keyKind = isIntegerType(keyCol) ? 'int' : isBinaryType(keyCol) ? 'binary' : 'string';
  const pkExprs = pk.map((i) => {
    const c = columns[i]!;
    return c.character ? `CONVERT(${q(c.name)} USING utf8mb4)` : q(c.name);
  });
  const pkHash =
    pkExprs.length === 1 ? `CRC32(${pkExprs[0]})` : `CRC32(CONCAT_WS(X'00', ${pkExprs.join(', ')}))`;
  return {
    name: spec.name,
    spec,
    columns,
    pk,
    shardKey,
    keyKind,
    exactPk,
    keyPrintsOtherwise,
    shape: cols.map((c) => `${c.name} ${columnSql(c)}`).concat(`PRIMARY KEY (${def.primaryKey.join(', ')})`),
    sql: {
      columns: qcols(names),
      select: selectList(cols),
      orderBy: qcols(pk.map((i) => names[i]!)),
      pkHash,
    },
  };
}

/** Describe how two shards' definitions of a table differ (undefined: the same for verifying). */
export function shapeDifference(a: VerifyTable, b: VerifyTable): string | undefined {
  const n = Math.max(a.shape.length, b.shape.length);
  for (let i = 0; i < n; i++) {
    if (a.shape[i] !== b.shape[i]) return `${a.shape[i] ?? '(nothing)'} vs ${b.shape[i] ?? '(nothing)'}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Routing keys from raw bytes

/**
 * The routing key of a raw shard-key value: integers as numbers (or bigints beyond 2^53), strings
 * and binary strings as their bytes (the router hashes, compares and looks up string keys by
 * their UTF-8 bytes, which is what the server sent).
 */
export function routeKeyOfRaw(t: VerifyTable, v: RawValue): RouteKey {
  if (v === null) {
    throw new PreconditionError('E_NULL_SHARD_KEY', `a row of ${t.name} has a NULL shard key`, {
      hint: 'a row with a NULL shard key has no owner; make the column NOT NULL and fix the rows',
    });
  }
  if (t.keyKind !== 'int') return v;
  return intKeyOfText(v, 0, v.length);
}

/** routeKeyOfRaw for a row given as spans: integers parsed in place, strings as a Buffer view. */
export function routeKeyOfView(t: VerifyTable, view: RowView): RouteKey {
  const s = view.start[t.shardKey]!;
  if (s < 0) return routeKeyOfRaw(t, null);
  return routeKeyOfText(t.keyKind, view.buf, s, s + view.len[t.shardKey]!);
}

/** The primary key of a row given as spans, copied out of the packet. */
export function pkOfView(t: VerifyTable, view: RowView): RawValue[] {
  return t.pk.map((i) => {
    const s = view.start[i]!;
    return s < 0 ? null : Buffer.from(view.buf.subarray(s, s + view.len[i]!));
  });
}

/** pkKey of a row given as spans. */
export function pkKeyOfView(t: VerifyTable, view: RowView): string {
  let s = '';
  for (const i of t.pk) {
    const p = view.start[i]!;
    s += p < 0 ? 'N' : `${view.len[i]}:${view.buf.toString('latin1', p, p + view.len[i]!)}`;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Literals

const NUMBER = /^-?\d+(\.\d+)?$/;
const FLOAT_TEXT = /^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i;
const PLAIN = /^[\x20-\x26\x28-\x5b\x5d-\x7e]*$/; // printable ASCII without ' and \

/**
 * An exact SQL literal for a raw value of a column. Numbers go unquoted (a quoted BIGINT would be
 * compared as a DOUBLE); binary values as X'…'; text as '…' when it is plain printable ASCII,
 * else as _utf8mb4 X'…' (exact bytes, no escaping, independent of sql_mode).
 */
export function literal(c: VerifyColumn, v: RawValue): string {
  if (v === null) return 'NULL';
  switch (c.kind) {
    case 'int':
    case 'decimal': {
      const s = v.toString('latin1');
      if (NUMBER.test(s)) return s;
      throw new ReshardError('bug', 'E_BUG', `column ${c.name}: '${s}' is not a number`);
    }
    case 'float': {
      const s = v.toString('latin1');
      if (FLOAT_TEXT.test(s)) return s;
      throw new ReshardError('bug', 'E_BUG', `column ${c.name}: '${s}' is not a number`);
    }
    case 'bit':
    case 'binary':
      return `X'${v.toString('hex')}'`;
    default: {
      const s = v.toString('latin1');
      return PLAIN.test(s) ? `'${s}'` : `_utf8mb4 X'${v.toString('hex')}'`;
    }
  }
}

/** `pk > (values)` in the expanded form every optimizer turns into index ranges. */
export function pkAfter(t: VerifyTable, pkValues: readonly RawValue[]): string {
  return pkCompare(t, pkValues, '>');
}

/** `pk <= (values)`. */
export function pkAtMost(t: VerifyTable, pkValues: readonly RawValue[]): string {
  return pkCompare(t, pkValues, '<=');
}

function pkCompare(t: VerifyTable, vals: readonly RawValue[], op: '>' | '<='): string {
  const cols = t.pk.map((i) => t.columns[i]!);
  const lits = cols.map((c, j) => literal(c, vals[j] ?? null));
  const strict = op === '>' ? '>' : '<';
  const terms: string[] = [];
  for (let j = 0; j < cols.length; j++) {
    const eqs = cols.slice(0, j).map((c, i) => `${q(c.name)} = ${lits[i]}`);
    const last = j === cols.length - 1 ? op : strict;
    eqs.push(`${q(cols[j]!.name)} ${last} ${lits[j]}`);
    terms.push(eqs.length === 1 ? eqs[0]! : `(${eqs.join(' AND ')})`);
  }
  return terms.length === 1 ? terms[0]! : `(${terms.join(' OR ')})`;
}

/** `pk = (values)`. */
export function pkEquals(t: VerifyTable, pkValues: readonly RawValue[]): string {
  return t.pk
    .map((i, j) => `${q(t.columns[i]!.name)} = ${literal(t.columns[i]!, pkValues[j] ?? null)}`)
    .join(' AND ');
}

/**
 * Keys per lookup statement (`pkIn`). One below MariaDB's default `in_predicate_conversion_threshold`
 * (1000), from which it turns the list into a derived table joined on the primary key: still an
 * eq_ref lookup, but the bench's incremental verify spent ~5 % longer in its lookups at 1000 than
 * at 999 (3 alternating runs each, 20 082 changed keys), and 20 000 lookups of `orders` by id
 * took 107–118 ms at 1000 against 88–90 ms at 999.
 */
export const KEY_BATCH = 999;

/**
 * `pk IN (keys)`: `c IN (v, …)` for a one-column key, `(c1, c2) IN ((v, w), …)` for a composite
 * one. Both are index lookups on MySQL and MariaDB.
 */
export function pkIn(t: VerifyTable, keys: readonly (readonly RawValue[])[]): string {
  const cols = t.pk.map((i) => t.columns[i]!);
  if (cols.length === 1) {
    const c = cols[0]!;
    return `${q(c.name)} IN (${keys.map((k) => literal(c, k[0] ?? null)).join(', ')})`;
  }
  const tuples = keys.map((k) => `(${cols.map((c, j) => literal(c, k[j] ?? null)).join(', ')})`);
  return `(${cols.map((c) => q(c.name)).join(', ')}) IN (${tuples.join(', ')})`;
}

/** The primary-key part of a row. */
export function pkOf(t: VerifyTable, row: readonly RawValue[]): RawValue[] {
  return t.pk.map((i) => row[i] ?? null);
}

/** A map key for a primary key: its parts' bytes, length-prefixed (exact, collation-blind). */
export function pkKey(t: VerifyTable, row: readonly RawValue[]): string {
  let s = '';
  for (const i of t.pk) {
    const v = row[i];
    s += v ? `${v.length}:${v.toString('latin1')}` : 'N';
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Display (reports)

export type JsonValue = null | string | { hex: string };

/** A value for the JSON report: text as a string, binary as {hex}, NULL as null. Exact either way. */
export function displayValue(c: VerifyColumn, v: RawValue): JsonValue {
  if (v === null) return null;
  if (c.kind === 'binary' || c.kind === 'bit') return { hex: v.toString('hex') };
  return v.toString('utf8');
}

/** The primary key as {column: value} for reports. */
export function displayPk(t: VerifyTable, pkValues: readonly RawValue[]): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  t.pk.forEach((i, j) => {
    const c = t.columns[i]!;
    out[c.name] = displayValue(c, pkValues[j] ?? null);
  });
  return out;
}

/** Shown in messages: `id=5` or `(order_id, line_no)=(5, 2)`. */
export function pkText(t: VerifyTable, pkValues: readonly RawValue[]): string {
  const shown = t.pk.map((i, j) => {
    const v = displayValue(t.columns[i]!, pkValues[j] ?? null);
    return v === null ? 'NULL' : typeof v === 'string' ? v : `0x${v.hex}`;
  });
  const names = t.pk.map((i) => t.columns[i]!.name);
  return names.length === 1 ? `${names[0]}=${shown[0]}` : `(${names.join(', ')})=(${shown.join(', ')})`;
}

/** Fully qualified table name on a shard database. */
export function tableRef(database: string, t: VerifyTable): string {
  return qt(database, t.name);
}
