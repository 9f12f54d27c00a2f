import { describe, expect, it } from 'vitest';
import { comparePositions, minPosition, parsePosition } from '../../../src/binlog/position.js';

describe('binlog positions', () => {
  it('orders by file sequence number, then offset', () => {
    const p = (file: string, pos: number) => ({ file, pos });
    expect(comparePositions(p('b.000009', 900), p('b.000010', 4))).toBeLessThan(0);
    expect(comparePositions(p('b.000010', 4), p('b.000009', 900))).toBeGreaterThan(0);
    expect(comparePositions(p('b.000010', 5), p('b.000010', 5))).toBe(0);
    expect(comparePositions(p('b.999999', 5), p('b.1000000', 4))).toBeLessThan(0);
    expect(minPosition([p('b.000002', 10), p('b.000001', 99), p('b.000002', 4)])).toEqual(p('b.000001', 99));
  });

  it('parses FILE:POS and refuses anything else as a usage error', () => {
    expect(parsePosition('mysql-bin.000042:1234')).toEqual({ file: 'mysql-bin.000042', pos: 1234 });
    for (const bad of ['mysql-bin.000042', ':12', 'x:abc', 'x:1'])
      expect(() => parsePosition(bad)).toThrow(
        expect.objectContaining({ code: 'E_POSITION', kind: 'usage' }),
      );
  });
});
