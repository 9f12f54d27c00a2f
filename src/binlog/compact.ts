/**
 * Fewer, larger statements per target transaction: one table's operations of a batch (all from
 * one source, in source order) reduced to an equivalent sequence. Pure; the equivalence is
 * checked against a model of the applier in test/unit/binlog/compact.test.ts.
 *
 * For one primary key, with the applier's semantics (src/apply/README.md) and one source S:
 *   upsert(v) · upsert(w)  ≡ upsert(w)   the second image replaces the first wherever it went
 *                                         (the row, or S's parked slot);
 *   upsert(v) · delete     ≡ delete      whatever v did is undone: the row S held is deleted
 *                                         (and the other source's parked row promoted), or S's
 *                                         parked slot is cleared;
 *   delete · delete        ≡ delete      the second finds no row of S's and no parked slot.
 * So each key's operations reduce to [upsert], [delete] or [delete, upsert].
 *
 * Keys whose columns compare by bytes (`exactPk`): operations on different keys touch different
 * rows and parked slots, so they commute; the batch becomes every key's delete, then every key's
 * upsert — two statements instead of one per row. Otherwise (character keys, where a collation
 * makes byte-different images one row) the order is kept and only *adjacent* operations on the
 * same key bytes are reduced.
 */

export interface KeyedOp {
  kind: 'upsert' | 'delete';
}

function reduceInto<T extends KeyedOp>(stack: T[], op: T): void {
  const top = stack[stack.length - 1];
  if (top && (top.kind === 'upsert' || op.kind === 'delete')) {
    // (upsert, upsert) → upsert'; (upsert, delete) → delete; (delete, delete) → delete.
    stack.pop();
    reduceInto(stack, op);
    return;
  }
  stack.push(op);
}

export function compactOps<T extends KeyedOp>(
  ops: readonly T[],
  keyOf: (op: T) => string,
  exactPk: boolean,
): T[] {
  if (ops.length < 2) return ops.slice();
  if (!exactPk) {
    const out: T[] = [];
    const keys: string[] = [];
    for (const op of ops) {
      const k = keyOf(op);
      let top = out[out.length - 1];
      while (top && keys[keys.length - 1] === k && (top.kind === 'upsert' || op.kind === 'delete')) {
        out.pop();
        keys.pop();
        top = out[out.length - 1];
      }
      out.push(op);
      keys.push(k);
    }
    return out;
  }
  const perKey = new Map<string, T[]>();
  for (const op of ops) {
    const k = keyOf(op);
    let stack = perKey.get(k);
    if (!stack) {
      stack = [];
      perKey.set(k, stack);
    }
    reduceInto(stack, op);
  }
  const deletes: T[] = [];
  const upserts: T[] = [];
  for (const stack of perKey.values()) {
    for (const op of stack) (op.kind === 'delete' ? deletes : upserts).push(op);
  }
  return deletes.concat(upserts);
}
