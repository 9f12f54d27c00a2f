/**
 * Suggestions: given the current topology and a shard count M, compare hash-mod with consistent
 * hashing for M shards — the share of the key space each moves, how even the result is — and
 * recommend a vnode count. Pure: no I/O, no clock, no randomness; rings are deterministic in
 * their seed, so the same inputs always give the same answer.
 *
 * Target shards: the existing shards keep their names (and weights); new ones continue the
 * naming (s0..s3 → s4, s5; db01 → db02), or, when shrinking, the highest-numbered are removed.
 *
 * Measures, all over the hash space (not rows; `reshard plan` estimates rows):
 *   movement  share of keys whose owner changes. Exact where both sides share a partition:
 *             hash-mod → hash-mod with one hash (residues, counted by the Chinese remainder
 *             theorem, so no lcm-sized loop), and ring → ring with one seed (a merge walk of both
 *             rings). Across a change of hash it is an estimate, 1 − Σ s_from(x)·s_to(x), treating
 *             the hashes as independent; from a range or directory it depends on the data (null).
 *   minimum   Σ max(0, s_from − s_to): what any scheme reaching these target shares must move.
 *   balance   max over target shards of share / (weight / Σ weights): max/mean for equal weights.
 *
 * Vnodes: the smallest of VNODE_CANDIDATES whose ring gives max/mean ≤ 1.05, computed exactly
 * from the ring's shares (the same points `buildRing` makes). A ring for V vnodes contains the
 * ring for V/2 (point labels `name#i` for i < vnodes), so the ring grows by merging in only the
 * new points: trying 64…8192 costs about as much as building the 8192 ring once.
 */
import { UsageError } from '../errors.js';
import type { ConsistentHashScheme, HashModScheme, Shard, Topology } from '../topology/types.js';
import { hashHi, hashLo, splitSeed, xxh64HalvesOfBytes } from './hash.js';
import { gcd, sideShares, TWO64 } from './overlay.js';
import { buildRing, radixSort, vnodeCount, writeDecimal } from './ring.js';

export const VNODE_CANDIDATES: readonly number[] = [
  64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];
/** Balance goal of the vnode recommendation: max/mean share at most this. */
export const BALANCE_TARGET = 1.05;
/** Rings beyond this many points are not built (about 32 bytes a point while growing). */
export const MAX_RING_POINTS = 1 << 24;

export interface Balance {
  /** max over shards of share ÷ (weight ÷ Σ weights): max/mean share for equal weights. */
  maxOverMean: number;
  maxShard: string;
  /** Largest and smallest share of the key space. */
  max: number;
  min: number;
}

export interface SuggestCandidate {
  /** Stable id: `hash-mod`, or `consistent-hash@<vnodes>`. */
  id: string;
  scheme: 'hash-mod' | 'consistent-hash';
  hash: 'identity' | 'crc32' | 'xxhash64';
  modulus: number | null;
  vnodes: number | null;
  seed: bigint | null;
  /** Share of the key space that changes shard; null when it depends on the data. */
  movement: number | null;
  /** false: estimated by treating two different hashes as independent. */
  movementExact: boolean;
  minimum: number | null;
  /** movement ÷ minimum (1 = optimal). */
  ratio: number | null;
  balance: Balance;
  meetsBalance: boolean;
  /** The `scheme:` block for the target topology file. */
  yaml: string;
  notes: string[];
}

export interface VnodeTrial {
  vnodes: number;
  maxOverMean: number;
}

export interface Suggestion {
  from: { file: string; name: string; scheme: string; shards: number };
  shards: number;
  targetShards: string[];
  added: string[];
  removed: string[];
  balanceTarget: number;
  vnodes: {
    /** Smallest candidate meeting the balance target; null when none within MAX_RING_POINTS. */
    recommended: number | null;
    tried: VnodeTrial[];
  };
  candidates: SuggestCandidate[];
  /** id of the recommended candidate. */
  recommended: string | null;
  reason: string;
  notes: string[];
}

