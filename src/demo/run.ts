/**
 * `reshard demo`: the whole job on local sandbox servers, in one command, the way an operator
 * would run it — 2 sources, 3 targets, a live write load — and nothing left running afterwards.
 *
 *   sandbox up → seed sources (and empty targets) → init control schema → plan 2 → 3
 *   → start the write load → copy (records binlog positions first) + tail → stop the load
 *   → tail catches up → full verify → cutover (freeze, drain, incremental verify, flip)
 *   → summary → sandbox down
 *
 * It composes the same services the commands use; it adds no logic of its own.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startTail } from '../binlog/tailer.js';
import { runCopy } from '../copy/run.js';
import { runCutover } from '../cutover/cutover.js';
import { openJob } from '../job/context.js';
import { runLoad } from '../load/generator.js';
import { writePlanFile } from '../plan/planfile.js';
import { plan as makePlan } from '../plan/planner.js';
import { sandboxDown, sandboxUp } from '../sandbox/instances.js';
import { seed } from '../sandbox/seed.js';
import { connectControl } from '../state/control.js';
import { ensureControlSchema } from '../state/migrate.js';
import { loadTopology } from '../topology/load.js';
import { runVerify } from '../verify/verifier.js';

export interface DemoOptions {
  dir: string;
  basePort: number;
  rows: number;
  /** Write operations per second of the live load. */
  loadRate: number;
  keep: boolean;
  note: (line: string) => void;
  progress: 'auto' | 'none';
}

export interface DemoSummary {
  ok: boolean;
  rowsSeeded: number;
  rowsCopied: number;
  load: {
    operations: number;
    crossSourceMoves: number;
    sameSourceMoves: number;
    deletes: number;
    errors: number;
  };
  verify: { ok: boolean; sourceRows: number; targetRows: number; seconds: number };
  cutover: { ok: boolean; freezeMs: number | undefined; routingVersion: number | undefined };
  seconds: { total: number; seed: number; copy: number; catchUp: number; verify: number; cutover: number };
}

const ROOT = resolve(import.meta.dirname, '..', '..');

