import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan?: string;
  topology?: string;
  control?: string;
  keyType: string;
  json?: boolean;
}

export function defineRoute(program: Command): void {
  program
    .command('route')
    .description(
      'Print the shard that owns KEY under the active routing version in the control schema (or under --topology). Prints the write owner; during a reads-first cutover also the read owner.',
    )
    .argument('<key>', 'shard key value')
    .option(
      '--plan <file>',
      'before the first cutover (no routing version yet), route by the plan’s current topology',
    )
    .option('--topology <file>', 'route by this topology file instead of the control schema')
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option('--key-type <type>', 'auto (integer when KEY is one), int, or string', 'auto')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (key: string, opts: Opts) => {
        if (opts.keyType !== 'auto' && opts.keyType !== 'int' && opts.keyType !== 'string') {
          throw new UsageError('E_USAGE', `--key-type must be auto, int or string, got '${opts.keyType}'`);
        }
        const { routeKey } = await import('../status/index.js');
        const r = await routeKey({
          key,
          keyType: opts.keyType,
          ...(opts.plan !== undefined ? { plan: opts.plan } : {}),
          ...(opts.topology !== undefined ? { topology: opts.topology } : {}),
          ...(opts.control !== undefined ? { control: opts.control } : {}),
        });
        if (opts.json) {
          outJson({ ok: true, ...r });
          return 0;
        }
        out(r.readOwner === r.owner ? r.owner : `${r.owner}\nreads: ${r.readOwner}`);
        const where =
          r.routing.source === 'control'
            ? `routing version ${r.routing.version}${r.routing.job ? ` (job ${r.routing.job})` : ''}`
            : r.routing.source === 'plan'
              ? 'the plan’s current topology (no routing version recorded yet)'
              : 'the topology file';
        note(
          `${r.keyType} key ${r.key} → ${r.owner} by ${where}: writes by ${r.routing.writes}, reads by ${r.routing.reads}`,
        );
        return 0;
      }),
    );
}
