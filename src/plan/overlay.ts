/**
 * Overlay builders: one per pair of scheme families the planner can cut finer than
 * "(old cell) ∧ (new cell)". Each returns the non-empty (from, to) cells with their pieces and
 * shares; planner.ts sorts them into segments. Pure functions of the two topologies.
 */
import { UsageError } from '../errors.js';
import type {
  ConsistentHashScheme,
  DirectoryScheme,
  HashModScheme,
  RangeScheme,
  Shard,
  Topology,
} from '../topology/types.js';
import { buildRing, type Ring } from './ring.js';
import { createRouter } from './router.js';
import type { Partition, Pieces, Share } from './types.js';

export interface Cell {
  from: string;
  to: string;
  share: Share | null;
  pieces: Pieces;
}

export interface Overlay {
  partition: Partition;
  cells: Cell[];
  notes: string[];
}

export const TWO32 = 4294967296;
export const TWO64 = 1n << 64n;

export function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

function ratio(units: bigint, space: bigint): number {
  return Number(units) / Number(space);
}

/** Groups cells by (from index, to index) in a number-keyed map. */
class CellMap<T> {
  private readonly map = new Map<number, T>();
  constructor(
    private readonly fromNames: readonly string[],
    private readonly toNames: readonly string[],
    private readonly init: () => T,
  ) {}
  at(f: number, t: number): T {
    const key = f * this.toNames.length + t;
    let v = this.map.get(key);
    if (v === undefined) {
      v = this.init();
      this.map.set(key, v);
    }
    return v;
  }
  entries(): { from: string; to: string; value: T }[] {
    const n = this.toNames.length;
    return [...this.map].map(([k, value]) => ({
      from: this.fromNames[Math.floor(k / n)]!,
      to: this.toNames[k % n]!,
      value,
    }));
  }
}

// ---------------------------------------------------------------------------------------------
// hash-mod → hash-mod, same hash: residues modulo L = lcm(N, M). Residue r is owned by
// fromSlots[r mod N] before and toSlots[r mod M] after (both moduli divide L).

export function residueOverlay(
  from: Topology,
  to: Topology,
  a: HashModScheme,
  b: HashModScheme,
  maxResidues: number,
): Overlay {
  const n = a.modulus;
  const m = b.modulus;
  const l = (n / gcd(n, m)) * m;
  if (l > maxResidues) {
    throw new UsageError(
      'E_PLAN_TOO_LARGE',
      `hash-mod ${n} → ${m} cuts the key space into lcm(${n}, ${m}) = ${l} residue classes, more than the ${maxResidues} a plan holds`,
      {
        where: `${from.file} → ${to.file}`,
        hint: 'choose a target modulus that shares a large factor with the current one (e.g. a multiple of it), or move to consistent-hash',
      },
    );
  }
  const fromIdx = new Map(from.shards.map((s, i) => [s.name, i]));
  const toIdx = new Map(to.shards.map((s, i) => [s.name, i]));
  const fromSlot = Int32Array.from(a.slots, (s) => fromIdx.get(s)!);
  const toSlot = Int32Array.from(b.slots, (s) => toIdx.get(s)!);
  const cells = new CellMap<{ residues: number[]; units: number }>(
    from.shards.map((s) => s.name),
    to.shards.map((s) => s.name),
    () => ({ residues: [], units: 0 }),
  );
  const crc = a.hash === 'crc32';
  // CRC values v in [0, 2^32) with v mod L = r: floor((2^32 − 1 − r) / L) + 1 of them.
  for (let r = 0; r < l; r++) {
    const c = cells.at(fromSlot[r % n]!, toSlot[r % m]!);
    c.residues.push(r);
    c.units += crc ? Math.floor((TWO32 - 1 - r) / l) + 1 : 1;
  }
  const space = crc ? BigInt(TWO32) : BigInt(l);
  const notes: string[] = [];
  if (!crc) {
    notes.push(
      'identity hash: shares are densities of residue classes, exact for uniformly spread integer keys',
    );
  }
  return {
    partition: { kind: 'residue', hash: a.hash, modulus: l, fromModulus: n, toModulus: m, space },
    cells: cells.entries().map(({ from: f, to: t, value }) => {
      const units = BigInt(value.units);
      return {
        from: f,
        to: t,
        share: { fraction: ratio(units, space), units, exact: true },
        pieces: { kind: 'residues', residues: value.residues },
      };
    }),
    notes,
  };
}

