import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc64BigInt } from '../../../src/verify/crc64.js';
import {
  type ColumnKind,
  canonicalBytes,
  canonicalFloat,
  columnKind,
  encodeRow,
  fmix64Hex,
  type RawValue,
  RowHasher,
} from '../../../src/verify/rowhash.js';
import { parseTextRow, rowViewOf } from '../../../src/verify/scan.js';

const b = (s: string) => Buffer.from(s, 'utf8');
const rawValue = fc.oneof(
  fc.constant(null),
  fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
);

function hashOf(row: RawValue[], kinds: ColumnKind[] = row.map(() => 'text')): string {
  const out = new Int32Array(2);
  new RowHasher(kinds).hash(row, out);
  return `${out[0]}:${out[1]}`;
}

/** fmix64 on BigInt: the definition. */
function fmixRef(k: bigint): bigint {
  const M = (1n << 64n) - 1n;
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & M;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & M;
  k ^= k >> 33n;
  return k;
}

describe('canonical row encoding', () => {
  it('is the column count, then the text-protocol row: 0xFB for NULL, lenenc length · bytes', () => {
    expect(encodeRow([b('ab'), null, b('')]).toString('hex')).toBe('00000003' + '026162' + 'fb' + '00');
    expect(
      encodeRow([Buffer.alloc(300, 0x61)])
        .subarray(4, 7)
        .toString('hex'),
    ).toBe('fc2c01');
    expect(
      encodeRow([Buffer.alloc(70_000)])
        .subarray(4, 8)
        .toString('hex'),
    ).toBe('fd701101');
  });

  it('tells NULL, empty string and the text NULL apart', () => {
    const hs = [hashOf([null]), hashOf([b('')]), hashOf([b('NULL')]), hashOf([b('null')])];
    expect(new Set(hs).size).toBe(4);
  });

  it('counts trailing spaces, number text as stored, and column boundaries', () => {
    expect(hashOf([b('abc')])).not.toBe(hashOf([b('abc ')]));
    expect(hashOf([b('1.0')], ['decimal'])).not.toBe(hashOf([b('1.00')], ['decimal']));
    expect(hashOf([b('ab'), b('c')])).not.toBe(hashOf([b('a'), b('bc')]));
    expect(hashOf([b('a'), null])).not.toBe(hashOf([null, b('a')]));
    expect(hashOf([b('2024-01-01 00:00:00.000001')])).not.toBe(hashOf([b('2024-01-01 00:00:00.000000')]));
    expect(hashOf([b('x')])).not.toBe(hashOf([b('x'), null]));
  });

  it('hashes exactly the bytes: one bit flipped anywhere changes the hash', () => {
    fc.assert(
      fc.property(
        fc.array(rawValue, { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.nat({ max: 7 }),
        (row, at, bit) => {
          const cols = row.map((v, i) => [v, i] as const).filter(([v]) => v !== null && v.length > 0);
          fc.pre(cols.length > 0);
          const [v, i] = cols[at % cols.length]!;
          const flipped = Buffer.from(v!);
          flipped[at % flipped.length]! ^= 1 << bit;
          const other = [...row];
          other[i] = flipped;
          expect(hashOf(other)).not.toBe(hashOf(row));
        },
      ),
    );
  });

  it('RowHasher.crc is CRC-64/XZ of encodeRow, and hash is fmix64 of it', () => {
    fc.assert(
      fc.property(fc.array(rawValue, { maxLength: 8 }), (row) => {
        const out = new Int32Array(2);
        const h = new RowHasher(row.map(() => 'binary'));
        h.crc(row, out);
        const crc = crc64BigInt(encodeRow(row));
        expect((BigInt(out[0]! >>> 0) << 32n) | BigInt(out[1]! >>> 0)).toBe(crc);
        h.hash(row, out);
        expect((BigInt(out[0]! >>> 0) << 32n) | BigInt(out[1]! >>> 0)).toBe(fmixRef(crc));
      }),
    );
  });

  it('fmix64 on int32 halves equals the 64-bit definition', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (k) => {
        const hi = Number(k >> 32n) | 0;
        const lo = Number(k & 0xffffffffn) | 0;
        expect(fmix64Hex(hi, lo)).toBe(fmixRef(k).toString(16).padStart(16, '0'));
      }),
    );
  });

  it('normalises FLOAT/DOUBLE text only, so servers printing a double differently agree', () => {
    expect(canonicalFloat(b('1e20')).toString()).toBe(canonicalFloat(b('100000000000000000000')).toString());
    expect(canonicalFloat(b('1.50')).toString()).toBe('1.5');
    expect(canonicalFloat(b('-0')).toString()).toBe('-0');
    expect(hashOf([b('1e20')], ['float'])).toBe(hashOf([b('1E+20')], ['float']));
    expect(hashOf([b('1e20')], ['text'])).not.toBe(hashOf([b('1E+20')], ['text']));
  });

  it('maps information_schema types to kinds', () => {
    expect(
      [
        'bigint',
        'year',
        'decimal',
        'double',
        'bit',
        'varbinary',
        'longblob',
        'json',
        'varchar',
        'datetime',
        'enum',
      ].map(columnKind),
    ).toEqual(['int', 'int', 'decimal', 'float', 'bit', 'binary', 'binary', 'json', 'text', 'text', 'text']);
  });

  it('canonicalises driver values to the text-protocol bytes', () => {
    expect(canonicalBytes(5)?.toString()).toBe('5');
    expect(canonicalBytes(18446744073709551615n)?.toString()).toBe('18446744073709551615');
    expect(canonicalBytes('café')).toEqual(b('café'));
    expect(canonicalBytes(Buffer.from([0, 255]))).toEqual(Buffer.from([0, 255]));
    expect(canonicalBytes(null)).toBeNull();
  });
});

