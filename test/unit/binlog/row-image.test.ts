import { describe, expect, it } from 'vitest';
import { allColumnsPresent } from '../../../src/binlog/source.js';

describe('allColumnsPresent (a rows event carries FULL images)', () => {
  it('is true only when each of the columns has its bit', () => {
    expect(allColumnsPresent(Buffer.from([0xff]), 8)).toBe(true);
    expect(allColumnsPresent(Buffer.from([0x07]), 3)).toBe(true);
    // Bits past the column count are padding.
    expect(allColumnsPresent(Buffer.from([0x0f]), 3)).toBe(true);
    expect(allColumnsPresent(Buffer.from([0xff, 0x01]), 9)).toBe(true);
    expect(allColumnsPresent(Buffer.from([0xfe, 0x01]), 9)).toBe(false);
    expect(allColumnsPresent(Buffer.from([0xff, 0x00]), 9)).toBe(false);
    expect(allColumnsPresent(Buffer.from([0x05]), 3)).toBe(false);
  });
  it('is false for a missing or short bitmap', () => {
    expect(allColumnsPresent(undefined, 1)).toBe(false);
    expect(allColumnsPresent(Buffer.from([0xff]), 9)).toBe(false);
  });
});
