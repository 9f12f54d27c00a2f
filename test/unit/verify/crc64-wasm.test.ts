import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs build script without type declarations
import { compileCrc64, renderModule } from '../../../scripts/wasm.mjs';
import { crc64Hex, hex64 } from '../../../src/verify/crc64.js';
import { Crc64Wasm, crc64Wasm } from '../../../src/verify/crc64-fast.js';
import { type RawValue, RowHasher, textRowPayload, WASM_MAX_ROW } from '../../../src/verify/rowhash.js';
import { rowViewOf } from '../../../src/verify/scan.js';

const hexOf = (x: Int32Array): string => hex64(x[0]!, x[1]!);

const rawValue: fc.Arbitrary<RawValue> = fc.oneof(
  fc.constant(null),
  fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  fc.uint8Array({ minLength: 240, maxLength: 70_000 }).map((a) => Buffer.from(a)),
);

describe('CRC-64 in WebAssembly', () => {
  it('is built from the committed crc64.wat (run `node scripts/wasm.mjs` after editing it)', async () => {
    const committed = readFileSync(new URL('../../../src/verify/crc64-wasm.ts', import.meta.url), 'utf8');
    expect(committed).toBe(renderModule(await compileCrc64()));
  });

  it('gives the CRC-64/XZ check value', () => {
    const out = new Int32Array(2);
    new Crc64Wasm().crc(Buffer.from('123456789'), 0, 9, out);
    expect(hexOf(out)).toBe('995dc9bbdf1939fa');
  });

  it('equals the JavaScript CRC-64 on any bytes, at any offset and length', () => {
    const w = new Crc64Wasm();
    const out = new Int32Array(2);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(), fc.nat(), (a, i, j) => {
        const buf = Buffer.from(a);
        const start = buf.length === 0 ? 0 : i % buf.length;
        const end = start + (buf.length === start ? 0 : j % (buf.length - start + 1));
        w.crc(buf, start, end, out);
        expect(hexOf(out)).toBe(crc64Hex(buf.subarray(start, end)));
      }),
      { numRuns: 500 },
    );
  });

  it('hashes rows packed in one buffer exactly as RowHasher.hash does, row after row', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(rawValue, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 }),
        (rows) => {
          // Rows back to back in one buffer, like the rows of one socket chunk: the first row
          // copies the buffer in, the others reuse it.
          const payloads = rows.map((r) => textRowPayload(r));
          const chunk = Buffer.concat([Buffer.from([9, 9, 9]), ...payloads]);
          const w = new Crc64Wasm();
          let at = 3;
          rows.forEach((row, k) => {
            const js = new Int32Array(2);
            new RowHasher(row.map(() => 'binary')).hash(row, js);
            const wasm = new Int32Array(2);
            w.row(chunk, at, at + payloads[k]!.length, row.length, wasm);
            expect(hexOf(wasm)).toBe(hexOf(js));
            at += payloads[k]!.length;
          });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('never hashes stale bytes: a different buffer at the same offsets is copied in again', () => {
    const w = new Crc64Wasm();
    const a = textRowPayload([Buffer.from('alpha'), Buffer.from('1')]);
    const b = textRowPayload([Buffer.from('alphb'), Buffer.from('1')]);
    const x = new Int32Array(2);
    const y = new Int32Array(2);
    w.row(a, 0, a.length, 2, x);
    w.row(b, 0, b.length, 2, y);
    expect(hexOf(x)).not.toBe(hexOf(y));
    const js = new Int32Array(2);
    new RowHasher(['text', 'text']).hash([Buffer.from('alphb'), Buffer.from('1')], js);
    expect(hexOf(y)).toBe(hexOf(js));
  });

  it('grows its memory for large buffers, and hashes rows of buffers over 1 MiB one by one', () => {
    const w = new Crc64Wasm();
    const big: RawValue[] = [Buffer.alloc(3_000_000, 0x5a), null, Buffer.from('tail')];
    const small: RawValue[] = [Buffer.from('x')];
    const pBig = textRowPayload(big);
    const pSmall = textRowPayload(small);
    const buf = Buffer.concat([pSmall, pBig, pSmall]);
    const want = (row: RawValue[]): string => {
      const o = new Int32Array(2);
      new RowHasher(row.map(() => 'binary')).hash(row, o);
      return hexOf(o);
    };
    const out = new Int32Array(2);
    w.row(buf, pSmall.length, pSmall.length + pBig.length, 3, out);
    expect(hexOf(out)).toBe(want(big));
    w.row(buf, 0, pSmall.length, 1, out);
    expect(hexOf(out)).toBe(want(small));
    w.row(buf, buf.length - pSmall.length, buf.length, 1, out);
    expect(hexOf(out)).toBe(want(small));
  });

  it('hashes a row larger than WASM_MAX_ROW in JavaScript, to the same result', () => {
    const row: RawValue[] = [Buffer.from('7'), Buffer.alloc(WASM_MAX_ROW + 10, 0xa5)];
    const h = new RowHasher(['int', 'binary']);
    const x = new Int32Array(2);
    const y = new Int32Array(2);
    h.hash(row, x);
    h.hashView(rowViewOf(row), 2, y);
    expect(hexOf(y)).toBe(hexOf(x));
    expect(crc64Wasm().memoryBytes).toBeLessThan(WASM_MAX_ROW);
  });
});