function topologyFor(fixture: string, ports: Record<string, number>, out: string): string {
  // The fixtures point at the default sandbox ports; the demo runs on its own ports.
  let text = readFileSync(join(ROOT, 'fixtures', 'topologies', fixture), 'utf8');
  const defaults: Record<string, number> = { s0: 34401, s1: 34402, t0: 34403, t1: 34404, t2: 34405 };
  for (const [name, p] of Object.entries(defaults))
    text = text.replaceAll(`port: ${p}`, `port: ${ports[name]}`);
  writeFileSync(out, text);
  return out;
}

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  const t0 = Date.now();
  const secs = (since: number) => (Date.now() - since) / 1000;
  mkdirSync(o.dir, { recursive: true });
  const sandboxDir = join(o.dir, 'sandbox');
  o.note(`1/8 starting 6 sandbox servers on ports ${o.basePort}-${o.basePort + 5} (state in ${sandboxDir})`);
  const manifest = await sandboxUp({
    dir: sandboxDir,
    names: ['ctl', 's0', 's1', 't0', 't1', 't2'],
    basePort: o.basePort,
  });
  try {
    const ports = Object.fromEntries(manifest.instances.map((i) => [i.name, i.port]));
    const fromPath = topologyFor('shop-2-hashmod.yaml', ports, join(o.dir, 'current.yaml'));
    const toPath = topologyFor('shop-3-hashmod.yaml', ports, join(o.dir, 'target.yaml'));
    const from = loadTopology(fromPath);
    const to = loadTopology(toPath);
    const control = `mysql://root@127.0.0.1:${ports.ctl}/reshard_control`;

    o.note(`2/8 seeding ${o.rows} rows into the 2 sources (each row on the shard that owns it)`);
    const tSeed = Date.now();
    const schemaSql = readFileSync(join(ROOT, 'fixtures', 'shop', 'schema.sql'), 'utf8');
    const seeded = await seed({ topology: from, rows: o.rows, seed: 1, schemaSql, replace: true });
    await seed({ topology: to, rows: 0, seed: 1, schemaSql, replace: true });
    const seedSeconds = secs(tSeed);

    o.note('3/8 control schema and plan (2 → 3 shards, hash-mod crc32)');
    const ctl = await connectControl(control);
    try {
      await ensureControlSchema(ctl);
    } finally {
      await ctl.close();
    }
    const planPath = join(o.dir, 'plan.json');
    writePlanFile(planPath, makePlan(from, to));

    o.note(
      `4/8 live write load at ${o.loadRate} ops/s on the sources (inserts, updates, deletes, shard-key moves)`,
    );
    const stopLoad = new AbortController();
    const load = runLoad({
      topology: from,
      rate: o.loadRate,
      signal: stopLoad.signal,
      seed: 7,
      concurrency: 4,
    });

    o.note('5/8 copy (binlog positions recorded first) while the tailer applies the live changes');
    const tCopy = Date.now();
    const copy = runCopy({ planPath, control, progress: o.progress === 'none' ? 'none' : 'auto' });
    // The tailer starts from the positions the copy records before its first chunk.
    let tailCtx = await openJob({ planPath, control, create: true });
    for (let i = 0; i < 600; i++) {
      const [r] = await tailCtx.control.conn.query(
        "SELECT COUNT(*) AS n FROM reshard_binlog_positions WHERE job_id = ? AND direction = 'forward' AND start_binlog_file IS NOT NULL",
        [tailCtx.job.id],
      );
      if (Number((r as { n: unknown }[])[0]?.n) >= from.shards.length) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const tail = await startTail({ ctx: tailCtx, onNote: o.note });
    let loadResult: Awaited<typeof load>;
    let copied: Awaited<typeof copy>;
    try {
      copied = await copy;
      const copySeconds = secs(tCopy);
      o.note(`   copied ${copied.rows} rows in ${copySeconds.toFixed(1)} s; letting the load run 3 s more`);
      await new Promise((res) => setTimeout(res, 3000));
      stopLoad.abort();
      loadResult = await load;
      o.note(
        `6/8 load stopped after ${loadResult.operations} operations; waiting for the tailer to catch up`,
      );
      const tCatch = Date.now();
      await tail.waitCaughtUp({ timeoutMs: 300_000 });
      const catchUp = secs(tCatch);
      await tail.stop();
      await tailCtx.close();

      o.note('7/8 full verify (CRC-64 per row, count + sum mod 2^64 per bucket)');
      const tVerify = Date.now();
      const verify = await runVerify({ planPath, control, preflight: false });
      const verifySeconds = secs(tVerify);
      o.note(
        `   verify ${verify.ok ? 'clean' : 'MISMATCH'}: ${verify.totals.sourceRows} source rows = ${verify.totals.targetRows} target rows`,
      );

      o.note('8/8 cutover: freeze sources, drain, incremental verify, flip routing, arm reverse replication');
      const tCut = Date.now();
      const cut = await runCutover({
        planPath,
        control,
        execute: true,
        onNote: o.note,
        routingOut: join(o.dir, 'routing.json'),
      });
      const cutSeconds = secs(tCut);
      return {
        ok: verify.ok && cut.ok,
        rowsSeeded: seeded.rows,
        rowsCopied: copied.rows,
        load: {
          operations: loadResult.operations,
          crossSourceMoves: loadResult.crossSourceMoves,
          sameSourceMoves: loadResult.sameSourceMoves,
          deletes: loadResult.deletes,
          errors: loadResult.errors,
        },
        verify: {
          ok: verify.ok,
          sourceRows: verify.totals.sourceRows,
          targetRows: verify.totals.targetRows,
          seconds: verifySeconds,
        },
        cutover: { ok: cut.ok, freezeMs: cut.freezeMs, routingVersion: cut.routingVersion },
        seconds: {
          total: secs(t0),
          seed: seedSeconds,
          copy: copySeconds,
          catchUp,
          verify: verifySeconds,
          cutover: cutSeconds,
        },
      };
    } finally {
      stopLoad.abort();
      await load.catch(() => undefined);
      await tail.stop().catch(() => undefined);
      await tailCtx.close().catch(() => undefined);
      tailCtx = undefined as never;
    }
  } finally {
    if (!o.keep) {
      o.note('stopping the sandbox servers');
      await sandboxDown(sandboxDir, { purge: true });
    } else {
      o.note(`sandbox left running (--keep): reshard sandbox down --dir ${sandboxDir} --purge`);
    }
  }
}
