/**
 * The plan: the overlay of the current (`from`) and target (`to`) partitions of the key space.
 *
 * A *segment* is one non-empty cell of that overlay, aggregated per (from, to) shard pair:
 *
 *     segment(f, t) = { key : owner_from(key) = f  and  owner_to(key) = t }
 *
 * so every key lies in exactly one segment, and a segment either stays (f = t) or is one move.
 * `pieces` describe the same set in the finest terms both schemes share, which is what a copier
 * chunks and what SQL can select:
 *   residues   hash-mod → hash-mod with one hash: residues r of the hash modulo lcm(N, M);
 *   arcs       consistent-hash → consistent-hash with one seed: arcs between the union of both
 *              rings' points, as inclusive [lo, hi] ranges of the unsigned 64-bit key hash
 *              (moves only: a stay would list about one arc per vnode, so it is `cells`);
 *   intervals  range → range: [from, to) intervals cut at the union of both sides' boundaries;
 *   keys       directory → directory: the listed keys (canonical string form), and `rest` for
 *              keys listed in neither directory (default → default);
 *   cells      any other pair (a change of strategy or hash): only the conjunction itself.
 */
import type { HashModHash, RangeScheme, Scheme } from '../topology/types.js';

export type Side = 'from' | 'to';

export interface PlanSide {
  /** Topology file the side was loaded from (for messages only; not compared). */
  file: string;
  name: string;
  /** topologyHash() of the topology: later commands refuse the plan when it drifts. */
  topologyHash: string;
  scheme: Scheme['type'];
  /** Shard names, in topology order. */
  shards: string[];
}

export type Pieces =
  | { kind: 'residues'; residues: number[] }
  | { kind: 'arcs'; arcs: [bigint, bigint][] }
  | { kind: 'intervals'; intervals: { from: bigint | string | null; to: bigint | string | null }[] }
  | { kind: 'keys'; keys: string[]; rest: boolean }
  | { kind: 'cells' };

/** How the key space is cut into pieces; fixes how `pieces` and `share.units` are read. */
export type Partition =
  | {
      kind: 'residue';
      hash: HashModHash;
      /** lcm of both moduli: pieces are residues modulo this. */
      modulus: number;
      fromModulus: number;
      toModulus: number;
      /** Size of the measured space: 2^32 CRC values for crc32; `modulus` residue classes for identity. */
      space: bigint;
    }
  | { kind: 'ring'; seed: bigint; space: bigint }
  | { kind: 'interval'; keyType: RangeScheme['keyType'] }
  | { kind: 'directory'; space: bigint }
  | { kind: 'product'; basis: 'independent-hashes' | 'data-dependent' };

export interface Share {
  /** Part of the key space, in [0, 1]. */
  fraction: number;
  /** Exact numerator over `partition.space` (absent for estimates). */
  units?: bigint;
  /**
   * true: exact share of the hash space (or of the directory's keys). false: an estimate, made by
   * treating two different hashes as independent (a change of hash function or strategy).
   */
  exact: boolean;
}

export interface Segment {
  /** Position in `plan.segments`; stable for a given pair of topologies. */
  id: number;
  from: string;
  to: string;
  /** from ≠ to. */
  moves: boolean;
  /** null where the share depends on the data (range boundaries, a directory's default). */
  share: Share | null;
  pieces: Pieces;
}

export interface ShardShare {
  shard: string;
  /** Share of the key space on each side (null: data-dependent; 0: not in that topology). */
  from: number | null;
  to: number | null;
}

/**
 * Movement against the theoretical minimum. Given each shard's share before (s_i) and after
 * (t_i), any reshard reaching the target must move at least
 *
 *     minimum = Σ_i max(0, s_i − t_i)
 *
 * (the keys over-full shards must shed; achievable by moving exactly those). `ratio` =
 * fraction / minimum: 1 is optimal (consistent hashing when shards are only added or removed),
 * hash-mod N → M is typically far above it.
 */
export interface Movement {
  /** Share of the key space that changes shard. */
  fraction: number | null;
  minimum: number | null;
  /** fraction / minimum; 1 when both are 0; null when unknown or minimum is 0 but keys move. */
  ratio: number | null;
  exact: boolean;
  /** What the fractions measure. */
  basis: 'hash-space' | 'directory-keys' | 'estimate' | 'data-dependent';
  /** Number of segments that move, and of their pieces. */
  movingSegments: number;
  movingPieces: number;
}

export interface PlanGroup {
  name: string;
  tables: { name: string; shardKey: string }[];
}

export interface Plan {
  planVersion: 1;
  reshardVersion: string;
  from: PlanSide;
  to: PlanSide;
  groups: PlanGroup[];
  partition: Partition;
  /** Sorted by (from, to) shard name; ids are positions. Stays included. */
  segments: Segment[];
  shares: ShardShare[];
  movement: Movement;
  /** Plain-language remarks for the operator (data-dependent shares, estimates, skipped keys). */
  notes: string[];
}

export interface PlanOptions {
  /** Refuse hash-mod overlays whose lcm(N, M) exceeds this (default 2^24). */
  maxResidues?: number;
}
