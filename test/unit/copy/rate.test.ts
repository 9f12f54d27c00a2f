import { describe, expect, it } from 'vitest';
import { parseRate } from '../../../src/commands/copy.js';

// 0 means unlimited: a positive rate that rounded to 0 (`--rate 0.4`) used to mean no limit.
describe('--rate parsing', () => {
  it('refuses a positive rate below 1 row per second', () => {
    expect(() => parseRate('0.4', '--rate')).toThrow(/--rate 0.4 is below 1 row per second/);
  });

  it('reads plain, k and m rates, and 0 as unlimited', () => {
    expect(parseRate('20000', '--rate')).toBe(20000);
    expect(parseRate('1.5k', '--rate')).toBe(1500);
    expect(parseRate('2m', '--rate')).toBe(2_000_000);
    expect(parseRate('0', '--rate')).toBe(0);
    expect(parseRate('1', '--rate')).toBe(1);
  });
});
