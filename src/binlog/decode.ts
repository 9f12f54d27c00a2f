/**
 * Binlog row images → applier rows, exactly.
 *
 * zongji (with the options ZongjiSource forces) already yields exact values: integers as safe
 * Numbers or exact decimal strings, DECIMAL as its exact text, DATETIME/TIMESTAMP as UTC text with
 * the column's fraction digits, JSON (MySQL) as text, MariaDB JSON (a LONGTEXT) as text,
 * BIT/BINARY/BLOB as Buffers, CHAR/TEXT decoded in the column's charset, ENUM/SET as their
 * labels. This layer maps an image (column name → value) onto one target table's column order
 * and fixes the cases where zongji deviates:
 *   - YEAR 0000 arrives as 1900 (zongji adds 1900 to the stored byte; 1900 is not a valid YEAR,
 *     so 1900 always means 0);
 *   - an ENUM's error value (index 0, stored as '' in non-strict mode) arrives as undefined;
 *   - a negative TIME whose seconds are 0 (and no fraction) arrives uncarried: -00:01:00 as
 *     -00:00:64, -12:00:00 as -11:63:64 (see fixTime);
 *   - latin1 text is read byte for byte (source.ts names it ISO-8859-1 to zongji) and mapped as
 *     MariaDB maps it (latin1Text): zongji's Windows-1252 lost five bytes.
 * Anything else that is not an exact `Value` (geometry objects, undefined from an unsupported
 * type) stops the tailer rather than writing a wrong value.
 */
import { routeKeyOf, type TableMeta, tableMetaFromDefinition } from '../apply/table.js';
import type { Row, Value } from '../apply/values.js';
import { PreconditionError, ReshardError } from '../errors.js';
import type { RouteKey } from '../plan/router.js';
import type { TableDefinition } from '../preflight/schema.js';
import type { TableSpec } from '../topology/types.js';
import type { RawImage } from './source.js';

type Fix = ((v: unknown) => unknown) | undefined;

export interface TargetTable {
  meta: TableMeta;
  /**
   * True when the primary key's columns compare by their bytes (integers, DECIMAL, temporal,
   * BINARY/VARBINARY, BIT): two images are the same row exactly when their key values are equal.
   * Not for character columns, where a collation makes 'abc', 'ABC' and 'abc ' one row, nor for
   * a table with a secondary UNIQUE key (see below). False keeps the source order (compact.ts).
   */
  pkExact: boolean;
  /** Image → row in `meta.columns` order. Throws when the image does not fit the table. */
  decode(img: RawImage): Row;
  /** The shard-key column's value of an image, corrected as `decode` corrects it. */
  shardKeyValue(img: RawImage): unknown;
}

/**
 * A negative TIME text as zongji writes it, corrected. TIME2 packs hours, minutes and seconds
 * into bit fields of 10, 6 and 6 bits; zongji decodes a negative value's magnitude minus one
 * and then adds one to the seconds field alone, so a magnitude whose seconds are 0 comes out
 * with seconds 64 (and minutes 63 where the minus one borrowed from them). Re-packing the
 * fields and unpacking them again carries that one through: -00:00:64 → -00:01:00,
 * -11:63:64 → -12:00:00. A valid TIME never has a field of 60 or more, so correct values pass
 * unchanged. Left alone, the upsert of such a text fails in strict mode, and a DELETE whose key
 * held it would match nothing and leave the row on the target.
 */
export function fixTime(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const m = /^(-?)(\d+):(\d+):(\d+)(\.\d+)?$/.exec(v);
  if (!m) return v;
  const min = Number(m[3]);
  const sec = Number(m[4]);
  if (sec < 60 && min < 60) return v;
  const packed = Number(m[2]) * 4096 + min * 64 + sec;
  const two = (n: number) => String(n).padStart(2, '0');
  return `${m[1]}${two(packed >> 12)}:${two((packed >> 6) & 63)}:${two(packed & 63)}${m[5] ?? ''}`;
}

/**
 * The name source.ts gives latin1 columns in zongji's table map, so that zongji decodes them as
 * ISO-8859-1 (iconv-lite's name): byte b → U+00bb, nothing lost.
 */
export const LATIN1_AS_BYTES = 'iso88591';

/**
 * MariaDB's latin1 is Windows-1252, except that the five bytes 1252 leaves undefined (0x81, 0x8D,
 * 0x8F, 0x90, 0x9D) are the C1 controls U+0081 … U+009D. Bytes 0x80–0x9F, as MariaDB reads them.
 */
