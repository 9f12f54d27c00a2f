/**
 * The planner: (current topology, target topology, options) → plan. Pure: no I/O, no clock, no
 * randomness, so the same inputs always give the same plan and the same content hash.
 *
 * Steps: check that the two topologies describe the same data (tables, shard keys, groups) and
 * that shard names and endpoints agree; overlay the two partitions of the key space (overlay.ts)
 * into segments; sum each shard's share before and after; measure movement against the minimum.
 */
import { UsageError } from '../errors.js';
import { topologyHash } from '../topology/load.js';
import { endpointIdentity } from '../topology/schema.js';
import type { Shard, Topology } from '../topology/types.js';
import { VERSION } from '../version.js';
import {
  type Cell,
  directoryOverlay,
  intervalOverlay,
  type Overlay,
  productOverlay,
  residueOverlay,
  ringOverlay,
} from './overlay.js';
import type { Movement, Plan, PlanOptions, PlanSide, Segment, ShardShare } from './types.js';

export const PLAN_VERSION = 1;
const DEFAULT_MAX_RESIDUES = 1 << 24;

export function plan(from: Topology, to: Topology, opts: PlanOptions = {}): Plan {
  checkCompatible(from, to);
  const overlay = overlayOf(from, to, opts.maxResidues ?? DEFAULT_MAX_RESIDUES);
  const segments = toSegments(overlay.cells);
  const shares = shardShares(from, to, segments);
  return {
    planVersion: PLAN_VERSION,
    reshardVersion: VERSION,
    from: side(from),
    to: side(to),
    groups: from.groups.map((g) => ({
      name: g.name,
      tables: g.tables.map((t) => ({ name: t.name, shardKey: t.shardKey })),
    })),
    partition: overlay.partition,
    segments,
    shares,
    movement: movement(overlay, segments, shares),
    notes: overlay.notes,
  };
}

function side(t: Topology): PlanSide {
  return {
    file: t.file,
    name: t.name,
    topologyHash: topologyHash(t),
    scheme: t.scheme.type,
    shards: t.shards.map((s) => s.name),
  };
}

function overlayOf(from: Topology, to: Topology, maxResidues: number): Overlay {
  const a = from.scheme;
  const b = to.scheme;
  if (a.type === 'hash-mod' && b.type === 'hash-mod' && a.hash === b.hash)
    return residueOverlay(from, to, a, b, maxResidues);
  if (a.type === 'consistent-hash' && b.type === 'consistent-hash' && a.seed === b.seed)
    return ringOverlay(from, to, a, b);
  if (a.type === 'range' && b.type === 'range') return intervalOverlay(from, to, a, b);
  if (a.type === 'directory' && b.type === 'directory') return directoryOverlay(from, to, a, b);
  return productOverlay(from, to);
}

