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
import type { RowView } from '../db/rowview.js';
import { INTEGER_TYPES, type TableDefinition } from '../preflight/schema.js';

/**
 * How a column's driver value becomes a LOAD DATA field: 'plain' for types whose text form never
 * holds a character LOAD DATA escapes (numbers, temporal types), 'text' escaped, 'hex' for bytes
 * (UNHEX on the server), 'bit' as an integer.
 */
type Mode = 'plain' | 'text' | 'hex' | 'bit';

const PLAIN_TYPES = new Set([
  ...INTEGER_TYPES,
  ...['decimal', 'numeric', 'float', 'double', 'real'],
  ...['date', 'datetime', 'timestamp', 'time', 'year'],
]);

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
  /** information_schema DATA_TYPE per column (in the table meta's column order). */
  types: string[];
}

/** The LOAD DATA statement for a table, or undefined when a column type cannot be bulk-loaded. */
export function bulkPlan(meta: TableMeta, def: TableDefinition): BulkPlan | undefined {
  const modes: Mode[] = [];
  const types: string[] = [];
  const targets: string[] = [];
  const sets: string[] = [];
  let utf8Text = true;
  for (const [i, name] of meta.columns.entries()) {
    const col = def.columns.find((c) => c.name === name);
    if (!col || UNSUPPORTED.has(col.dataType)) return undefined;
    types.push(col.dataType);
    if (col.dataType === 'bit') {
      modes.push('bit');
      targets.push(`@v${i}`);
      sets.push(`${q(name)} = CAST(@v${i} AS UNSIGNED)`);
    } else if (HEX_TYPES.has(col.dataType)) {
      modes.push('hex');
      targets.push(`@v${i}`);
      sets.push(`${q(name)} = UNHEX(@v${i})`);
    } else {
      const plain = PLAIN_TYPES.has(col.dataType);
      modes.push(plain ? 'plain' : 'text');
      if (!plain && (col.charset !== 'utf8mb4' || col.dataType === 'json')) utf8Text = false;
      targets.push(q(name));
    }
  }
  // The file is utf8mb4 (the copier's sessions read text as utf8mb4, and write it so). When every
  // text column stores utf8mb4, CHARACTER SET binary loads those bytes as they are: the same
  // result without the server decoding and re-encoding every character (~8% of a target's
  // LOAD DATA time on the bench's tables). Any other charset — or MySQL's JSON, which refuses
  // binary input — is converted by the server from utf8mb4.
  const charset = utf8Text ? 'binary' : 'utf8mb4';
  return {
    sql: `LOAD DATA LOCAL INFILE 'reshard-copy' INTO TABLE ${meta.sql.table} CHARACTER SET ${charset} (${targets.join(', ')})${sets.length ? ` SET ${sets.join(', ')}` : ''}`,
    modes,
    types,
  };
}

/** A value the bulk path cannot express exactly (e.g. bytes in a text column): use the applier. */
export class NotBulkable extends Error {}

const NEEDS_ESCAPE = /[\\\t\n\r\0]/;
const ESCAPES = /[\\\t\n\r\0]/g;
const escapeChar = (c: string) =>
  c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\0';

/** One row as a line of LOAD DATA's default format (fields by TAB, backslash escapes, \N for NULL), without the newline. */
export function encodeRow(row: Row, modes: readonly Mode[]): string {
  let line = '';
  for (let i = 0; i < modes.length; i++) {
    const v = row[i];
    let f: string;
    if (v === null || v === undefined) f = '\\N';
    else
      switch (modes[i]) {
        case 'plain':
          if (typeof v === 'string') f = v;
          else if (typeof v === 'number' || typeof v === 'bigint') f = String(v);
          else throw new NotBulkable('bytes in a numeric or temporal column');
          break;
        case 'text':
          if (typeof v === 'string') f = NEEDS_ESCAPE.test(v) ? v.replace(ESCAPES, escapeChar) : v;
          else if (typeof v === 'number' || typeof v === 'bigint') f = String(v);
          else throw new NotBulkable('bytes in a text column');
          break;
        case 'hex':
          if (!Buffer.isBuffer(v)) throw new NotBulkable('text in a binary column');
          f = v.toString('hex');
          break;
        default:
          if (!Buffer.isBuffer(v)) throw new NotBulkable('BIT value is not bytes');
          f = v.length === 0 ? '0' : BigInt(`0x${v.toString('hex')}`).toString();
      }
    line = i === 0 ? f : `${line}\t${f}`;
  }
  return line;
}

