import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson, table } from '../output.js';
import { parseRate } from './copy.js';
import { action } from './run.js';

interface Opts {
  plan: string;
  control?: string;
  rate?: string;
  batchSize?: string;
  maxThreadsRunning?: string;
  includeRetired?: boolean;
  execute?: boolean;
  json?: boolean;
}

export function defineCleanup(program: Command): void {
  program
    .command('cleanup')
    .description(
      'After a committed cutover: delete moved rows from their old shards in throttled batches (rows that stay are never touched). Without --execute, counts what it would delete.',
    )
    .requiredOption('--plan <file>', 'plan file of the job')
    .option('--control <dsn>', 'control schema DSN (default $RESHARD_CONTROL_DSN)')
    .option('--rate <rows/s>', 'rows deleted per second per shard (default unlimited)')
    .option('--batch-size <rows>', 'rows per DELETE', '500')
    .option('--max-threads-running <n>', 'wait while the shard has more running threads', '50')
    .option(
      '--include-retired',
      'also empty shards the target topology no longer lists (default: leave them to be dropped)',
    )
    .option('--execute', 'delete (without it nothing is written)')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const batchSize = Number(opts.batchSize ?? '500');
        if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000)
          throw new UsageError(
            'E_USAGE',
            `--batch-size must be an integer from 1 to 10000, got '${opts.batchSize}'`,
          );
        const maxThreadsRunning = Number(opts.maxThreadsRunning ?? '50');
        if (!Number.isInteger(maxThreadsRunning) || maxThreadsRunning < 1)
          throw new UsageError(
            'E_USAGE',
            `--max-threads-running must be a positive integer, got '${opts.maxThreadsRunning}'`,
          );
        const { runCleanup } = await import('../copy/cleanup.js');
        const s = await runCleanup({
          planPath: opts.plan,
          ...(opts.control !== undefined ? { control: opts.control } : {}),
          execute: opts.execute === true,
          ...(opts.rate !== undefined ? { rate: parseRate(opts.rate, '--rate') } : {}),
          batchSize,
          maxThreadsRunning,
          includeRetired: opts.includeRetired === true,
        });
        if (opts.json) outJson(s);
        else {
          out(
            table(
              ['shard', 'table', 'moved rows', 'deleted', 'missing on new owner', 'changed meanwhile'],
              s.tables.map((t) => [t.shard, t.table, t.moved, t.deleted, t.missingOnTarget, t.changed]),
            ),
          );
          for (const r of s.retired)
            note(
              `shard ${r} is retired by this plan (not in the target topology): drop its database when you no longer need it, or pass --include-retired`,
            );
          if (!s.executed) note('dry run: nothing was deleted; add --execute to delete');
          else out(`deleted ${s.deleted} moved rows in ${s.seconds.toFixed(1)} s`);
        }
        return 0;
      }),
    );
}
