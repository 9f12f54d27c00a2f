import { describe, expect, it } from 'vitest';
import { sameStateFormat } from '../../../src/job/context.js';

describe('sameStateFormat (whose checkpoints a reshard reads)', () => {
  it('accepts another patch release, and any 1.x for 1.y', () => {
    expect(sameStateFormat('0.1.0', '0.1.7')).toBe(true);
    expect(sameStateFormat('1.2.0', '1.5.3')).toBe(true);
    expect(sameStateFormat('2.0.0-rc.1', '2.0.0')).toBe(true);
  });
  it('refuses another 0.x minor, another major, or a version it cannot read', () => {
    expect(sameStateFormat('0.1.0', '0.2.0')).toBe(false);
    expect(sameStateFormat('99.0.0', '0.1.0')).toBe(false);
    expect(sameStateFormat('1.9.0', '2.0.0')).toBe(false);
    expect(sameStateFormat('dev', '0.1.0')).toBe(false);
  });
});
