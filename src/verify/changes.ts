/**
 * Changed-row tracking for incremental verify, in the control schema: Bloom filters of change ids
 * (`reshard_bloom_filters`) and, beside them, the exact changed primary keys
 * (`reshard_changed_keys`, per epoch in `reshard_change_epochs`).
 *
 * A change id is (table, top CHANGE_BITS bits of the row's pkHash) — see bucket.ts — so it names
 * a slice of every bucket of that table whatever bits a verify run uses, and a filter over change
 * ids can be enumerated (2^20 ids per table) to list what may have changed.
 *
 * Lifecycle and generations, per (job, source shard):
 *   - the tailer calls `recordChanges` for the rows it is about to apply (write-ahead: record,
 *     then apply; an unrecorded applied change would be invisible to incremental verify, a
 *     recorded unapplied one only costs a re-check). Each call writes generation g+1 holding
 *     only its own ids — a delta, stored as the positions of its set bits (`encoding` 1, a few
 *     KiB) — and readers OR the generations of a range together. (Each call used to rewrite the
 *     whole 77 KiB filter, g+1 = g ∪ new, and delete g: with ROW binlog images of both, several
 *     MB/s on the control server, and every target commit of the tailer waited on it.) Every
 *     64 writes the recorder folds the current epoch's generations into one whole filter
 *     (`compactChanges`: g+1 = ∪ [epoch, g], those deleted, one transaction), so a reader ORs
 *     a few dozen rows, not thousands; a reader of any range sees the same union or more. Rows
 *     are only ever inserted whole: a reader sees the old generations or the new one, never a
 *     half-written bit array.
 *   - every verify run starts an epoch (`openEpoch`): it inserts an empty generation per source
 *     shard and remembers those numbers in its run record. "Changed since run R" is then the
 *     union of all generations ≥ R's numbers (`loadChangeSet`), which covers everything recorded
 *     after R started — including during R's own scan.
 *   - concurrency: two writers racing for generation g+1 collide on the primary key (errno 1062);
 *     the loser re-reads and retries (a compaction just gives up until next time), so no id is
 *     lost.
 *   - after a clean run, generations older than its epoch are dropped (`pruneChangesBefore`).
 *
 * Exact keys ride on the same transactions. `openEpoch` records the epoch (its first generation's
 * number) in `reshard_change_epochs` together with that generation; `recordChanges` adds the
 * changed primary keys, in the transaction that writes generation g+1, as rows of that
 * generation — so the generation's primary key serializes the key writers exactly as it
 * serializes the filter writers, a key is persisted exactly when its change id is, and the keys
 * of epochs [a, b) are the rows of generations [a, b). Keys are stored packed, one row per table
 * and target per write (the tailer writes every ~50 ms), not one row per key: writing, reading
 * and pruning cost a few rows per batch. The target is the shard the change was applied to, so
 * the verifier looks each key up where it can be — its source and those targets — not on every
 * shard. A key already recorded for a target in the current epoch through the same connection is
 * not recorded again; after CHANGED_KEYS_PER_EPOCH keys an epoch is marked
 * overflowed and records no more (its filter still does). `loadChangedKeys` returns the keys of
 * the closed epochs since a clean run, deduplicated, when none of them overflowed, else says why
 * not: the verifier then re-checks the Bloom-flagged buckets instead.
 */
