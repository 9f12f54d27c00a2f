import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compactOps } from '../../../src/binlog/compact.js';

/**
 * A model of TargetApplier's semantics for one table (src/apply/applier.ts): rows by key with the
 * source that owns them (an image's owner is the source that wrote it), and parked images by
 * (key, source). Keys are 'a', 'b', … ; with `fold`, 'A' is the same row as 'a' (a case-insensitive
 * collation), so byte-different keys can collide.
 */
interface Op {
  kind: 'upsert' | 'delete';
  source: string;
  key: string;
  value: number;
}

class Target {
  rows = new Map<string, { key: string; owner: string; value: number }>();
  parked = new Map<string, { source: string; value: number; key: string; at: number }>();
  private clock = 0;
  constructor(private readonly fold: boolean) {}
  private row(k: string) {
    return this.fold ? k.toLowerCase() : k;
  }
  apply(op: Op): void {
    const r = this.row(op.key);
    const ex = this.rows.get(r);
    const slot = (source: string) => `${r}\0${source}`;
    if (op.kind === 'upsert') {
      if (!ex || ex.owner === op.source) {
        this.rows.set(r, { key: op.key, owner: op.source, value: op.value });
        this.parked.delete(slot(op.source));
      } else {
        const prev = this.parked.get(slot(op.source));
        this.parked.set(slot(op.source), {
          source: op.source,
          value: op.value,
          key: op.key,
          at: prev?.at ?? this.clock++,
        });
      }
      return;
    }
    if (ex && ex.owner === op.source) {
      this.rows.delete(r);
      const cands = [...this.parked.entries()]
        .filter(([k]) => k.startsWith(`${r}\0`))
        .sort((a, b) => a[1].at - b[1].at);
      const first = cands[0];
      if (first) {
        this.rows.set(r, { key: first[1].key, owner: first[1].source, value: first[1].value });
        this.parked.delete(first[0]);
      }
    } else {
      this.parked.delete(slot(op.source));
    }
  }
  snapshot(): string {
    return JSON.stringify([
      [...this.rows].sort(),
      [...this.parked].map(([k, v]) => [k, v.value, v.key]).sort(),
    ]);
  }
}

const keyArb = (fold: boolean) =>
  fc.constantFrom(...(fold ? ['a', 'A', 'b', 'B', 'c'] : ['a', 'b', 'c', 'd']));
const opArb = (source: fc.Arbitrary<string>, fold: boolean) =>
  fc.record({
    kind: fc.constantFrom('upsert' as const, 'delete' as const),
    source,
    key: keyArb(fold),
    value: fc.integer({ min: 0, max: 99 }),
  });

function check(fold: boolean, exact: boolean) {
  fc.assert(
    fc.property(
      fc.array(opArb(fc.constantFrom('s', 'x'), fold), { maxLength: 25 }),
      fc.array(opArb(fc.constant('s'), fold), { maxLength: 30 }),
      (history, batch) => {
        const a = new Target(fold);
        const b = new Target(fold);
        for (const op of history) {
          a.apply(op);
          b.apply(op);
        }
        for (const op of batch) a.apply(op);
        const compacted = compactOps(batch, (o) => o.key, exact);
        expect(compacted.length).toBeLessThanOrEqual(batch.length);
        for (const op of compacted) b.apply(op);
        expect(b.snapshot()).toBe(a.snapshot());
      },
    ),
    { numRuns: 3000 },
  );
}

describe('compactOps', () => {
  it('byte-exact keys: reordered to deletes then upserts, same final rows and parked images (property)', () => {
    check(false, true);
  });

  it('collation keys: only adjacent same-byte operations reduced, same final state (property)', () => {
    check(true, false);
  });

  it('reduces each key to [upsert], [delete] or [delete, upsert]', () => {
    const ops = [
      { kind: 'upsert' as const, k: 'a', v: 1 },
      { kind: 'upsert' as const, k: 'b', v: 2 },
      { kind: 'upsert' as const, k: 'a', v: 3 },
      { kind: 'delete' as const, k: 'b', v: 4 },
      { kind: 'delete' as const, k: 'c', v: 5 },
      { kind: 'upsert' as const, k: 'c', v: 6 },
      { kind: 'upsert' as const, k: 'c', v: 7 },
    ];
    expect(compactOps(ops, (o) => o.k, true).map((o) => `${o.kind}:${o.k}${o.v}`)).toEqual([
      'delete:b4',
      'delete:c5',
      'upsert:a3',
      'upsert:c7',
    ]);
    expect(compactOps(ops, (o) => o.k, false).map((o) => `${o.kind}:${o.k}${o.v}`)).toEqual([
      'upsert:a1',
      'upsert:b2',
      'upsert:a3',
      'delete:b4',
      'delete:c5',
      'upsert:c7',
    ]);
  });
});