export function suggest(from: Topology, shards: number): Suggestion {
  if (!Number.isInteger(shards) || shards < 1) {
    throw new UsageError('E_USAGE', `--shards must be a whole number of at least 1, got ${shards}`, {
      hint: 'e.g. --shards 6',
    });
  }
  const { names, added, removed } = targetShardNames(
    from.shards.map((s) => s.name),
    shards,
  );
  const targetShards = shardsFor(from, names);
  const fromShares = sideShareMap(from);
  const notes: string[] = [];
  if (added.length > 0)
    notes.push(
      `new shards ${listNames(added)} are hypothetical here (weight 1); add them to the target file`,
    );
  if (removed.length > 0) notes.push(`shrinking removes ${listNames(removed)}`);
  if (fromShares === null)
    notes.push(
      `the current ${from.scheme.type} scheme's shares depend on the data: movement from it is not known before counting rows (run \`reshard plan\` with a target file)`,
    );

  const candidates: SuggestCandidate[] = [hashModCandidate(from, names, targetShards, fromShares)];

  const seed = from.scheme.type === 'consistent-hash' ? from.scheme.seed : 0n;
  const ring = new GrowingRing(targetShards, seed);
  const tried: VnodeTrial[] = [];
  let recommendedVnodes: number | null = null;
  const totalWeight = targetShards.reduce((n, s) => n + s.weight, 0);
  for (const v of VNODE_CANDIDATES) {
    const points = targetShards.reduce((n, s) => n + vnodeCount(s, v), 0);
    if (points > MAX_RING_POINTS) {
      notes.push(
        `vnode counts above ${tried.at(-1)?.vnodes ?? v / 2} were not tried: ${shards} shards × ${v} vnodes is ${points} ring points, more than ${MAX_RING_POINTS}`,
      );
      break;
    }
    ring.grow(v);
    const b = balanceOf(
      targetShards,
      ring.shares().map((u) => Number(u) / Number(TWO64)),
      totalWeight,
    );
    tried.push({ vnodes: v, maxOverMean: b.maxOverMean });
    if (b.maxOverMean <= BALANCE_TARGET) {
      recommendedVnodes = v;
      break;
    }
  }
  const current = from.scheme.type === 'consistent-hash' ? from.scheme : undefined;
  if (current) {
    candidates.push(ringCandidate(from, targetShards, current.vnodes, seed, fromShares, undefined));
  }
  const lastTried = tried.at(-1)?.vnodes;
  if (lastTried !== undefined && lastTried !== current?.vnodes) {
    candidates.push(ringCandidate(from, targetShards, lastTried, seed, fromShares, ring));
  }
  if (recommendedVnodes === null) {
    notes.push(
      `no vnode count tried gives max/mean ≤ ${BALANCE_TARGET}; ${lastTried ?? '-'} vnodes come closest. Weights (shard weight:) can even out a few large shards instead`,
    );
  }
  const { recommended, reason } = recommend(candidates);
  return {
    from: { file: from.file, name: from.name, scheme: from.scheme.type, shards: from.shards.length },
    shards,
    targetShards: names,
    added,
    removed,
    balanceTarget: BALANCE_TARGET,
    vnodes: { recommended: recommendedVnodes, tried },
    candidates,
    recommended,
    reason,
    notes,
  };
}

function listNames(names: string[]): string {
  return names.length <= 6
    ? names.join(', ')
    : `${names.slice(0, 3).join(', ')}, … ${names.at(-1)} (${names.length})`;
}

// ---------------------------------------------------------------------------------------------
// Target shard names

const NUMBERED = /^(.*?)(\d+)$/;

/**
 * The target's shard names: the current ones (in topology order), then new names continuing
 * their numbering; or, to shrink, the current ones minus the highest-numbered (else the last).
 */
