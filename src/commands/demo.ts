import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson, table } from '../output.js';
import { action } from './run.js';

interface Opts {
  rows: string;
  loadRate: string;
  basePort: string;
  dir: string;
  keep?: boolean;
  json?: boolean;
}

export function defineDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'The whole job on local sandbox servers: 2 sources → 3 targets under a live write load (plan, copy + tail, verify, cutover); leaves nothing running',
    )
    .option('--rows <n>', 'rows to seed over the sources', '200000')
    .option('--load-rate <ops>', 'live write operations per second during copy and tail', '200')
    .option('--base-port <port>', 'first of 6 loopback ports for the demo servers', '36400')
    .option('--dir <dir>', 'working directory (sandbox, topologies, plan)', '.reshard/demo')
    .option('--keep', 'leave the sandbox servers running afterwards')
    .option('--json', 'print the summary as JSON')
    .action(
      action(async (opts: Opts) => {
        const rows = Number(opts.rows);
        const loadRate = Number(opts.loadRate);
        const basePort = Number(opts.basePort);
        if (!Number.isInteger(rows) || rows < 1000)
          throw new UsageError('E_USAGE', `--rows must be a whole number ≥ 1000, got '${opts.rows}'`);
        if (!Number.isFinite(loadRate) || loadRate < 0)
          throw new UsageError('E_USAGE', `--load-rate must be ≥ 0, got '${opts.loadRate}'`);
        if (!Number.isInteger(basePort) || basePort < 1024 || basePort > 65000) {
          throw new UsageError(
            'E_USAGE',
            `--base-port must be a port from 1024 to 65000, got '${opts.basePort}'`,
          );
        }
        const { runDemo } = await import('../demo/run.js');
        const { resolve } = await import('node:path');
        const s = await runDemo({
          dir: resolve(opts.dir),
          basePort,
          rows,
          loadRate,
          keep: opts.keep === true,
          note: (l) => note(l),
          progress: opts.json ? 'none' : 'auto',
        });
        if (opts.json) outJson(s);
        else {
          out(
            table(
              ['', 'value'],
              [
                ['rows seeded / copied', `${s.rowsSeeded} / ${s.rowsCopied}`],
                [
                  'live load',
                  `${s.load.operations} ops (${s.load.crossSourceMoves} cross-shard moves, ${s.load.deletes} deletes)`,
                ],
                [
                  'verify',
                  `${s.verify.ok ? 'clean' : 'MISMATCH'} (${s.verify.sourceRows} = ${s.verify.targetRows} rows, ${s.verify.seconds.toFixed(1)} s)`,
                ],
                [
                  'cutover',
                  `${s.cutover.ok ? 'done' : 'FAILED'}, freeze ${s.cutover.freezeMs ?? '?'} ms, routing v${s.cutover.routingVersion ?? '?'}`,
                ],
                [
                  'time',
                  `${s.seconds.total.toFixed(1)} s (seed ${s.seconds.seed.toFixed(1)}, copy ${s.seconds.copy.toFixed(1)}, catch-up ${s.seconds.catchUp.toFixed(1)}, verify ${s.seconds.verify.toFixed(1)}, cutover ${s.seconds.cutover.toFixed(1)})`,
                ],
              ],
            ),
          );
        }
        return s.ok ? 0 : 4;
      }),
    );
}