function byName(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

function toSegments(cells: Cell[]): Segment[] {
  // Sort by (from, to) name through integer ranks: string comparisons dominate at 10^5+ cells.
  const set = new Set<string>();
  for (const c of cells) set.add(c.from).add(c.to);
  const names = [...set].sort(byName);
  const rank = new Map(names.map((n, i) => [n, i]));
  const n = names.length;
  const keyed = cells.map((c) => ({ c, k: rank.get(c.from)! * n + rank.get(c.to)! }));
  keyed.sort((x, y) => x.k - y.k);
  return keyed.map(({ c }, id) => ({
    id,
    from: c.from,
    to: c.to,
    moves: c.from !== c.to,
    share: c.share,
    pieces: c.pieces,
  }));
}

/** Sum a share per shard on each side; null as soon as one contributing share is unknown. */
function shardShares(from: Topology, to: Topology, segments: Segment[]): ShardShare[] {
  const names = [...new Set([...from.shards.map((s) => s.name), ...to.shards.map((s) => s.name)])].sort(
    byName,
  );
  const acc = new Map(names.map((n) => [n, { from: 0 as number | null, to: 0 as number | null }]));
  for (const s of segments) {
    const f = acc.get(s.from)!;
    const t = acc.get(s.to)!;
    const x = s.share?.fraction ?? null;
    f.from = f.from === null || x === null ? null : f.from + x;
    t.to = t.to === null || x === null ? null : t.to + x;
  }
  return names.map((shard) => ({ shard, ...acc.get(shard)! }));
}

function movement(overlay: Overlay, segments: Segment[], shares: ShardShare[]): Movement {
  const moving = segments.filter((s) => s.moves);
  const movingPieces = moving.reduce((n, s) => n + pieceCount(s), 0);
  const p = overlay.partition;
  const basis: Movement['basis'] =
    p.kind === 'residue' || p.kind === 'ring'
      ? 'hash-space'
      : p.kind === 'directory'
        ? 'directory-keys'
        : p.kind === 'product' && p.basis === 'independent-hashes'
          ? 'estimate'
          : 'data-dependent';
  if (basis === 'data-dependent') {
    return {
      fraction: null,
      minimum: null,
      ratio: null,
      exact: false,
      basis,
      movingSegments: moving.length,
      movingPieces,
    };
  }
  const exact = basis !== 'estimate';
  // Exact shares carry units over one space: sum those, then divide once (no float drift).
  const space = p.kind === 'residue' || p.kind === 'ring' || p.kind === 'directory' ? p.space : undefined;
  let fraction: number;
  if (space !== undefined) {
    // moved = all − stayed: at most one stay per shard, where moves can number in the 10^5.
    const stayed = segments.reduce((n, s) => (s.moves ? n : n + (s.share?.units ?? 0n)), 0n);
    fraction = space === 0n ? 0 : Number(space - stayed) / Number(space);
  } else {
    fraction = moving.reduce((n, s) => n + (s.share?.fraction ?? 0), 0);
  }
  const minimum = shares.reduce((n, s) => n + Math.max(0, (s.from ?? 0) - (s.to ?? 0)), 0);
  // Shares are sums of doubles: treat differences below 1e-12 as zero.
  const eps = 1e-12;
  const ratio = minimum <= eps ? (fraction <= eps ? 1 : null) : fraction / minimum;
  return {
    fraction,
    minimum: minimum <= eps ? 0 : minimum,
    ratio,
    exact,
    basis,
    movingSegments: moving.length,
    movingPieces,
  };
}

function pieceCount(s: Segment): number {
  const p = s.pieces;
  switch (p.kind) {
    case 'residues':
      return p.residues.length;
    case 'arcs':
      return p.arcs.length;
    case 'intervals':
      return p.intervals.length;
    case 'keys':
      return p.keys.length + (p.rest ? 1 : 0);
    case 'cells':
      return 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Compatibility

function differ(from: Topology, to: Topology, what: string, hint: string, where: string): UsageError {
  return new UsageError('E_PLAN_TABLES_DIFFER', `${what} (${from.file} vs ${to.file})`, {
    where,
    hint,
    data: { from: from.file, to: to.file },
  });
}

/** The server and database a shard is (host names without case: see endpointIdentity). */
function endpointKey(s: Shard): string {
  return endpointIdentity(s.endpoint);
}

/**
 * Both topologies must describe the same data: the same tables, each with the same shard key, in
 * the same groups; and a shard name must mean the same database on both sides (else "stays on s1"
 * would silently mean "moves to another server"), and one database must not carry two names (else
 * a move would copy rows onto themselves).
 */
export function checkCompatible(from: Topology, to: Topology): void {
  for (const t of [from, to]) {
    if (t.shards.length === 0) {
      throw new UsageError('E_TOPOLOGY_NO_SHARDS', `${t.file} defines no shards`, {
        where: `${t.file}: shards`,
        hint: 'list at least one shard',
      });
    }
  }
  const fromTables = new Map(from.tables.map((t) => [t.name, t]));
  const toTables = new Map(to.tables.map((t) => [t.name, t]));
  for (const t of from.tables) {
    const o = toTables.get(t.name);
    if (!o) {
      throw differ(
        from,
        to,
        `table '${t.name}' is in the current topology but not in the target`,
        `add { name: ${t.name}, shardKey: ${t.shardKey} } to tables in ${to.file}; a reshard moves every sharded table`,
        `${to.file}: tables`,
      );
    }
    if (o.shardKey !== t.shardKey) {
      throw differ(
        from,
        to,
        `table '${t.name}' has shardKey '${t.shardKey}' in the current topology but '${o.shardKey}' in the target`,
        `set shardKey: ${t.shardKey} for '${t.name}' in ${to.file}; changing a shard key is a separate migration, not a reshard`,
        `${to.file}: tables`,
      );
    }
  }
  for (const t of to.tables) {
    if (!fromTables.has(t.name)) {
      throw differ(
        from,
        to,
        `table '${t.name}' is in the target topology but not in the current one`,
        `add { name: ${t.name}, shardKey: ${t.shardKey} } to tables in ${from.file}, or remove it from ${to.file}`,
        `${from.file}: tables`,
      );
    }
  }
  const groupsOf = (t: Topology) =>
    new Map(
      t.groups.map((g) => [
        g.name,
        g.tables
          .map((x) => x.name)
          .sort(byName)
          .join(', '),
      ]),
    );
  const ga = groupsOf(from);
  const gb = groupsOf(to);
  for (const [name, members] of ga) {
    const o = gb.get(name);
    if (o !== members) {
      throw differ(
        from,
        to,
        o === undefined
          ? `group '${name}' (${members}) is in the current topology but not in the target`
          : `group '${name}' holds ${members} in the current topology but ${o} in the target`,
        `make groups identical in both files: tables of a group move together, so the grouping cannot change during a reshard`,
        `${to.file}: groups`,
      );
    }
  }
  for (const [name, members] of gb) {
    if (!ga.has(name)) {
      throw differ(
        from,
        to,
        `group '${name}' (${members}) is in the target topology but not in the current one`,
        'make groups identical in both files',
        `${from.file}: groups`,
      );
    }
  }
  const byShardName = new Map(from.shards.map((s) => [s.name, s]));
  const byEndpoint = new Map(from.shards.map((s) => [endpointKey(s), s]));
  for (const s of to.shards) {
    const same = byShardName.get(s.name);
    if (same && endpointKey(same) !== endpointKey(s)) {
      throw new UsageError(
        'E_PLAN_SHARD_MOVED',
        `shard '${s.name}' is ${endpointKey(same)} in ${from.file} but ${endpointKey(s)} in ${to.file}`,
        {
          where: `${to.file}: shards`,
          hint: `give the new database a new shard name in ${to.file} (a shard name must mean the same database on both sides), or keep its endpoint`,
        },
      );
    }
    const alias = byEndpoint.get(endpointKey(s));
    if (alias && alias.name !== s.name) {
      throw new UsageError(
        'E_PLAN_SHARD_ALIAS',
        `${endpointKey(s)} is shard '${alias.name}' in ${from.file} but '${s.name}' in ${to.file}`,
        {
          where: `${to.file}: shards`,
          hint: `call it '${alias.name}' in ${to.file} too: one database must keep one name, or rows would be copied onto themselves`,
        },
      );
    }
  }
}
