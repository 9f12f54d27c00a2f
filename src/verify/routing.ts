/**
 * Row placement for the verifier: for a row read on shard X, which role it plays there.
 *
 *   source  X owns the row under `from` and not under `to`: part of the moving segment (X, to);
 *   target  X owns it under `to` and not under `from`: part of the moving segment (from, X);
 *   stay    X owns it under both: not copied, not verified;
 *   misplaced  X is a target shard that owns it under neither: a row on a target that does not
 *           belong there (a wrong-target or stray write, a shard key changed without the move);
 *   stray   X is only a source and does not own the row: the source estate itself is misrouted
 *           (copy skips such rows; reported as a warning).
 */
import type { PlanIndex } from '../plan/plan-index.js';
import { createRouter, type RouteKey, type Router } from '../plan/router.js';
import type { Segment } from '../plan/types.js';
import type { Shard, Topology } from '../topology/types.js';

export const ROLE_SOURCE = 0;
export const ROLE_TARGET = 1;
export const ROLE_MISPLACED = 2;
export const ROLE_STRAY = 3;
export const ROLE_STAY = -1;

export interface ShardRole {
  name: string;
  shard: Shard;
  database: string;
  /** Index in the `from` topology, or -1. */
  fromIdx: number;
  /** Index in the `to` topology, or -1. */
  toIdx: number;
  /** Has a moving segment out (as a source) or in (as a target). */
  verified: boolean;
}

export interface Routing {
  from: Router;
  to: Router;
  segments: readonly Segment[];
  /** Segment id of (from index, to index): segByPair[f * nTo + t], -1 if none. */
  segByPair: Int32Array;
  nTo: number;
  shards: Map<string, ShardRole>;
  /** Shards to read, in a stable order: sources first, then targets. */
  scanned: ShardRole[];
}

export function buildRouting(index: PlanIndex, from: Topology, to: Topology): Routing {
  const ra = createRouter(from);
  const rb = createRouter(to);
  const nTo = rb.shards.length;
  const segByPair = new Int32Array(ra.shards.length * nTo).fill(-1);
  const fromIdx = new Map(ra.shards.map((n, i) => [n, i]));
  const toIdx = new Map(rb.shards.map((n, i) => [n, i]));
  for (const s of index.plan.segments) segByPair[fromIdx.get(s.from)! * nTo + toIdx.get(s.to)!] = s.id;
  const shards = new Map<string, ShardRole>();
  for (const s of [...from.shards, ...to.shards]) {
    if (shards.has(s.name)) continue;
    const moving = index.plan.segments.some((g) => g.moves && (g.from === s.name || g.to === s.name));
    shards.set(s.name, {
      name: s.name,
      shard: s,
      database: s.endpoint.database,
      fromIdx: fromIdx.get(s.name) ?? -1,
      toIdx: toIdx.get(s.name) ?? -1,
      verified: moving,
    });
  }
  const scanned = [...shards.values()].filter((s) => s.verified);
  return { from: ra, to: rb, segments: index.plan.segments, segByPair, nTo, shards, scanned };
}

/** Role of a row with owners (fi, ti) read on shard x. */
export function roleOf(x: ShardRole, fi: number, ti: number): number {
  if (fi === x.fromIdx) return ti === x.toIdx ? ROLE_STAY : ROLE_SOURCE;
  if (ti === x.toIdx) return ROLE_TARGET;
  return x.toIdx >= 0 ? ROLE_MISPLACED : ROLE_STRAY;
}

/** Owners of a key: [from index, to index]. */
export function ownersOf(r: Routing, key: RouteKey): [number, number] {
  return [r.from.ownerIndexOf(key), r.to.ownerIndexOf(key)];
}
