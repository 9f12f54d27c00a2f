import type { Command } from 'commander';
import { note, out, outJson, table } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan: string;
  control?: string;
  metaDb?: string;
  execute?: boolean;
  purgeTargets?: boolean;
  onFlip?: string;
  routingOut?: string;
  json?: boolean;
}

export function defineRollback(program: Command): void {
  program
    .command('rollback')
    .description(
      'Undo a reshard. After cutover: freeze the new shards, drain reverse replication, verify, route back to the old shards, unfreeze them. Before cutover: cancel the job (and with --purge-targets delete the copied rows from the targets). Without --execute: print what it would do.',
    )
    .requiredOption('--plan <file>', 'plan file (from `reshard plan`)')
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option('--meta-db <name>', 'reshard’s database on each shard (positions, parked rows)', '_reshard')
    .option('--execute', 'do it (default: only check)')
    .option(
      '--purge-targets',
      'before cutover: delete the copied rows (moving segments only) from the targets, throttled',
    )
    .option('--on-flip <command>', 'shell command run after routing flips back')
    .option('--routing-out <file>', 'write the restored routing document (JSON) here')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const { runRollback, fmtMs } = await import('../cutover/index.js');
        const r = await runRollback({
          planPath: opts.plan,
          control: opts.control,
          metaDb: opts.metaDb,
          execute: opts.execute === true,
          purgeTargets: opts.purgeTargets === true,
          onFlip: opts.onFlip,
          routingOut: opts.routingOut,
          onNote: (t) => note(`reshard rollback: ${t}`),
        });
        if (opts.json) {
          outJson(r);
          return r.ok ? 0 : 3;
        }
        const lines: string[] = [`job ${r.job.name}: ${r.job.state} (${r.mode})`];
        if (r.checks.length)
          lines.push(
            table(
              ['check', 'ok', 'detail'],
              r.checks.map((c) => [c.name, c.ok ? 'ok' : 'FAIL', c.detail]),
            ),
          );
        if (r.steps.length) lines.push(`steps: ${r.steps.map((s) => `${s.step} ${s.ms} ms`).join(', ')}`);
        if (r.freezeMs !== undefined) lines.push(`measured freeze: ${fmtMs(r.freezeMs)}`);
        if (r.routingVersion !== undefined) lines.push(`routing version ${r.routingVersion} is active`);
        if (r.purge)
          lines.push(
            `purged ${r.purge.deleted} copied rows from the targets in ${r.purge.seconds.toFixed(1)} s`,
          );
        if (r.mode === 'dry-run')
          lines.push(r.ok ? 'ready: re-run with --execute' : 'not ready (nothing was changed)');
        out(lines.join('\n'));
        return r.ok ? 0 : 3;
      }),
    );
}
