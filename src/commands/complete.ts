import type { Command } from 'commander';
import { out, outJson, table } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan: string;
  control?: string;
  execute?: boolean;
  json?: boolean;
}

export function defineComplete(program: Command): void {
  program
    .command('complete')
    .description(
      'After cutover, once rollback is no longer wanted: close the rollback window (job cut-over → completed). Needs the reverse tailer stopped; afterwards rollback is refused and cleanup is allowed. Without --execute: only check.',
    )
    .requiredOption('--plan <file>', 'plan file (from `reshard plan`)')
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option('--execute', 'complete the job (default: only check)')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const { runComplete } = await import('../cutover/complete.js');
        const r = await runComplete({
          planPath: opts.plan,
          control: opts.control,
          execute: opts.execute === true,
        });
        if (opts.json) {
          outJson(r);
          return r.ok ? 0 : 3;
        }
        const lines = [`job ${r.job.name}: ${r.job.state} (${r.mode})`];
        if (r.checks.length)
          lines.push(
            table(
              ['check', 'ok', 'detail'],
              r.checks.map((c) => [
                c.name,
                c.ok ? 'ok' : 'FAIL',
                c.ok ? c.detail : `${c.detail}${c.hint ? ` — ${c.hint}` : ''}`,
              ]),
            ),
          );
        if (r.mode === 'dry-run')
          lines.push(r.ok ? 'ready: re-run with --execute' : 'not ready (nothing was changed)');
        if (r.mode === 'completed')
          lines.push(
            'completed: rollback is no longer possible; `reshard cleanup --execute` may now delete the moved rows from their old shards',
          );
        out(lines.join('\n'));
        return r.ok ? 0 : 3;
      }),
    );
}
