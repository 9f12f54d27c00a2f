/**
 * Catch-up throughput (not run by default: RESHARD_TAIL_BENCH=1). Records a binlog of write load
 * on the 2 → 3 shop fixture with no tailer running, then measures
 *   decode:  ZongjiSource alone reading the recorded range (rows/s);
 *   apply:   startTail from the recorded start until caught up (binlog rows/s).
 * Prints one JSON line per measurement.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readMasterPosition } from '../../../src/binlog/position.js';
import { ZongjiSource } from '../../../src/binlog/source.js';
import { startTail } from '../../../src/binlog/tailer.js';
import { connect, connectionOptions } from '../../../src/db/connect.js';
import { runLoad } from '../../../src/load/generator.js';
import { type Estate, makeEstate, naiveCopy, recordStarts, sqlOn } from './helpers.js';

const RUN = process.env.RESHARD_TAIL_BENCH === '1';
const ROWS = Number(process.env.RESHARD_TAIL_BENCH_ROWS ?? 200_000);

async function decodeOnly(
  e: Estate,
  shard: 0 | 1,
  from: { file: string; pos: number },
  to: { file: string; pos: number },
) {
  const s = e.from.shards[shard]!;
  const src = new ZongjiSource({
    connection: connectionOptions(s.endpoint, 'bench', false),
    flavor: 'mariadb',
    serverId: 0x7f000000 + shard,
    database: s.endpoint.database,
    tables: e.from.tables.map((t) => t.name),
  });
  const t0 = Date.now();
  await src.start(from);
  let rows = 0;
  let events = 0;
  for (;;) {
    const ev = await src.next();
    if (ev.kind === 'transaction') rows += ev.changes.length;
    if (ev.kind !== 'ddl') events += ev.events;
    const p = ev.position;
    if (p.file > to.file || (p.file === to.file && p.pos >= to.pos)) break;
  }
  const seconds = (Date.now() - t0) / 1000;
  await src.stop();
  return { rows, events, seconds };
}

describe.runIf(RUN)('tail catch-up throughput', () => {
  const estates: Estate[] = [];
  afterAll(async () => {
    for (const e of estates) await e.drop();
  });

  it('live lag under a steady load', async () => {
    const e = await makeEstate({ prefix: 'tailbenchlag', rows: 20_000, seed: 2 });
    estates.push(e);
    await recordStarts(e);
    await naiveCopy(e);
    const ctx = await e.job();
    const tail = await startTail({ ctx, metaDb: e.metaDb });
    const rate = Number(process.env.RESHARD_TAIL_BENCH_RATE ?? 400);
    const lags: number[] = [];
    const sampler = setInterval(() => {
      for (const x of tail.status().sources) lags.push(x.lagSeconds);
    }, 100);
    const l = await runLoad({ topology: e.from, rate, seconds: 20, seed: 2, concurrency: 8 });
    clearInterval(sampler);
    await tail.waitCaughtUp();
    await tail.stop();
    await ctx.close();
    lags.sort((a, b) => a - b);
    const q = (f: number) => lags[Math.min(lags.length - 1, Math.floor(f * lags.length))]!;
    console.log(
      JSON.stringify({
        workload: 'live',
        opsPerSec: Math.round(l.operations / l.seconds),
        rowsWrittenPerSec: Math.round((l.inserts + l.updates + l.deletes) / l.seconds),
        lagP50: q(0.5),
        lagP99: q(0.99),
        lagMax: lags.at(-1),
      }),
    );
  });

  it.each(['shop-mix', 'users-only'] as const)('%s', async (workload) => {
    const e = await makeEstate({ prefix: `tailbench`, rows: 20_000, seed: 1 });
    estates.push(e);
    await recordStarts(e);
    await naiveCopy(e);
    const conns = await Promise.all(e.from.shards.map((s) => connect(s.endpoint, 'bench')));
    const starts = await Promise.all(conns.map((c) => readMasterPosition(c)));
    const t0 = Date.now();
    if (workload === 'shop-mix') {
      const stop = new AbortController();
      const load = runLoad({ topology: e.from, rate: 0, seed: 1, concurrency: 16, signal: stop.signal });
      // Until about ROWS tracked rows are in the two binlogs (≈ 1.6 rows per transaction).
      await new Promise((r) => setTimeout(r, 1000));
      for (;;) {
        const [a] = await conns[0]!.query(`SELECT COUNT(*) AS n FROM \`${e.db}\`.orders`);
        void a;
        if (Date.now() - t0 > 1000 * Number(process.env.RESHARD_TAIL_BENCH_SECONDS ?? 40)) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      stop.abort();
      await load;
    } else {
      // sysbench-like write-only on users (shard key = primary key): 4 statements per transaction.
      const per = Math.ceil(ROWS / 2 / 4);
      await Promise.all(
        e.from.shards.map(async (s, i) => {
          const sql: string[] = [];
          for (let k = 0; k < per; k++) {
            const id = 1_000_000 + k * 2 + i;
            sql.push(
              `BEGIN; INSERT INTO users (id, email, name, balance, created_at) VALUES (${id}, 'b${id}@x', 'bench ${id}', 1.5, '2024-01-01 00:00:00.000001'); UPDATE users SET balance = balance + 1 WHERE id = ${id}; UPDATE users SET name = 'renamed' WHERE id = ${id}; DELETE FROM users WHERE id = ${id - 200}; COMMIT;`,
            );
          }
          for (let k = 0; k < sql.length; k += 500)
            await sqlOn(s.endpoint.port, sql.slice(k, k + 500).join('\n'), e.db);
        }),
      );
    }
    const writeSeconds = (Date.now() - t0) / 1000;
    const ends = await Promise.all(conns.map((c) => readMasterPosition(c)));
    const dec = await Promise.all([0, 1].map((i) => decodeOnly(e, i as 0 | 1, starts[i]!, ends[i]!)));
    const decRows = dec[0]!.rows + dec[1]!.rows;
    const decSeconds = Math.max(dec[0]!.seconds, dec[1]!.seconds);
    const ctx = await e.job();
    const t1 = Date.now();
    const tail = await startTail({ ctx, metaDb: e.metaDb });
    const s = await tail.waitCaughtUp();
    const applySeconds = (Date.now() - t1) / 1000;
    await tail.stop();
    await ctx.close();
    for (const c of conns) await c.end();
    const appliedRows = s.sources.reduce((a, x) => a + x.rows, 0);
    const ops = s.sources.reduce((a, x) => a + x.targets.reduce((b, t) => b + t.appliedOps, 0), 0);
    console.log(
      JSON.stringify({
        workload,
        binlogRows: decRows,
        writeRowsPerSec: Math.round(decRows / writeSeconds),
        decodeRowsPerSec: Math.round(decRows / decSeconds),
        decodeSecondsPerSource: dec.map((d) => d.seconds),
        applySeconds,
        applyRowsPerSec: Math.round(appliedRows / applySeconds),
        targetOps: ops,
      }),
    );
    expect(appliedRows).toBe(decRows);
  });
});
