/**
 * The copy's fence (src/apply/applier.ts checkCopyFence / fenceCopy). A copy worker that lost its
 * control connection (and its identity lock with it, so cutover counts no live worker) can still
 * hold a page read under shared locks on the source: the freeze kills only sessions that modified
 * rows. Its write could then land on the new owner after the flip, over a newer row the
 * application wrote there (suspected by review F). Cutover sets the fence under the freeze, before
 * it verifies; every copy write reads it under a shared lock just before COMMIT.
 */
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fenceCopy, type RowOp, sourceOwnerFn, TargetApplier } from '../../../src/apply/applier.js';
import { loadTableMeta, type TableMeta } from '../../../src/apply/table.js';
import { bulkPlan, TsvEncoder } from '../../../src/copy/bulk.js';
import { TargetWriter } from '../../../src/copy/copier.js';
import { createRouter } from '../../../src/plan/router.js';
import { requireTableDefinition } from '../../../src/preflight/schema.js';
import { parseTopology } from '../../../src/topology/load.js';
import { createDatabases, rootConn, topologyYaml, uniqueDb } from '../../support/db.js';

const SCHEMA =
  'CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, note VARCHAR(40) NULL) ENGINE=InnoDB;';

describe('the copy fence', () => {
  const db = uniqueDb('fence');
  const metaDb = `${db}_meta`;
  let drop: () => Promise<void>;
  let conn: Connection;
  let orders: TableMeta;
  const closers: (() => Promise<void>)[] = [];
  const topo = parseTopology(
    topologyYaml({
      shards: [
        { name: 's0', server: 's0', database: 'x' },
        { name: 's1', server: 's1', database: 'x' },
      ],
      tables: [{ name: 'orders', shardKey: 'user_id' }],
      scheme: '{ type: hash-mod, hash: identity }',
    }),
    'fence.yaml',
  );
  const router = createRouter(topo);
  const ownerOf = sourceOwnerFn((k) => router.ownerOf(k));

  async function copyApplier(jobId: number): Promise<TargetApplier> {
    const a = new TargetApplier({
      jobId,
      owner: `test/${db}/${jobId}`,
      target: 't0',
      metaDb,
      sourceOwnerOf: ownerOf,
      connect: () => rootConn('t0', db, { multipleStatements: true }),
      copyFence: true,
    });
    await a.open();
    closers.push(() => a.close());
    return a;
  }
  const up = (row: string[]): RowOp => ({ kind: 'upsert', table: orders, source: 's0', row });
  const ids = async () => {
    const [r] = await conn.query<RowDataPacket[]>('SELECT id FROM orders ORDER BY id');
    return r.map((x) => Number(x.id));
  };
  const rejection = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      (e: unknown) => (e as { code?: string }).code,
    );

  beforeAll(async () => {
    drop = await createDatabases(['t0'], db, SCHEMA);
    conn = await rootConn('t0', db);
    orders = await loadTableMeta(conn, db, { name: 'orders', shardKey: 'user_id' }, 'test');
  });
  afterAll(async () => {
    for (const c of closers) await c().catch(() => undefined);
    await conn.query(`DROP DATABASE IF EXISTS \`${metaDb}\``);
    await conn.end();
    await drop();
  });

  it('a copy write through the applier commits before the fence and rolls back after it', async () => {
    await conn.query('DELETE FROM orders');
    const a = await copyApplier(1);
    await a.apply([up(['1', '2', 'before'])]);
    await fenceCopy(conn, metaDb, 1);
    expect(await rejection(a.apply([up(['2', '2', 'after'])]))).toBe('E_COPY_FENCED');
    expect(await ids()).toEqual([1]);
    // Another job's copy on the same target is not fenced.
    const b = await copyApplier(2);
    await b.apply([up(['3', '2', 'job 2'])]);
    expect(await ids()).toEqual([1, 3]);
  });

  it('a copy write through the bulk path (LOAD DATA) rolls back after the fence', async () => {
    await conn.query('DELETE FROM orders');
    const a = await copyApplier(3);
    const w = new TargetWriter(a, () => rootConn('t0', db), { disabled: false, target: 't0' });
    closers.push(() => w.close());
    const plan = bulkPlan(orders, await requireTableDefinition(conn, db, 'orders', 'test'))!;
    const batch = (id: string) => {
      const enc = new TsvEncoder(plan.modes, 1 << 20);
      enc.add([id, '2', 'bulk']);
      return enc.finish();
    };
    expect(await w.loadBatches(batch('10'), plan)).toBe(true);
    await fenceCopy(conn, metaDb, 3);
    expect(await rejection(w.loadBatches(batch('11'), plan))).toBe('E_COPY_FENCED');
    expect(await ids()).toEqual([10]);
  });

  it('a new job that claims the job id afresh is not fenced by an earlier job with that id', async () => {
    await conn.query('DELETE FROM orders');
    await copyApplier(5);
    await fenceCopy(conn, metaDb, 5);
    // The earlier job is gone; its jobs row removed (the E_META_OTHER_JOB hint), the fence left.
    await conn.query(`DELETE FROM \`${metaDb}\`.jobs WHERE job_id = 5`);
    const a = new TargetApplier({
      jobId: 5,
      owner: `test/${db}/5/another`,
      target: 't0',
      metaDb,
      sourceOwnerOf: ownerOf,
      connect: () => rootConn('t0', db, { multipleStatements: true }),
      copyFence: true,
    });
    await a.open();
    closers.push(() => a.close());
    await a.apply([up(['30', '2', 'new job'])]);
    expect(await ids()).toEqual([30]);
  });

  it('setting the fence waits for a copy write that already read it, which commits first', async () => {
    await conn.query('DELETE FROM orders');
    const a = await copyApplier(4);
    // A copy transaction stopped just after its fence check (held by the source check that
    // follows it, beforeCommit): it holds the fence row's shared lock.
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let checked!: () => void;
    const atCheck = new Promise<void>((r) => {
      checked = r;
    });
    const write = a.apply([up(['20', '2', 'in flight'])], undefined, {
      beforeCommit: async () => {
        checked();
        await held;
      },
    });
    await atCheck;
    const cutover = await rootConn('t0');
    closers.push(() => cutover.end());
    let fenced = false;
    const fencing = fenceCopy(cutover, metaDb, 4).then(() => {
      fenced = true;
    });
    await new Promise((r) => setTimeout(r, 400));
    expect(fenced).toBe(false); // waiting for the write's lock
    release();
    await write;
    await fencing;
    expect(fenced).toBe(true);
    expect(await ids()).toEqual([20]);
    // From now on the same worker's writes roll back.
    expect(await rejection(a.apply([up(['21', '2', 'late'])]))).toBe('E_COPY_FENCED');
    expect(await ids()).toEqual([20]);
  });
});
