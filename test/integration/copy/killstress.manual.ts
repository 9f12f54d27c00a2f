/**
 * By-hand drill (RESHARD_MANUAL=1, KS_ITER=N): copies 20k rows per iteration while KILLing the
 * copier's connections at random moments on random servers, with a watchdog that prints the
 * processlist if a copy stops moving. It found the lost-connection hang of streaming reads
 * (src/db/stream.ts); run it under CPU load (e.g. two `yes > /dev/null`) to widen the windows.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { describe, expect, it } from 'vitest';
import { runCopy } from '../../../src/copy/run.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn } from '../../support/db.js';
import { type Estate, killConnections, makeEstate } from './helpers.js';

describe('kill stress', () => {
  const N = Number(process.env.KS_ITER ?? 15);
  for (let i = 0; i < N; i++) {
    it(`iteration ${i}`, async () => {
      const e: Estate = await makeEstate({ prefix: `ks${i}`, rows: 20_000, seed: 9 + i });
      try {
        let done = false;
        const copy = runCopy({
          planPath: e.planPath,
          control: e.controlDsn,
          metaDb: e.metaDb,
          progress: 'none',
          rate: 6000,
          onChunkDone: () => {
            chunks++;
          },
        });
        let chunks = 0;
        while (!done && chunks < 1) await new Promise((r) => setTimeout(r, 10));
        copy.then(
          () => (done = true),
          () => (done = true),
        );
        const servers = ['s0', 's1', 't0', 't1', 't2'] as const;
        let kills = 0;
        const t0 = Date.now();
        while (!done && kills < 6) {
          await new Promise((r) => setTimeout(r, 100 + Math.random() * 700));
          if (Math.random() < 0.5) {
            const server = servers[Math.floor(Math.random() * servers.length)]!;
            await killConnections(server, [e.db, e.metaDb]);
          } else for (const server of servers) await killConnections(server, [e.db, e.metaDb]);
          kills++;
        }
        const watchdog = setTimeout(async () => {
          console.error(`HANG iteration ${i} after ${Date.now() - t0} ms`);
          for (const s of servers) {
            const c = await rootConn(s);
            const [rows] = await c.query<RowDataPacket[]>(
              `SELECT ID, DB, COMMAND, TIME, STATE, LEFT(INFO, 80) AS I FROM information_schema.PROCESSLIST WHERE DB IN (?, ?)`,
              [e.db, e.metaDb],
            );
            console.error(s, JSON.stringify(rows));
            await c.end();
          }
        }, 40_000);
        const s = await copy;
        clearTimeout(watchdog);
        expect(s.complete).toBe(true);
        const diff = await compareEstate({ from: e.from, to: e.to });
        expect(diff.differences).toEqual([]);
      } finally {
        await e.drop();
      }
    }, 90_000);
  }
});