// ---------------------------------------------------------------------------------------------
// consistent-hash → consistent-hash, same seed: walk the union of both rings' points in order.
// A hash h in (u[k−1], u[k]] is owned, on each ring, by that ring's first point ≥ u[k] (no point of
// either ring lies strictly between), so each union arc has one owner per side. Hashes above the
// last union point wrap to point 0 on both rings, i.e. belong with the arc [0, u[0]].

function value(ring: Ring, i: number): bigint {
  return (BigInt(ring.hi[i]!) << 32n) | BigInt(ring.lo[i]!);
}

export function ringOverlay(
  from: Topology,
  to: Topology,
  a: ConsistentHashScheme,
  b: ConsistentHashScheme,
): Overlay {
  const ra = buildRing(from.shards, a);
  const rb = buildRing(to.shards, b);
  return ringOverlayOf(from.shards, to.shards, ra, rb, a.seed);
}

export function ringOverlayOf(
  fromShards: Shard[],
  toShards: Shard[],
  ra: Ring,
  rb: Ring,
  seed: bigint,
): Overlay {
  const nTo = toShards.length;
  // Per cell: units as exact doubles (hi-word and lo-word differences summed apart, flushed to
  // a bigint before they could pass 2^53), and the arcs of moving cells. A stay lists no arcs:
  // about one per vnode, derivable from the topologies, and never copied.
  const cellOf = new Map<number, number>();
  const pairs: number[] = [];
  const hiSum: number[] = [];
  const loSum: number[] = [];
  const big: bigint[] = [];
  const arcs: [bigint, bigint][][] = [];
  let i = 0;
  let j = 0;
  let runPair = -1;
  let runH = 0; // first hash of the current run, as halves
  let runL = 0;
  let lastH = 0;
  let lastL = 0;
  let firstPair = -1;
  const close = (endH: number, endL: number) => {
    let c = cellOf.get(runPair);
    if (c === undefined) {
      c = pairs.length;
      cellOf.set(runPair, c);
      pairs.push(runPair);
      hiSum.push(0);
      loSum.push(0);
      big.push(0n);
      arcs.push([]);
    }
    // length = end − start + 1, split by words so it stays exact
    hiSum[c]! += endH - runH;
    loSum[c]! += endL - runL + 1;
    if (hiSum[c]! > 2 ** 40 || hiSum[c]! < -(2 ** 40)) {
      big[c]! += (BigInt(hiSum[c]!) << 32n) + BigInt(loSum[c]!);
      hiSum[c] = 0;
      loSum[c] = 0;
    }
    const f = Math.floor(runPair / nTo);
    if (f !== runPair % nTo || fromShards[f]!.name !== toShards[runPair % nTo]!.name) {
      arcs[c]!.push([(BigInt(runH) << 32n) | BigInt(runL), (BigInt(endH) << 32n) | BigInt(endL)]);
    }
    // next run starts at end + 1
    if (endL === 0xffffffff) {
      runH = endH + 1;
      runL = 0;
    } else {
      runH = endH;
      runL = endL + 1;
    }
  };
  const ah = ra.hi;
  const al = ra.lo;
  const bh = rb.hi;
  const bl = rb.lo;
  while (i < ra.size || j < rb.size) {
    // u = min(ra[i], rb[j]); an exhausted ring counts as +∞.
    let takeA: boolean;
    if (i === ra.size) takeA = false;
    else if (j === rb.size) takeA = true;
    else takeA = ah[i]! < bh[j]! || (ah[i] === bh[j] && al[i]! <= bl[j]!);
    const uh = takeA ? ah[i]! : bh[j]!;
    const ul = takeA ? al[i]! : bl[j]!;
    const pair = ra.owner[i === ra.size ? 0 : i]! * nTo + rb.owner[j === rb.size ? 0 : j]!;
    if (firstPair < 0) firstPair = pair;
    if (pair !== runPair) {
      if (runPair >= 0) close(lastH, lastL);
      runPair = pair;
    }
    lastH = uh;
    lastL = ul;
    // Skip every point equal to u on both rings (ties were ordered by name when the rings were built).
    while (i < ra.size && ah[i] === uh && al[i] === ul) i++;
    while (j < rb.size && bh[j] === uh && bl[j] === ul) j++;
  }
  close(lastH, lastL);
  // The wrap-around arc (last union point, 2^64 − 1] goes with [0, u[0]]. Arcs stay sorted: it is the highest.
  if (runH <= 0xffffffff) {
    runPair = firstPair;
    close(0xffffffff, 0xffffffff);
  }
  return {
    partition: { kind: 'ring', seed, space: TWO64 },
    cells: pairs.map((pair, c) => {
      const units = big[c]! + (BigInt(hiSum[c]!) << 32n) + BigInt(loSum[c]!);
      const from = fromShards[Math.floor(pair / nTo)]!.name;
      const to = toShards[pair % nTo]!.name;
      return {
        from,
        to,
        share: { fraction: ratio(units, TWO64), units, exact: true },
        pieces: from === to ? { kind: 'cells' } : { kind: 'arcs', arcs: arcs[c]! },
      };
    }),
    notes: [
      'consistent hashing: staying segments list no arcs (one per vnode; derivable from the topologies)',
    ],
  };
}