export function targetShardNames(
  current: readonly string[],
  m: number,
): { names: string[]; added: string[]; removed: string[] } {
  const parsed = current.map((n) => NUMBERED.exec(n));
  const prefix = parsed[0]?.[1];
  const numbered =
    current.length > 0 && parsed.every((p) => p !== null && p[1] === prefix)
      ? (parsed as RegExpExecArray[])
      : null;
  if (m <= current.length) {
    const order = current.map((name, i) => ({ name, i, n: numbered ? Number(numbered[i]![2]) : i }));
    order.sort((a, b) => b.n - a.n || b.i - a.i);
    const removed = new Set(order.slice(0, current.length - m).map((x) => x.name));
    return {
      names: current.filter((n) => !removed.has(n)),
      added: [],
      removed: current.filter((n) => removed.has(n)),
    };
  }
  const taken = new Set(current);
  const added: string[] = [];
  let base: string;
  let next: number;
  let width = 1;
  if (numbered) {
    base = prefix ?? '';
    const digits = numbered.map((p) => p[2]!);
    next = Math.max(...digits.map(Number)) + 1;
    const len = digits[0]!.length;
    if (digits.every((d) => d.length === len) && digits.some((d) => d.length > 1 && d.startsWith('0')))
      width = len;
  } else {
    base = 'shard';
    next = current.length;
  }
  while (added.length < m - current.length) {
    const name = `${base}${String(next).padStart(width, '0')}`;
    next++;
    if (taken.has(name)) continue;
    taken.add(name);
    added.push(name);
  }
  return { names: [...current, ...added], added, removed: [] };
}

function shardsFor(from: Topology, names: string[]): Shard[] {
  const byName = new Map(from.shards.map((s) => [s.name, s]));
  const ep = from.shards[0]?.endpoint;
  return names.map(
    (name) =>
      byName.get(name) ?? {
        name,
        // Never dialled: suggestions are computed, not executed.
        endpoint: {
          host: `${name}.new.invalid`,
          port: 3306,
          database: ep?.database ?? 'app',
          user: ep?.user ?? 'root',
        },
        weight: 1,
      },
  );
}

// ---------------------------------------------------------------------------------------------
// Shares, balance, movement

/** Each shard's share of the hash space on one side; null when it depends on the data. */
function sideShareMap(t: Topology): Map<string, number> | null {
  const { share, hashed } = sideShares(t);
  if (!hashed) return null;
  const out = new Map<string, number>();
  for (const [name, s] of share) out.set(name, s?.fraction ?? 0);
  return out;
}

export function balanceOf(
  shards: readonly Shard[],
  shares: readonly number[],
  totalWeight?: number,
): Balance {
  const tw = totalWeight ?? shards.reduce((n, s) => n + s.weight, 0);
  let maxOverMean = 0;
  let maxShard = '';
  let max = 0;
  let min = Number.POSITIVE_INFINITY;
  shards.forEach((s, i) => {
    const x = shares[i] ?? 0;
    const r = x / (s.weight / tw);
    if (r > maxOverMean) {
      maxOverMean = r;
      maxShard = s.name;
    }
    max = Math.max(max, x);
    min = Math.min(min, x);
  });
  return { maxOverMean, maxShard, max, min: shards.length === 0 ? 0 : min };
}

/** Σ max(0, s_from − s_to) over every shard name. */
function minimumOf(a: Map<string, number>, b: Map<string, number>): number {
  let m = 0;
  for (const [name, x] of a) m += Math.max(0, x - (b.get(name) ?? 0));
  return m <= 1e-12 ? 0 : m;
}

/** Movement across two independent hashes: a key stays only if both put it on the same name. */
function independentMovement(a: Map<string, number>, b: Map<string, number>): number {
  let stay = 0;
  for (const [name, x] of a) stay += x * (b.get(name) ?? 0);
  return 1 - stay;
}

function ratioOf(movement: number | null, minimum: number | null): number | null {
  if (movement === null || minimum === null) return null;
  if (minimum <= 1e-12) return movement <= 1e-12 ? 1 : null;
  return movement / minimum;
}

// ---------------------------------------------------------------------------------------------
// hash-mod