/** Rows already encoded for one LOAD DATA: the bytes (in parts) and how many rows they hold. */
export interface TsvBatch {
  parts: Buffer[];
  rows: number;
  bytes: number;
}

const PART_BYTES = 1 << 20;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/**
 * Per byte: 0 when LOAD DATA takes it as it is, else the letter its escape ends with (\\ \t \n
 * \r \0). The five are ASCII, so a byte of a multi-byte UTF-8 sequence (≥ 0x80) is never one.
 */
const ESCAPE_AS = new Uint8Array(256);
ESCAPE_AS[0x5c] = 0x5c;
ESCAPE_AS[0x09] = 0x74;
ESCAPE_AS[0x0a] = 0x6e;
ESCAPE_AS[0x0d] = 0x72;
ESCAPE_AS[0x00] = 0x30;
/**
 * Spare parts, reused once their load finished: a copy streams its whole volume through these
 * buffers, and allocating it anew would make V8 count it as external memory and run a full
 * garbage collection every 64 MB or so.
 */
const spareParts: Buffer[] = [];
const MAX_SPARE_PARTS = 32;

/**
 * Encodes rows for one target as they stream in from the source, into batches of at most
 * `maxBytes` (each batch is one LOAD DATA in one transaction). Why stream: a page's rows then die
 * young — the copier holds a few compact buffers per page instead of thousands of row arrays
 * across the target round trips, which is most of its garbage-collection time and peak memory.
 */
export class TsvEncoder {
  readonly batches: TsvBatch[] = [];
  private part: Buffer | undefined;
  private offset = 0;
  private batch: TsvBatch = { parts: [], rows: 0, bytes: 0 };
  private readonly owned: Buffer[] = [];
  constructor(
    private readonly modes: readonly Mode[],
    private readonly maxBytes: number,
  ) {}

  /** Add one row; throws NotBulkable when a value cannot be expressed (the caller uses the applier). */
  add(row: Row): void {
    const line = encodeRow(row, this.modes);
    const part = this.room(line.length * 3 + 1); // at most 3 UTF-8 bytes per UTF-16 unit, + LF
    this.offset += part.write(line, this.offset, 'utf8');
    part[this.offset++] = 0x0a;
    this.batch.rows++;
  }

