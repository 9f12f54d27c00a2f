/**
 * Keyset pagination over a primary key of any arity and type. Pure SQL builders.
 *
 * Ranges are (lower, upper]: lower exclusive, upper inclusive, either unbounded (null). Rows are
 * compared and ordered by the server, with the columns' own collations, so a VARCHAR key under a
 * case-insensitive collation pages in the server's order, never in JavaScript's.
 *
 * Composite keys use row constructors, `(a, b) > (?, ?)`, plus a redundant bound on the leading
 * column (`a >= ?`): MariaDB's range optimizer does not use an index for a row-constructor
 * comparison alone (it scans the whole index), but does for the leading-column bound; the row
 * constructor keeps the result exact.
 *
 * Integer key values travel as exact decimal literals (bigint parameters), never as quoted
 * strings, so no server can compare them as doubles.
 */

import type { Row, Value } from '../apply/values.js';
import { decodeImage, encodeImage } from '../apply/values.js';
import { q } from '../db/quote.js';

export interface KeyColumn {
  name: string;
  /** Integer columns get exact integer literals. */
  integer: boolean;
}

export type PkTuple = Row;

function param(v: Value, c: KeyColumn): unknown {
  if (c.integer && typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  return v;
}

function cmp(cols: readonly KeyColumn[], op: '>' | '<=', t: PkTuple): { sql: string; params: unknown[] } {
  if (t.length !== cols.length)
    throw new RangeError(`key tuple has ${t.length} values for ${cols.length} columns`);
  if (cols.length === 1) {
    return { sql: `${q(cols[0]!.name)} ${op} ?`, params: [param(t[0] ?? null, cols[0]!)] };
  }
  const lead = op === '>' ? '>=' : '<=';
  return {
    sql: `(${cols.map((c) => q(c.name)).join(', ')}) ${op} (${cols.map(() => '?').join(', ')}) AND ${q(cols[0]!.name)} ${lead} ?`,
    params: [...cols.map((c, i) => param(t[i] ?? null, c)), param(t[0] ?? null, cols[0]!)],
  };
}

/** WHERE condition for the rows with lower < pk <= upper ('TRUE' when unbounded both ways). */
export function rangeCondition(
  cols: readonly KeyColumn[],
  lower: PkTuple | null,
  upper: PkTuple | null,
): { sql: string; params: unknown[] } {
  const parts: string[] = [];
  const params: unknown[] = [];
  for (const [op, t] of [
    ['>', lower],
    ['<=', upper],
  ] as const) {
    if (t === null) continue;
    const c = cmp(cols, op, t);
    parts.push(c.sql);
    params.push(...c.params);
  }
  return { sql: parts.length ? parts.join(' AND ') : 'TRUE', params };
}

export function orderBy(cols: readonly KeyColumn[]): string {
  return cols.map((c) => q(c.name)).join(', ');
}

/**
 * One page of a keyset scan: the rows in (lower, upper] matching `filter`, in key order, at most
 * `limit` of them, optionally under shared row locks.
 */
export function pageQuery(opts: {
  table: string;
  columns: string;
  key: readonly KeyColumn[];
  lower: PkTuple | null;
  upper: PkTuple | null;
  filter?: string | undefined;
  limit?: number | undefined;
  lock?: boolean;
}): { sql: string; params: unknown[] } {
  const r = rangeCondition(opts.key, opts.lower, opts.upper);
  const where = opts.filter ? `(${r.sql}) AND (${opts.filter})` : r.sql;
  return {
    sql:
      `SELECT ${opts.columns} FROM ${opts.table} WHERE ${where} ORDER BY ${orderBy(opts.key)}` +
      (opts.limit !== undefined ? ` LIMIT ${Math.floor(opts.limit)}` : '') +
      (opts.lock ? ' LOCK IN SHARE MODE' : ''),
    params: r.params,
  };
}

/** A key tuple as stored in the control schema (JSON; binary values as {"b": base64}). */
export function encodeKey(t: PkTuple | null): string | null {
  // Numbers as decimal text, like the driver returns BIGINT and DECIMAL: one spelling per key.
  return t === null
    ? null
    : encodeImage(t.map((v) => (typeof v === 'number' || typeof v === 'bigint' ? String(v) : v)));
}

export function decodeKey(text: unknown): PkTuple | null {
  if (text === null || text === undefined) return null;
  return decodeImage(Buffer.isBuffer(text) ? text.toString('utf8') : String(text));
}
