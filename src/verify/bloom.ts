/**
 * A Bloom filter: a set that may answer "maybe" for a key it never saw (a false positive, at a
 * rate fixed by its sizing) but never "no" for a key it saw (no false negatives, ever: `add`
 * only sets bits and nothing clears them; `unionWith` only ORs).
 *
 * Sizing for n keys and false-positive rate p (the standard optimum):
 *     m = ⌈−n·ln p / (ln 2)²⌉ bits (rounded up to whole bytes),   k = round(m/n · ln 2) hashes,
 * e.g. 9.6 bits and 7 hashes per key for p = 1%. With x keys inserted the rate is about
 * (1 − e^(−k·x/m))^k; past the design n it grows, gracefully: more "maybe", never a miss.
 *
 * Hashing: one 64-bit hash per key, split into h1 and h2, and the k bit positions by double
 * hashing g_i = (h1 + i·h2) mod m over their low 31 bits (Kirsch–Mitzenmacher: as good as k
 * independent hashes for the false-positive rate; m ≤ 2^31). Keys given as bytes are hashed with xxHash64; callers that already hold
 * a well-mixed 64-bit hash (change ids, see changes.ts) pass it in directly.
 *
 * Serialized form (`toBuffer`): 'RBF1', k (u8), 3 zero bytes, m (u32 BE), inserted (u64 BE as
 * two u32), then the m bits, bit i at byte i >> 3, mask 1 << (i & 7).
 */
import { hashHi, hashLo, xxh64HalvesOfBytes } from '../plan/hash.js';

export const BLOOM_MAX_BITS = 2 ** 31 - 8;
const MAGIC = 0x52424631; // 'RBF1'
const HEADER = 20;

export interface BloomSize {
  /** Bits. */
  m: number;
  /** Hash functions. */
  k: number;
}

/** Optimal (m, k) for n keys at false-positive rate p. */
export function bloomSize(n: number, p: number): BloomSize {
  if (!(n >= 1)) n = 1;
  if (!(p > 0 && p < 1)) throw new RangeError(`bloomSize: p must be in (0, 1), got ${p}`);
  const raw = Math.ceil((-n * Math.log(p)) / (Math.LN2 * Math.LN2));
  const m = Math.min(BLOOM_MAX_BITS, Math.max(64, Math.ceil(raw / 8) * 8));
  const k = Math.max(1, Math.min(30, Math.round((m / n) * Math.LN2)));
  return { m, k };
}

/** Expected false-positive rate of an (m, k) filter holding n keys. */
export function falsePositiveRate(m: number, k: number, n: number): number {
  return (1 - Math.exp((-k * n) / m)) ** k;
}

export class BloomFilter {
  readonly m: number;
  readonly k: number;
  readonly bits: Uint8Array;
  /** Keys added (with repeats): drives the false-positive estimate. */
  inserted: number;

  constructor(m: number, k: number, bits?: Uint8Array, inserted = 0) {
    if (!Number.isInteger(m) || m < 8 || m > BLOOM_MAX_BITS || m % 8 !== 0)
      throw new RangeError(`BloomFilter: m must be a multiple of 8 in [8, 2^31], got ${m}`);
    if (!Number.isInteger(k) || k < 1 || k > 64) throw new RangeError(`BloomFilter: bad k ${k}`);
    if (bits && bits.length !== m / 8)
      throw new RangeError(`BloomFilter: ${bits.length} bytes of bits for m = ${m}`);
    this.m = m | 0; // an int32 field: `% m` stays an integer modulo
    this.k = k | 0;
    this.bits = bits ?? new Uint8Array(m / 8);
    this.inserted = inserted;
  }

  /** A filter sized for n keys at false-positive rate p. */
  static create(n: number, p: number): BloomFilter {
    const { m, k } = bloomSize(n, p);
    return new BloomFilter(m, k);
  }

  /** Add a key by its 64-bit hash (int32 or uint32 halves). */
  addHash(h1: number, h2: number): void {
    const m = this.m | 0;
    const bits = this.bits;
    // g_i = (h1' + i·h2') mod m with h1', h2' the low 31 bits, stepped without leaving small
    // integers (int32 modulo, no doubles); h2' is odd and m a multiple of 8, so the step is never 0.
    let g = (h1 & 0x7fffffff) % m;
    const step = ((h2 | 1) & 0x7fffffff) % m;
    for (let i = 0; i < this.k; i++) {
      bits[g >>> 3]! |= 1 << (g & 7);
      g += step;
      if (g >= m) g -= m;
    }
    this.inserted++;
  }

  /**
   * The first probe only (h1 alone): false means certainly absent. Lets a caller testing many
   * keys skip computing h2 for most of them.
   */
  firstProbe(h1: number): boolean {
    const g = (h1 & 0x7fffffff) % (this.m | 0);
    return (this.bits[g >>> 3]! & (1 << (g & 7))) !== 0;
  }

  /** false: the key was certainly never added. true: it may have been. */
  mayContainHash(h1: number, h2: number): boolean {
    const m = this.m | 0;
    const bits = this.bits;
    let g = (h1 & 0x7fffffff) % m;
    if ((bits[g >>> 3]! & (1 << (g & 7))) === 0) return false;
    const step = ((h2 | 1) & 0x7fffffff) % m;
    for (let i = 1; i < this.k; i++) {
      g += step;
      if (g >= m) g -= m;
      if ((bits[g >>> 3]! & (1 << (g & 7))) === 0) return false;
    }
    return true;
  }

  add(key: Uint8Array | string): void {
    const b = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
    xxh64HalvesOfBytes(b, 0, b.length, 0, 0);
    this.addHash(hashHi(), hashLo());
  }

  mayContain(key: Uint8Array | string): boolean {
    const b = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
    xxh64HalvesOfBytes(b, 0, b.length, 0, 0);
    return this.mayContainHash(hashHi(), hashLo());
  }

  /** OR another filter of the same shape into this one (the union of the two sets). */
  unionWith(other: BloomFilter): void {
    if (other.m !== this.m || other.k !== this.k)
      throw new RangeError(
        `BloomFilter: cannot union (m=${other.m}, k=${other.k}) into (m=${this.m}, k=${this.k})`,
      );
    const a = this.bits;
    const b = other.bits;
    for (let i = 0; i < a.length; i++) a[i]! |= b[i]!;
    this.inserted += other.inserted;
  }

  /** Expected false-positive rate at the current fill. */
  falsePositiveRate(): number {
    return falsePositiveRate(this.m, this.k, this.inserted);
  }

  toBuffer(): Buffer {
    const out = Buffer.alloc(HEADER + this.bits.length);
    out.writeUInt32BE(MAGIC, 0);
    out[4] = this.k;
    out.writeUInt32BE(this.m, 8);
    out.writeUInt32BE(Math.floor(this.inserted / 2 ** 32), 12);
    out.writeUInt32BE(this.inserted % 2 ** 32, 16);
    out.set(this.bits, HEADER);
    return out;
  }

  static fromBuffer(buf: Uint8Array): BloomFilter {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (b.length < HEADER || b.readUInt32BE(0) !== MAGIC)
      throw new RangeError('BloomFilter.fromBuffer: not a serialized Bloom filter');
    const k = b[4]!;
    const m = b.readUInt32BE(8);
    const inserted = b.readUInt32BE(12) * 2 ** 32 + b.readUInt32BE(16);
    if (b.length !== HEADER + m / 8) throw new RangeError('BloomFilter.fromBuffer: truncated bits');
    return new BloomFilter(m, k, Uint8Array.from(b.subarray(HEADER)), inserted);
  }
}