function hashModCandidate(
  from: Topology,
  names: string[],
  shards: Shard[],
  fromShares: Map<string, number> | null,
): SuggestCandidate {
  const hash = from.scheme.type === 'hash-mod' ? from.scheme.hash : 'crc32';
  const scheme: HashModScheme = { type: 'hash-mod', hash, modulus: names.length, slots: names };
  const to: Topology = { ...from, shards, scheme };
  const toShares = sideShareMap(to)!;
  const notes: string[] = [];
  let movement: number | null = null;
  let movementExact = true;
  if (from.scheme.type === 'hash-mod') {
    movement = residueMovement(from.scheme, scheme);
  } else if (fromShares) {
    movement = independentMovement(fromShares, toShares);
    movementExact = false;
    notes.push(
      `a change of hash: movement is estimated treating ${from.scheme.type} and ${hash} as independent`,
    );
  }
  if (hash === 'identity')
    notes.push('identity hash: shares are of residue classes; even only for evenly spread integer keys');
  const minimum = fromShares ? minimumOf(fromShares, toShares) : null;
  const balance = balanceOf(
    shards.map((s) => ({ ...s, weight: 1 })),
    names.map((n) => toShares.get(n) ?? 0),
  );
  return {
    id: 'hash-mod',
    scheme: 'hash-mod',
    hash,
    modulus: names.length,
    vnodes: null,
    seed: null,
    movement,
    movementExact,
    minimum,
    ratio: ratioOf(movement, minimum),
    balance,
    meetsBalance: balance.maxOverMean <= BALANCE_TARGET,
    yaml: `scheme: { type: hash-mod, hash: ${hash} }`,
    notes,
  };
}

/** Units of the hash space in residue class r mod l: CRC values v < 2^32 with v ≡ r, or 1 (identity). */
function residueUnits(hash: HashModScheme['hash'], r: bigint, l: bigint): bigint {
  if (hash === 'identity') return 1n;
  const two32 = 1n << 32n;
  return r < two32 ? (two32 - 1n - r) / l + 1n : 0n;
}

function modInverse(a: bigint, m: bigint): bigint {
  // Extended Euclid; a and m are coprime.
  let [r0, r1] = [a % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % m) + m) % m;
}

/**
 * Exact share of keys whose owner changes from `a` to `b` (same hash). Residue r mod lcm(K, M)
 * keeps its owner iff slotsA[r mod K] = slotsB[r mod M]; for each such slot pair (i, j) there is
 * exactly one r (Chinese remainder theorem) when i ≡ j mod gcd(K, M), and none otherwise. So the
 * count runs over slot pairs, never over the lcm (which is 10^6 for 1000 → 1001).
 */
export function residueMovement(a: HashModScheme, b: HashModScheme): number {
  const k = BigInt(a.modulus);
  const m = BigInt(b.modulus);
  const g = BigInt(gcd(a.modulus, b.modulus));
  const l = (k / g) * m;
  const kg = k / g;
  const mg = m / g;
  const inv = mg === 1n ? 0n : modInverse(kg % mg, mg);
  const positionsB = new Map<string, number[]>();
  b.slots.forEach((n, j) => {
    const list = positionsB.get(n) ?? [];
    list.push(j);
    positionsB.set(n, list);
  });
  let kept = 0n;
  a.slots.forEach((name, i) => {
    for (const j of positionsB.get(name) ?? []) {
      const d = BigInt(j - i);
      if (d % g !== 0n) continue;
      // r = i + K·t with K·t ≡ j − i (mod M) ⟺ (K/g)·t ≡ (j − i)/g (mod M/g)
      const t = mg === 1n ? 0n : (((((d / g) % mg) + mg) % mg) * inv) % mg;
      kept += residueUnits(a.hash, BigInt(i) + k * t, l);
    }
  });
  const space = a.hash === 'crc32' ? 1n << 32n : l;
  return Number(space - kept) / Number(space);
}

// ---------------------------------------------------------------------------------------------
// consistent hash

