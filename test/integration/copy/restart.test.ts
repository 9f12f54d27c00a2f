/**
 * A target server restarted in the middle of the copy: the copy waits (its throttle cannot see
 * the target's load: it fails closed), retries with backoff, and completes with every row right.
 * Uses its own extra mariadbd, never a shared sandbox server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCopy } from '../../../src/copy/run.js';
import { findServerBinary, startInstance, stopInstance } from '../../../src/sandbox/instances.js';
import { compareEstate } from '../../support/compare.js';
import { uniqueDb } from '../../support/db.js';
import { type OwnServer, startOwnServer } from '../preflight/helpers.js';
import { chunkRows, type Estate, makeEstate } from './helpers.js';

describe('a target restarted mid-copy', () => {
  let own: OwnServer;
  let e: Estate;
  beforeAll(async () => {
    own = await startOwnServer('copy-target', 3_000_000 + Math.floor(Math.random() * 1_000_000), []);
    const db = uniqueDb('copyrestart');
    e = await makeEstate({
      prefix: 'copyrestart',
      db,
      rows: 20_000,
      seed: 5,
      targets: [
        { name: 't0', server: 't0', database: db },
        { name: 't1', server: 't1', database: db },
        { name: 'tx', server: own.port, database: db },
      ],
    });
  });
  afterAll(async () => {
    await e?.drop();
    await own?.destroy();
  });

  it('retries with backoff and completes', async () => {
    let chunks = 0;
    const copy = runCopy({
      planPath: e.planPath,
      control: e.controlDsn,
      metaDb: e.metaDb,
      progress: 'none',
      rate: 5000,
      onChunkDone: () => {
        chunks++;
      },
    });
    copy.catch(() => undefined); // awaited below; a failure must not surface as unhandled meanwhile
    const deadline = Date.now() + 60_000;
    while (chunks < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await stopInstance(own.info)).toBe(true);
    const chunksWhileDown = chunks;
    await new Promise((r) => setTimeout(r, 2500));
    await startInstance(findServerBinary(), own.info);
    const s = await copy;
    expect(s.complete).toBe(true);
    // The target's load was unreadable while it was down: the copy waited instead of writing blind.
    expect(s.throttledSeconds).toBeGreaterThan(1);
    expect(chunks).toBeGreaterThan(chunksWhileDown);
    expect((await chunkRows(e)).every((c) => c.state === 'done' && Number(c.attempts) === 1)).toBe(true);
    const diff = await compareEstate({ from: e.from, to: e.to });
    expect(diff.differences).toEqual([]);
    expect(diff.rows.target).toBe(diff.rows.source);
  });
});
