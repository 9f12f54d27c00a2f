/**
 * Changed-row tracking for incremental verify: Bloom filters of change ids in the control schema
 * (`reshard_bloom_filters`).
 *
 * A change id is (table, top CHANGE_BITS bits of the row's pkHash) — see bucket.ts — so it names
 * a slice of every bucket of that table whatever bits a verify run uses, and a filter over change
 * ids can be enumerated (2^20 ids per table) to list what may have changed.
 *
 * Lifecycle and generations, per (job, source shard):
 *   - the tailer calls `recordChanges` for the rows it is about to apply (write-ahead: record,
 *     then apply; an unrecorded applied change would be invisible to incremental verify, a
 *     recorded unapplied one only costs a re-check). Each call writes generation g+1 = (latest
 *     generation g) ∪ (new ids) and deletes g in the same transaction, so the latest generation
 *     of an epoch holds every change of that epoch. Rows are only ever inserted whole: a reader
 *     sees the old generation or the new one, never a half-written bit array.
 *   - every verify run starts an epoch (`openEpoch`): it inserts an empty generation per source
 *     shard and remembers those numbers in its run record. "Changed since run R" is then the
 *     union of all generations ≥ R's numbers (`loadChangeSet`), which covers everything recorded
 *     after R started — including during R's own scan.
 *   - concurrency: two writers racing for generation g+1 collide on the primary key (errno 1062);
 *     the loser re-reads and retries, so no id is lost.
 *   - after a clean run, generations older than its epoch are dropped (`pruneChangesBefore`).
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import type { Value } from '../apply/values.js';
import { RetriesExhaustedError } from '../errors.js';
import { hashHi, hashLo, xxh64HalvesOfBytes } from '../plan/hash.js';
import type { ControlConnection } from '../state/control.js';
import { BloomFilter } from './bloom.js';
import { CHANGE_BITS, changeIdOf, pkHashOfValues } from './bucket.js';

const BLOOM = '`reshard_bloom_filters`';

/**
 * Filter sizing for one epoch of one source: 65 536 distinct change ids at 1% false positives
 * (628 kbit = 77 KiB, 7 hashes). Past that the rate grows smoothly; a saturated filter makes
 * incremental verify re-check more, never less.
 */
export const CHANGE_FILTER_KEYS = 65_536;
export const CHANGE_FILTER_FP = 0.01;

/** One changed row, as the tailer sees it: the table and its primary-key values (before and after images both). */
export interface ChangedRow {
  table: string;
  /** Primary-key values in key order, exact (src/apply/values.ts rules: DECIMAL and temporal as text). */
  pk: readonly Value[];
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

interface FilterRow {
  shard: string;
  generation: number;
  filter: BloomFilter;
}

function toFilterRow(r: RowDataPacket): FilterRow {
  const bits = r.bits as Buffer;
  return {
    shard: String(r.shard),
    generation: Number(r.generation),
    filter: new BloomFilter(Number(r.m), Number(r.k), new Uint8Array(bits), Number(r.inserted)),
  };
}

async function latest(conn: Connection, jobId: number, shard: string): Promise<FilterRow | undefined> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT shard, generation, bits, k, m, inserted FROM ${BLOOM} WHERE job_id = ? AND shard = ? ORDER BY generation DESC LIMIT 1`,
    [jobId, shard],
  );
  return rows[0] ? toFilterRow(rows[0]) : undefined;
}

/**
 * Changes recorded since an epoch: the union of every generation ≥ since[shard] (all
 * generations of shards `since` does not name; everything when `since` is null).
 */
export async function loadChangeSet(
  conn: Connection,
  jobId: number,
  since: Readonly<Record<string, number>> | null,
): Promise<ChangeSet> {
  const [rows] = await conn.query<RowDataPacket[]>(
    `SELECT shard, generation, bits, k, m, inserted FROM ${BLOOM} WHERE job_id = ? ORDER BY shard, generation`,
    [jobId],
  );
  const keep = rows.map(toFilterRow).filter((r) => since === null || r.generation >= (since[r.shard] ?? 0));
  return new ChangeSet(keep.map((r) => r.filter));
}

// ---------------------------------------------------------------------------------------------
// Writing

const MAX_ATTEMPTS = 20;

async function insertGeneration(
  conn: Connection,
  jobId: number,
  shard: string,
  build: (base: FilterRow | undefined) => { filter: BloomFilter; replaceBase: boolean },
): Promise<number> {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const base = await latest(conn, jobId, shard);
    const { filter, replaceBase } = build(base);
    const generation = (base?.generation ?? 0) + 1;
    await conn.beginTransaction();
    try {
      await conn.query(
        `INSERT INTO ${BLOOM} (job_id, shard, generation, bits, k, m, inserted) VALUES (?, ?, ?, ?, ?, ?, ?)`,
        [jobId, shard, generation, Buffer.from(filter.bits), filter.k, filter.m, filter.inserted],
      );
      if (base && replaceBase) {
        await conn.query(`DELETE FROM ${BLOOM} WHERE job_id = ? AND shard = ? AND generation = ?`, [
          jobId,
          shard,
          base.generation,
        ]);
      }
      await conn.commit();
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
 * Record changed rows for incremental verify: for the tailer, before it applies them. Runs its own
 * transaction on `control.conn` (do not call it inside another). Safe to repeat and to call from
 * several processes. `source` is the source shard whose stream produced the changes.
 * Returns the generation written (or undefined when there was nothing to record).
 */
export async function recordChanges(
  control: Pick<ControlConnection, 'conn'>,
  jobId: number,
  source: string,
  changes: Iterable<ChangedRow>,
): Promise<number | undefined> {
  const list = [...changes];
  if (list.length === 0) return undefined;
  return insertGeneration(control.conn, jobId, source, (base) => {
    const f = base
      ? new BloomFilter(base.filter.m, base.filter.k, Uint8Array.from(base.filter.bits), base.filter.inserted)
      : BloomFilter.create(CHANGE_FILTER_KEYS, CHANGE_FILTER_FP);
    addChanges(f, list);
    return { filter: f, replaceBase: true };
  });
}

/**
 * Start a new epoch for each shard: an empty generation each. Returns {shard: generation}; the
 * changes recorded from now on are in generations ≥ those numbers.
 */
export async function openEpoch(
  conn: Connection,
  jobId: number,
  shards: readonly string[],
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const shard of shards) {
    out[shard] = await insertGeneration(conn, jobId, shard, () => ({
      filter: BloomFilter.create(CHANGE_FILTER_KEYS, CHANGE_FILTER_FP),
      replaceBase: false,
    }));
  }
  return out;
}

/** Drop generations older than an epoch (after a clean run that started it, they are never read again). */
export async function pruneChangesBefore(
  conn: Connection,
  jobId: number,
  epoch: Readonly<Record<string, number>>,
): Promise<void> {
  for (const [shard, generation] of Object.entries(epoch)) {
    await conn.query(`DELETE FROM ${BLOOM} WHERE job_id = ? AND shard = ? AND generation < ?`, [
      jobId,
      shard,
      generation,
    ]);
  }
}
