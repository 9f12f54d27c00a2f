/**
 * Canonical row encoding and the row hash.
 *
 * A row reaches the verifier as the server's text-protocol bytes, one Buffer per column (NULL as
 * null): the connection is opened with `typeCast: false`, so no driver conversion happens at all.
 * With the exact-value session (utf8mb4, time_zone +00:00) those bytes already are the canonical
 * value text on MySQL and MariaDB alike:
 *   integers, DECIMAL   decimal text as stored ('-5', '1.50' for DECIMAL(x,2));
 *   temporal types      'YYYY-MM-DD HH:MM:SS[.ffffff]' with the column's own fraction digits;
 *   strings             UTF-8 bytes (converted by the server from the column's charset), trailing
 *                       spaces included (CHAR's pad is stripped by both flavors alike);
 *   binary, BLOB, BIT   the raw bytes;
 *   ENUM, SET           the label text;
 *   FLOAT, DOUBLE       normalised here: parsed and printed as JavaScript's shortest round-trip
 *                       form ('-0' kept), because servers differ in how they print them;
 *   JSON                the text the server returns (MySQL prints its binary JSON normalised,
 *                       MariaDB returns the stored text: compare JSON within one flavor).
 *
 * Encoding of a row of n columns (the bytes CRC-64 runs over) — the MySQL text-protocol row
 * itself, with minimal length encodings, after the column count:
 *
 *     u32be(n) · for each column: 0xFB (NULL) | lenenc(len) · bytes
 *     lenenc(len) = len < 251: [len]; < 2^16: [0xFC, 2 bytes LE]; < 2^24: [0xFD, 3 bytes LE];
 *                   else [0xFE, 8 bytes LE]
 *
 * so NULL, '' and 'NULL' differ, column boundaries cannot shift ('ab','c' ≠ 'a','bc'), and every
 * byte counts. Because it is the wire format, a row is hashed straight from the packet it arrived
 * in, in one pass (scan.ts). The row hash is fmix64(CRC-64/XZ(encoding)); see README.md for why
 * the bijective mix before summing.
 */
import type { Value } from '../apply/values.js';
import { lenenc, type RawValue, type RowView, textRowPayload } from '../db/rowview.js';
import {
  type Crc64State,
  crc64Byte,
  crc64Finish,
  crc64Start,
  crc64State,
  crc64Uint32BE,
  crc64Update,
} from './crc64.js';
import { type Crc64Wasm, crc64Wasm } from './crc64-fast.js';

export type { RawRow, RawValue } from '../db/rowview.js';

/** How a column's value is canonicalised and written as an SQL literal. */
export type ColumnKind = 'int' | 'decimal' | 'float' | 'bit' | 'binary' | 'json' | 'text';

const INT = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint', 'year']);
const FLOAT = new Set(['float', 'double', 'real', 'double precision']);
const BINARY = new Set([
  'binary',
  'varbinary',
  'tinyblob',
  'blob',
  'mediumblob',
  'longblob',
  'geometry',
  'point',
  'linestring',
  'polygon',
  'multipoint',
  'multilinestring',
  'multipolygon',
  'geometrycollection',
]);

/** Kind of a column from its information_schema DATA_TYPE. */
export function columnKind(dataType: string): ColumnKind {
  const t = dataType.toLowerCase();
  if (INT.has(t)) return 'int';
  if (t === 'decimal' || t === 'numeric') return 'decimal';
  if (FLOAT.has(t)) return 'float';
  if (t === 'bit') return 'bit';
  if (BINARY.has(t)) return 'binary';
  if (t === 'json') return 'json';
  return 'text';
}

/** FLOAT/DOUBLE text → JavaScript's shortest round-trip form ('-0' kept). */
export function canonicalFloat(v: Buffer): Buffer {
  const x = Number(v.toString('latin1'));
  if (Number.isNaN(x)) return v; // not a number the server can store; keep the bytes
  return Buffer.from(Object.is(x, -0) ? '-0' : String(x), 'latin1');
}

/**
 * Canonical bytes of a driver value (src/apply/values.ts `Value`, e.g. a binlog row image):
 * integers as decimal text, strings as UTF-8, Buffers as they are. Equal to the text-protocol
 * bytes whenever the value follows the exact-value rules (DECIMAL and temporal values as the
 * server's text, fractions included).
 */
export function canonicalBytes(v: Value): Buffer | null {
  if (v === null) return null;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  return Buffer.from(canonicalNumberText(v), 'latin1');
}

/** The canonical text of a number or bigint value (what canonicalBytes stores; '-0' kept). */
export function canonicalNumberText(v: number | bigint): string {
  return typeof v === 'number' && Object.is(v, -0) ? '-0' : v.toString();
}

/**
 * Rows up to this size are hashed in WebAssembly; a larger one (a LONGBLOB of hundreds of MB)
 * in JavaScript, rather than growing the module's memory to its size for the rest of the run.
 */
export const WASM_MAX_ROW = 16 << 20;

const SHORT_HEADS = Array.from({ length: 251 }, (_, i) => Buffer.from([i]));

function lenencHead(len: number): Buffer {
  return len < 251 ? SHORT_HEADS[len]! : lenenc(len);
}

