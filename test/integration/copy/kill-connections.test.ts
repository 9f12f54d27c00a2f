/**
 * Fault drill: the servers KILL the copier's connections mid-chunk (what a DBA's kill script or a
 * proxy does). The copier retries the chunk on a new connection — by errno, not message — and the
 * result is exact: every row on its owner, nothing twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCopy } from '../../../src/copy/run.js';
import { compareEstate } from '../../support/compare.js';
import { chunkRows, type Estate, killConnections, makeEstate } from './helpers.js';

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
    let settled = false;
    copy.then(
      () => (settled = true),
      () => (settled = true),
    ); // awaited below
    let killed = 0;
    for (const at of [2, 5, 8]) {
      // A copy that stops making progress fails here, with the chunk count, not at the test timeout.
      const deadline = Date.now() + 30_000;
      while (chunks < at && !settled && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      if (!settled) expect(chunks, 'the copy stalled after a KILL').toBeGreaterThanOrEqual(at);
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
