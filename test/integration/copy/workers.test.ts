/**
 * Scale-out: several workers share one job through chunk claims. Every chunk is copied, none
 * twice — except a chunk whose worker stopped renewing its lease, which another worker retakes
 * and copies again, idempotently.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCopy } from '../../../src/copy/run.js';
import { compareEstate } from '../../support/compare.js';
import { port, rootConn } from '../../support/db.js';
import { untilQuiet } from '../../support/quiesce.js';
import { chunkRows, type Estate, jobState, makeEstate, spawnReshard } from './helpers.js';

describe('two workers on one job', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copy2w', rows: 30_000, seed: 11 });
  });
  afterAll(async () => e?.drop());

  it('copy every chunk exactly once between them', async () => {
    const common = {
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none' as const,
      chunkTimeMs: 150,
    };
    const [a, b] = await Promise.all([
      runCopy({ ...common, workerId: 'worker-a' }),
      runCopy({ ...common, workerId: 'worker-b' }),
    ]);
    expect(a.complete && b.complete).toBe(true);
    const chunks = await chunkRows(e);
    // On failure, every chunk's row says who copied it, how often and how it ended.
    const all = JSON.stringify(chunks);
    expect(chunks.length, all).toBeGreaterThan(20);
    expect(
      chunks.filter((c) => c.state !== 'done'),
      all,
    ).toEqual([]);
    expect(
      chunks.filter((c) => Number(c.attempts) !== 1),
      all,
    ).toEqual([]);
    const by = new Map<string, number>();
    for (const c of chunks) by.set(c.worker_id ?? '', (by.get(c.worker_id ?? '') ?? 0) + 1);
    expect([...by.keys()].sort(), all).toEqual(['worker-a', 'worker-b']);
    // The rows each worker reports add up to the job's, with nothing counted twice.
    const total = chunks.reduce((s, c) => s + Number(c.rows_copied), 0);
    expect(a.rows + b.rows).toBe(total);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    expect(diff.rows.source).toBe(total);
    expect(await jobState(e)).toBe('catching-up');
  });
});

describe('a frozen worker', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copylease', rows: 12_000, seed: 12 });
  });
  afterAll(async () => e?.drop());

  it('loses its chunks when its lease expires; another worker re-copies them and finishes the job', async () => {
    // Worker A: slow, short lease. Frozen with SIGSTOP, it keeps its control session (and its
    // identity lock) but stops renewing, so only the lease can free its chunks.
    const a = spawnReshard(
      [
        'copy',
        '--plan',
        e.planPath,
        '--control',
        e.controlDsn,
        '--meta-db',
        e.metaDb,
        '--execute',
        '--rate',
        '3000',
        '--worker-id',
        'worker-a',
      ],
      { RESHARD_COPY_LEASE_MS: '1500' },
    );
    try {
      // Freeze A while it holds a chunk. What A holds is read only once A is quiet: a statement
      // it sent just before SIGSTOP (a chunk's 'done' COMMIT, a new claim) may still land on the
      // control server, so reading right after the signal could name a chunk A then finished, or
      // miss one it claimed. A that finished its chunk before it stopped holds none: let it run
      // on and freeze it again.
      const ctl = await rootConn('ctl', e.controlDb);
      let frozen: Awaited<ReturnType<typeof chunkRows>> = [];
      try {
        const deadline = Date.now() + 60_000;
        while (frozen.length === 0 && Date.now() < deadline) {
          const rows = await chunkRows(e).catch(() => []);
          const held = rows.filter((c) => c.state === 'claimed' && c.worker_id === 'worker-a');
          if (held.length === 0 || !rows.some((c) => c.state === 'done')) {
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          a.child.kill('SIGSTOP');
          await untilQuiet(a.child.pid!, port('ctl'), ctl);
          frozen = (await chunkRows(e)).filter((c) => c.state === 'claimed' && c.worker_id === 'worker-a');
          if (frozen.length === 0) a.child.kill('SIGCONT');
        }
        expect(frozen.length).toBeGreaterThan(0);
        // The leases expire (A renews them no more): by the control server's clock, not a sleep
        // of the test's (it was 2 s against a 1.5 s lease).
        const until = Date.now() + 60_000;
        for (;;) {
          const [r] = await ctl.query(
            "SELECT COUNT(*) AS n FROM reshard_copy_chunks WHERE state = 'claimed' AND worker_id = 'worker-a' AND lease_expires_at >= NOW(6)",
          );
          if (Number((r as { n: string }[])[0]!.n) === 0) break;
          expect(Date.now(), "the frozen worker's leases never expired").toBeLessThan(until);
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await ctl.end();
      }
      // Worker B starts; once it has retaken A's chunks, A dies for good (its locks go with it).
      const b = runCopy({
        planPath: e.planPath,
        control: e.controlDsn,
        metaDb: e.metaDb,
        progress: 'none',
        workerId: 'worker-b',
      });
      const until = Date.now() + 60_000;
      let retook = false;
      while (Date.now() < until) {
        const rows = await chunkRows(e);
        const mine = frozen.map((f) =>
          rows.find(
            (r) =>
              r.source_shard === f.source_shard && r.table_name === f.table_name && r.chunk_id === f.chunk_id,
          ),
        );
        if (mine.every((r) => r && r.worker_id === 'worker-b')) {
          retook = true;
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      // B took them while A was still alive (frozen, holding its identity lock): by the lease.
      expect(retook, "B retook A's chunks before A died").toBe(true);
      a.child.kill('SIGKILL');
      a.child.kill('SIGCONT');
      const s = await b;
      expect(s.complete).toBe(true);
      const chunks = await chunkRows(e);
      expect(chunks.filter((c) => c.state !== 'done')).toEqual([]);
      const retaken = chunks.filter((c) => Number(c.attempts) > 1);
      // Exactly the chunks A held were copied twice, and B finished them.
      expect(retaken.map((c) => `${c.source_shard}/${c.table_name}/${c.chunk_id}`).sort()).toEqual(
        frozen.map((c) => `${c.source_shard}/${c.table_name}/${c.chunk_id}`).sort(),
      );
      // B finished every one of them. A chunk can be taken more than once more (a retake whose
      // lease ran out while the loaded machine stalled): re-copying is idempotent, so only who
      // finished it is asserted, with the rows printed when it fails.
      expect(
        retaken.filter((c) => c.worker_id !== 'worker-b'),
        JSON.stringify(
          retaken.map((c) => [c.source_shard, c.table_name, c.chunk_id, c.worker_id, c.attempts]),
        ),
      ).toEqual([]);
      const diff = await compareEstate({ from: e.from, to: e.to });
      expect(diff.differences).toEqual([]);
    } finally {
      a.child.kill('SIGKILL');
      a.child.kill('SIGCONT');
      await a.done;
    }
  });
});
