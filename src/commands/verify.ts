import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson, toReportJson } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan: string;
  control?: string;
  incremental?: boolean;
  report?: string;
  fixSql?: string;
  concurrency?: string;
  json?: boolean;
}

export function defineVerify(program: Command): void {
  program
    .command('verify')
    .description(
      'Check that the targets hold exactly the rows the plan moves (CRC-64 bucket checksums, then row-level diffs); exits 4 on mismatch. Read-only on every shard.',
    )
    .requiredOption('--plan <file>', 'plan file (from `reshard plan`)')
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option('--incremental', 'check only what changed since the last clean verify (all when there was none)')
    .option('--report <file>', 'write the JSON report here (also on mismatch)')
    .option('--fix-sql <file>', 'write SQL that would repair the targets, one section per shard')
    .option('--concurrency <n>', 'shard × table scans at once', '4')
    .option('--json', 'print the report as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const concurrency = Number(opts.concurrency ?? '4');
        if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
          throw new UsageError(
            'E_USAGE',
            `--concurrency must be a whole number from 1 to 256, got '${opts.concurrency}'`,
          );
        }
        const { runVerify, assertVerified, renderVerifyReport, progressPrinter } = await import(
          '../verify/index.js'
        );
        const report = await runVerify({
          planPath: opts.plan,
          ...(opts.control ? { control: opts.control } : {}),
          incremental: opts.incremental === true,
          concurrency,
          ...(opts.fixSql ? { fixSqlPath: opts.fixSql } : {}),
          onProgress: progressPrinter(note),
        });
        if (opts.report) {
          const { writeFileSync } = await import('node:fs');
          writeFileSync(opts.report, `${toReportJson(report)}\n`);
        }
        // With --json and a mismatch, the error object (E_VERIFY_MISMATCH, data.report) is the one JSON document.
        if (!opts.json) out(renderVerifyReport(report));
        assertVerified(report);
        if (opts.json) outJson({ ok: true, report });
        return 0;
      }),
    );
}