describe('rows as spans of a packet', () => {
  it('hashView equals hash for the same row, floats included', () => {
    const kinds: ColumnKind[] = ['int', 'float', 'text', 'binary', 'text', 'float'];
    const floatText = fc.oneof(
      fc.constant(null),
      fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => Buffer.from(String(d))),
    );
    fc.assert(
      fc.property(
        rawValue,
        floatText,
        rawValue,
        rawValue,
        fc.uint8Array({ maxLength: 300 }),
        floatText,
        (a, f, c, d, e, g) => {
          const row: RawValue[] = [a, f, c, d, Buffer.from(e), g];
          const h = new RowHasher(kinds);
          const x = new Int32Array(2);
          const y = new Int32Array(2);
          h.hash(row, x);
          h.hashView(rowViewOf(row), row.length, y);
          expect([...y]).toEqual([...x]);
        },
      ),
    );
  });

  it('splits text-protocol rows of every length encoding', () => {
    const lenenc = (n: number): Buffer => {
      if (n < 0xfb) return Buffer.from([n]);
      if (n < 2 ** 16) return Buffer.from([0xfc, n & 0xff, n >> 8]);
      if (n < 2 ** 24) return Buffer.from([0xfd, n & 0xff, (n >> 8) & 0xff, n >> 16]);
      const b = Buffer.alloc(9);
      b[0] = 0xfe;
      b.writeBigUInt64LE(BigInt(n), 1);
      return b;
    };
    const values: RawValue[] = [
      b('5'),
      null,
      Buffer.alloc(300, 7),
      Buffer.alloc(70_000, 9),
      b(''),
      Buffer.alloc(17_000_000, 1),
    ];
    const packet = Buffer.concat([
      Buffer.from([1, 2, 3, 4]), // a packet header before the payload
      ...values.map((v) => (v === null ? Buffer.from([0xfb]) : Buffer.concat([lenenc(v.length), v]))),
    ]);
    const view = rowViewOf(values.map(() => null));
    parseTextRow(packet, 4, packet.length, view, values.length);
    values.forEach((v, i) => {
      if (v === null) expect(view.start[i]).toBe(-1);
      else expect(view.buf.subarray(view.start[i]!, view.start[i]! + view.len[i]!).equals(v)).toBe(true);
    });
    expect(view.minimal).toBe(true);
    expect(() => parseTextRow(packet, 4, packet.length + 1, view, values.length)).toThrow(/unexpected bytes/);
  });

  it('hashes a row sent with a non-minimal length prefix like the canonical one', () => {
    const row = [b('5'), b('abc')];
    const padded = Buffer.concat([Buffer.from([1]), b('5'), Buffer.from([0xfc, 3, 0]), b('abc')]);
    const view = rowViewOf([null, null]);
    parseTextRow(padded, 0, padded.length, view, 2);
    expect(view.minimal).toBe(false);
    const h = new RowHasher(['int', 'text']);
    const x = new Int32Array(2);
    const y = new Int32Array(2);
    h.hash(row, x);
    h.hashView(view, 2, y);
    expect([...y]).toEqual([...x]);
  });
});
