import { describe, expect, it } from 'vitest';
import { fixTime } from '../../../src/binlog/decode.js';

// zongji decodes a negative TIME's magnitude minus one and adds one to the seconds field alone
// (6-bit fields: seconds and minutes overflow at 64). These are its texts for values checked
// against the server (CAST(t AS CHAR)) in test/integration/tail/edge-cases.test.ts.
describe('fixTime: zongji’s negative TIME texts, carried', () => {
  it.each([
    ['-00:00:64', '-00:01:00'],
    ['-01:29:64', '-01:30:00'],
    ['-11:63:64', '-12:00:00'],
    ['-99:63:64', '-100:00:00'],
    ['-00:00:64.000', '-00:01:00.000'],
    ['-01:29:64.000000', '-01:30:00.000000'],
  ])('%s → %s', (zongji, server) => {
    expect(fixTime(zongji)).toBe(server);
  });

  it.each(['00:00:00', '-00:00:01', '-838:59:59', '838:59:59.000000', '-00:00:00.001', '12:34:56.5'])(
    'leaves a valid TIME alone: %s',
    (v) => {
      expect(fixTime(v)).toBe(v);
    },
  );

  it('leaves NULL and non-TIME values alone', () => {
    expect(fixTime(null)).toBe(null);
    expect(fixTime('not a time')).toBe('not a time');
  });
});
