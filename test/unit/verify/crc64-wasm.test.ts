import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs build script without type declarations
import { compileCrc64, renderModule } from '../../../scripts/wasm.mjs';
import { crc64Hex, hex64 } from '../../../src/verify/crc64.js';
import { Crc64Wasm, crc64Wasm } from '../../../src/verify/crc64-fast.js';
import { type RawValue, RowHasher, textRowPayload, WASM_MAX_ROW } from '../../../src/verify/rowhash.js';
import { parseTextRow, rowViewOf } from '../../../src/verify/scan.js';

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
          for (const received of [true, false]) {
            const w = new Crc64Wasm();
            let at = 3;
            rows.forEach((row, k) => {
              const js = new Int32Array(2);
              new RowHasher(row.map(() => 'binary')).hash(row, js);
              const wasm = new Int32Array(2);
              w.row(chunk, at, at + payloads[k]!.length, row.length, wasm, received);
              expect(hexOf(wasm)).toBe(hexOf(js));
              at += payloads[k]!.length;
            });
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('copies a different received buffer in again, even at the same offsets', () => {
    const w = new Crc64Wasm();
    const a = textRowPayload([Buffer.from('alpha'), Buffer.from('1')]);
    const b = textRowPayload([Buffer.from('alphb'), Buffer.from('1')]);
    const x = new Int32Array(2);
    const y = new Int32Array(2);
    w.row(a, 0, a.length, 2, x, true);
    w.row(b, 0, b.length, 2, y, true);
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

  it('hashes a buffer that is not a received packet afresh each time, so writing to it is safe', () => {
    const h = new RowHasher(['text']);
    const buf = textRowPayload([Buffer.from('alpha')]);
    const view = rowViewOf([null]);
    const got = new Int32Array(2);
    const want = new Int32Array(2);
    parseTextRow(buf, 0, buf.length, view, 1);
    expect(view.received).toBe(false);
    h.hashView(view, 1, got);
    h.hash([Buffer.from('alpha')], want);
    expect(hexOf(got)).toBe(hexOf(want));
    buf.write('bravo', 1, 'latin1'); // same buffer, same offsets, new bytes
    parseTextRow(buf, 0, buf.length, view, 1);
    h.hashView(view, 1, got);
    h.hash([Buffer.from('bravo')], want);
    expect(hexOf(got)).toBe(hexOf(want));
  });

  it('RowHasher.hashView takes the WebAssembly path for received packets and equals hash()', () => {
    const kinds = ['int', 'text', 'binary', 'decimal', 'json'] as const;
    const cell: fc.Arbitrary<RawValue> = fc.oneof(
      fc.constant(null),
      fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)),
      fc.uint8Array({ minLength: 251, maxLength: 3000 }).map((a) => Buffer.from(a)),
    );
    const rowArb = fc.tuple(cell, cell, cell, cell, cell).map((r) => [...r] as RawValue[]);
    fc.assert(
      fc.property(fc.array(rowArb, { minLength: 1, maxLength: 30 }), fc.boolean(), (rows, big) => {
        const h = new RowHasher([...kinds]);
        // Packets back to back, each after a 4-byte header, as in a socket chunk; sometimes behind
        // 1 MiB of other bytes, so the rows are copied one by one.
        const parts: Buffer[] = [];
        const spans: [number, number][] = [];
        const pad = big ? Buffer.alloc(1 << 20) : Buffer.alloc(0);
        parts.push(pad);
        let at = pad.length;
        for (const r of rows) {
          const p = textRowPayload(r);
          parts.push(Buffer.from([p.length & 255, (p.length >> 8) & 255, p.length >> 16, 0]), p);
          spans.push([at + 4, at + 4 + p.length]);
          at += 4 + p.length;
        }
        const chunk = Buffer.concat(parts);
        const view = rowViewOf(rows[0]!.map(() => null));
        rows.forEach((r, k) => {
          parseTextRow(chunk, spans[k]![0], spans[k]![1], view, kinds.length);
          view.received = true;
          const got = new Int32Array(2);
          const want = new Int32Array(2);
          h.hashView(view, kinds.length, got);
          h.hash(r, want);
          expect(hexOf(got)).toBe(hexOf(want));
        });
      }),
      { numRuns: 40 },
    );
  });
});
