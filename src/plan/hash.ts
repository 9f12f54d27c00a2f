/**
 * Key canonicalization and the two routing hashes, written so the router's hot path allocates
 * nothing and touches no BigInt:
 *
 *   - canonical bytes of a key: integers (bigint, or a safe-integer number) → their decimal text
 *     (no leading zeros, '-' for negatives); strings → UTF-8; Buffers → the raw bytes. This is
 *     what MySQL's `CRC32(col)` hashes for an INT column, a utf8mb4 column and a BINARY column;
 *   - CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) = MySQL `CRC32()` = `zlib.crc32`;
 *   - xxHash64 (XXH64) with a 64-bit seed, computed on (hi, lo) uint32 halves.
 *
 * Both are proven identical to `zlib.crc32` and `@node-rs/xxhash` by property tests
 * (test/unit/plan/hash.test.ts); the native versions are slower for the short inputs keys are,
 * because each call crosses into C++ and xxh64 returns a BigInt.
 */
import { isUtf8 } from 'node:buffer';
import { UsageError } from '../errors.js';
import type { ShardKey } from '../topology/types.js';

/** A key as the router accepts it: a ShardKey, or a JS number holding a safe integer. */
export type RouteKey = ShardKey | number;

// ---------------------------------------------------------------------------------------------
// Canonical form

/** Scratch for canonical bytes; grown when a long string arrives. Safe: nothing here is re-entrant. */
let scratch = Buffer.allocUnsafe(256);
/** Where the canonical bytes of the last `canonicalize` call start and end inside `scratch`. */
let cStart = 0;
let cEnd = 0;

function badKey(key: unknown, why: string): UsageError {
  return new UsageError('E_KEY_TYPE', `shard key ${String(key)} is not routable: ${why}`, {
    hint: 'shard keys are integers (bigint or a safe-integer number), strings or Buffers',
  });
}

/** Throw E_KEY_TYPE unless `k` is a safe integer (a number key must be one; larger ones come as bigint). */
export function assertSafeIntKey(k: number): void {
  if (!Number.isSafeInteger(k)) throw badKey(k, 'a number key must be a safe integer; pass a bigint');
}

/**
 * Decimal text of a safe integer, written backwards at the end of the scratch buffer. Digits are
 * peeled eight at a time with one float division, then with int32 arithmetic (V8 turns `/ 10 | 0`
 * into a multiply): float division per digit was most of the cost of hashing an integer key.
 */
function writeSafeInt(k: number): void {
  const buf = scratch;
  let pos = buf.length;
  const neg = k < 0;
  if (neg) k = -k;
  while (k >= 100000000) {
    const q = Math.floor(k / 100000000);
    let r = k - q * 100000000;
    for (let i = 0; i < 8; i++) {
      const d = (r / 10) | 0;
      buf[--pos] = 48 + r - d * 10;
      r = d;
    }
    k = q;
  }
  let r = k | 0;
  do {
    const d = (r / 10) | 0;
    buf[--pos] = 48 + r - d * 10;
    r = d;
  } while (r > 0);
  if (neg) buf[--pos] = 45;
  cStart = pos;
  cEnd = buf.length;
}

function writeString(s: string): void {
  // A UTF-16 code unit takes at most 3 UTF-8 bytes.
  if (s.length * 3 > scratch.length) scratch = Buffer.allocUnsafe(Math.max(s.length * 3, scratch.length * 2));
  cStart = 0;
  cEnd = scratch.write(s, 0, 'utf8');
}

/**
 * Put the canonical bytes of `key` at [cStart, cEnd) of the returned buffer: the scratch buffer,
 * or a Buffer key itself (hashed in place, not copied).
 */
function canonicalize(key: RouteKey): Buffer {
  switch (typeof key) {
    case 'number':
      assertSafeIntKey(key);
      writeSafeInt(key);
      return scratch;
    case 'bigint':
      if (key >= -9007199254740991n && key <= 9007199254740991n) writeSafeInt(Number(key));
      else writeString(key.toString());
      return scratch;
    case 'string':
      writeString(key);
      return scratch;
    default:
      if (Buffer.isBuffer(key)) {
        cStart = 0;
        cEnd = key.length;
        return key;
      }
      throw badKey(key, `unsupported type ${typeof key}`);
  }
}

/** Canonical bytes of a key (a fresh Buffer). */
export function canonicalKeyBytes(key: RouteKey): Buffer {
  const buf = canonicalize(key);
  return Buffer.from(buf.subarray(cStart, cEnd));
}

/**
 * Canonical *string* form, the key of directory entries: decimal text for integers, the string
 * itself, and a Buffer's bytes decoded as UTF-8 (undefined when they are not valid UTF-8: such a
 * key cannot be written in a directory file, so it is never listed there).
 */
