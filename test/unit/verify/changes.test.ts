import { describe, expect, it } from 'vitest';
import type { Value } from '../../../src/apply/values.js';
import { decodePk, encodePk } from '../../../src/verify/changes.js';
import { canonicalBytes, textRowPayload } from '../../../src/verify/rowhash.js';

describe('recorded primary keys', () => {
  const keys: Value[][] = [
    ['5'],
    [5],
    [5n],
    ['18446744073709551615'],
    [18446744073709551615n, '2024-02-29 23:59:59.999999'],
    ['12345678901234.500001', Buffer.from([0x00, 0xff, 0x27, 0x5c]), null],
    ['ab-00016'],
    ['Zoë 😀'],
    ['x'.repeat(83)],
    ['é'.repeat(83)],
    ['x'.repeat(300)],
    ['😀'.repeat(70)],
    [Buffer.alloc(70_000, 1)],
    [''],
    [-0],
  ];

  it('are stored as the text-protocol payload of their canonical bytes, and read back exactly', () => {
    for (const pk of keys) {
      const stored = encodePk(pk);
      const canonical = pk.map(canonicalBytes);
      expect(
        stored.equals(textRowPayload(canonical)),
        JSON.stringify(pk, (_, v) => String(v)),
      ).toBe(true);
      expect(decodePk(stored)).toEqual(canonical);
    }
  });

  it('number 5, text 5 and bigint 5 are one key', () => {
    expect(encodePk([5]).equals(encodePk(['5']))).toBe(true);
    expect(encodePk([5n]).equals(encodePk(['5']))).toBe(true);
    expect(encodePk(['ab', 'c']).equals(encodePk(['a', 'bc']))).toBe(false);
    expect(encodePk([null]).equals(encodePk(['']))).toBe(false);
  });
});