function ringCandidate(
  from: Topology,
  shards: Shard[],
  vnodes: number,
  seed: bigint,
  fromShares: Map<string, number> | null,
  grown: GrowingRing | undefined,
): SuggestCandidate {
  const scheme: ConsistentHashScheme = { type: 'consistent-hash', hash: 'xxhash64', vnodes, seed };
  const ring = grown ?? ringOf(shards, scheme);
  const units = grown ? grown.shares() : ring.shares();
  const toShares = new Map(shards.map((s, i) => [s.name, Number(units[i]!) / Number(TWO64)]));
  const notes: string[] = [];
  let movement: number | null = null;
  let movementExact = true;
  if (from.scheme.type === 'consistent-hash' && from.scheme.seed === seed) {
    const a = ringOf(from.shards, from.scheme);
    const toIndex = new Map(shards.map((s, i) => [s.name, i]));
    const sameName = Int32Array.from(from.shards, (s) => toIndex.get(s.name) ?? -1);
    movement = ringMovement(a, ring, sameName);
    if (vnodes !== from.scheme.vnodes)
      notes.push(
        `changing vnodes from ${from.scheme.vnodes} to ${vnodes} moves existing shards' points too, so more than the shards added`,
      );
  } else if (fromShares) {
    movement = independentMovement(fromShares, toShares);
    movementExact = false;
    notes.push(
      `a change of hash: movement is estimated treating ${from.scheme.type} and xxhash64 as independent`,
    );
  }
  const minimum = fromShares ? minimumOf(fromShares, toShares) : null;
  const balance = balanceOf(
    shards,
    shards.map((s) => toShares.get(s.name) ?? 0),
  );
  const weighted = shards.some((s) => s.weight !== 1);
  if (weighted) notes.push('balance is share ÷ weight share (shards have weights)');
  return {
    id: `consistent-hash@${vnodes}`,
    scheme: 'consistent-hash',
    hash: 'xxhash64',
    modulus: null,
    vnodes,
    seed,
    movement,
    movementExact,
    minimum,
    ratio: ratioOf(movement, minimum),
    balance,
    meetsBalance: balance.maxOverMean <= BALANCE_TARGET,
    yaml: `scheme: { type: consistent-hash, vnodes: ${vnodes}${seed === 0n ? '' : `, seed: ${seed}`} }`,
    notes,
  };
}

interface RingPoints {
  readonly size: number;
  readonly hi: Uint32Array;
  readonly lo: Uint32Array;
  /** Index into the side's shard list. */
  readonly owner: Uint32Array;
  shares(): bigint[];
}

function ringOf(shards: readonly Shard[], scheme: ConsistentHashScheme): RingPoints {
  const r = buildRing(shards, scheme);
  return { ...r, shares: () => sharesOf(r, shards.length) };
}

/**
 * Exact units of the 64-bit hash space per shard (as ring.ts's ringShares, without a BigInt per
 * point): a shard's arcs are summed as hi-word and lo-word differences apart, each sum exact in a
 * double (under 2^53 for fewer than 2^21 points a shard), and joined once per shard.
 */
function sharesOf(
  r: { size: number; hi: Uint32Array; lo: Uint32Array; owner: Uint32Array },
  n: number,
): bigint[] {
  const hs = new Float64Array(n);
  const ls = new Float64Array(n);
  let ph = 0;
  let pl = -1; // the point "−1": the first arc is [0, p0]
  for (let i = 0; i < r.size; i++) {
    const o = r.owner[i]!;
    hs[o]! += r.hi[i]! - ph;
    ls[o]! += r.lo[i]! - pl;
    ph = r.hi[i]!;
    pl = r.lo[i]!;
  }
  if (r.size > 0) {
    // (last point, 2^64 − 1] wraps to point 0
    const o = r.owner[0]!;
    hs[o]! += 0xffffffff - ph;
    ls[o]! += 0xffffffff - pl;
  }
  return Array.from({ length: n }, (_, i) => (BigInt(hs[i]!) << 32n) + BigInt(ls[i]!));
}

