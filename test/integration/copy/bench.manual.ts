/**
 * By hand only (skipped unless RESHARD_COPY_BENCH_ROWS is set): the 2 → 3 copy of N seeded rows
 * through the CLI under /usr/bin/time -v, then a full comparison. Prints rows/s and peak RSS.
 *
 *   RESHARD_COPY_BENCH_ROWS=1000000 RESHARD_TEST_SANDBOX_DIR=/tmp/reshard-dev-sandbox \
 *     npx vitest run test/integration/copy/bench.test.ts
 */

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareEstate } from '../../support/compare.js';
import { makeEstate, ROOT } from './helpers.js';

const ROWS = Number(process.env.RESHARD_COPY_BENCH_ROWS ?? 0);
const CONCURRENCY = process.env.RESHARD_COPY_BENCH_CONCURRENCY ?? '2';

describe.runIf(ROWS > 0)('copy benchmark (by hand)', () => {
  it(`copies ${ROWS} rows 2 → 3`, async () => {
    const t0 = Date.now();
    const e = await makeEstate({ prefix: 'bench', rows: ROWS });
    console.log(`seeded ${ROWS} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    try {
      const args = [
        '-v',
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
      const s = JSON.parse(stdout) as {
        rows: number;
        seconds: number;
        rowsPerSecond: number;
        peakRssBytes: number;
      };
      const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1] ?? 0);
      const wall = /Elapsed \(wall clock\) time[^:]*: (.*)/.exec(stderr)?.[1];
      console.log(
        `copy: ${s.rows} rows in ${s.seconds.toFixed(1)} s = ${s.rowsPerSecond} rows/s (concurrency ${CONCURRENCY}); process wall ${wall}; peak RSS ${Math.round(rss / 1024)} MB (sampled ${Math.round(s.peakRssBytes / 1048576)} MB)`,
      );
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
