/**
 * The router: which shard owns a key under one topology. Pure and synchronous; build it once per
 * topology (consistent hashing builds its ring here) and call `ownerOf` per row.
 *
 * Routing rules per scheme (the contract pinned by fixtures/vectors/routing.json):
 *   hash-mod         residue = ((h mod modulus) + modulus) mod modulus, owner = slots[residue];
 *                    h = the integer key (identity) or CRC32 of its canonical bytes (crc32).
 *   range            the range [from, to) holding the key; integers compare as integers,
 *                    strings and Buffers by their bytes (a binary collation's order).
 *   consistent-hash  see ring.ts.
 *   directory        entries[canonical string form] ?? default, else E_DIRECTORY_MISS.
 * Canonical forms and hashes: hash.ts.
 */
import { UsageError } from '../errors.js';
import type {
  ConsistentHashScheme,
  DirectoryScheme,
  HashModScheme,
  RangeScheme,
  Scheme,
  Topology,
} from '../topology/types.js';
import {
  assertSafeIntKey,
  canonicalKeyBytes,
  canonicalKeyString,
  crc32Of,
  hashHi,
  hashLo,
  type RouteKey,
  splitSeed,
  xxh64HalvesOf,
} from './hash.js';
import { buildRing, pointOf, type Ring } from './ring.js';

export type { RouteKey } from './hash.js';

export interface Router {
  readonly scheme: Scheme['type'];
  /** Shard names in topology order; `ownerIndexOf` indexes this list. */
  readonly shards: readonly string[];
  /** Name of the shard owning `key`. */
  ownerOf(key: RouteKey): string;
  /** Index into `shards` of the owner (no string lookup: for hot loops and the planner). */
  ownerIndexOf(key: RouteKey): number;
}

const MAX_SAFE = 9007199254740991n;

export function createRouter(topology: Topology): Router {
  if (topology.shards.length === 0) {
    throw new UsageError('E_TOPOLOGY_NO_SHARDS', `${topology.file} defines no shards`, {
      where: topology.file,
      hint: 'list at least one shard',
    });
  }
  const shards = topology.shards.map((s) => s.name);
  const index = new Map(shards.map((n, i) => [n, i]));
  const indexOf = (name: string, what: string): number => {
    const i = index.get(name);
    if (i === undefined) {
      throw new UsageError(
        'E_TOPOLOGY_UNKNOWN_SHARD',
        `${what} names unknown shard '${name}' in ${topology.file}`,
        {
          where: topology.file,
          hint: `use one of: ${shards.join(', ')}`,
        },
      );
    }
    return i;
  };
  let ownerIndexOf: (key: RouteKey) => number;
  const s = topology.scheme;
  switch (s.type) {
    case 'hash-mod':
      ownerIndexOf = hashModRouter(s, indexOf);
      break;
    case 'range':
      ownerIndexOf = rangeRouter(s, indexOf);
      break;
    case 'consistent-hash':
      ownerIndexOf = consistentRouter(s, buildRing(topology.shards, s));
      break;
    case 'directory':
      ownerIndexOf = directoryRouter(s, indexOf, topology.file);
      break;
  }
  return {
    scheme: s.type,
    shards,
    ownerIndexOf,
    ownerOf: (key) => shards[ownerIndexOf(key)]!,
  };
}

// ---------------------------------------------------------------------------------------------
// hash-mod

function identityNeedsInt(key: RouteKey): UsageError {
  const shown =
    typeof key === 'string'
      ? JSON.stringify(key)
      : Buffer.isBuffer(key)
        ? `0x${key.toString('hex')}`
        : String(key);
  return new UsageError('E_KEY_TYPE', `hash-mod with hash: identity routes integer keys only, got ${shown}`, {
    hint: 'use hash: crc32 for string or binary shard keys',
  });
}

/**
 * The integer the residue is taken of: the key itself (identity) or CRC32 of its canonical bytes.
 * Returned as a number when it is a safe integer, else as a bigint.
 */
export function hashModValue(hash: HashModScheme['hash'], key: RouteKey): number | bigint {
  if (hash === 'crc32') return crc32Of(key);
  if (typeof key === 'number') {
    assertSafeIntKey(key);
    return key;
  }
  if (typeof key === 'bigint') return key >= -MAX_SAFE && key <= MAX_SAFE ? Number(key) : key;
  throw identityNeedsInt(key);
}

/** Non-negative residue of a hash-mod value: ((h mod m) + m) mod m. */
export function residue(h: number | bigint, m: number): number {
  if (typeof h === 'number') {
    const r = h % m;
    return r < 0 ? r + m : r;
  }
  const mb = BigInt(m);
  return Number(((h % mb) + mb) % mb);
}

function hashModRouter(
  s: HashModScheme,
  indexOf: (n: string, what: string) => number,
): (key: RouteKey) => number {
  const m = s.modulus;
  if (s.slots.length !== m || m < 1) {
    throw new UsageError('E_TOPOLOGY_SLOTS', `hash-mod has ${s.slots.length} slots for modulus ${m}`, {
      hint: 'list exactly one shard per residue 0..modulus-1',
    });
  }
  const slot = Int32Array.from(s.slots, (n, i) => indexOf(n, `scheme.slots[${i}]`));
  if (s.hash === 'crc32') {
    return (key) => slot[crc32Of(key) % m]!;
  }
  return (key) => {
    if (typeof key === 'number' && Number.isSafeInteger(key)) {
      const r = key % m;
      return slot[r < 0 ? r + m : r]!;
    }
    return slot[residue(hashModValue('identity', key), m)]!;
  };
}