export { lenenc, textRowPayload } from '../db/rowview.js';

/** The canonical encoding of a row (what the row CRC is taken over). For tests and documentation. */
export function encodeRow(row: readonly RawValue[]): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(row.length);
  return Buffer.concat([head, textRowPayload(row)]);
}

// ---------------------------------------------------------------------------------------------
// fmix64 (MurmurHash3's finalizer) on int32 halves: a bijection of 64-bit values that spreads
// every input bit over the whole output.

/** High 32 bits of the unsigned product a × b (both uint32), from 16-bit limbs (all exact). */
function mulHi(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const t = ((a0 * b0) >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return (a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (t >>> 16)) | 0;
}

/** out = fmix64((hi, lo)) as [hi, lo]. */
export function fmix64(hi: number, lo: number, out: Int32Array): void {
  // k ^= k >>> 33
  lo ^= hi >>> 1;
  // k *= 0xff51afd7ed558ccd
  let h = (mulHi(lo >>> 0, 0xed558ccd) + Math.imul(hi, 0xed558ccd) + Math.imul(lo, 0xff51afd7)) | 0;
  let l = Math.imul(lo, 0xed558ccd);
  // k ^= k >>> 33
  l ^= h >>> 1;
  // k *= 0xc4ceb9fe1a85ec53
  const h2 = (mulHi(l >>> 0, 0x1a85ec53) + Math.imul(h, 0x1a85ec53) + Math.imul(l, 0xc4ceb9fe)) | 0;
  const l2 = Math.imul(l, 0x1a85ec53);
  // k ^= k >>> 33
  h = h2;
  l = l2 ^ (h2 >>> 1);
  out[0] = h;
  out[1] = l;
}

/** fmix64 as hex (tests). */
export function fmix64Hex(hi: number, lo: number): string {
  const out = new Int32Array(2);
  fmix64(hi, lo, out);
  return (out[0]! >>> 0).toString(16).padStart(8, '0') + (out[1]! >>> 0).toString(16).padStart(8, '0');
}

/**
 * Hashes rows of one table. `hash` writes fmix64(CRC-64(encoding)) into out[0] (hi), out[1] (lo);
 * `crc` writes the unmixed CRC-64 (for tests against `encodeRow`).
 */
export class RowHasher {
  private readonly s: Crc64State = crc64State();
  private readonly floats: boolean[];
  private readonly anyFloat: boolean;
  private readonly wasm: Crc64Wasm;

  constructor(kinds: readonly ColumnKind[]) {
    this.floats = kinds.map((k) => k === 'float');
    this.anyFloat = this.floats.some(Boolean);
    this.wasm = crc64Wasm();
  }

  /** CRC-64 of the row's canonical encoding (unmixed), into out = [hi, lo]. */
  crc(row: readonly RawValue[], out: Int32Array): void {
    const s = this.s;
    crc64Start(s);
    crc64Uint32BE(s, row.length);
    for (let i = 0; i < row.length; i++) {
      let v = row[i]!;
      if (v === null) {
        crc64Byte(s, 0xfb);
        continue;
      }
      if (this.floats[i]) v = canonicalFloat(v);
      const h = lenencHead(v.length);
      crc64Update(s, h, 0, h.length);
      crc64Update(s, v, 0, v.length);
    }
    crc64Finish(s);
    out[0] = s[0]!;
    out[1] = s[1]!;
  }

  hash(row: readonly RawValue[], out: Int32Array): void {
    this.crc(row, out);
    fmix64(out[0]!, out[1]!, out);
  }

  /**
   * hash() of a row given as spans of its packet (the scan's path): when the packet's payload is
   * already canonical (minimal length prefixes, no FLOAT/DOUBLE column to normalise), the CRC
   * runs over it in one pass, in WebAssembly (crc64-fast.ts); otherwise column by column, as
   * hash() does. Same result either way. A view marked `received` lets the WebAssembly side keep
   * its copy of the buffer for the next rows (see crc64-fast.ts).
   */
  hashView(view: RowView, n: number, out: Int32Array): void {
    if (view.minimal && !this.anyFloat && view.rowEnd - view.rowStart <= WASM_MAX_ROW) {
      this.wasm.row(view.buf, view.rowStart, view.rowEnd, n, out, view.received);
      return;
    }
    const s = this.s;
    crc64Start(s);
    crc64Uint32BE(s, n);
    const buf = view.buf;
    for (let i = 0; i < n; i++) {
      const p = view.start[i]!;
      if (p < 0) {
        crc64Byte(s, 0xfb);
        continue;
      }
      let v = buf.subarray(p, p + view.len[i]!);
      if (this.floats[i]) v = canonicalFloat(v);
      const h = lenencHead(v.length);
      crc64Update(s, h, 0, h.length);
      crc64Update(s, v, 0, v.length);
    }
    crc64Finish(s);
    fmix64(s[0]!, s[1]!, out);
  }

  /** Canonical column bytes as compared column by column (floats normalised). */
  canonical(row: readonly RawValue[], i: number): RawValue {
    const v = row[i] ?? null;
    return v !== null && this.floats[i] ? canonicalFloat(v) : v;
  }
}
