import { describe, expect, it } from 'vitest';
import { thousands } from '../../../src/util/format.js';

describe('thousands', () => {
  it('prints integers as en-US does', () => {
    for (const n of [
      0,
      7,
      999,
      1000,
      12_345,
      999_999,
      1_000_000,
      1_234_567_890,
      -1,
      -1234,
      -999_999,
      2 ** 53,
    ])
      expect(thousands(n)).toBe(n.toLocaleString('en-US'));
  });
  it('rounds to a whole number', () => {
    expect(thousands(1234.4)).toBe('1,234');
    expect(thousands(1234.5)).toBe('1,235');
    expect(thousands(999.7)).toBe('1,000');
  });
  it('leaves what is not a finite number as it prints', () => {
    expect(thousands(Number.NaN)).toBe('NaN');
    expect(thousands(Number.POSITIVE_INFINITY)).toBe('Infinity');
  });
});