/**
 * Share of the hash space whose owner changes between two rings over one seed. `sameName[i]` is
 * the index on ring b of ring a's shard i (−1: not on b). Walks the union of both rings' points:
 * every hash in (u[k−1], u[k]] is owned, on each ring, by that ring's first point ≥ u[k].
 */
export function ringMovement(a: RingPoints, b: RingPoints, sameName: Int32Array): number {
  let i = 0;
  let j = 0;
  let ph = 0;
  let pl = -1;
  let hs = 0;
  let ls = 0;
  let big = 0n;
  let arcs = 0;
  const add = (uh: number, ul: number, oa: number, ob: number) => {
    if (sameName[oa] !== ob) {
      hs += uh - ph;
      ls += ul - pl;
      // lo differences are below 2^32 each: flush before their sum could pass 2^53
      if (++arcs === 1 << 20) {
        big += (BigInt(hs) << 32n) + BigInt(ls);
        hs = 0;
        ls = 0;
        arcs = 0;
      }
    }
  };
  while (i < a.size || j < b.size) {
    let takeA: boolean;
    if (i === a.size) takeA = false;
    else if (j === b.size) takeA = true;
    else takeA = a.hi[i]! < b.hi[j]! || (a.hi[i] === b.hi[j] && a.lo[i]! <= b.lo[j]!);
    const uh = takeA ? a.hi[i]! : b.hi[j]!;
    const ul = takeA ? a.lo[i]! : b.lo[j]!;
    add(uh, ul, a.owner[i === a.size ? 0 : i]!, b.owner[j === b.size ? 0 : j]!);
    ph = uh;
    pl = ul;
    while (i < a.size && a.hi[i] === uh && a.lo[i] === ul) i++;
    while (j < b.size && b.hi[j] === uh && b.lo[j] === ul) j++;
  }
  if (a.size > 0 && b.size > 0) add(0xffffffff, 0xffffffff, a.owner[0]!, b.owner[0]!);
  const moved = big + (BigInt(hs) << 32n) + BigInt(ls);
  return Number(moved) / Number(TWO64);
}

/**
 * A ring that grows from V to V' > V vnodes by generating only the points `name#V … name#(V'−1)`,
 * sorting them, and merging them in. Order is ring.ts's: by value, equal values by shard name,
 * then by point index (buildRing's stable sort of points generated in that order).
 */
export class GrowingRing implements RingPoints {
  size = 0;
  hi = new Uint32Array(0);
  lo = new Uint32Array(0);
  owner = new Uint32Array(0);
  private vnode = new Uint32Array(0);
  private readonly have: Int32Array;
  private readonly rank: Int32Array;
  private readonly byName: number[];
  private readonly seedHi: number;
  private readonly seedLo: number;

  constructor(
    private readonly shards: readonly Shard[],
    seed: bigint,
  ) {
    [this.seedHi, this.seedLo] = splitSeed(seed);
    this.have = new Int32Array(shards.length);
    this.byName = shards
      .map((s, i) => ({ name: s.name, i }))
      .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
      .map((x) => x.i);
    this.rank = new Int32Array(shards.length);
    this.byName.forEach((i, r) => {
      this.rank[i] = r;
    });
  }