import type { Connection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { Value } from '../apply/values.js';
import { withRetry } from '../db/retry.js';
import { Statements } from '../db/statements.js';
import { RetriesExhaustedError } from '../errors.js';
import { hashHi, hashLo, xxh64HalvesOfBytes } from '../plan/hash.js';
import type { ControlConnection } from '../state/control.js';
import { thousands } from '../util/format.js';
import { BloomFilter } from './bloom.js';
import { CHANGE_BITS, changeIdOf, pkHashOfValues } from './bucket.js';
import { canonicalBytes, canonicalNumberText, lenenc, type RawRow, textRowPayload } from './rowhash.js';
import { fetchRows } from './scan.js';

const BLOOM = '`reshard_bloom_filters`';
const EPOCHS = '`reshard_change_epochs`';
const KEYS = '`reshard_changed_keys`';

/**
 * Filter sizing for one epoch of one source: 65 536 distinct change ids at 1% false positives
 * (628 kbit = 77 KiB, 7 hashes). Past that the rate grows smoothly; a saturated filter makes
 * incremental verify re-check more, never less.
 */
export const CHANGE_FILTER_KEYS = 65_536;
export const CHANGE_FILTER_FP = 0.01;

/**
 * Exact keys kept per epoch and source shard. Beyond this many, re-checking keys one by one on
 * every shard costs about as much as scanning the flagged buckets, and the control schema would
 * grow with the write rate: the epoch is marked overflowed instead (the Bloom filter takes over).
 */
export const CHANGED_KEYS_PER_EPOCH = 250_000;

/** One changed row, as the tailer sees it: the table and its primary-key values (before and after images both). */
export interface ChangedRow {
  table: string;
  /** Primary-key values in key order, exact (src/apply/values.ts rules: DECIMAL and temporal as text). */
  pk: readonly Value[];
  /**
   * The target shard the change is applied to (a shard-key move is two changes: the delete on
   * the old owner, the upsert on the new). Incremental verify looks the key up on the recording
   * source and on these targets only; without it, on every shard.
   */
  target?: string | undefined;
}

/** A key outside the change-id range recorded once per table with changes, so an untouched table is skipped in one test. */
const TABLE_MARK = 1 << CHANGE_BITS;

/** The change id of a row's primary key (what `recordChanges` records for it). */
export function changeIdOfPk(pk: readonly Value[]): number {
  return changeIdOf(pkHashOfValues(pk));
}

// ---------------------------------------------------------------------------------------------
// Hashing (table, change id) for the filter

const seeds = new Map<string, [number, number]>();

function tableSeed(table: string): [number, number] {
  let s = seeds.get(table);
  if (!s) {
    const b = Buffer.from(table, 'utf8');
    xxh64HalvesOfBytes(b, 0, b.length, 0, 0);
    s = [hashHi() | 0, hashLo() | 0];
    seeds.set(table, s);
  }
  return s;
}

/** fmix32 (MurmurHash3's 32-bit finalizer): a bijection of uint32. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * The filter hash of (table, change id): h1 = fmix32(seedLo ^ id), h2 = fmix32(seedHi + id·φ),
 * two bijections of the id under the table's seed. 32-bit integer work only: an incremental run
 * tests 2^20 ids per table, so this is its inner loop (flaggedIds writes both out inline).
 */
function h1Of(seed: readonly [number, number], id: number): number {
  return fmix32(seed[1] ^ id);
}
function h2Of(seed: readonly [number, number], id: number): number {
  return fmix32((seed[0] + Math.imul(id, 0x9e3779b1)) | 0);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** The union of some change filters: "may this change id of this table have changed?" */
export class ChangeSet {
  readonly filters: BloomFilter[];

  constructor(filters: BloomFilter[]) {
    this.filters = filters.filter((f) => f.inserted > 0);
  }

  /** No change recorded at all. */
  get empty(): boolean {
    return this.filters.length === 0;
  }

  mayHaveChanged(table: string, changeId: number): boolean {
    if (this.filters.length === 0) return false;
    const seed = tableSeed(table);
    const h1 = h1Of(seed, changeId);
    const h2 = h2Of(seed, changeId);
    for (const f of this.filters) if (f.mayContainHash(h1, h2)) return true;
    return false;
  }

  /** Every change id of `table` the filters may hold, ascending (2^CHANGE_BITS tests). */
  flaggedIds(table: string): number[] {
    const out: number[] = [];
    // Every recorded change also records its table's mark: no mark, no change in the table.
    if (!this.mayHaveChanged(table, TABLE_MARK)) return out;
    const [seedHi, seedLo] = tableSeed(table);
    const n = 1 << CHANGE_BITS;
    const fs = this.filters;
    if (fs.length === 1) {
      // The common case (one source, or one epoch), written out: this loop is an incremental
      // run's fixed cost per table.
      const f = fs[0]!;
      const bits = f.bits;
      const m = f.m | 0;
      for (let id = 0; id < n; id++) {
        const g = (fmix32(seedLo ^ id) & 0x7fffffff) % m;
        if ((bits[g >>> 3]! & (1 << (g & 7))) === 0) continue;
        if (f.mayContainHash(fmix32(seedLo ^ id), fmix32((seedHi + Math.imul(id, 0x9e3779b1)) | 0)))
          out.push(id);
      }
      return out;
    }
    for (let id = 0; id < n; id++) {
      const h1 = fmix32(seedLo ^ id);
      for (let j = 0; j < fs.length; j++) {
        const f = fs[j]!;
        // Most ids fail the first probe: h2 is computed only for the rest.
        if (f.firstProbe(h1) && f.mayContainHash(h1, fmix32((seedHi + Math.imul(id, 0x9e3779b1)) | 0))) {
          out.push(id);
          break;
        }
      }
    }
    return out;
  }
}

/** Add rows' change ids to a filter (pure; recordChanges persists). */
export function addChanges(filter: BloomFilter, changes: Iterable<ChangedRow>): number {
  let n = 0;
  const tables = new Set<string>();
  for (const c of changes) {
    const seed = tableSeed(c.table);
    const id = changeIdOfPk(c.pk);
    filter.addHash(h1Of(seed, id), h2Of(seed, id));
    tables.add(c.table);
    n++;
  }
  for (const t of tables) {
    const seed = tableSeed(t);
    filter.addHash(h1Of(seed, TABLE_MARK), h2Of(seed, TABLE_MARK));
  }
  return n;
}

/** `encoding` of a stored generation: the whole bit array, or the sorted positions of its set bits. */
const WHOLE = 0;
const SPARSE = 1;

/**
 * The set bits of a filter as the gaps between their positions, each an unsigned LEB128 varint
 * (the first gap from -1). A delta of a few hundred changes sets a few thousand of the 628k bits:
 * about two bytes each instead of 77 KiB for the array.
 */
export function encodeSparseBits(bits: Uint8Array): Buffer {
  const out: number[] = [];
  let prev = -1;
  // A delta sets a few hundred of its 600k bits: skip zero bytes 4 at a time (the tailer encodes
  // one delta per record, 20 a second per source).
  const words =
    bits.byteOffset % 4 === 0 ? new Uint32Array(bits.buffer, bits.byteOffset, bits.length >>> 2) : undefined;
  for (let i = 0; i < bits.length; i++) {
    if (words && (i & 3) === 0 && i + 4 <= bits.length && words[i >>> 2] === 0) {
      i += 3;
      continue;
    }
    const b = bits[i]!;
    if (b === 0) continue;
    for (let j = 0; j < 8; j++) {
      if ((b & (1 << j)) === 0) continue;
      const pos = i * 8 + j;
      let gap = pos - prev;
      prev = pos;
      while (gap >= 0x80) {
        out.push((gap & 0x7f) | 0x80);
        gap >>>= 7;
      }
      out.push(gap);
    }
  }
  return Buffer.from(out);
}

/** OR the bits a sparse encoding lists into `bits` (m bits); throws on a corrupt list. */
export function orSparseBits(sparse: Uint8Array, bits: Uint8Array): void {
  const m = bits.length * 8;
  let pos = -1;
  let off = 0;
  while (off < sparse.length) {
    let gap = 0;
    let shift = 0;
    for (;;) {
      if (off >= sparse.length || shift > 28) throw new Error('corrupt sparse change filter');
      const b = sparse[off++]!;
      gap += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    pos += gap;
    if (gap === 0 || pos >= m) throw new Error('corrupt sparse change filter');
    bits[pos >>> 3]! |= 1 << (pos & 7);
  }
}

/** A stored generation as a filter (OR-ed into `into` when given, which must have its m and k). */
function filterOfRow(r: RowDataPacket, into?: BloomFilter): BloomFilter {
  const raw = r.bits as Buffer;
  const m = Number(r.m);
  const k = Number(r.k);
  const encoding = Number(r.encoding ?? WHOLE);
  const filter = into ?? new BloomFilter(m, k);
  if (encoding === SPARSE) orSparseBits(raw, filter.bits);
  else if (encoding === WHOLE) {
    if (raw.length !== m / 8) throw new Error(`change filter of ${raw.length} bytes for m = ${m}`);
    const bits = filter.bits;
    for (let i = 0; i < raw.length; i++) bits[i]! |= raw[i]!;
  } else throw new Error(`change filter with unknown encoding ${encoding}`);
  filter.inserted += Number(r.inserted);
  return filter;
}

/** A filter's bit array as a Buffer over the same memory (stored whole, encoding 0). */
function wholeBits(f: BloomFilter): Buffer {
  return Buffer.from(f.bits.buffer, f.bits.byteOffset, f.bits.byteLength);
}

/**
 * Changes recorded since an epoch: the union of every generation ≥ since[shard] (all
 * generations of shards `since` does not name; everything when `since` is null). Generations
 * of one size are OR-ed into one filter (the tailer writes many small deltas).
 */
export async function loadChangeSet(
  conn: Connection,
  jobId: number,
  since: Readonly<Record<string, number>> | null,
): Promise<ChangeSet> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT shard, generation, bits, encoding, k, m, inserted FROM ${BLOOM} WHERE job_id = ? ORDER BY shard, generation`,
    [jobId],
  );
  const bySize = new Map<string, BloomFilter>();
  for (const r of rows) {
    if (since !== null && Number(r.generation) < (since[String(r.shard)] ?? 0)) continue;
    const size = `${Number(r.m)}/${Number(r.k)}`;
    bySize.set(size, filterOfRow(r, bySize.get(size)));
  }
  return new ChangeSet([...bySize.values()]);
}

// ---------------------------------------------------------------------------------------------
// Exact keys: encoding

/**
 * The stored form of a primary key: the MySQL text-protocol payload of its columns (rowhash.ts:
 * lenenc(len) · canonical bytes, 0xFB for NULL) — byte for byte what a SELECT of the key returns,
 * exact for BIGINT beyond 2^53, DECIMAL, DATETIME(6) and binary values alike.
 */
export function encodePk(pk: readonly Value[]): Buffer {
  if (pk.length === 1) {
    // The common case, in one allocation: a one-column key of fewer than 251 bytes (an integer
    // key as its canonical text).
    let v = pk[0] ?? null;
    if (typeof v === 'number' || typeof v === 'bigint') v = canonicalNumberText(v);
    if (typeof v === 'string' && v.length < 84) {
      const b = Buffer.allocUnsafe(1 + Buffer.byteLength(v, 'utf8'));
      b[0] = b.write(v, 1, 'utf8');
      return b;
    }
  }
  return textRowPayload(pk.map(canonicalBytes));
}

/**
 * A stored primary key back as raw column values (the verifier's RawRow of its key columns): the
 * key b[off, end). The values are views of `b`, not copies (one Buffer per column is most of a
 * key's cost when an incremental run loads tens of thousands): `b` must not be written after.
 */
export function decodePk(b: Uint8Array, off = 0, end = b.length): RawRow {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const out: RawRow = [];
  while (off < end) {
    const h = buf[off]!;
    if (h === 0xfb) {
      out.push(null);
      off += 1;
      continue;
    }
    let len: number;
    if (h < 0xfb) {
      len = h;
      off += 1;
    } else {
      const [l, head] = readLenenc(buf, off);
      len = l;
      off += head;
    }
    if (off + len > end) throw new Error('truncated primary-key encoding');
    out.push(buf.subarray(off, off + len));
    off += len;
  }
  return out;
}

/** Keys per table and target ('' when not given), each once (by its encoding), in the order first seen. */
function keysByTable(changes: readonly ChangedRow[]): Map<string, Map<string, Map<string, Buffer>>> {
  const out = new Map<string, Map<string, Map<string, Buffer>>>();
  for (const c of changes) {
    let byTarget = out.get(c.table);
    if (!byTarget) {
      byTarget = new Map();
      out.set(c.table, byTarget);
    }
    const target = c.target ?? '';
    let m = byTarget.get(target);
    if (!m) {
      m = new Map();
      byTarget.set(target, m);
    }
    const pk = encodePk(c.pk);
    m.set(pk.toString('latin1'), pk);
  }
  return out;
}

/**
 * Key bytes per INSERT statement (sent as hex, so twice this on the wire): far below the 16 MiB
 * default max_allowed_packet of MySQL 8 and MariaDB.
 */
const KEYS_STATEMENT_BYTES = 2 << 20;

/** Stored rows hold at most this many bytes of keys (a write of more keys takes several rows). */
const PART_BYTES = 1 << 20;

/** Pack keys into parts of at most PART_BYTES: each key lenenc(length) · key. */
function packKeys(keys: Iterable<Buffer>): { count: number; pks: Buffer }[] {
  const parts: { count: number; pks: Buffer }[] = [];
  let chunk: Buffer[] = [];
  let bytes = 0;
  let count = 0;
  const cut = () => {
    if (count > 0) parts.push({ count, pks: Buffer.concat(chunk, bytes) });
    chunk = [];
    bytes = 0;
    count = 0;
  };
  for (const k of keys) {
    const head = lenenc(k.length);
    if (bytes + head.length + k.length > PART_BYTES) cut();
    chunk.push(head, k);
    bytes += head.length + k.length;
    count++;
  }
  cut();
  return parts;
}

/** Call `each` with the range [off, end) of every key of a packed list. */
function unpackKeys(pks: Buffer, each: (off: number, end: number) => void): void {
  let off = 0;
  while (off < pks.length) {
    const [len, head] = readLenenc(pks, off);
    off += head;
    if (off + len > pks.length) throw new Error('truncated list of recorded keys');
    each(off, off + len);
    off += len;
  }
}

/** [value, bytes of the prefix] of the lenenc integer at buf[off]. */
function readLenenc(buf: Buffer, off: number): [number, number] {
  const h = buf[off]!;
  if (h < 0xfb) return [h, 1];
  if (h === 0xfc) return [buf.readUInt16LE(off + 1), 3];
  if (h === 0xfd) return [buf.readUIntLE(off + 1, 3), 4];
  return [buf.readUInt32LE(off + 1) + buf.readUInt32LE(off + 5) * 2 ** 32, 9];
}

// ---------------------------------------------------------------------------------------------
// Writing

const MAX_ATTEMPTS = 20;

/** The newest epoch row of a (job, shard), as insertGeneration reads it. */
interface EpochRow {
  epoch: number;
  keyCount: number;
  overflowed: boolean;
}

async function insertGeneration(
  conn: Connection,
  jobId: number,
  shard: string,
  /** The generation's filter (stored sparse when that is smaller: it holds only what this write adds). */
  build: () => BloomFilter,
  /**
   * More writes in the same transaction, after the generation is inserted: `epoch` is the newest
   * epoch at or below `generation`. Writes go through `st` (sent with the COMMIT).
   */
  also?: (
    st: Statements,
    base: number | undefined,
    generation: number,
    epoch: EpochRow | undefined,
  ) => Promise<void>,
): Promise<number> {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const filter = build();
    // Sparse unless the delta is so large (a catch-up batch of tens of thousands of keys) that
    // the whole array is smaller.
    const sparse = encodeSparseBits(filter.bits);
    const [encoding, stored] =
      sparse.length < filter.bits.length ? [SPARSE, sparse] : [WHOLE, wholeBits(filter)];
    // Two round trips on the recorder's connection (multipleStatements): the reads, then every
    // write with the COMMIT. The tailer's target commits wait for this write.
    const st = new Statements(conn);
    try {
      await st.write('START TRANSACTION');
      // The newest generation, read with a locking read inside this transaction: it sees the
      // newest committed row, and its next-key lock keeps every other writer from inserting
      // above it until we commit (they wait, or deadlock and retry). Read before the
      // transaction, it could be stale by the time of the insert — the tailer's write h and a
      // compaction folding it (deleting h) could both land in between, and our insert of h would
      // then fill the hole below the newest generation, outside the epoch it belongs to.
      // The newest epoch is read after the lock is held, as every epoch writer takes a generation.
      const [gens, epochs] = await st.readMany([
        [
          `SELECT generation FROM ${BLOOM} WHERE job_id = ? AND shard = ? ORDER BY generation DESC LIMIT 1 FOR UPDATE`,
          [jobId, shard],
        ],
        [
          `SELECT epoch, key_count, overflowed FROM ${EPOCHS} WHERE job_id = ? AND shard = ? ORDER BY epoch DESC LIMIT 1`,
          [jobId, shard],
        ],
      ]);
      const g = gens![0]?.generation;
      const base = g === null || g === undefined ? undefined : Number(g);
      const generation = (base ?? 0) + 1;
      let ep = epochs![0];
      if (ep && Number(ep.epoch) > generation) {
        // An epoch above the generation being written (its generations pruned away): the one
        // this generation belongs to is an older one.
        ep = (
          await st.read(
            `SELECT epoch, key_count, overflowed FROM ${EPOCHS} WHERE job_id = ? AND shard = ? AND epoch <= ? ORDER BY epoch DESC LIMIT 1`,
            [jobId, shard, generation],
          )
        )[0];
      }
      const epoch: EpochRow | undefined = ep
        ? { epoch: Number(ep.epoch), keyCount: Number(ep.key_count), overflowed: Number(ep.overflowed) !== 0 }
        : undefined;
      await st.write(
        `INSERT INTO ${BLOOM} (job_id, shard, generation, bits, encoding, k, m, inserted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        [jobId, shard, generation, stored, encoding, filter.k, filter.m, filter.inserted],
      );
      // Generation g+1 is ours: until we commit, every other writer of this (job, shard) — filter,
      // keys, epoch or compaction — waits for it or fails on it and starts over, so what we read
      // is still current.
      await also?.(st, base, generation, epoch);
      await st.write('COMMIT');
      await st.flush();
      return generation;
    } catch (e) {
      await conn.rollback().catch(() => undefined);
      const errno = (e as { errno?: number }).errno;
      // 1062: another writer took generation g+1 first; 1213/1205: lock conflict. Re-read and retry.
      if (errno !== 1062 && errno !== 1213 && errno !== 1205) throw e;
      await new Promise((r) => setTimeout(r, Math.min(200, 5 * attempt * attempt)));
    }
  }
  throw new RetriesExhaustedError(
    'E_BLOOM_CONTENDED',
    `could not write a change filter for job ${jobId}, shard ${shard} after ${MAX_ATTEMPTS} attempts`,
    { hint: 'another process keeps writing the same filter; re-run (it is safe to repeat)' },
  );
}

