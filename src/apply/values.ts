/**
 * Row values as they travel from a source (mysql2 result rows or zongji binlog rows) to a target.
 *
 * A `Value` is exact by construction: integers and DECIMALs arrive as strings (or as safe
 * integers), temporal types as the server's text, JSON as text, binary strings and BIT as
 * Buffers, NULL as null. Nothing is ever a JS `Date` or an inexact float of a DECIMAL.
 */
import { createHash } from 'node:crypto';
import { PreconditionError } from '../errors.js';

export type Value = null | string | Buffer | number | bigint;
export type Row = Value[];

/**
 * Canonical bytes of a primary-key tuple: each part tagged and length-prefixed, so distinct
 * tuples never collide (('a','bc') ≠ ('ab','c')) and the same tuple always gives the same bytes
 * whatever representation the driver used (number 5, string '5' and bigint 5n are one key).
 */
export function tupleBytes(values: readonly Value[]): Buffer {
  const parts: Buffer[] = [];
  for (const v of values) {
    let tag: number;
    let body: Buffer;
    if (v === null) {
      tag = 0;
      body = Buffer.alloc(0);
    } else if (Buffer.isBuffer(v)) {
      tag = 1;
      body = v;
    } else {
      tag = 2;
      body = Buffer.from(typeof v === 'string' ? v : v.toString(), 'utf8');
    }
    const head = Buffer.alloc(5);
    head[0] = tag;
    head.writeUInt32BE(body.length, 1);
    parts.push(head, body);
  }
  return Buffer.concat(parts);
}

const ASCII = /^[\x00-\x7f]*$/;

function len4(n: number): string {
  return String.fromCharCode((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
}

/**
 * `tupleBytes(values).toString('latin1')`, built as a string without a Buffer per part: the map
 * key of a primary-key tuple on the tailer's and applier's hot paths (one per row change).
 * Identical to that expression for every input (property-tested), so keys from both agree.
 */
export function tupleKey(values: readonly Value[]): string {
  let s = '';
  for (const v of values) {
    if (v === null) {
      s += '\x00\x00\x00\x00\x00';
      continue;
    }
    let body: string;
    let tag: string;
    if (Buffer.isBuffer(v)) {
      tag = '\x01';
      body = v.toString('latin1');
    } else {
      tag = '\x02';
      const text = typeof v === 'string' ? v : v.toString();
      // UTF-8 bytes as latin1 characters: the text itself when it is ASCII.
      body = ASCII.test(text) ? text : Buffer.from(text, 'utf8').toString('latin1');
    }
    s += tag + len4(body.length) + body;
  }
  return s;
}

/** 32-byte digest of a primary-key tuple: the parked-row table's key. */
export function tupleHash(values: readonly Value[]): Buffer {
  return createHash('sha256').update(tupleBytes(values)).digest();
}

/** Serialize a row image exactly (for parked rows): JSON with Buffers as {b: base64}. */
export function encodeImage(row: readonly Value[]): string {
  return JSON.stringify(
    row.map((v) =>
      v === null
        ? null
        : Buffer.isBuffer(v)
          ? { b: v.toString('base64') }
          : typeof v === 'string'
            ? v
            : { n: v.toString() },
    ),
  );
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const NUMBER_TEXT = /^-?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i;

/**
 * The inverse of encodeImage. Strict: anything encodeImage does not write (another version's
 * encoding, an edited row) is refused. A lenient reading once turned an unknown element into
 * NULL, and a copy chunk bounded by `pk <= NULL` read no rows and was marked done.
 */
export function decodeImage(text: string): Row {
  const bad = () =>
    new PreconditionError(
      'E_STATE_FORMAT',
      `a stored row image or key is not in the form this reshard writes: ${text.length > 120 ? `${text.slice(0, 120)}…` : text}`,
      {
        hint: 'it was written by another reshard version, or edited by hand: finish or cancel the job with the version that started it',
      },
    );
  let arr: unknown;
  try {
    arr = JSON.parse(text);
  } catch {
    throw bad();
  }
  if (!Array.isArray(arr)) throw bad();
  return arr.map((v: unknown): Value => {
    if (v === null || typeof v === 'string') return v;
    if (typeof v !== 'object' || Array.isArray(v)) throw bad();
    const keys = Object.keys(v);
    const o = v as Record<string, unknown>;
    if (keys.length === 1 && typeof o.b === 'string' && BASE64.test(o.b)) return Buffer.from(o.b, 'base64');
    if (keys.length === 1 && typeof o.n === 'string' && NUMBER_TEXT.test(o.n)) return o.n;
    throw bad();
  });
}

/** Parameter form for mysql2: bigints as decimal strings (exact; the server converts). */
export function sqlParam(v: Value): string | Buffer | number | null {
  return typeof v === 'bigint' ? v.toString() : v;
}
