import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RouteContext, type RoutedOp, routeChange } from '../../../src/binlog/route.js';
import type { RowChange } from '../../../src/binlog/source.js';

// Keys 0..9: old owner s0 for even, s1 for odd; new owner t(key mod 3); key 9 does not move.
const ctx = (source: string): RouteContext => ({
  source,
  owners: (_t, img) => {
    const k = Number(img.k);
    const old = k % 2 === 0 ? 's0' : 's1';
    return { old, new: k === 9 ? old : `t${k % 3}`, moves: k !== 9 };
  },
  samePk: (_t, a, b) => a.id === b.id,
});

const route = (ch: RowChange, source = 's0') => {
  const out: RoutedOp[] = [];
  routeChange(ch, ctx(source), out);
  return out.map((o) => `${o.kind}@${o.target}:${String(o.image.id)}/${String(o.image.k)}`);
};

describe('routeChange', () => {
  it('inserts and deletes go to the new owner of a key this source owns', () => {
    expect(route({ table: 't', kind: 'insert', after: { id: 1, k: 4 } })).toEqual(['upsert@t1:1/4']);
    expect(route({ table: 't', kind: 'delete', before: { id: 1, k: 4 } })).toEqual(['delete@t1:1/4']);
  });

  it('ignores keys another source owns and keys that stay', () => {
    expect(route({ table: 't', kind: 'insert', after: { id: 1, k: 3 } })).toEqual([]);
    expect(route({ table: 't', kind: 'insert', after: { id: 1, k: 9 } }, 's1')).toEqual([]);
  });

  it('an update within one target is one upsert; a primary-key change deletes the old key first', () => {
    expect(route({ table: 't', kind: 'update', before: { id: 1, k: 4 }, after: { id: 1, k: 4 } })).toEqual([
      'upsert@t1:1/4',
    ]);
    expect(route({ table: 't', kind: 'update', before: { id: 1, k: 4 }, after: { id: 2, k: 4 } })).toEqual([
      'delete@t1:1/4',
      'upsert@t1:2/4',
    ]);
  });

  it('a shard-key update that changes the target is a delete there and an upsert here', () => {
    expect(route({ table: 't', kind: 'update', before: { id: 1, k: 4 }, after: { id: 1, k: 2 } })).toEqual([
      'delete@t1:1/4',
      'upsert@t2:1/2',
    ]);
  });

  it('a shard-key update to a key of another source or a staying key only deletes', () => {
    expect(route({ table: 't', kind: 'update', before: { id: 1, k: 4 }, after: { id: 1, k: 3 } })).toEqual([
      'delete@t1:1/4',
    ]);
    expect(
      route({ table: 't', kind: 'update', before: { id: 1, k: 3 }, after: { id: 1, k: 9 } }, 's1'),
    ).toEqual(['delete@t0:1/3']);
    expect(
      route({ table: 't', kind: 'update', before: { id: 1, k: 9 }, after: { id: 1, k: 1 } }, 's1'),
    ).toEqual(['upsert@t1:1/1']);
  });

  it('replaying the operations of any update history leaves each target with exactly the final row (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.integer({ min: 0, max: 8 }).filter((k) => k % 2 === 0),
          { minLength: 1, maxLength: 8 },
        ),
        (keys) => {
          // One row (id 7) on source s0 whose shard key walks through `keys` (all owned by s0).
          const targets = new Map<string, Map<number, number>>();
          const apply = (ops: RoutedOp[]) => {
            for (const o of ops) {
              const t = targets.get(o.target) ?? new Map<number, number>();
              targets.set(o.target, t);
              if (o.kind === 'upsert') t.set(Number(o.image.id), Number(o.image.k));
              else t.delete(Number(o.image.id));
            }
          };
          const out: RoutedOp[] = [];
          routeChange({ table: 't', kind: 'insert', after: { id: 7, k: keys[0] } }, ctx('s0'), out);
          for (let i = 1; i < keys.length; i++)
            routeChange(
              { table: 't', kind: 'update', before: { id: 7, k: keys[i - 1] }, after: { id: 7, k: keys[i] } },
              ctx('s0'),
              out,
            );
          apply(out);
          const last = keys.at(-1)!;
          const where = [...targets].filter(([, m]) => m.has(7));
          expect(where.map(([t, m]) => [t, m.get(7)])).toEqual([[`t${last % 3}`, last]]);
        },
      ),
    );
  });
});
