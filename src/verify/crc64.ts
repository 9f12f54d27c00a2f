/**
 * CRC-64/XZ (the CRC of xz, and Go's `crc64.ECMA` table with its usual checksum): the ECMA-182
 * polynomial 0x42F0E1EBA9EA3693, reflected in and out (so the table uses 0xC96C5795D7870F42),
 * init and xorout all ones; check value of "123456789" = 0x995DC9BBDF1939FA.
 *
 * Chosen because it is published with check values in the standard catalogue (so tests can pin
 * it), reflected (a right-shifting table walk, cheap on 32-bit halves) and 64 bits wide: two
 * different rows collide with probability about 2^-64, against 2^-32 for the CRC32 that
 * pt-table-checksum uses.
 *
 * Written for V8 without BigInt: the 64-bit state travels as two int32 halves (hi, lo) in an
 * Int32Array (a typed-array slot never boxes a number, a module `let` can), and eight bytes
 * at a time go through eight 256-entry tables (slicing-by-8).
 */

/** Table k, entry i, split in halves: TH/TL[k * 256 + i]. T0 is the byte table. */
const TH = new Int32Array(8 * 256);
const TL = new Int32Array(8 * 256);

(() => {
  const PH = 0xc96c5795 | 0;
  const PL = 0xd7870f42 | 0;
  for (let n = 0; n < 256; n++) {
    let hi = 0;
    let lo = n;
    for (let k = 0; k < 8; k++) {
      const bit = lo & 1;
      lo = (lo >>> 1) | (hi << 31);
      hi = hi >>> 1;
      if (bit) {
        lo ^= PL;
        hi ^= PH;
      }
    }
    TH[n] = hi;
    TL[n] = lo;
  }
  for (let k = 1; k < 8; k++) {
    for (let n = 0; n < 256; n++) {
      const hi = TH[(k - 1) * 256 + n]!;
      const lo = TL[(k - 1) * 256 + n]!;
      const i = lo & 0xff;
      TL[k * 256 + n] = ((lo >>> 8) | (hi << 24)) ^ TL[i]!;
      TH[k * 256 + n] = (hi >>> 8) ^ TH[i]!;
    }
  }
})();

/** The eight tables, for crc64-fast.ts (which copies them into its WebAssembly memory). Read only. */
export const CRC64_TABLES: { readonly hi: Int32Array; readonly lo: Int32Array } = { hi: TH, lo: TL };

/** A running CRC-64: [hi, lo] of the register (pre-inverted; see crc64Start / crc64Finish). */
export type Crc64State = Int32Array;

export function crc64State(): Crc64State {
  return new Int32Array(2);
}

/** Reset to the initial register (all ones). */
export function crc64Start(s: Crc64State): void {
  s[0] = -1;
  s[1] = -1;
}

/** Apply xorout: afterwards s holds the CRC (read it with crc64Hex / crc64BigInt / s[0], s[1]). */
export function crc64Finish(s: Crc64State): void {
  s[0] = ~s[0]!;
  s[1] = ~s[1]!;
}

/** Feed bytes buf[start, end) into the running CRC. */
export function crc64Update(s: Crc64State, buf: Uint8Array, start: number, end: number): void {
  let hi = s[0]!;
  let lo = s[1]!;
  let p = start;
  const end8 = start + ((end - start) & ~7);
  while (p < end8) {
    lo ^= buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24);
    hi ^= buf[p + 4]! | (buf[p + 5]! << 8) | (buf[p + 6]! << 16) | (buf[p + 7]! << 24);
    const a = 1792 + (lo & 0xff);
    const b = 1536 + ((lo >>> 8) & 0xff);
    const c = 1280 + ((lo >>> 16) & 0xff);
    const d = 1024 + (lo >>> 24);
    const e = 768 + (hi & 0xff);
    const f = 512 + ((hi >>> 8) & 0xff);
    const g = 256 + ((hi >>> 16) & 0xff);
    const h = hi >>> 24;
    lo = TL[a]! ^ TL[b]! ^ TL[c]! ^ TL[d]! ^ TL[e]! ^ TL[f]! ^ TL[g]! ^ TL[h]!;
    hi = TH[a]! ^ TH[b]! ^ TH[c]! ^ TH[d]! ^ TH[e]! ^ TH[f]! ^ TH[g]! ^ TH[h]!;
    p += 8;
  }
  while (p < end) {
    const i = (lo ^ buf[p]!) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ TL[i]!;
    hi = (hi >>> 8) ^ TH[i]!;
    p++;
  }
  s[0] = hi;
  s[1] = lo;
}

/** Feed one byte. */
export function crc64Byte(s: Crc64State, byte: number): void {
  const hi = s[0]!;
  const lo = s[1]!;
  const i = (lo ^ byte) & 0xff;
  s[1] = ((lo >>> 8) | (hi << 24)) ^ TL[i]!;
  s[0] = (hi >>> 8) ^ TH[i]!;
}

/** Feed a uint32 as 4 big-endian bytes (lengths and counts in the canonical row encoding). */
export function crc64Uint32BE(s: Crc64State, v: number): void {
  let hi = s[0]!;
  let lo = s[1]!;
  for (let shift = 24; shift >= 0; shift -= 8) {
    const i = (lo ^ (v >>> shift)) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ TL[i]!;
    hi = (hi >>> 8) ^ TH[i]!;
  }
  s[0] = hi;
  s[1] = lo;
}

/** CRC-64/XZ of a whole buffer, as 16 lowercase hex digits. */
export function crc64Hex(buf: Uint8Array): string {
  const s = crc64State();
  crc64Start(s);
  crc64Update(s, buf, 0, buf.length);
  crc64Finish(s);
  return hex64(s[0]!, s[1]!);
}

/** CRC-64/XZ of a whole buffer, as a bigint (tests and messages; not for hot paths). */
export function crc64BigInt(buf: Uint8Array): bigint {
  return BigInt(`0x${crc64Hex(buf)}`);
}

/** Two int32 halves as 16 hex digits. */
export function hex64(hi: number, lo: number): string {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}