  /**
   * Add one row straight from its text-protocol packet (see RowView): the server's bytes are the
   * field — numbers and temporal values verbatim, text with LOAD DATA's escapes applied byte by
   * byte (the escaped characters are ASCII, never inside a multi-byte UTF-8 sequence), bytes as
   * hex, BIT as its unsigned integer. No JavaScript string or value is made for the row. A text
   * field whose bytes the server would not take as utf8mb4 makes the load warn and roll back
   * (the caller then re-reads and uses the applier), as any other unconverted value does.
   */
  addView(view: RowView): void {
    const modes = this.modes;
    const n = modes.length;
    const buf = view.buf;
    const start = view.start;
    const len = view.len;
    // Worst case: every byte escaped or hex (2 bytes), a BIT as up to 20 digits, plus separators.
    let worst = 1;
    for (let i = 0; i < n; i++) worst += 2 * len[i]! + 21;
    const out = this.room(worst);
    let o = this.offset;
    for (let i = 0; i < n; i++) {
      if (i > 0) out[o++] = 0x09;
      const s = start[i]!;
      if (s < 0) {
        out[o++] = 0x5c; // \N
        out[o++] = 0x4e;
        continue;
      }
      const end = s + len[i]!;
      switch (modes[i]) {
        case 'plain':
          // Numbers and dates are a few bytes: a loop beats Buffer.copy's native call.
          if (end - s > 64) o += buf.copy(out, o, s, end);
          else for (let p = s; p < end; p++) out[o++] = buf[p]!;
          break;
        case 'text': {
          // Runs without an escaped byte (nearly all text) are copied whole: natively when long.
          let p = s;
          while (p < end) {
            let q = p;
            while (q < end && ESCAPE_AS[buf[q]!] === 0) q++;
            if (q - p > 32) o += buf.copy(out, o, p, q);
            else while (p < q) out[o++] = buf[p++]!;
            if (q === end) break;
            out[o++] = 0x5c;
            out[o++] = ESCAPE_AS[buf[q]!]!;
            p = q + 1;
          }
          break;
        }
        case 'hex':
          for (let p = s; p < end; p++) {
            const b = buf[p]!;
            out[o++] = HEX_DIGITS[b >>> 4]!;
            out[o++] = HEX_DIGITS[b & 15]!;
          }
          break;
        default: {
          // BIT: big-endian bytes as an unsigned decimal integer (CAST(@v AS UNSIGNED) on the server).
          let v = 0n;
          for (let p = s; p < end; p++) v = (v << 8n) | BigInt(buf[p]!);
          o += out.write(v.toString(), o, 'latin1');
        }
      }
    }
    out[o++] = 0x0a;
    this.offset = o;
    this.batch.rows++;
  }

  /** The part to write the next row into, with at least `worst` bytes free (a new batch when full). */
  private room(worst: number): Buffer {
    if (this.batch.rows > 0 && this.batch.bytes + this.offset + worst > this.maxBytes) this.sealBatch();
    if (!this.part || this.offset + worst > this.part.length) {
      this.sealPart();
      this.part =
        worst <= PART_BYTES
          ? (spareParts.pop() ?? Buffer.allocUnsafe(PART_BYTES))
          : Buffer.allocUnsafe(worst);
      this.owned.push(this.part);
    }
    return this.part;
  }

  /** The batches, after the last row. */
  finish(): TsvBatch[] {
    this.sealBatch();
    return this.batches;
  }

  /** The batches were sent (or will never be): their buffers may be reused. */
  release(): void {
    for (const b of this.owned)
      if (b.length === PART_BYTES && spareParts.length < MAX_SPARE_PARTS) spareParts.push(b);
    this.owned.length = 0;
    this.batches.length = 0;
    this.part = undefined;
    this.offset = 0;
  }

  private sealPart(): void {
    if (this.part && this.offset > 0) {
      this.batch.parts.push(this.part.subarray(0, this.offset));
      this.batch.bytes += this.offset;
    }
    this.part = undefined;
    this.offset = 0;
  }

  private sealBatch(): void {
    this.sealPart();
    if (this.batch.rows > 0) this.batches.push(this.batch);
    this.batch = { parts: [], rows: 0, bytes: 0 };
  }
}

/** Server refuses LOAD DATA LOCAL (local_infile off, or the client side rejected it). */
export function isLocalInfileRefused(e: unknown): boolean {
  const n = (e as { errno?: number }).errno;
  return n === 1148 || n === 3948 || n === 2068 || n === 1227;
}

/**
 * Load `batch` in one transaction on `conn`; true when committed (every row inserted, no
 * warning), false when rolled back (the caller uses the applier).
 */
export async function loadAbsent(
  conn: Connection,
  plan: BulkPlan,
  batch: TsvBatch,
  beforeCommit?: () => Promise<void>,
): Promise<boolean> {
  await conn.query('START TRANSACTION');
  try {
    const [res] = await conn.query({
      sql: plan.sql,
      infileStreamFactory: () => Readable.from(batch.parts),
    } as unknown as string);
    const info = res as unknown as { affectedRows: number; warningStatus: number };
    if (info.warningStatus === 0 && info.affectedRows === batch.rows) {
      await beforeCommit?.();
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
