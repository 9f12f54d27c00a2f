/**
 * Everything that must NOT freeze, on the shared sandbox servers (s0, s1 → t0, t1, t2):
 *   - without --execute: the preconditions and the prediction, nothing changed (CLI, exit 3 when
 *     not ready);
 *   - acceptance: a predicted freeze over budget aborts with nothing frozen (read_only still OFF on
 *     every source, no journal attempt, the routing still the old topology, job state unchanged);
 *   - reads first: a canary of the moving pairs, then every read, on the new shards (writes stay);
 *   - rollback before cutover: reads routed back and the job cancelled in one step, copied rows
 *     purged from the targets (refused while a tailer still streams).
 * If a defect did freeze a shared server, the `afterAll` turns read_only back OFF so other test
 * files are not hurt.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startTail, type TailHandle } from '../../../src/binlog/tailer.js';
import { runCutover, runRollback } from '../../../src/cutover/index.js';
import { ReshardError } from '../../../src/errors.js';
import { parseRouting } from '../../../src/status/routing.js';
import { topologyHash } from '../../../src/topology/load.js';
import { runVerify } from '../../../src/verify/index.js';
import { port, type SandboxName } from '../../support/db.js';
import {
  activeRoutings,
  copyAndVerify,
  ctlQuery,
  type Estate,
  jobState,
  makeEstate,
  openCtx,
  portConn,
  readOnly,
  runCli,
  setReadOnly,
} from './helpers.js';

const SHARED: SandboxName[] = ['s0', 's1', 't0', 't1', 't2'];
let e: Estate | undefined;

afterAll(async () => {
  for (const n of SHARED) if (await readOnly(port(n)).catch(() => false)) await setReadOnly(port(n), false);
  await e?.drop().catch(() => undefined);
});

async function rowsOn(p: number, db: string): Promise<number> {
  const c = await portConn(p);
  try {
    let n = 0;
    for (const t of ['users', 'orders', 'order_items', 'coupons', 'group', 'type_corpus']) {
      const [r] = await c.query(`SELECT COUNT(*) AS n FROM \`${db}\`.\`${t}\``);
      n += Number((r as { n: number }[])[0]?.n);
    }
    return n;
  } finally {
    await c.end();
  }
}

describe('cutover preconditions, prediction, reads first and rollback before cutover (shared sandbox, no freeze)', () => {
  it('checks, predicts, refuses an over-budget freeze without freezing, flips reads, cancels and purges', async () => {
    e = await makeEstate({
      prefix: 'co_pre',
      rows: 4000,
      seed: 9,
      appUser: false,
      ports: { s0: port('s0'), s1: port('s1'), t0: port('t0'), t1: port('t1'), t2: port('t2') },
    });
    const est = e;
    const base = { planPath: est.planPath, control: est.controlDsn, metaDb: est.metaDb };
    await copyAndVerify(est, { verify: false });
    const sourceRows =
      (await rowsOn(port('s0'), `${est.db}_s0`)) + (await rowsOn(port('s1'), `${est.db}_s1`));

    // 1. Dry run before any verify: not ready (exit 3), nothing changed.
    const dry = await runCli([
      'cutover',
      '--plan',
      est.planPath,
      '--control',
      est.controlDsn,
      '--meta-db',
      est.metaDb,
      '--json',
    ]);
    expect(dry.code, dry.stderr).toBe(3);
    const dr = JSON.parse(dry.stdout) as {
      ok: boolean;
      mode: string;
      checks: { name: string; ok: boolean }[];
    };
    expect(dr).toMatchObject({ ok: false, mode: 'dry-run' });
    expect(dr.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['verify']);

    const ctx = await openCtx(est);
    let tail: TailHandle | undefined;
    try {
      tail = await startTail({ ctx, metaDb: est.metaDb, statusIntervalMs: 500 });
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);

      // 2. Dry run with a running tailer: the drain is measured and the freeze predicted.
      const plan = await runCutover({ ...base, maxFreezeMs: 60_000 });
      expect(plan.mode).toBe('dry-run');
      expect(plan.ok).toBe(true);
      expect(plan.drain).toEqual({ s0: 'external', s1: 'external' });
      expect(plan.prediction?.probesMs.length).toBe(2);
      expect(plan.prediction?.totalMs).toBeGreaterThan(0);
      expect(plan.freezeServers.map((s) => s.shards)).toEqual([['s0'], ['s1']]);
      await tail.stop();
      tail = undefined;

      // 3. Acceptance: a predicted freeze over budget aborts with nothing frozen.
      const err = await runCutover({ ...base, execute: true, maxFreezeMs: 1 }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(ReshardError);
      expect((err as ReshardError).code).toBe('E_CUTOVER_FREEZE_BUDGET');
      expect((err as ReshardError).exitCode).toBe(3);
      for (const n of ['s0', 's1'] as const) expect(await readOnly(port(n))).toBe(false);
      expect(
        await ctlQuery(est, "SELECT id FROM reshard_cutover_journal WHERE step LIKE 'cutover.%'"),
      ).toEqual([]);
      // (--execute first made the old topology the active routing version: one active from here on.)
      const baseline = await activeRoutings(est);
      expect(baseline.map((r) => r.writesHash)).toEqual([topologyHash(est.from)]);
      expect(await jobState(est)).toBe('catching-up');

      // 4. Reads first: a canary, then all reads; writes stay on the old shards; exactly one active version.
      tail = await startTail({ ctx, metaDb: est.metaDb, statusIntervalMs: 500 });
      await tail.waitCaughtUp({ timeoutMs: 60_000 });
      const canary = await runCutover({
        ...base,
        execute: true,
        readsOnly: true,
        canary: 0.25,
        maxLagMs: 10_000,
      });
      expect(canary.mode).toBe('reads-only');
      const reads = await runCutover({ ...base, execute: true, readsOnly: true, maxLagMs: 10_000 });
      expect(reads.routingVersion).toBe(canary.routingVersion! + 1);
      const docs = await ctlQuery<{ version: number; active: number; routing: string }>(
        est,
        'SELECT version, active, routing FROM reshard_routing_versions ORDER BY version',
      );
      // baseline (old topology, now inactive), canary, all reads
      expect(docs.map((d) => Number(d.active))).toEqual([0, 0, 1]);
      const canaryDoc = parseRouting(docs[1]!.routing);
      expect(canaryDoc.writes.topology.topologyHash).toBe(topologyHash(est.from));
      expect(canaryDoc.reads.canary?.flipped).toHaveLength(2); // ⌈0.25 × 6 moving pairs⌉
      const readsDoc = parseRouting(docs[2]!.routing);
      expect(readsDoc.reads.topology.topologyHash).toBe(topologyHash(est.to));
      expect(readsDoc.writes.topology.topologyHash).toBe(topologyHash(est.from));
      expect(await jobState(est)).toBe('catching-up');
      for (const n of ['s0', 's1'] as const) expect(await readOnly(port(n))).toBe(false);

      // 5. Rollback before cutover: refused while the tailer would re-create purged rows…
      const busy = await runRollback({ ...base, execute: true, purgeTargets: true }).catch((x: unknown) => x);
      expect((busy as ReshardError).code).toBe('E_ROLLBACK_TAIL_RUNNING');
      await tail.stop();
      tail = undefined;
      // …then reads go back to the old shards and the job is cancelled together, and the targets purged.
      const rb = await runRollback({ ...base, execute: true, purgeTargets: true });
      expect(rb.mode).toBe('cancelled');
      expect(await jobState(est)).toBe('cancelled');
      const active = await activeRoutings(est);
      expect(active).toHaveLength(1);
      expect([active[0]!.writesHash, active[0]!.readsHash]).toEqual([
        topologyHash(est.from),
        topologyHash(est.from),
      ]);
      expect(rb.purge?.deleted).toBeGreaterThan(0);
      for (const t of ['t0', 't1', 't2'] as const) expect(await rowsOn(port(t), `${est.db}_${t}`)).toBe(0);
      const after = (await rowsOn(port('s0'), `${est.db}_s0`)) + (await rowsOn(port('s1'), `${est.db}_s1`));
      expect(after).toBe(sourceRows);
      // Idempotent: again on the cancelled job only purges (nothing left).
      const again = await runRollback({ ...base, execute: true, purgeTargets: true });
      expect(again.purge?.deleted).toBe(0);
    } finally {
      await tail?.stop().catch(() => undefined);
      await ctx.close();
    }
  }, 240_000);
});