  grow(vnodes: number): void {
    let n = 0;
    const want = this.shards.map((s) => vnodeCount(s, vnodes));
    this.shards.forEach((_, i) => {
      n += Math.max(0, want[i]! - this.have[i]!);
    });
    if (n === 0) return;
    const nh = new Uint32Array(n);
    const nl = new Uint32Array(n);
    const np = new Uint32Array(n);
    const nOwner = new Uint32Array(n);
    const nVnode = new Uint32Array(n);
    let label = new Uint8Array(64);
    let p = 0;
    for (const i of this.byName) {
      const nameBytes = Buffer.from(`${this.shards[i]!.name}#`, 'utf8');
      if (nameBytes.length + 16 > label.length) label = new Uint8Array(nameBytes.length + 16);
      label.set(nameBytes, 0);
      for (let v = this.have[i]!; v < want[i]!; v++) {
        const end = writeDecimal(label, nameBytes.length, v);
        xxh64HalvesOfBytes(label, 0, end, this.seedHi, this.seedLo);
        nh[p] = hashHi();
        nl[p] = hashLo();
        np[p] = p;
        nOwner[p] = i;
        nVnode[p] = v;
        p++;
      }
      this.have[i] = Math.max(this.have[i]!, want[i]!);
    }
    radixSort(nh, nl, np);
    // Merge old and new points; locals, not `this.` fields, keep the loop in registers.
    const total = this.size + n;
    const hi = new Uint32Array(total);
    const lo = new Uint32Array(total);
    const owner = new Uint32Array(total);
    const vnode = new Uint32Array(total);
    const [oh, ol, oo, ov, rank, size] = [this.hi, this.lo, this.owner, this.vnode, this.rank, this.size];
    let a = 0;
    let b = 0;
    for (let k = 0; k < total; k++) {
      let takeOld: boolean;
      if (a === size) takeOld = false;
      else if (b === n) takeOld = true;
      else {
        const x = oh[a]!;
        const y = nh[b]!;
        if (x !== y) takeOld = x < y;
        else if (ol[a] !== nl[b]) takeOld = ol[a]! < nl[b]!;
        else {
          const ro = rank[oo[a]!]!;
          const rn = rank[nOwner[np[b]!]!]!;
          takeOld = ro !== rn ? ro < rn : ov[a]! < nVnode[np[b]!]!;
        }
      }
      if (takeOld) {
        hi[k] = oh[a]!;
        lo[k] = ol[a]!;
        owner[k] = oo[a]!;
        vnode[k] = ov[a]!;
        a++;
      } else {
        const q = np[b]!;
        hi[k] = nh[b]!;
        lo[k] = nl[b]!;
        owner[k] = nOwner[q]!;
        vnode[k] = nVnode[q]!;
        b++;
      }
    }
    this.hi = hi;
    this.lo = lo;
    this.owner = owner;
    this.vnode = vnode;
    this.size = total;
  }

  shares(): bigint[] {
    return sharesOf(this, this.shards.length);
  }
}

// ---------------------------------------------------------------------------------------------
// Recommendation

function pct(x: number | null): string {
  return x === null ? 'unknown' : `${(x * 100).toFixed(1)}%`;
}

/**
 * Among candidates within the balance target, the one that moves least (an unknown movement
 * counts as everything); if none is within the target, the best balanced. Ties go to the earlier
 * candidate (hash-mod, then the current vnode count).
 */
function recommend(cs: SuggestCandidate[]): { recommended: string | null; reason: string } {
  const moved = (c: SuggestCandidate) => c.movement ?? 2;
  const ok = cs.filter((c) => c.meetsBalance);
  if (ok.length === 0) {
    const best = cs.reduce((x, y) => (y.balance.maxOverMean < x.balance.maxOverMean ? y : x));
    return {
      recommended: best.id,
      reason: `no candidate keeps every shard within ${Math.round((BALANCE_TARGET - 1) * 100)}% of the mean; this one comes closest (max/mean ${best.balance.maxOverMean.toFixed(3)})`,
    };
  }
  const best = ok.reduce((x, y) => (moved(y) < moved(x) ? y : x));
  let reason = `moves ${pct(best.movement)} of the key space${best.minimum !== null ? ` (minimum ${pct(best.minimum)})` : ''} with max/mean ${best.balance.maxOverMean.toFixed(3)}`;
  const cheaper = cs.filter((c) => !c.meetsBalance && moved(c) < moved(best));
  for (const c of cheaper) {
    reason += `; ${c.id} would move only ${pct(c.movement)} but leaves max/mean at ${c.balance.maxOverMean.toFixed(3)}`;
  }
  return { recommended: best.id, reason };
}
