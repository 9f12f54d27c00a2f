/**
 * Acceptance: kill -9 at each journaled cutover step, then re-run. Before the flip the re-run
 * undoes the freeze and cuts over afresh; after it, it finishes the remaining steps. Either way:
 * 0 differences, exactly one active routing version at every point (the old topology before the
 * flip, the new one after), the old shards read-only, reverse replication armed.
 *
 * `RESHARD_CRASH_AT=<step>[:before]` is the test hook (src/cutover/journal.ts `crashPoint`):
 * SIGKILL after the step's action, before its 'done' row (`:before`: before the action).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoad } from '../../../src/load/generator.js';
import { parseRouting } from '../../../src/status/routing.js';
import { topologyHash } from '../../../src/topology/load.js';
import {
  activeRoutings,
  copyAndVerify,
  ctlQuery,
  differences,
  type Estate,
  flipHandshake,
  jobState,
  layout,
  makeEstate,
  type OwnServer,
  readOnly,
  runCli,
  setReadOnly,
  startServer,
} from './helpers.js';

let servers: OwnServer[] = [];
const estates: Estate[] = [];

beforeAll(async () => {
  servers = await Promise.all(['a', 'b', 'c', 'd'].map((n) => startServer(`crash-${n}`)));
}, 180_000);

afterAll(async () => {
  for (const e of estates) await e.drop().catch(() => undefined);
  await Promise.all(servers.map((s) => s.destroy()));
});

const STEPS = [
  'freeze',
  'final-positions',
  'drain',
  'verify',
  'arm-reverse',
  'flip:before',
  'flip',
  'publish',
  'unfreeze',
] as const;
const AFTER_FLIP = new Set(['flip', 'publish', 'unfreeze']);

describe('kill -9 at each cutover step, then re-run', () => {
  it.each(STEPS)(
    'crash at %s',
    async (step) => {
      // The previous case left the old shard's server read-only (as a finished cutover does).
      for (const s of servers) await setReadOnly(s.port, false);
      const [A, B, C, D] = servers.map((s) => s.port) as [number, number, number, number];
      const e = await makeEstate({
        prefix: 'co_crash',
        rows: 3000,
        seed: 11,
        ports: layout(servers),
      });
      estates.push(e);
      await copyAndVerify(e);
      const stop = new AbortController();
      const load = runLoad({
        topology: e.appFrom,
        rate: 40,
        seed: 5,
        concurrency: 2,
        signal: stop.signal,
        mix: { moveOrder: 0 },
        onError: () => undefined,
      });
      // The application stops writing by the old topology when the flip hook tells it to.
      const hs = flipHandshake(e.dir, async () => {
        stop.abort();
        await load.catch(() => undefined);
      });
      try {
        const routingFile = join(e.dir, 'routing.json');
        const args = [
          'cutover',
          '--plan',
          e.planPath,
          '--control',
          e.controlDsn,
          '--meta-db',
          e.metaDb,
          '--execute',
          '--max-freeze',
          '60s',
          '--max-lag',
          '30s',
          '--routing-out',
          routingFile,
          '--on-flip',
          hs.hook,
          '--json',
        ];
        const crashed = await runCli(args, { RESHARD_CRASH_AT: step });
        expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
        const flipped = AFTER_FLIP.has(step);
        // Never split: one active version — still the old topology before the flip, the new one after.
        const mid = await activeRoutings(e);
        expect(mid).toHaveLength(1);
        expect(mid[0]!.writesHash).toBe(topologyHash(flipped ? e.to : e.from));
        const verified = ['verify', 'arm-reverse', 'flip:before'].includes(step);
        expect(await jobState(e)).toBe(flipped ? 'cut-over' : verified ? 'verified' : 'catching-up');
        expect(await readOnly(A)).toBe(true); // the crash left the old shards frozen
        if (step !== 'unfreeze') expect(await readOnly(B)).toBe(true);

        const again = await runCli(args);
        expect(again.code, again.stderr).toBe(0);
        const r = JSON.parse(again.stdout) as { mode: string; freezeMs?: number };
        process.stderr.write(`crash at ${step}: re-run ${r.mode}, measured freeze ${r.freezeMs} ms\n`);
        expect(r.mode).toBe(flipped ? 'resumed' : 'cutover');
        stop.abort();
        await load;

        expect(await jobState(e)).toBe('cut-over');
        const active = await activeRoutings(e);
        expect(active).toHaveLength(1);
        expect(active[0]!.writesHash).toBe(topologyHash(e.to));
        expect(existsSync(routingFile)).toBe(true);
        expect(parseRouting(readFileSync(routingFile, 'utf8')).writes.topology.topologyHash).toBe(
          topologyHash(e.to),
        );
        expect(await readOnly(A)).toBe(true); // old shard only: stays read-only
        expect([await readOnly(B), await readOnly(C), await readOnly(D)]).toEqual([false, false, false]);
        const diff = await differences(e);
        expect(diff.total, diff.detail).toBe(0);
        const reverse = await ctlQuery<{ shard: string }>(
          e,
          "SELECT shard FROM reshard_binlog_positions WHERE direction = 'reverse' AND start_binlog_file IS NOT NULL ORDER BY shard",
        );
        expect(reverse.map((x) => x.shard)).toEqual(['t0', 't1', 't2']);
        const journal = await ctlQuery<{ step: string; state: string }>(
          e,
          "SELECT step, state FROM reshard_cutover_journal WHERE step IN ('cutover.begin', 'cutover.end', 'cutover.freeze') ORDER BY id",
        );
        const seq = journal.map((j) => `${j.step.slice(8)}:${j.state}`);
        expect(seq.at(-1)).toBe('end:done');
        if (!flipped) {
          // The crashed attempt was undone and ended; a second attempt did the cutover.
          expect(seq.filter((s) => s === 'begin:started')).toHaveLength(2);
          expect(seq).toContain('end:aborted');
          expect(seq).toContain('freeze:undone');
        } else {
          expect(seq.filter((s) => s === 'begin:started')).toHaveLength(1);
        }
      } finally {
        hs.close();
        stop.abort();
        await load.catch(() => undefined);
        // The next case freezes the same servers: start from writable ones.
        await e.drop().catch(() => undefined);
      }
    },
    150_000,
  );
});