/**
 * Fold the current epoch's generations of (job, shard) into one whole filter: the newest of them,
 * g, becomes the union of generations [epoch, g], and the others are deleted, in one transaction.
 * Readers of any range that reaches g see the same union or a larger one (never less: nothing is
 * dropped that g does not hold), and older epochs' generations are left for pruning, so "changed
 * since run R" stays as narrow as it was. Returns false when there was nothing to fold, or when
 * the generations changed under it (another compaction, a prune): it is tried again later.
 *
 * The generations are read and OR-ed without a lock; only the fold itself (an UPDATE of g and a
 * DELETE of the rest) is a locked transaction, a few milliseconds. The tailer's records insert
 * g+1 with a locking read of the newest generation, so a compaction that held its locks while it
 * read and OR-ed ~65 rows and wrote a 77 KiB row — 20–50 ms, 200–450 ms when the machine was
 * saturated — held up every record behind it, and every target commit behind those (write-ahead):
 * the bench's live tail stalled all its pipelines at once every ~3 s. Reading unlocked is sound
 * because a generation is never changed but by a compaction, which rewrites only the newest
 * generation it read: g keeps its number, so it stays in its epoch whatever was opened since
 * (an epoch is a generation above g), and the UPDATE and DELETE each check that they found
 * exactly what was read (same encoding and count at g, every other row still there); otherwise
 * the transaction is rolled back and nothing changed.
 */
