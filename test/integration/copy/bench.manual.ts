/**
 * By hand only (skipped unless RESHARD_COPY_BENCH_ROWS is set): the 2 → 3 copy of N seeded rows
 * through the CLI under /usr/bin/time -v, then a full comparison. Prints rows/s, peak RSS and the
 * CPU seconds the copier and the servers spent (to see who is the bottleneck).
 *
 *   RESHARD_MANUAL=1 RESHARD_COPY_BENCH_ROWS=1000000 RESHARD_TEST_SANDBOX_DIR=/tmp/reshard-dev-sandbox \
 *     npx vitest run --project integration test/integration/copy/bench.manual.ts
 *
 * RESHARD_COPY_BENCH_REPEAT=k copies k times (targets and copy state reset in between; the
 * comparison runs after the last); RESHARD_COPY_BENCH_NODE_ARGS adds node flags to the copier
 * (e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof').
 */

import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectControl } from '../../../src/state/control.js';
import { ensureControlSchema } from '../../../src/state/migrate.js';
import { compareEstate } from '../../support/compare.js';
import { rootConn, sandbox } from '../../support/db.js';
import { makeEstate, ROOT, SHOP_TABLES } from './helpers.js';

const ROWS = Number(process.env.RESHARD_COPY_BENCH_ROWS ?? 0);
const CONCURRENCY = process.env.RESHARD_COPY_BENCH_CONCURRENCY ?? '2';
const REPEAT = Number(process.env.RESHARD_COPY_BENCH_REPEAT ?? 1);
const NODE_ARGS = (process.env.RESHARD_COPY_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const SERVERS = ['ctl', 's0', 's1', 't0', 't1', 't2'] as const;

/** utime + stime of a process in seconds (Linux /proc). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

function serverPids(): Record<string, number> {
  const dir = sandbox().dir;
  return Object.fromEntries(
    SERVERS.map((n) => [n, Number(readFileSync(join(dir, n, 'mysqld.pid'), 'utf8').trim())]),
  );
}

describe.runIf(ROWS > 0)('copy benchmark (by hand)', () => {
  it(`copies ${ROWS} rows 2 → 3`, async () => {
    const t0 = Date.now();
    const e = await makeEstate({ prefix: 'bench', rows: ROWS });
    console.log(`seeded ${ROWS} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    let pids: Record<string, number> | undefined;
    try {
      pids = serverPids();
    } catch {
      console.log('server pids not found: no server CPU figures');
    }
    try {
      for (let i = 0; i < REPEAT; i++) {
        if (i > 0) await reset(e);
        const before = pids ? Object.fromEntries(SERVERS.map((n) => [n, cpuSeconds(pids![n]!)])) : {};
        const args = [
          '-v',
          process.execPath,
          ...NODE_ARGS,
          join(ROOT, 'bin/reshard'),
          'copy',
          '--plan',
          e.planPath,
          '--control',
          e.controlDsn,
          '--meta-db',
          e.metaDb,
          '--execute',
          '--json',
          '--concurrency',
          CONCURRENCY,
        ];
        const child = spawn('/usr/bin/time', args, {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, RESHARD_LOG_LEVEL: 'warn' },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const code = await new Promise<number | null>((r) => child.on('close', r));
        expect(code, stderr).toBe(0);
        // With node flags such as --trace-gc, stdout also carries the flag's output: the result is the last JSON line.
        if (process.env.RESHARD_COPY_BENCH_STDOUT)
          writeFileSync(process.env.RESHARD_COPY_BENCH_STDOUT, stdout);
        const json = stdout.slice(Math.max(0, stdout.lastIndexOf('\n{\n') + 1));
        const s = JSON.parse(json) as { rows: number; seconds: number; rowsPerSecond: number };
        const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1] ?? 0);
        const wall = /Elapsed \(wall clock\) time[^:]*: (.*)/.exec(stderr)?.[1];
        const user = Number(/User time \(seconds\): ([\d.]+)/.exec(stderr)?.[1] ?? 0);
        const sys = Number(/System time \(seconds\): ([\d.]+)/.exec(stderr)?.[1] ?? 0);
        const servers = pids
          ? SERVERS.map((n) => `${n} ${(cpuSeconds(pids![n]!) - before[n]!).toFixed(1)}`).join(', ')
          : 'n/a';
        console.log(
          `copy ${i + 1}/${REPEAT}: ${s.rows} rows in ${s.seconds.toFixed(2)} s = ${s.rowsPerSecond} rows/s (concurrency ${CONCURRENCY}); process wall ${wall}; peak RSS ${Math.round(rss / 1024)} MB; CPU s: copier ${(user + sys).toFixed(1)} (user ${user}, sys ${sys}), ${servers}`,
        );
      }
      const t1 = Date.now();
      const diff = await compareEstate({ from: e.from, to: e.to });
      console.log(
        `compare: ${diff.rows.source} source rows, ${diff.rows.target} target rows, ${diff.total} differences in ${((Date.now() - t1) / 1000).toFixed(1)} s`,
      );
      expect(diff.differences).toEqual([]);
    } finally {
      await e.drop();
    }
  }, 3_600_000);
});

/** Empty the targets and forget the copy: drop the target tables' rows, the meta db and the control db's job. */
async function reset(e: Awaited<ReturnType<typeof makeEstate>>): Promise<void> {
  for (const t of ['t0', 't1', 't2'] as const) {
    const c = await rootConn(t);
    try {
      await c.query('SET SESSION sql_log_bin = 0');
      for (const tb of SHOP_TABLES) await c.query(`TRUNCATE TABLE \`${e.db}\`.\`${tb.name}\``);
      await c.query(`DROP DATABASE IF EXISTS \`${e.metaDb}\``);
    } finally {
      await c.end();
    }
  }
  const c = await rootConn('ctl');
  try {
    await c.query(`DROP DATABASE IF EXISTS \`${e.controlDb}\``);
  } finally {
    await c.end();
  }
  const ctl = await connectControl(e.controlDsn);
  try {
    await ensureControlSchema(ctl);
  } finally {
    await ctl.close();
  }
}
