/**
 * A cutover whose verify under the freeze finds a difference (a target row changed behind
 * reshard's back after the last clean verify): exit 4 (E_CUTOVER_VERIFY), every frozen server
 * writable again, the routing and the job state untouched, the attempt ended 'aborted' — and a
 * second attempt, once repaired, cuts over. (Written by review A; it passed.) It freezes, so it
 * runs on two private servers: A holds s0, s1; B holds t0, t1, t2.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topologyHash } from '../../../src/topology/load.js';
import { runVerify } from '../../../src/verify/index.js';
import {
  activeRoutings,
  copyAndVerify,
  ctlQuery,
  differences,
  type Estate,
  jobState,
  makeEstate,
  type OwnServer,
  openCtx,
  portConn,
  readOnly,
  runCli,
  startServer,
} from './helpers.js';

let servers: OwnServer[] = [];
let e: Estate | undefined;

beforeAll(async () => {
  servers = await Promise.all(['a', 'b'].map((n) => startServer(`mm-${n}`)));
}, 180_000);

afterAll(async () => {
  await e?.drop().catch(() => undefined);
  await Promise.all(servers.map((s) => s.destroy()));
});

describe('cutover: a difference found by the verify under the freeze', () => {
  it('exits 4, unfreezes, leaves routing and job state alone; a repaired second attempt cuts over', async () => {
    e = await makeEstate({
      prefix: 'reva_mm',
      rows: 600,
      seed: 8,
      appUser: false,
      ports: {
        s0: servers[0]!.port,
        s1: servers[0]!.port,
        t0: servers[1]!.port,
        t1: servers[1]!.port,
        t2: servers[1]!.port,
      },
    });
    const est = e;
    await copyAndVerify(est);
    // Behind reshard's back: a target row changes after the clean verify.
    const t1 = await portConn(servers[1]!.port);
    const [r] = await t1.query<RowDataPacket[]>(
      `SELECT id, balance FROM \`${est.db}_t1\`.users ORDER BY id LIMIT 1`,
    );
    const id = Number(r[0]!.id);
    const balance = String(r[0]!.balance);
    await t1.query(`UPDATE \`${est.db}_t1\`.users SET balance = balance + 1 WHERE id = ?`, [id]);
    const args = [
      'cutover',
      '--plan',
      est.planPath,
      '--control',
      est.controlDsn,
      '--meta-db',
      est.metaDb,
      '--execute',
      '--max-freeze',
      '60s',
      '--max-lag',
      '30s',
      '--json',
    ];
    try {
      const res = await runCli(args);
      expect(res.code, res.stderr).toBe(4);
      expect(res.stderr).toContain('E_CUTOVER_VERIFY');
      for (const s of servers) expect(await readOnly(s.port), `${s.info.name} read_only`).toBe(false);
      expect(await jobState(est)).toBe('catching-up');
      const active = await activeRoutings(est);
      expect(active).toHaveLength(1);
      expect(active[0]!.writesHash).toBe(topologyHash(est.from));
      const j = await ctlQuery<{ step: string; state: string }>(
        est,
        "SELECT step, state FROM reshard_cutover_journal WHERE step IN ('cutover.end', 'cutover.freeze') ORDER BY id",
      );
      expect(j.map((x) => `${x.step}:${x.state}`)).toEqual([
        'cutover.freeze:started',
        'cutover.freeze:done',
        'cutover.freeze:undone',
        'cutover.end:aborted',
      ]);
      // The failed verify is the last one now: a second attempt is refused until a clean verify.
      const refused = await runCli(args);
      expect(refused.code).toBe(3);
      expect(refused.stderr).toContain('found differences');
      // Repaired and verified: the second attempt cuts over.
      await t1.query(`UPDATE \`${est.db}_t1\`.users SET balance = ? WHERE id = ?`, [balance, id]);
      const ctx = await openCtx(est);
      try {
        expect((await runVerify({ ctx, preflight: false })).ok).toBe(true);
      } finally {
        await ctx.close();
      }
      const again = await runCli(args);
      expect(again.code, `${again.stderr}\n${again.stdout}`).toBe(0);
      expect(await jobState(est)).toBe('cut-over');
      const d = await differences(est);
      expect(d.total, d.detail).toBe(0);
    } finally {
      await t1.end();
    }
  }, 240_000);
});