export function canonicalKeyString(key: RouteKey): string | undefined {
  if (typeof key === 'string') return key;
  if (typeof key === 'number') {
    assertSafeIntKey(key);
    return String(key);
  }
  if (typeof key === 'bigint') return key.toString();
  if (Buffer.isBuffer(key)) return isUtf8(key) ? key.toString('utf8') : undefined;
  throw badKey(key, `unsupported type ${typeof key}`);
}

// ---------------------------------------------------------------------------------------------
// CRC-32

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32Range(buf: Uint8Array, start: number, end: number): number {
  let c = -1;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/**
 * The last primitive key hashed and its CRC. Routing a row asks for the same key twice in a row
 * (its owner under `from`, then under `to`): the second call is free. Only numbers, strings and
 * bigints are remembered — compared by value, they cannot change behind the cache's back, as a
 * reused Buffer could.
 */
let lastKey: RouteKey | undefined;
let lastCrc = 0;

/** MySQL `CRC32()` of the key's canonical bytes: an unsigned 32-bit integer. */
export function crc32Of(key: RouteKey): number {
  if (typeof key !== 'object' && key !== null) {
    if (Object.is(key, lastKey)) return lastCrc;
    const buf = canonicalize(key);
    lastCrc = crc32Range(buf, cStart, cEnd);
    lastKey = key;
    return lastCrc;
  }
  const buf = canonicalize(key);
  return crc32Range(buf, cStart, cEnd);
}

// ---------------------------------------------------------------------------------------------
// xxHash64 on (hi, lo) uint32 halves.
//
// Speed notes (V8): a uint32 ≥ 2^30 passed to a function that is not inlined, or stored in a
// module `let`, is boxed as a heap number: one allocation each. So 64-bit values travel in two
// typed-array registers — R for the result of mul/add/rotl, A for the accumulator — and the
// algorithm is cut into steps small enough that V8 inlines every mul/add/rotl into them (its
// inlining budget is about four `mul`s per function). Steps take only small-integer arguments.

const R = new Uint32Array(2);
const A = new Uint32Array(2);

const P1H = 0x9e3779b1;
const P1L = 0x85ebca87;
const P2H = 0xc2b2ae3d;
const P2L = 0x27d4eb4f;
const P3H = 0x165667b1;
const P3L = 0x9e3779f9;
const P4H = 0x85ebca77;
const P4L = 0xc2b2ae63;
const P5H = 0x27d4eb2f;
const P5L = 0x165667c5;
const TWO32 = 4294967296;

/**
 * R = a × b mod 2^64. The low word is Math.imul's; the carry out of al × bl is summed from 16-bit
 * limb products, all exact small integers (no float modulo, which V8 compiles to a C call).
 */
function mul(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const t = ((a0 * b0) >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  R[0] = a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (t >>> 16) + Math.imul(ah, bl) + Math.imul(al, bh);
  R[1] = Math.imul(al, bl);
}

/** R = a + b mod 2^64. */
function add(ah: number, al: number, bh: number, bl: number): void {
  const lo = al + bl;
  R[0] = ah + bh + Math.floor(lo / TWO32);
  R[1] = lo;
}

/** R = rotate left by r, 0 < r < 32. */
function rotl(h: number, l: number, r: number): void {
  R[0] = (h << r) | (l >>> (32 - r));
  R[1] = (l << r) | (h >>> (32 - r));
}

/** XXH64_round: R = rotl(acc + input × P2, 31) × P1. */
function round(ah: number, al: number, ih: number, il: number): void {
  mul(ih, il, P2H, P2L);
  add(ah, al, R[0]!, R[1]!);
  rotl(R[0]!, R[1]!, 31);
  mul(R[0]!, R[1]!, P1H, P1L);
}

/** XXH64 of buf[start, end) with seed (seedHi, seedLo); result in R. */
function xxh64Range(buf: Uint8Array, start: number, end: number, seedHi: number, seedLo: number): void {
  const len = end - start;
  let p = start;
  if (len >= 32) {
    p = stripes(buf, start, end, seedHi, seedLo);
  } else {
    add(seedHi, seedLo, P5H, P5L);
    A[0] = R[0]!;
    A[1] = R[1]!;
  }
  add(A[0]!, A[1]!, Math.floor(len / TWO32), len);
  A[0] = R[0]!;
  A[1] = R[1]!;
  for (; p + 8 <= end; p += 8) step8(buf, p);
  if (p + 4 <= end) {
    step4(buf, p);
    p += 4;
  }
  for (; p < end; p++) step1(buf[p]!);
  avalanche();
}

/** A ^= round(0, next 8 bytes); A = rotl(A, 27) × P1 + P4. */
function step8(buf: Uint8Array, p: number): void {
  round(0, 0, rd32(buf, p + 4), rd32(buf, p));
  rotl(A[0]! ^ R[0]!, A[1]! ^ R[1]!, 27);
  mul(R[0]!, R[1]!, P1H, P1L);
  add(R[0]!, R[1]!, P4H, P4L);
  A[0] = R[0]!;
  A[1] = R[1]!;
}

/** A ^= (next 4 bytes) × P1; A = rotl(A, 23) × P2 + P3. */
function step4(buf: Uint8Array, p: number): void {
  mul(0, rd32(buf, p), P1H, P1L);
  rotl(A[0]! ^ R[0]!, A[1]! ^ R[1]!, 23);
  mul(R[0]!, R[1]!, P2H, P2L);
  add(R[0]!, R[1]!, P3H, P3L);
  A[0] = R[0]!;
  A[1] = R[1]!;
}

/** A ^= byte × P5; A = rotl(A, 11) × P1. */
function step1(byte: number): void {
  mul(0, byte, P5H, P5L);
  rotl(A[0]! ^ R[0]!, A[1]! ^ R[1]!, 11);
  mul(R[0]!, R[1]!, P1H, P1L);
  A[0] = R[0]!;
  A[1] = R[1]!;
}

/** R = avalanche(A): h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32. */
function avalanche(): void {
  const h = A[0]!;
  mul(h, A[1]! ^ (h >>> 1), P2H, P2L);
  const rh = R[0]!;
  const rl = R[1]!;
  mul(rh ^ (rh >>> 29), rl ^ ((rl >>> 29) | (rh << 3)), P3H, P3L);
  R[1] = R[1]! ^ R[0]!;
}

/** The 32-byte stripes of an input of 32 bytes or more: A = merged lanes; returns where the tail starts. */
function stripes(buf: Uint8Array, start: number, end: number, seedHi: number, seedLo: number): number {
  const v = new Uint32Array(8);
  add(seedHi, seedLo, P1H, P1L);
  add(R[0]!, R[1]!, P2H, P2L);
  v[0] = R[0]!;
  v[1] = R[1]!;
  add(seedHi, seedLo, P2H, P2L);
  v[2] = R[0]!;
  v[3] = R[1]!;
  v[4] = seedHi;
  v[5] = seedLo;
  // seed − P1 = seed + (2^64 − P1); P1's low word is not 0, so the negation borrows nothing.
  add(seedHi, seedLo, ~P1H, TWO32 - P1L);
  v[6] = R[0]!;
  v[7] = R[1]!;
  let p = start;
  for (; p + 32 <= end; p += 32) {
    for (let i = 0; i < 8; i += 2) {
      round(v[i]!, v[i + 1]!, rd32(buf, p + 4 * i + 4), rd32(buf, p + 4 * i));
      v[i] = R[0]!;
      v[i + 1] = R[1]!;
    }
  }
  rotl(v[0]!, v[1]!, 1);
  A[0] = R[0]!;
  A[1] = R[1]!;
  const rot = [0, 7, 12, 18];
  for (let i = 2; i < 8; i += 2) {
    rotl(v[i]!, v[i + 1]!, rot[i / 2]!);
    add(A[0]!, A[1]!, R[0]!, R[1]!);
    A[0] = R[0]!;
    A[1] = R[1]!;
  }
  // mergeRound per lane: A ^= round(0, v); A = A × P1 + P4
  for (let i = 0; i < 8; i += 2) {
    round(0, 0, v[i]!, v[i + 1]!);
    mul(A[0]! ^ R[0]!, A[1]! ^ R[1]!, P1H, P1L);
    add(R[0]!, R[1]!, P4H, P4L);
    A[0] = R[0]!;
    A[1] = R[1]!;
  }
  return p;
}

function rd32(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;
}

/** Split a uint64 seed into [hi, lo] uint32 halves. */
export function splitSeed(seed: bigint): [number, number] {
  const s = BigInt.asUintN(64, seed);
  return [Number(s >> 32n), Number(s & 0xffffffffn)];
}

/** xxh64 of raw bytes. */
export function xxh64Bytes(bytes: Uint8Array, seed: bigint): bigint {
  const [sh, sl] = splitSeed(seed);
  xxh64Range(bytes, 0, bytes.length, sh, sl);
  return (BigInt(R[0]!) << 32n) | BigInt(R[1]!);
}

/** xxh64 of a key's canonical bytes, as a bigint (for tests, vectors and messages). */
export function xxh64Of(key: RouteKey, seed: bigint): bigint {
  const [sh, sl] = splitSeed(seed);
  xxh64HalvesOf(key, sh, sl);
  return (BigInt(R[0]!) << 32n) | BigInt(R[1]!);
}

/** Hot path: xxh64 of a key's canonical bytes; read the result with `hashHi()`/`hashLo()`. */
export function xxh64HalvesOf(key: RouteKey, seedHi: number, seedLo: number): void {
  const buf = canonicalize(key);
  xxh64Range(buf, cStart, cEnd, seedHi, seedLo);
}

/** Hot path: xxh64 of bytes[start, end). */
export function xxh64HalvesOfBytes(
  bytes: Uint8Array,
  start: number,
  end: number,
  seedHi: number,
  seedLo: number,
): void {
  xxh64Range(bytes, start, end, seedHi, seedLo);
}

export function hashHi(): number {
  return R[0]!;
}
export function hashLo(): number {
  return R[1]!;
}
