import type { Command } from 'commander';
import { out, outJson } from '../output.js';
import { action } from './run.js';

interface Opts {
  control?: string;
  json?: boolean;
}

export function defineInit(program: Command): void {
  program
    .command('init')
    .description(
      'Create or upgrade the control schema (reshard_* tables); idempotent and safe to run concurrently',
    )
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const { connectControl } = await import('../state/control.js');
        const { ensureControlSchema } = await import('../state/migrate.js');
        const ctl = await connectControl(opts.control);
        try {
          const res = await ensureControlSchema(ctl);
          const upToDate = res.applied.length === 0;
          if (opts.json) {
            outJson({
              ok: true,
              control: ctl.label,
              database: res.database,
              version: res.version,
              upToDate,
              applied: res.applied,
            });
          } else if (upToDate) {
            out(`control schema ${ctl.label} already up to date (version ${res.version})`);
          } else {
            for (const m of res.applied)
              out(
                `applied ${String(m.version).padStart(4, '0')}_${m.name} (sha256 ${m.checksum.slice(0, 12)})`,
              );
            out(`control schema ${ctl.label} now at version ${res.version}`);
          }
          return 0;
        } finally {
          await ctl.close();
        }
      }),
    );
}