const LATIN1_80_9F = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d,
  0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a,
  0x153, 0x9d, 0x17e, 0x178,
];

/** latin1 text read as ISO-8859-1 (one character per byte) → the text MariaDB's latin1 holds. */
export function latin1Text(v: unknown): unknown {
  if (typeof v !== 'string' || !/[\u0080-\u009f]/.test(v)) return v;
  return v.replace(/[\u0080-\u009f]/g, (ch) => String.fromCharCode(LATIN1_80_9F[ch.charCodeAt(0) - 0x80]!));
}

function fixFor(dataType: string, charset: string | null): Fix {
  if (charset === 'latin1' && dataType !== 'enum' && dataType !== 'set') return latin1Text;
  if (dataType === 'year') return (v) => (v === 1900 ? 0 : v);
  if (dataType === 'time') return fixTime;
  if (dataType === 'enum') return (v) => (v === undefined ? '' : v);
  return undefined;
}

function exact(v: unknown, table: string, column: string): Value {
  if (v === null || typeof v === 'string' || Buffer.isBuffer(v) || typeof v === 'bigint') return v;
  if (typeof v === 'number') return v;
  throw new ReshardError(
    'bug',
    'E_TAIL_VALUE',
    `binlog value of ${table}.${column} decoded as ${v === undefined ? 'undefined' : typeof v}, not an exact value`,
    {
      hint: 'the column type is not supported by the binlog decoder; this is a defect in reshard (report it with SHOW CREATE TABLE)',
    },
  );
}

export function targetTable(def: TableDefinition, spec: TableSpec): TargetTable {
  const meta = tableMetaFromDefinition(def, spec);
  const byName = new Map(def.columns.map((c) => [c.name, c]));
  const fixes: Fix[] = meta.columns.map((n) => {
    const c = byName.get(n)!;
    return fixFor(c.dataType, c.charset?.toLowerCase() ?? null);
  });
  const label = `${def.database}.${def.table}`;
  // Row images carry every column, generated ones included (binlog_row_image=FULL).
  const allColumns = def.columns.length;
  const names = meta.columns;
  const check = (img: RawImage) => {
    const keys = Object.keys(img);
    const missing = names.filter((n) => !(n in img));
    const extra = keys.filter((k) => !byName.has(k));
    if (missing.length || extra.length) {
      throw new PreconditionError(
        'E_TAIL_SCHEMA_DRIFT',
        `a binlog row of ${spec.name} does not match ${label} on the target` +
          (missing.length ? `: columns missing from the binlog: ${missing.join(', ')}` : '') +
          (extra.length ? `: columns the target lacks: ${extra.join(', ')}` : ''),
        {
          hint: 'the source and target schemas differ (a DDL ran on one side only); make them equal, then re-run reshard tail',
          data: { table: spec.name, missing, extra },
        },
      );
    }
  };
  // A secondary UNIQUE key makes the order of operations on *different* rows matter: swapping two
  // rows' unique values goes through a third value in the source, and applying the final images
  // out of order (what the exact reduction does) collides on the key, on every retry.
  const pkExact = def.uniqueKeys.length === 0 && meta.pkBytes;
  const keyName = names[meta.shardKey]!;
  const keyFix = fixes[meta.shardKey];
  return {
    meta,
    pkExact,
    // Routed by the same value the row is written with: a latin1 key read byte for byte ('€' as
    // U+0080) went to the owner of other bytes than copy and verify route by.
    shardKeyValue: (img) => (keyFix ? keyFix(img[keyName]) : img[keyName]),
    decode(img) {
      // A column the target lacks would be dropped silently: count every image's columns (no
      // allocation); names are compared in full when the count differs or a value is missing.
      let n = 0;
      for (const _ in img) n++;
      // The same count with other names shows up as a missing value below.
      if (n !== allColumns) check(img);
      const row: Row = new Array(names.length);
      for (let i = 0; i < names.length; i++) {
        const n = names[i]!;
        let v = img[n];
        if (v === undefined && !(n in img)) check(img);
        const f = fixes[i];
        if (f) v = f(v);
        row[i] = exact(v, label, n);
      }
      return row;
    },
  };
}

/** The routing key of an image's shard-key column (NULL is an error: such a row has no owner). */
export function imageKey(t: TargetTable, img: RawImage): RouteKey {
  const col = t.meta.columns[t.meta.shardKey]!;
  return routeKeyOf(t.meta, exact(t.shardKeyValue(img), `${t.meta.database}.${t.meta.name}`, col));
}
