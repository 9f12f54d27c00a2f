import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeImage, encodeImage, tupleBytes, tupleKey, type Value } from '../../../src/apply/values.js';

const value: fc.Arbitrary<Value> = fc.oneof(
  fc.constant(null),
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  // Lone surrogates: UTF-8 encoding replaces them, tupleKey must do exactly the same.
  fc.string({ unit: 'binary' }),
  fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  fc.integer(),
  fc.double(),
  fc.bigInt(),
);

describe('tupleKey', () => {
  it('is tupleBytes(values) as latin1, for any tuple', () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 5 }), (values) => {
        expect(tupleKey(values)).toBe(tupleBytes(values).toString('latin1'));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps one key per value whatever the driver representation, and tuples apart', () => {
    expect(tupleKey([5])).toBe(tupleKey(['5']));
    expect(tupleKey([5n])).toBe(tupleKey([5]));
    expect(tupleKey(['ab', 'c'])).not.toBe(tupleKey(['a', 'bc']));
    expect(tupleKey([null])).not.toBe(tupleKey(['']));
    expect(tupleKey([Buffer.from('a')])).not.toBe(tupleKey(['a']));
    // tag 2, length 2 (big-endian), then é's two UTF-8 bytes as latin1 characters
    expect(tupleKey(['é'])).toBe('\x02\x00\x00\x00\x02\xc3\xa9');
    expect(tupleKey([null, 7])).toBe('\x00\x00\x00\x00\x00\x02\x00\x00\x00\x017');
  });
});

describe('decodeImage', () => {
  it('reads back what encodeImage wrote', () => {
    const row = [null, '', 'é', Buffer.from([0, 255]), 42n, -7, 1e-7, '18446744073709551615'];
    const back = decodeImage(encodeImage(row));
    expect(back).toEqual([null, '', 'é', Buffer.from([0, 255]), '42', '-7', '1e-7', '18446744073709551615']);
  });
  it('refuses any other encoding instead of reading it as NULL', () => {
    for (const text of [
      '[{"u64":"1000000"}]',
      '[{"n":"12","b":"AA=="}]',
      '[{"n":"12 OR 1=1"}]',
      '[{"b":"not base64!"}]',
      '[[1]]',
      '[1]',
      '{"n":"1"}',
      'not json',
    ]) {
      expect(() => decodeImage(text), text).toThrow(expect.objectContaining({ code: 'E_STATE_FORMAT' }));
    }
  });
});
