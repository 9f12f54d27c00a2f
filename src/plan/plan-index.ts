/**
 * A plan made usable per key and per statement: which segment a key is in, and SQL that selects a
 * segment's rows. Built from the plan plus the two topologies it was made from (checked by hash),
 * because owners are recomputed with the same routers the plan was derived from.
 *
 * SQL notes: predicates compare string keys as bytes (`CAST(col AS BINARY)`), the order and
 * equality the router uses, whatever the column's collation; this costs the index on that column,
 * which is why copiers should prefer range scans on the primary key filtered by the predicate.
 * Rows whose shard key is NULL satisfy no predicate (preflight must reject them).
 */
import { ReshardError } from '../errors.js';
import type { Topology } from '../topology/types.js';
import { canonicalKeyString, xxh64Of } from './hash.js';
import { checkDrift } from './planfile.js';
import {
  compareKeyToBoundary,
  createRouter,
  hashModValue,
  type RouteKey,
  residue,
  sqlResidueExpr,
} from './router.js';
import type { Pieces, Plan, Segment, Side } from './types.js';

export interface PlanIndex {
  readonly plan: Plan;
  /** Owner of a key on one side of the plan. */
  ownerOf(side: Side, key: RouteKey): string;
  /** Id of the one segment holding `key`. */
  segmentIdOf(key: RouteKey): number;
  segmentOf(key: RouteKey): Segment;
  /**
   * A boolean SQL expression true exactly for the rows of `segment` (a move or a stay), given the
   * quoted shard-key column; undefined when SQL cannot compute it (consistent hashing: MySQL and
   * MariaDB have no xxhash64).
   */
  sqlPredicate(segment: Segment | number, quotedColumn: string): string | undefined;
}

export function indexPlan(plan: Plan, from: Topology, to: Topology): PlanIndex {
  checkDrift(plan, from, to);
  const ra = createRouter(from);
  const rb = createRouter(to);
  const nTo = rb.shards.length;
  const fromIdx = new Map(ra.shards.map((n, i) => [n, i]));
  const toIdx = new Map(rb.shards.map((n, i) => [n, i]));
  const byPair = new Map<number, number>();
  for (const s of plan.segments) byPair.set(fromIdx.get(s.from)! * nTo + toIdx.get(s.to)!, s.id);
  const segmentIdOf = (key: RouteKey): number => {
    const id = byPair.get(ra.ownerIndexOf(key) * nTo + rb.ownerIndexOf(key));
    if (id === undefined) {
      throw new ReshardError(
        'bug',
        'E_BUG',
        `key ${String(key)} routes to a (from, to) pair the plan does not list`,
        {
          hint: 'the planner missed a non-empty segment: this is a defect in reshard, please report it',
        },
      );
    }
    return id;
  };
  const routers = { from: ra, to: rb };
  return {
    plan,
    ownerOf: (side, key) => routers[side].ownerOf(key),
    segmentIdOf,
    segmentOf: (key) => plan.segments[segmentIdOf(key)]!,
    sqlPredicate(segment, col) {
      const s = typeof segment === 'number' ? plan.segments[segment] : segment;
      if (!s) throw new RangeError(`no segment ${String(segment)}`);
      if (s.pieces.kind === 'cells') {
        const a = sidePredicate(from, s.from, col);
        const b = sidePredicate(to, s.to, col);
        return a === undefined || b === undefined ? undefined : `(${a}) AND (${b})`;
      }
      if (s.pieces.kind === 'residues') {
        // Either residues mod L, or (residues mod N of `from`) AND (residues mod M of `to`): both
        // exact; take the shorter.
        const p = plan.partition;
        if (p.kind !== 'residue')
          throw new ReshardError('bug', 'E_BUG', 'residue pieces outside a residue partition');
        const direct = inList(sqlResidueExpr(p.hash, col, p.modulus), s.pieces.residues);
        const a = sidePredicate(from, s.from, col)!;
        const b = sidePredicate(to, s.to, col)!;
        return a.length + b.length + 9 < direct.length ? `(${a}) AND (${b})` : direct;
      }
      return piecesPredicate(
        s.pieces,
        col,
        plan.partition.kind === 'interval' ? plan.partition.keyType : 'int',
        () => allDirectoryKeys(from, to),
      );
    },
  };
}

function inList(expr: string, values: readonly (number | string)[]): string {
  if (values.length === 0) return 'FALSE';
  if (values.length === 1) return `${expr} = ${values[0]}`;
  return `${expr} IN (${values.join(', ')})`;
}

/** A string's UTF-8 bytes as a hex literal: no escaping questions, no charset conversion. */
export function sqlBytes(s: string): string {
  return `X'${Buffer.from(s, 'utf8').toString('hex')}'`;
}

function bound(b: bigint | string, keyType: 'int' | 'string'): string {
  return keyType === 'int' ? String(b) : sqlBytes(String(b));
}

