/**
 * Fault drill: the servers KILL the copier's connections mid-chunk (what a DBA's kill script or a
 * proxy does). The copier retries the chunk on a new connection — by errno, not message — and the
 * result is exact: every row on its owner, nothing twice.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCopy } from '../../../src/copy/run.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn, type SandboxName } from '../../support/db.js';
import { chunkRows, type Estate, makeEstate } from './helpers.js';

/** KILL every connection of this test's databases on one server; returns how many. */
async function killConnections(server: SandboxName, dbs: string[]): Promise<number> {
  const c = await rootConn(server);
  try {
    const [rows] = await c.query<RowDataPacket[]>(
      `SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND DB IN (${dbs.map(() => '?').join(', ')})`,
      dbs,
    );
    let n = 0;
    for (const r of rows) {
      await c.query(`KILL CONNECTION ${Number(r.ID)}`).then(
        () => n++,
        () => undefined, // already gone
      );
    }
    return n;
  } finally {
    await c.end();
  }
}

describe('server-side KILL of the copier’s connections mid-chunk', () => {
  let e: Estate;
  beforeAll(async () => {
    e = await makeEstate({ prefix: 'copykill', rows: 20_000, seed: 9 });
  });
  afterAll(async () => {
    await e?.drop();
  });

  it('retries the chunks on new connections and completes exactly', async () => {
    let chunks = 0;
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
    copy.catch(() => undefined); // awaited below
    let killed = 0;
    for (const at of [2, 5, 8]) {
      const deadline = Date.now() + 60_000;
      while (chunks < at && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const server of ['s0', 's1', 't0', 't1', 't2'] as const)
        killed += await killConnections(server, [e.db, e.metaDb]);
    }
    const s = await copy;
    expect(killed).toBeGreaterThan(0);
    expect(s.complete).toBe(true);
    expect((await chunkRows(e)).every((c) => c.state === 'done')).toBe(true);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    expect(diff.rows.target).toBe(diff.rows.source);
  });
});