/** Exact share of the 64-bit hash space owned by each shard (indexed like `shards`). */
export function ringShares(ring: Ring, shardCount: number): bigint[] {
  const units = Array.from({ length: shardCount }, () => 0n);
  let prev = -1n;
  for (let i = 0; i < ring.size; i++) {
    const v = value(ring, i);
    units[ring.owner[i]!]! += v - prev;
    prev = v;
  }
  units[ring.owner[0]!]! += TWO64 - 1n - prev;
  return units;
}

// ---------------------------------------------------------------------------------------------
// range → range: cut at the union of both sides' boundaries.

export function compareBoundary(a: bigint | string, b: bigint | string): number {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(String(a), 'utf8'), Buffer.from(String(b), 'utf8'));
}

function boundaryKind(s: RangeScheme): 'int' | 'string' | undefined {
  const b = s.ranges.flatMap((r) => [r.from, r.to]).find((x) => x !== null);
  return b === undefined ? undefined : typeof b === 'bigint' ? 'int' : 'string';
}

export function intervalOverlay(from: Topology, to: Topology, a: RangeScheme, b: RangeScheme): Overlay {
  const ka = boundaryKind(a);
  const kb = boundaryKind(b);
  if (ka !== undefined && kb !== undefined && ka !== kb) {
    throw new UsageError(
      'E_PLAN_KEY_TYPE',
      `${from.file} has ${ka === 'int' ? 'integer' : 'string'} range boundaries but ${to.file} has ${kb === 'int' ? 'integer' : 'string'} ones`,
      {
        where: `${to.file}: scheme.ranges`,
        hint: 'both topologies route the same shard key: use boundaries of its type on both sides',
      },
    );
  }
  const keyType = ka ?? kb ?? 'int';
  const bounds: (bigint | string)[] = [];
  for (const r of [...a.ranges, ...b.ranges]) if (r.from !== null) bounds.push(r.from);
  bounds.sort(compareBoundary);
  const cuts = bounds.filter((x, k) => k === 0 || compareBoundary(bounds[k - 1]!, x) !== 0);
  const ra = createRouter(from);
  const rb = createRouter(to);
  const cells = new CellMap<{ from: bigint | string | null; to: bigint | string | null }[]>(
    ra.shards,
    rb.shards,
    () => [],
  );
  // Elementary interval k is [cuts[k−1], cuts[k]) with cuts[−1] = −∞, cuts[len] = +∞.
  let runPair = -1;
  let runFrom: bigint | string | null = null;
  const nTo = rb.shards.length;
  const ownerA0 = ra.shards.indexOf(a.ranges[0]!.shard);
  const ownerB0 = rb.shards.indexOf(b.ranges[0]!.shard);
  for (let k = 0; k <= cuts.length; k++) {
    const start = k === 0 ? null : cuts[k - 1]!;
    const pair =
      start === null ? ownerA0 * nTo + ownerB0 : ra.ownerIndexOf(start) * nTo + rb.ownerIndexOf(start);
    if (pair !== runPair) {
      if (runPair >= 0) cells.at(Math.floor(runPair / nTo), runPair % nTo).push({ from: runFrom, to: start });
      runPair = pair;
      runFrom = start;
    }
  }
  cells.at(Math.floor(runPair / nTo), runPair % nTo).push({ from: runFrom, to: null });
  return {
    partition: { kind: 'interval', keyType },
    cells: cells.entries().map(({ from: f, to: t, value }) => ({
      from: f,
      to: t,
      share: null,
      pieces: { kind: 'intervals', intervals: value },
    })),
    notes: [
      'range schemes: how many rows each interval holds depends on the data, so shares are not known before copying',
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// directory → directory: per key, plus the rest (keys listed in neither directory).

export function directoryOverlay(
  from: Topology,
  to: Topology,
  a: DirectoryScheme,
  b: DirectoryScheme,
): Overlay {
  const ea = a.entries ?? new Map<string, string>();
  const eb = b.entries ?? new Map<string, string>();
  const keys = [...new Set([...ea.keys(), ...eb.keys()])].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  const cells = new Map<string, { from: string; to: string; keys: string[]; rest: boolean }>();
  const cell = (f: string, t: string) => {
    const k = `${f}\u0000${t}`;
    let c = cells.get(k);
    if (!c) {
      c = { from: f, to: t, keys: [], rest: false };
      cells.set(k, c);
    }
    return c;
  };
  let unreachable = 0;
  let counted = 0;
  for (const k of keys) {
    const f = ea.get(k) ?? a.default;
    const t = eb.get(k) ?? b.default;
    if (f === undefined) {
      // Under the current topology this key routes nowhere (E_DIRECTORY_MISS): no row can hold it.
      unreachable++;
      continue;
    }
    if (t === undefined) throw unroutable(from, to, `key ${JSON.stringify(k)} (on '${f}')`);
    cell(f, t).keys.push(k);
    counted++;
  }
  const notes = [
    'directory schemes: shares count directory keys, not rows; keys in neither directory follow the defaults and are not counted',
  ];
  if (unreachable > 0) {
    notes.push(
      `${unreachable} key(s) listed only in ${to.file} have no owner in ${from.file} (no default there), so no row can hold them yet; they are in no segment`,
    );
  }
  if (a.default !== undefined) {
    if (b.default === undefined)
      throw unroutable(from, to, `keys not listed in either directory (on default '${a.default}')`);
    cell(a.default, b.default).rest = true;
  }
  const space = BigInt(counted);
  return {
    partition: { kind: 'directory', space },
    cells: [...cells.values()].map((c) => {
      const units = BigInt(c.keys.length);
      return {
        from: c.from,
        to: c.to,
        share: { fraction: counted === 0 ? 0 : c.keys.length / counted, units, exact: true },
        pieces: { kind: 'keys', keys: c.keys, rest: c.rest },
      };
    }),
    notes,
  };
}

function unroutable(from: Topology, to: Topology, what: string): UsageError {
  return new UsageError(
    'E_PLAN_UNROUTABLE',
    `${what} would have no owner under ${to.file}: it is not in its directory and it has no default`,
    {
      where: `${to.file}: scheme`,
      hint: `add the keys to the target directory, or set scheme.default in ${to.file}`,
      data: { from: from.file, to: to.file },
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Anything else: the cells are (old owner) × (new owner). Shares are estimates when both sides
// hash (the two hashes are treated as independent) and unknown otherwise.

/** Each shard's share of one side's key space, or null when it depends on the data. */
export function sideShares(t: Topology): { share: Map<string, Share | null>; hashed: boolean } {
  const share = new Map<string, Share | null>();
  const s = t.scheme;
  switch (s.type) {
    case 'hash-mod': {
      // identity: density of residues; crc32: exact count of CRC values per residue.
      const units = new Map<string, number>();
      for (let r = 0; r < s.modulus; r++) {
        const u = s.hash === 'crc32' ? Math.floor((TWO32 - 1 - r) / s.modulus) + 1 : 1;
        units.set(s.slots[r]!, (units.get(s.slots[r]!) ?? 0) + u);
      }
      const space = s.hash === 'crc32' ? TWO32 : s.modulus;
      for (const [name, u] of units) share.set(name, { fraction: u / space, units: BigInt(u), exact: true });
      return { share, hashed: true };
    }
    case 'consistent-hash': {
      const ring = buildRing(t.shards, s);
      ringShares(ring, t.shards.length).forEach((u, i) => {
        if (u > 0n) share.set(t.shards[i]!.name, { fraction: ratio(u, TWO64), units: u, exact: true });
      });
      return { share, hashed: true };
    }
    case 'range':
      for (const r of s.ranges) share.set(r.shard, null);
      return { share, hashed: false };
    case 'directory':
      for (const name of s.entries?.values() ?? []) share.set(name, null);
      if (s.default !== undefined) share.set(s.default, null);
      return { share, hashed: false };
  }
}

export function productOverlay(from: Topology, to: Topology): Overlay {
  // Only another directory can say which keys exist: from any other scheme, a key missing from
  // a target directory without a default would have no owner, found only mid-copy.
  if (to.scheme.type === 'directory' && to.scheme.default === undefined)
    throw unroutable(
      from,
      to,
      `a key that is not listed in the target directory (any key under ${from.scheme.type})`,
    );
  const a = sideShares(from);
  const b = sideShares(to);
  const hashed = a.hashed && b.hashed;
  const cells: Cell[] = [];
  for (const [f, sf] of a.share) {
    for (const [t, st] of b.share) {
      const share = hashed && sf && st ? { fraction: sf.fraction * st.fraction, exact: false } : null;
      cells.push({ from: f, to: t, share, pieces: { kind: 'cells' } });
    }
  }
  const notes = [
    `${from.scheme.type}${hashNote(from)} → ${to.scheme.type}${hashNote(to)}: the schemes share no finer partition, so a segment is (current owner) ∧ (target owner)`,
    hashed
      ? 'shares are estimates: the two hashes are treated as independent, so each pair gets (current share) × (target share)'
      : 'shares depend on the data (a range or directory side): every (current, target) pair is listed, some may hold no rows',
  ];
  return {
    partition: { kind: 'product', basis: hashed ? 'independent-hashes' : 'data-dependent' },
    cells,
    notes,
  };
}

function hashNote(t: Topology): string {
  const s = t.scheme;
  if (s.type === 'hash-mod') return ` (${s.hash} mod ${s.modulus})`;
  if (s.type === 'consistent-hash') return ` (xxhash64, seed ${s.seed}, ${s.vnodes} vnodes)`;
  return '';
}
