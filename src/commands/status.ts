import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan?: string;
  job?: string;
  control?: string;
  watch?: boolean;
  interval: string;
  events: string;
  json?: boolean;
}

/** `500ms`, `2s`, `1m`, or plain seconds; at least 200 ms. */
export function parseInterval(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  const n = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : Number.NaN;
  if (!Number.isFinite(n) || n < 200) {
    throw new UsageError(
      'E_USAGE',
      `--interval must be a duration of at least 200ms, like 1s or 500ms, got '${v}'`,
    );
  }
  return Math.round(n);
}

export function defineStatus(program: Command): void {
  program
    .command('status')
    .description(
      "Show a job's state machine, copy progress and ETA, tail lag per source, verify runs, the active routing version, the cutover journal and the last events. Read-only. A live dashboard with --watch on a terminal; plain text otherwise; --json for machines (stable shape, statusVersion 1).",
    )
    .option(
      '--plan <file>',
      'the job executing this plan (also reads row estimates from its sources for % and ETA)',
    )
    .option('--job <name>', 'the job with this name (default: the newest job)')
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option(
      '--watch',
      'refresh every --interval until q or Ctrl-C (a dashboard on a terminal, text blocks otherwise)',
    )
    .option('--interval <duration>', 'refresh interval with --watch', '1s')
    .option('--events <n>', 'how many of the last events to show', '10')
    .option('--json', 'print the report once as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const intervalMs = parseInterval(opts.interval);
        const events = Number(opts.events);
        if (!Number.isInteger(events) || events < 0 || events > 1000) {
          throw new UsageError(
            'E_USAGE',
            `--events must be a whole number from 0 to 1000, got '${opts.events}'`,
          );
        }
        if (opts.json && opts.watch) {
          throw new UsageError('E_USAGE', '--json prints one report; it cannot be combined with --watch', {
            hint: 'poll `reshard status --json` from your script instead',
          });
        }
        const { openStatus, renderStatusText } = await import('../status/index.js');
        const source = await openStatus({
          ...(opts.plan !== undefined ? { plan: opts.plan } : {}),
          ...(opts.job !== undefined ? { job: opts.job } : {}),
          ...(opts.control !== undefined ? { control: opts.control } : {}),
          events,
        });
        try {
          if (opts.json) {
            outJson(await source.load());
            return 0;
          }
          if (!opts.watch) {
            out(renderStatusText(await source.load()));
            return 0;
          }
          if (process.stdout.isTTY === true && process.stdin.isTTY === true) {
            // ink renders only its last frame when CI/CONTINUOUS_INTEGRATION is set (read once, when
            // ink loads). Someone watching a terminal wants live frames whatever their env says.
            process.env.CI = 'false';
            process.env.CONTINUOUS_INTEGRATION = 'false';
            const { runDashboard } = await import('../status/dashboard.js');
            await runDashboard(source.load, intervalMs);
            return 0;
          }
          await watchText(source.load, renderStatusText, intervalMs);
          return 0;
        } finally {
          await source.close();
        }
      }),
    );
}

/** Without a terminal: one text block per interval, until SIGINT/SIGTERM. */
async function watchText<R>(
  load: () => Promise<R>,
  render: (r: R) => string,
  intervalMs: number,
): Promise<void> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    while (!ac.signal.aborted) {
      // A failed read (the job not created yet, the control server restarting) is retried.
      try {
        out(`${render(await load())}\n`);
      } catch (e) {
        note(`reshard status: ${e instanceof Error ? e.message : String(e)} (retrying)`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, intervalMs);
        ac.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