/** SQL giving the hash-mod residue of a column (the bucket), or undefined when SQL cannot compute the scheme. */
export function sqlBucketExpr(scheme: Scheme, quotedColumn: string): string | undefined {
  if (scheme.type !== 'hash-mod') return undefined;
  return sqlResidueExpr(scheme.hash, quotedColumn, scheme.modulus);
}

/**
 * SQL residue of a column modulo `m` under a hash-mod hash. MySQL's MOD keeps the dividend's
 * sign (MOD(-5, 3) = -2), hence the double MOD for identity; CRC32 is unsigned.
 */
export function sqlResidueExpr(hash: HashModScheme['hash'], quotedColumn: string, m: number): string {
  return hash === 'crc32'
    ? `MOD(CRC32(${quotedColumn}), ${m})`
    : `MOD(MOD(${quotedColumn}, ${m}) + ${m}, ${m})`;
}

// ---------------------------------------------------------------------------------------------
// range

/** Compare a key with a range boundary of the same kind: negative when the key is smaller. */
export function compareKeyToBoundary(key: RouteKey, b: bigint | string): number {
  if (typeof b === 'bigint') {
    if (typeof key === 'number') assertSafeIntKey(key);
    else if (typeof key !== 'bigint')
      throw new UsageError('E_KEY_TYPE', 'an integer range boundary needs an integer key');
    const k = BigInt(key);
    return k < b ? -1 : k > b ? 1 : 0;
  }
  return Buffer.compare(canonicalKeyBytes(key), Buffer.from(b, 'utf8'));
}

function rangeRouter(
  s: RangeScheme,
  indexOf: (n: string, what: string) => number,
): (key: RouteKey) => number {
  const owners = Int32Array.from(s.ranges, (r, i) => indexOf(r.shard, `scheme.ranges[${i}].shard`));
  // starts[i] = from of ranges[i + 1]; the owner of a key is ranges[number of starts ≤ key].
  const starts = s.ranges.slice(1).map((r) => r.from);
  if (starts.length === 0) return () => owners[0]!;
  if (starts.some((b) => b === null)) {
    throw new UsageError('E_TOPOLOGY_RANGES', 'a range other than the first has an unbounded from', {
      hint: 'ranges must be sorted and contiguous',
    });
  }
  const intKeys = s.keyType === 'int';
  const bigStarts = starts as bigint[];
  // Safe-integer keys compare exactly against Number(boundary): rounding is monotone, and a
  // boundary beyond ±2^53 rounds to a value beyond every safe integer, so no order flips.
  const numStarts = intKeys ? Float64Array.from(bigStarts, (b) => Number(b)) : new Float64Array(0);
  const byteStarts = intKeys ? [] : (starts as string[]).map((b) => Buffer.from(b, 'utf8'));
  const n = starts.length;
  return (key) => {
    let a = 0;
    let z = n;
    if (intKeys) {
      if (typeof key === 'number' || (typeof key === 'bigint' && key >= -MAX_SAFE && key <= MAX_SAFE)) {
        if (typeof key === 'number') assertSafeIntKey(key);
        const k = Number(key);
        while (a < z) {
          const m = (a + z) >>> 1;
          if (numStarts[m]! <= k) a = m + 1;
          else z = m;
        }
      } else if (typeof key === 'bigint') {
        while (a < z) {
          const m = (a + z) >>> 1;
          if (bigStarts[m]! <= key) a = m + 1;
          else z = m;
        }
      } else {
        throw new UsageError(
          'E_KEY_TYPE',
          'this range scheme has integer boundaries but the key is a string',
          {
            hint: 'use string boundaries for a string shard key',
          },
        );
      }
    } else {
      if (typeof key === 'number' || typeof key === 'bigint') {
        throw new UsageError(
          'E_KEY_TYPE',
          `this range scheme has string boundaries but the key ${key} is an integer`,
          {
            hint: 'use integer boundaries for an integer shard key',
          },
        );
      }
      const kb = canonicalKeyBytes(key);
      while (a < z) {
        const m = (a + z) >>> 1;
        if (Buffer.compare(byteStarts[m]!, kb) <= 0) a = m + 1;
        else z = m;
      }
    }
    return owners[a]!;
  };
}

// ---------------------------------------------------------------------------------------------
// consistent-hash

function consistentRouter(s: ConsistentHashScheme, ring: Ring): (key: RouteKey) => number {
  const [sh, sl] = splitSeed(s.seed);
  const owner = ring.owner;
  return (key) => {
    xxh64HalvesOf(key, sh, sl);
    return owner[pointOf(ring, hashHi(), hashLo())]!;
  };
}

// ---------------------------------------------------------------------------------------------
// directory

function directoryRouter(
  s: DirectoryScheme,
  indexOf: (n: string, what: string) => number,
  file: string,
): (key: RouteKey) => number {
  const entries = s.entries;
  if (!entries) {
    throw new UsageError('E_DIRECTORY_NOT_LOADED', `the directory of ${file} has not been read`, {
      where: file,
      hint: 'load the directory (file or table) before routing; this is a defect if you see it from a command',
    });
  }
  const byName = new Map<string, number>();
  for (const shard of entries.values()) {
    if (!byName.has(shard)) byName.set(shard, indexOf(shard, 'the directory'));
  }
  const def = s.default === undefined ? -1 : indexOf(s.default, 'scheme.default');
  return (key) => {
    const k = canonicalKeyString(key);
    const shard = k === undefined ? undefined : entries.get(k);
    if (shard !== undefined) return byName.get(shard)!;
    if (def >= 0) return def;
    throw new UsageError(
      'E_DIRECTORY_MISS',
      `key ${k === undefined ? 'of non-UTF-8 bytes' : JSON.stringify(k)} is not in the directory of ${file} and there is no default`,
      {
        where: file,
        hint: 'add the key to the directory, or set scheme.default to the shard that owns unlisted keys',
      },
    );
  };
}