function intervalsPredicate(
  intervals: { from: bigint | string | null; to: bigint | string | null }[],
  col: string,
  keyType: 'int' | 'string',
): string {
  if (intervals.length === 0) return 'FALSE';
  const c = keyType === 'int' ? col : `CAST(${col} AS BINARY)`;
  const terms = intervals.map((iv) => {
    const parts: string[] = [];
    if (iv.from !== null) parts.push(`${c} >= ${bound(iv.from, keyType)}`);
    if (iv.to !== null) parts.push(`${c} < ${bound(iv.to, keyType)}`);
    return parts.length === 0 ? 'TRUE' : parts.join(' AND ');
  });
  return terms.length === 1 ? terms[0]! : terms.map((t) => `(${t})`).join(' OR ');
}

function keysPredicate(keys: string[], rest: boolean, col: string, allKeys: () => string[]): string {
  const c = `CAST(${col} AS BINARY)`;
  const terms: string[] = [];
  if (keys.length > 0) terms.push(inList(c, keys.map(sqlBytes)));
  if (rest) {
    const all = allKeys();
    terms.push(all.length === 0 ? 'TRUE' : `NOT (${inList(c, all.map(sqlBytes))})`);
  }
  if (terms.length === 0) return 'FALSE';
  return terms.length === 1 ? terms[0]! : terms.map((t) => `(${t})`).join(' OR ');
}

function piecesPredicate(
  p: Pieces,
  col: string,
  keyType: 'int' | 'string',
  allKeys: () => string[],
): string | undefined {
  switch (p.kind) {
    case 'arcs':
      return undefined;
    case 'intervals':
      return intervalsPredicate(p.intervals, col, keyType);
    case 'keys':
      return keysPredicate(p.keys, p.rest, col, allKeys);
    default:
      throw new ReshardError('bug', 'E_BUG', `piecesPredicate: unexpected ${p.kind}`);
  }
}

function allDirectoryKeys(from: Topology, to: Topology): string[] {
  const keys = new Set<string>();
  for (const t of [from, to])
    if (t.scheme.type === 'directory') for (const k of t.scheme.entries?.keys() ?? []) keys.add(k);
  return [...keys].sort();
}

/** SQL true exactly for the keys `shard` owns under one topology (its cell); undefined if not computable. */
export function sidePredicate(t: Topology, shard: string, col: string): string | undefined {
  const s = t.scheme;
  switch (s.type) {
    case 'hash-mod': {
      const residues: number[] = [];
      s.slots.forEach((name, i) => {
        if (name === shard) residues.push(i);
      });
      return inList(sqlResidueExpr(s.hash, col, s.modulus), residues);
    }
    case 'range': {
      const keyType = s.keyType;
      return intervalsPredicate(
        s.ranges.filter((x) => x.shard === shard).map((x) => ({ from: x.from, to: x.to })),
        col,
        keyType,
      );
    }
    case 'directory': {
      const keys = [...(s.entries ?? new Map<string, string>())]
        .filter(([, v]) => v === shard)
        .map(([k]) => k);
      return keysPredicate(keys, s.default === shard, col, () => [...(s.entries?.keys() ?? [])]);
    }
    case 'consistent-hash':
      return undefined;
  }
}

/**
 * Whether `key` lies in a segment's pieces, read on their own terms (residue of the hash, arc of
 * the ring hash, interval, directory key), independently of the routers; `cells` pieces answer
 * undefined. For tests and for verifiers that sample rows.
 */
export function keyInPieces(
  plan: Plan,
  pieces: Pieces,
  key: RouteKey,
  directoryKeys: ReadonlySet<string>,
): boolean | undefined {
  const p = plan.partition;
  switch (pieces.kind) {
    case 'residues': {
      if (p.kind !== 'residue') return undefined;
      const r = residue(hashModValue(p.hash, key), p.modulus);
      return sortedHas(pieces.residues, r);
    }
    case 'arcs': {
      if (p.kind !== 'ring') return undefined;
      const h = xxh64Of(key, p.seed);
      return pieces.arcs.some(([lo, hi]) => lo <= h && h <= hi);
    }
    case 'intervals': {
      return pieces.intervals.some(
        (iv) =>
          (iv.from === null || compareKeyToBoundary(key, iv.from) >= 0) &&
          (iv.to === null || compareKeyToBoundary(key, iv.to) < 0),
      );
    }
    case 'keys': {
      const k = canonicalKeyString(key);
      if (k !== undefined && pieces.keys.includes(k)) return true;
      return pieces.rest && (k === undefined || !directoryKeys.has(k));
    }
    case 'cells':
      return undefined;
  }
}

function sortedHas(xs: readonly number[], x: number): boolean {
  let a = 0;
  let z = xs.length;
  while (a < z) {
    const m = (a + z) >>> 1;
    if (xs[m]! < x) a = m + 1;
    else z = m;
  }
  return a < xs.length && xs[a] === x;
}
