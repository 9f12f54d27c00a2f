import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  crc64BigInt,
  crc64Byte,
  crc64Finish,
  crc64Hex,
  crc64Start,
  crc64State,
  crc64Uint32BE,
  crc64Update,
} from '../../../src/verify/crc64.js';

/** Bit-at-a-time CRC-64/XZ on BigInt: the definition, for comparison. */
function reference(buf: Uint8Array): bigint {
  const poly = 0xc96c5795d7870f42n;
  let crc = 0xffffffffffffffffn;
  for (const b of buf) {
    crc ^= BigInt(b);
    for (let k = 0; k < 8; k++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
  }
  return crc ^ 0xffffffffffffffffn;
}

describe('CRC-64/XZ', () => {
  it('matches the published check values', () => {
    // The catalogue's check value: CRC of the ASCII bytes "123456789".
    expect(crc64Hex(Buffer.from('123456789'))).toBe('995dc9bbdf1939fa');
    expect(crc64Hex(Buffer.alloc(0))).toBe('0000000000000000');
    // Read from the check field of `xz -C crc64` output for the same bytes.
    expect(crc64Hex(Buffer.from('The quick brown fox jumps over the lazy dog'))).toBe('5b5eb8c2e54aa1c4');
    expect(crc64Hex(Buffer.alloc(1000, 'a'))).toBe('7610eeea8be8d96c');
  });

  it('equals the bitwise definition for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(crc64BigInt(bytes)).toBe(reference(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same CRC however the input is split across updates', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const s = crc64State();
        crc64Start(s);
        let prev = 0;
        for (const p of [...points, bytes.length]) {
          crc64Update(s, bytes, prev, p);
          prev = p;
        }
        crc64Finish(s);
        const whole = crc64Hex(bytes);
        expect(
          (s[0]! >>> 0).toString(16).padStart(8, '0') + (s[1]! >>> 0).toString(16).padStart(8, '0'),
        ).toBe(whole);
      }),
    );
  });

  it('feeds single bytes and big-endian u32s like the equivalent bytes', () => {
    fc.assert(
      fc.property(fc.nat({ max: 255 }), fc.nat({ max: 0xffffffff }), (b, v) => {
        const s = crc64State();
        crc64Start(s);
        crc64Byte(s, b);
        crc64Uint32BE(s, v);
        crc64Finish(s);
        const buf = Buffer.alloc(5);
        buf[0] = b;
        buf.writeUInt32BE(v, 1);
        expect([s[0]! >>> 0, s[1]! >>> 0]).toEqual([
          Number(crc64BigInt(buf) >> 32n),
          Number(crc64BigInt(buf) & 0xffffffffn),
        ]);
      }),
    );
  });
});
