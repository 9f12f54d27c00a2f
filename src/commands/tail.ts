import type { Command } from 'commander';
import { PreconditionError, UsageError } from '../errors.js';
import { note, out, outJson, table } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan: string;
  control?: string;
  source?: string[];
  reverse?: boolean;
  fromPosition?: string;
  metaDb: string;
  untilCaughtUp?: boolean;
  applyDdl?: boolean;
  metricsPort?: string;
  json?: boolean;
}

export function defineTail(program: Command): void {
  program
    .command('tail')
    .description(
      'Stream every source shard’s binlog and apply its changes to the new owners (catch-up), or with --reverse from the new shards back to the old ones after cutover. Runs until SIGINT/SIGTERM (graceful) or, with --until-caught-up, until lag reaches 0.',
    )
    .requiredOption('--plan <file>', 'plan file (reshard plan)')
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option(
      '--source <name>',
      'tail only this source shard (repeatable)',
      (v: string, acc: string[] = []) => [...acc, v],
    )
    .option('--reverse', 'after cutover: tail the new shards and apply to the old ones by the old routing')
    .option('--from-position <file:pos>', 'start here when a target has no position yet (needs one --source)')
    .option('--meta-db <name>', 'reshard’s database on each target (positions, parked rows)', '_reshard')
    .option('--until-caught-up', 'exit 0 once every source’s changes up to now are applied')
    .option('--apply-ddl', 'replay schema-only DDL on tracked tables on the targets instead of stopping')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port (/metrics)')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const { openJob } = await import('../job/context.js');
        const { parsePosition, formatPosition } = await import('../binlog/position.js');
        const { runTail } = await import('../binlog/tailer.js');
        const { TAIL_STATES } = await import('../binlog/status.js');
        let metricsPort: number | undefined;
        if (opts.metricsPort !== undefined) {
          metricsPort = Number(opts.metricsPort);
          if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) {
            throw new UsageError(
              'E_METRICS_PORT',
              `--metrics-port ${opts.metricsPort} is not a port number`,
              {
                hint: 'give 1–65535 (0 picks a free port)',
              },
            );
          }
        }
        const fromPosition = opts.fromPosition ? parsePosition(opts.fromPosition) : undefined;
        const direction = opts.reverse ? 'reverse' : 'forward';
        const ctx = await openJob({ planPath: opts.plan, control: opts.control, create: false });
        try {
          const allowed = TAIL_STATES[direction];
          if (!allowed.includes(ctx.job.state)) {
            throw new PreconditionError(
              'E_TAIL_JOB_STATE',
              `job ${ctx.job.name} is '${ctx.job.state}'; ${direction} tailing runs only while it is ${allowed.map((s) => `'${s}'`).join(' or ')}`,
              {
                hint: opts.reverse
                  ? 'reverse tailing starts at cutover'
                  : 'after cutover the new shards are authoritative: use --reverse',
              },
            );
          }
          const ac = new AbortController();
          const onSignal = () => {
            note('reshard tail: stopping (finishing the current transactions)…');
            ac.abort();
          };
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          try {
            const status = await runTail({
              ctx,
              direction,
              sources: opts.source,
              fromPosition,
              metaDb: opts.metaDb,
              applyDdl: opts.applyDdl === true,
              metricsPort,
              untilCaughtUp: opts.untilCaughtUp === true,
              signal: ac.signal,
              onNote: (t) => note(`reshard tail: ${t}`),
              onProgress: (s) => {
                for (const x of s.sources) {
                  note(
                    `tail ${x.source}: ${x.state} at ${formatPosition(x.position)} lag ${x.lagSeconds.toFixed(1)} s, ${Math.round(x.eventsPerSecond)} events/s, ${Math.round(x.rowsPerSecond)} rows/s`,
                  );
                }
              },
            });
            if (opts.json) {
              outJson({ ok: true, job: ctx.job.name, ...status });
            } else {
              out(
                table(
                  ['source', 'position', 'lag (s)', 'transactions', 'rows', 'reconnects'],
                  status.sources.map((x) => [
                    x.source,
                    formatPosition(x.position),
                    x.lagSeconds.toFixed(1),
                    x.transactions,
                    x.rows,
                    x.reconnects,
                  ]),
                ),
              );
            }
            return 0;
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
          }
        } finally {
          await ctx.close();
        }
      }),
    );
}
