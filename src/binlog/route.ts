/**
 * Which target operations one binlog row change becomes. Pure: owners come from a callback, so
 * the rules are tested with plain inputs (test/unit/binlog/route.test.ts).
 *
 * Going forward the stream is an old shard's binlog; "old owner" is the owner under the `from`
 * topology and "new owner" under `to` (reverse mode swaps them). For a change on source S:
 *   insert(after)         old(after) = S and its segment moves      → upsert(after) on new(after)
 *   delete(before)        old(before) = S and its segment moves     → delete(before) on new(before)
 *   update(before, after) the before-image leaves new(before) when it was there and either the
 *                         after-image is not (it stays, or belongs to another source), goes to
 *                         another target, or has another primary key → delete(before) there;
 *                         the after-image is upserted on new(after) when old(after) = S and it moves.
 * Rows whose old owner is not S are not S's to replicate (another source's stream carries them),
 * and rows of staying segments are already where they belong.
 */
import type { RawImage, RowChange } from './source.js';

export interface Owners {
  /** Owner on the side the stream comes from. */
  old: string;
  /** Owner on the side being written. */
  new: string;
  /** old ≠ new: the key's segment moves. */
  moves: boolean;
}

export interface RouteContext {
  /** The shard whose binlog this is. */
  source: string;
  owners(table: string, img: RawImage): Owners;
  /** Same primary key in both images. */
  samePk(table: string, a: RawImage, b: RawImage): boolean;
}

export interface RoutedOp {
  target: string;
  kind: 'upsert' | 'delete';
  table: string;
  image: RawImage;
}

export function routeChange(ch: RowChange, ctx: RouteContext, out: RoutedOp[]): void {
  const { source } = ctx;
  switch (ch.kind) {
    case 'insert': {
      const o = ctx.owners(ch.table, ch.after!);
      if (o.old === source && o.moves)
        out.push({ target: o.new, kind: 'upsert', table: ch.table, image: ch.after! });
      return;
    }
    case 'delete': {
      const o = ctx.owners(ch.table, ch.before!);
      if (o.old === source && o.moves)
        out.push({ target: o.new, kind: 'delete', table: ch.table, image: ch.before! });
      return;
    }
    case 'update': {
      const ob = ctx.owners(ch.table, ch.before!);
      const oa = ctx.owners(ch.table, ch.after!);
      const relB = ob.old === source && ob.moves;
      const relA = oa.old === source && oa.moves;
      if (relB && (!relA || ob.new !== oa.new || !ctx.samePk(ch.table, ch.before!, ch.after!)))
        out.push({ target: ob.new, kind: 'delete', table: ch.table, image: ch.before! });
      if (relA) out.push({ target: oa.new, kind: 'upsert', table: ch.table, image: ch.after! });
      return;
    }
  }
}

/** Equality of two exact values as zongji yields them (same column, so same representation). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (a === null || b === null || a === undefined || b === undefined) return false;
  return String(a) === String(b);
}
