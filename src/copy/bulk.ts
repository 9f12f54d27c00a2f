/**
 * The copier's bulk path: a page's rows for one target as one `LOAD DATA LOCAL INFILE` in one
 * target transaction, committed only when the server reports that it inserted every row and
 * raised no warning at all. Otherwise the transaction is rolled back and the caller writes the
 * page through `TargetApplier.apply`.
 *
 * Why this is the applier's upsert, only faster: a committed load means every row's primary key
 * (and every unique key) was absent on the target and every value was stored unconverted. For a
 * row whose primary key is absent the applier's upsert writes the full image and has nothing to
 * park or promote — a parked row for a key exists only while the target holds a row with that
 * key (rows are parked against a live row, and promoted when it is deleted) — so both end in the
 * same state. Any row that exists, conflicts or would be converted makes the server warn (LOCAL
 * turns errors into warnings), the load is rolled back, and the owner-aware applier decides.
 * Row locks and isolation are InnoDB's, as for the applier's INSERT: a concurrent tailer write
 * of the same key either precedes the load (a duplicate: rolled back, applier path) or waits for
 * it and then sees the row.
 */
import { Readable } from 'node:stream';
import type { Connection } from 'mysql2/promise';
import type { TableMeta } from '../apply/table.js';
import type { Row } from '../apply/values.js';
import { q } from '../db/quote.js';
import type { TableDefinition } from '../preflight/schema.js';

type Mode = 'text' | 'hex' | 'bit';

const HEX_TYPES = new Set(['binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob']);
/** Types whose values the driver does not return as exact text or bytes: never bulk-loaded. */
const UNSUPPORTED = new Set([
  'geometry',
  'point',
  'linestring',
  'polygon',
  'multipoint',
  'multilinestring',
  'multipolygon',
  'geometrycollection',
  'geomcollection',
  'vector',
]);

export interface BulkPlan {
  sql: string;
  modes: Mode[];
}

/** The LOAD DATA statement for a table, or undefined when a column type cannot be bulk-loaded. */
export function bulkPlan(meta: TableMeta, def: TableDefinition): BulkPlan | undefined {
  const modes: Mode[] = [];
  const targets: string[] = [];
  const sets: string[] = [];
  for (const [i, name] of meta.columns.entries()) {
    const col = def.columns.find((c) => c.name === name);
    if (!col || UNSUPPORTED.has(col.dataType)) return undefined;
    if (col.dataType === 'bit') {
      modes.push('bit');
      targets.push(`@v${i}`);
      sets.push(`${q(name)} = CAST(@v${i} AS UNSIGNED)`);
    } else if (HEX_TYPES.has(col.dataType)) {
      modes.push('hex');
      targets.push(`@v${i}`);
      sets.push(`${q(name)} = UNHEX(@v${i})`);
    } else {
      modes.push('text');
      targets.push(q(name));
    }
  }
  return {
    sql: `LOAD DATA LOCAL INFILE 'reshard-copy' INTO TABLE ${meta.sql.table} CHARACTER SET utf8mb4 (${targets.join(', ')})${sets.length ? ` SET ${sets.join(', ')}` : ''}`,
    modes,
  };
}

/** A value the bulk path cannot express exactly (e.g. bytes in a text column): use the applier. */
export class NotBulkable extends Error {}

const NEEDS_ESCAPE = /[\\\t\n\r\0]/;
const ESCAPES = /[\\\t\n\r\0]/g;
const escapeChar = (c: string) =>
  c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\0';

/** LOAD DATA's default format: fields by TAB, lines by LF, backslash escapes, \N for NULL. */
export function encodeRows(rows: readonly Row[], modes: readonly Mode[]): Buffer {
  const lines: string[] = new Array(rows.length);
  const fields: string[] = new Array(modes.length);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    for (let i = 0; i < modes.length; i++) {
      const v = row[i];
      if (v === null || v === undefined) {
        fields[i] = '\\N';
        continue;
      }
      switch (modes[i]) {
        case 'text':
          if (typeof v === 'string') fields[i] = NEEDS_ESCAPE.test(v) ? v.replace(ESCAPES, escapeChar) : v;
          else if (typeof v === 'number' || typeof v === 'bigint') fields[i] = String(v);
          else throw new NotBulkable('bytes in a text column');
          break;
        case 'hex':
          if (!Buffer.isBuffer(v)) throw new NotBulkable('text in a binary column');
          fields[i] = v.toString('hex');
          break;
        case 'bit':
          if (!Buffer.isBuffer(v)) throw new NotBulkable('BIT value is not bytes');
          fields[i] = v.length === 0 ? '0' : BigInt(`0x${v.toString('hex')}`).toString();
          break;
      }
    }
    lines[r] = fields.join('\t');
  }
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8');
}

/** Server refuses LOAD DATA LOCAL (local_infile off, or the client side rejected it). */
export function isLocalInfileRefused(e: unknown): boolean {
  const n = (e as { errno?: number }).errno;
  return n === 1148 || n === 3948 || n === 2068 || n === 1227;
}

/**
 * Load `rows` in one transaction on `conn`; true when committed (every row inserted, no
 * warning), false when rolled back (the caller uses the applier).
 */
export async function loadAbsent(conn: Connection, plan: BulkPlan, rows: readonly Row[]): Promise<boolean> {
  const data = encodeRows(rows, plan.modes);
  await conn.query('START TRANSACTION');
  try {
    const [res] = await conn.query({
      sql: plan.sql,
      infileStreamFactory: () => Readable.from([data]),
    } as unknown as string);
    const info = res as unknown as { affectedRows: number; warningStatus: number };
    if (info.warningStatus === 0 && info.affectedRows === rows.length) {
      await conn.query('COMMIT');
      return true;
    }
    await conn.query('ROLLBACK');
    return false;
  } catch (e) {
    await conn.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