export async function compactChanges(
  conn: Connection,
  jobId: number,
  shard: string,
  /** Tests: runs between the unlocked read and the fold. */
  afterRead?: () => Promise<void>,
): Promise<boolean> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT shard, generation, bits, encoding, k, m, inserted FROM ${BLOOM}
      WHERE job_id = ? AND shard = ?
        AND generation >= (SELECT COALESCE(MAX(epoch), 0) FROM ${EPOCHS} WHERE job_id = ? AND shard = ?)
      ORDER BY generation`,
    [jobId, shard, jobId, shard],
  );
  const m = Number(rows[0]?.m);
  const k = Number(rows[0]?.k);
  // Nothing to fold; or filters of another size (another reshard version's sizing): left as they are.
  if (rows.length < 2 || rows.some((r) => Number(r.m) !== m || Number(r.k) !== k)) return false;
  const union = new BloomFilter(m, k);
  for (const r of rows) filterOfRow(r, union);
  const newest = rows[rows.length - 1]!;
  const last = Number(newest.generation);
  const folded = rows.slice(0, -1).map((r) => Number(r.generation));
  await afterRead?.();
  await conn.beginTransaction();
  try {
    const [updated] = await conn.query<ResultSetHeader>(
      `UPDATE ${BLOOM} SET bits = ?, encoding = ${WHOLE}, inserted = ?
        WHERE job_id = ? AND shard = ? AND generation = ? AND encoding = ? AND inserted = ?`,
      [
        wholeBits(union),
        union.inserted,
        jobId,
        shard,
        last,
        Number(newest.encoding),
        Number(newest.inserted),
      ],
    );
    // A range of the primary key, not IN (…): on a small table with stale statistics the server
    // planned IN as a full scan, locking every job's rows (seen in review). Nothing is ever
    // inserted below the newest generation, so the range holds exactly the generations read,
    // unless some are gone (counted below).
    const [deleted] = await conn.query<ResultSetHeader>(
      `DELETE FROM ${BLOOM} WHERE job_id = ? AND shard = ? AND generation >= ? AND generation < ?`,
      [jobId, shard, folded[0], last],
    );
    if (updated.affectedRows !== 1 || deleted.affectedRows !== folded.length) {
      await conn.rollback();
      return false;
    }
    await conn.commit();
    return true;
  } catch (e) {
    await conn.rollback().catch(() => undefined);
    const errno = (e as { errno?: number }).errno;
    if (errno === 1213 || errno === 1205) return false;
    throw e;
  }
}

/**
 * Per control connection and (job, shard): the keys this connection has recorded in the current
 * epoch (table \0 target \0 key), so a row changed again and again is recorded once per epoch. Only
 * committed keys are in it; a new epoch starts it afresh. Keyed by the connection object, so it
 * never speaks for another control database.
 */
const recordedKeys = new WeakMap<object, Map<string, { epoch: number; keys: Set<string> }>>();

/**
 * Add keys as rows of generation `generation`, counted to the epoch it belongs to (inside
 * insertGeneration's transaction, `base` being the newest generation before it). Returns what to
 * remember once the transaction commits. No epoch yet (no verify run has opened one): nothing
 * reads keys before the first epoch, so none are kept. An overflowed epoch keeps no more.
 */
async function addKeys(
  st: Statements,
  conn: Connection,
  jobId: number,
  shard: string,
  generation: number,
  ep: EpochRow | undefined,
  keys: Map<string, Map<string, Map<string, Buffer>>>,
  maxKeys: number,
): Promise<(() => void) | undefined> {
  if (!ep || ep.overflowed) return undefined;
  const epoch = ep.epoch;
  const byShard = recordedKeys.get(conn) ?? new Map<string, { epoch: number; keys: Set<string> }>();
  const mine = byShard.get(`${jobId}\0${shard}`);
  const known = mine?.epoch === epoch ? mine.keys : new Set<string>();
  const fresh: string[] = [];
  const values: unknown[][] = [];
  for (const [table, byTarget] of keys) {
    for (const [target, m] of byTarget) {
      const list: Buffer[] = [];
      for (const [k, pk] of m) {
        const id = `${table}\0${target}\0${k}`;
        if (known.has(id)) continue;
        fresh.push(id);
        list.push(pk);
      }
      packKeys(list).forEach((p, part) => {
        values.push([jobId, shard, generation, table, target, part, p.count, p.pks]);
      });
    }
  }
  if (fresh.length === 0) return undefined;
  const count = ep.keyCount + fresh.length;
  if (count > maxKeys) {
    await st.write(`UPDATE ${EPOCHS} SET overflowed = 1 WHERE job_id = ? AND shard = ? AND epoch = ?`, [
      jobId,
      shard,
      epoch,
    ]);
    return () => byShard.delete(`${jobId}\0${shard}`);
  }
  // As few statements as fit the packet limit: the tailer waits for this write before its
  // target commits, and a write has a row per table and target (18 for the shop fixture).
  for (let i = 0; i < values.length; ) {
    const batch: unknown[][] = [];
    let bytes = 0;
    while (
      i < values.length &&
      (batch.length === 0 || bytes + (values[i]![7] as Buffer).length <= KEYS_STATEMENT_BYTES)
    ) {
      bytes += (values[i]![7] as Buffer).length;
      batch.push(values[i++]!);
    }
    await st.write(
      `INSERT INTO ${KEYS} (job_id, shard, generation, table_name, target, part, key_count, pks) VALUES ?`,
      [batch],
    );
  }
  await st.write(`UPDATE ${EPOCHS} SET key_count = ? WHERE job_id = ? AND shard = ? AND epoch = ?`, [
    count,
    jobId,
    shard,
    epoch,
  ]);
  return () => {
    for (const id of fresh) known.add(id);
    byShard.set(`${jobId}\0${shard}`, { epoch, keys: known });
    recordedKeys.set(conn, byShard);
  };
}

/**
 * Record changed rows for incremental verify: for the tailer, before it applies them. Runs its own
 * transaction on `control.conn` (do not call it inside another). Safe to repeat and to call from
 * several processes. `source` is the source shard whose stream produced the changes.
 * Returns the generation written (or undefined when there was nothing to record).
 * `maxKeys` (tests): the exact-key bound per epoch, CHANGED_KEYS_PER_EPOCH by default.
 */
export async function recordChanges(
  control: Pick<ControlConnection, 'conn'>,
  jobId: number,
  source: string,
  changes: Iterable<ChangedRow>,
  opts: { maxKeys?: number } = {},
): Promise<number | undefined> {
  const list = [...changes];
  if (list.length === 0) return undefined;
  const keys = keysByTable(list);
  const conn = control.conn;
  let remember: (() => void) | undefined;
  const generation = await insertGeneration(
    conn,
    jobId,
    source,
    () => {
      // A delta: only this write's changes (readers OR the generations of a range together).
      const f = BloomFilter.create(CHANGE_FILTER_KEYS, CHANGE_FILTER_FP);
      addChanges(f, list);
      return f;
    },
    async (st, base, generation, epoch) => {
      remember =
        base !== undefined
          ? await addKeys(
              st,
              conn,
              jobId,
              source,
              generation,
              epoch,
              keys,
              opts.maxKeys ?? CHANGED_KEYS_PER_EPOCH,
            )
          : undefined;
    },
  );
  remember?.();
  return generation;
}

/**
 * Start a new epoch for each shard: an empty generation each, and its (empty) key list. Returns
 * {shard: generation}; the changes recorded from now on are in generations ≥ those numbers.
 */
export async function openEpoch(
  conn: Connection,
  jobId: number,
  shards: readonly string[],
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const shard of shards) {
    out[shard] = await insertGeneration(
      conn,
      jobId,
      shard,
      () => BloomFilter.create(CHANGE_FILTER_KEYS, CHANGE_FILTER_FP),
      async (st, _base, generation) => {
        // A number seen before (generations are never reused while their chain exists, so this
        // is defensive): keys may be left from then, so the epoch cannot claim to be exact.
        await st.write(
          `INSERT INTO ${EPOCHS} (job_id, shard, epoch) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE overflowed = 1`,
          [jobId, shard, generation],
        );
      },
    );
  }
  return out;
}

/**
 * Drop generations, epochs and keys older than an epoch (after a clean run that started it, they
 * are never read again). Epochs go first: a reader that still sees an epoch after reading its
 * keys (loadChangedKeys) knows it read them whole.
 */
export async function pruneChangesBefore(
  conn: Connection,
  jobId: number,
  epoch: Readonly<Record<string, number>>,
): Promise<void> {
  // A tailer's compaction folds downwards from the newest generation while this deletes upwards:
  // the two can deadlock (1213), and the server may pick either. Each statement is idempotent, so
  // the whole prune is simply run again.
  await withRetry(() => pruneOnce(conn, jobId, epoch), {
    label: 'dropping old change records',
    attempts: 5,
    baseMs: 20,
  });
}

async function pruneOnce(
  conn: Connection,
  jobId: number,
  epoch: Readonly<Record<string, number>>,
): Promise<void> {
  for (const [shard, generation] of Object.entries(epoch)) {
    await conn.query(`DELETE FROM ${EPOCHS} WHERE job_id = ? AND shard = ? AND epoch < ?`, [
      jobId,
      shard,
      generation,
    ]);
    for (const table of [BLOOM, KEYS]) {
      await conn.query(`DELETE FROM ${table} WHERE job_id = ? AND shard = ? AND generation < ?`, [
        jobId,
        shard,
        generation,
      ]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Exact keys: reading

/**
 * One table's recorded keys and where each is to be looked up: on the shard that recorded it (its
 * source) and on the targets its changes were applied to. A key recorded without a target is
 * looked up on every shard.
 */
export interface RecordedKeys {
  /** Every key, once (deduplicated across epochs, sources and targets). */
  keys: RawRow[];
  /** Shard name → the keys to look up there (each once; none of `everywhere`). */
  at: Map<string, RawRow[]>;
  /** Keys to look up on every shard. */
  everywhere: RawRow[];
}

/** The exact keys changed between two epochs, or why they are not known. */
export type ExactChanges =
  | {
      complete: true;
      /** Per table, every primary key recorded and where. */
      keys: Map<string, RecordedKeys>;
      count: number;
    }
  | { complete: false; reason: string };

/**
 * The keys recorded in epochs `since` ≤ e < `until` of every shard in `shards` (`until`: the
 * epoch the current run opened; epochs before it are closed — every writer now writes into it or
 * a later one — so their lists no longer grow). Complete only when every shard has the epoch
 * `since` names (opened with its key list), none of the epochs in range overflowed, and together
 * they hold at most `maxKeys` keys.
 */
export async function loadChangedKeys(
  conn: Connection,
  jobId: number,
  shards: readonly string[],
  since: Readonly<Record<string, number>>,
  until: Readonly<Record<string, number>>,
  maxKeys = CHANGED_KEYS_PER_EPOCH,
): Promise<ExactChanges> {
  if (shards.length === 0) return { complete: true, keys: new Map(), count: 0 };
  const [epochs] = await conn.query<RowDataPacket[]>(
    `SELECT shard, epoch, key_count, overflowed FROM ${EPOCHS} WHERE job_id = ?`,
    [jobId],
  );
  let total = 0;
  for (const shard of shards) {
    const from = since[shard];
    const to = until[shard] ?? Number.POSITIVE_INFINITY;
    if (from === undefined) return { complete: false, reason: `no change epoch recorded for shard ${shard}` };
    const mine = epochs.filter(
      (r) => String(r.shard) === shard && Number(r.epoch) >= from && Number(r.epoch) < to,
    );
    if (!mine.some((r) => Number(r.epoch) === from))
      return { complete: false, reason: `epoch ${from} of shard ${shard} has no key list` };
    const over = mine.find((r) => Number(r.overflowed) !== 0);
    if (over)
      return {
        complete: false,
        reason: `epoch ${Number(over.epoch)} of shard ${shard} overflowed its key list`,
      };
    total += mine.reduce((a, r) => a + Number(r.key_count), 0);
  }
  if (total > maxKeys)
    return {
      complete: false,
      reason: `${thousands(total)} changed keys (more than ${thousands(maxKeys)})`,
    };
  // The keys of epochs [since, until) are the rows of generations [since, until).
  const keys = new Map<string, KeyPlaces>();
  for (const shard of shards) {
    const sql = conn.format(
      `SELECT table_name, target, pks FROM ${KEYS} WHERE job_id = ? AND shard = ? AND generation >= ? AND generation < ?`,
      [jobId, shard, since[shard], until[shard] ?? 2 ** 32],
    );
    for (const r of await fetchRows(conn, sql)) {
      const name = r[0]!.toString('utf8');
      const target = r[1]!.toString('utf8');
      let t = keys.get(name);
      if (!t) {
        t = { all: new Map(), at: new Map(), everywhere: new Set() };
        keys.set(name, t);
      }
      const into = t;
      const here = placeSet(into, shard);
      const there = target === '' ? into.everywhere : placeSet(into, target);
      // r[2] is this statement's own buffer (nothing reuses it): the keys are views of it.
      const pks = r[2]!;
      unpackKeys(pks, (off, end) => {
        const k = pks.toString('latin1', off, end);
        if (!into.all.has(k)) into.all.set(k, decodePk(pks, off, end));
        here.add(k);
        there.add(k);
      });
    }
  }
  // A run that finished clean meanwhile may have pruned these epochs (concurrent verifies): their
  // first epochs still being there means none of their keys was deleted before being read.
  const [left] = await conn.query<RowDataPacket[]>(
    `SELECT shard, epoch FROM ${EPOCHS} WHERE job_id = ? AND (${shards.map(() => '(shard = ? AND epoch = ?)').join(' OR ')})`,
    [jobId, ...shards.flatMap((sh) => [sh, since[sh]])],
  );
  if (left.length < shards.length)
    return { complete: false, reason: 'the key lists were pruned meanwhile by a concurrent clean run' };
  let count = 0;
  const out = new Map<string, RecordedKeys>();
  for (const [table, t] of keys) {
    const rows = (ks: Iterable<string>) => [...ks].map((k) => t.all.get(k)!);
    const at = new Map<string, RawRow[]>();
    for (const [shard, set] of t.at) at.set(shard, rows([...set].filter((k) => !t.everywhere.has(k))));
    out.set(table, { keys: [...t.all.values()], at, everywhere: rows(t.everywhere) });
    count += t.all.size;
  }
  return { complete: true, keys: out, count };
}

/** A table's keys while they are read: by encoding, and the places each is to be looked up. */
interface KeyPlaces {
  all: Map<string, RawRow>;
  at: Map<string, Set<string>>;
  everywhere: Set<string>;
}

function placeSet(t: KeyPlaces, shard: string): Set<string> {
  let s = t.at.get(shard);
  if (!s) {
    s = new Set();
    t.at.set(shard, s);
  }
  return s;
}
