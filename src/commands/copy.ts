import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson, table } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan: string;
  control?: string;
  rate?: string;
  targetRate?: string;
  concurrency?: string;
  chunkTime?: string;
  maxThreadsRunning?: string;
  metaDb?: string;
  workerId?: string;
  execute?: boolean;
  json?: boolean;
  pause?: boolean;
  resume?: boolean;
  setRate?: string;
  setTargetRate?: string;
}

/** Rows per second: `20000`, `20k`, `1.5m`; 0 = unlimited. */
export function parseRate(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(v.trim());
  if (!m) throw new UsageError('E_USAGE', `${flag} must be rows per second, e.g. 20000 or 20k, got '${v}'`);
  const n = Number(m[1]) * (m[2]?.toLowerCase() === 'k' ? 1e3 : m[2]?.toLowerCase() === 'm' ? 1e6 : 1);
  // 0 means unlimited, so a positive rate that would round to 0 is an error, not "no limit".
  if (n > 0 && n < 1)
    throw new UsageError('E_USAGE', `${flag} ${v} is below 1 row per second`, {
      hint: 'give at least 1 (0 means unlimited); to stop copying, use --pause',
    });
  return Math.round(n);
}

/** A duration: `500ms`, `2s`, `1.5s`, or plain milliseconds. */
export function parseDuration(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(v.trim());
  if (!m || Number(m[1]) <= 0)
    throw new UsageError('E_USAGE', `${flag} must be a duration like 500ms or 2s, got '${v}'`);
  return Math.round(Number(m[1]) * (m[2] === 's' ? 1000 : 1));
}

function positiveInt(v: string, flag: string, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new UsageError('E_USAGE', `${flag} must be an integer from 1 to ${max}, got '${v}'`);
  return n;
}

function workerIdOf(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (!/^[\x21-\x7e]{1,191}$/.test(v))
    throw new UsageError(
      'E_USAGE',
      `--worker-id must be 1–191 printable characters without spaces, got '${v}'`,
    );
  return v;
}

/** `--set-rate N|off|default`: off = unlimited (0), default = back to each worker's own flag (null). */
function controlRate(v: string | undefined, flag: string): number | null | undefined {
  if (v === undefined) return undefined;
  if (v === 'off') return 0;
  if (v === 'default') return null;
  return parseRate(v, flag);
}

const mb = (n: number) => `${Math.round(n / (1 << 20))} MB`;

export function defineCopy(program: Command): void {
  program
    .command('copy')
    .description(
      'Copy the moving rows of every table to their new shards: throttled, parallel, resumable; several workers may share a job. Without --execute, shows what it would copy.',
    )
    .requiredOption('--plan <file>', 'plan file (from reshard plan)')
    .option('--control <dsn>', 'control schema DSN (default $RESHARD_CONTROL_DSN)')
    .option('--rate <rows/s>', 'rows per second this worker writes over all targets (default unlimited)')
    .option('--target-rate <rows/s>', 'rows per second this worker writes to each target (default unlimited)')
    .option('--concurrency <n>', 'chunks in flight per source, and writers per target', '1')
    .option(
      '--chunk-time <duration>',
      'target time per chunk (read + write); chunk sizes adapt to it',
      '500ms',
    )
    .option('--max-threads-running <n>', 'wait while a source or target has more running threads', '50')
    .option('--meta-db <name>', "database on each target for reshard's own tables", '_reshard')
    .option('--worker-id <id>', 'name of this worker in chunk claims (default host:pid)')
    .option('--execute', 'copy (without it nothing is written)')
    .option('--pause', 'pause every worker of this plan’s job, then exit')
    .option('--resume', 'resume every worker of this plan’s job, then exit')
    .option('--set-rate <rows/s|off|default>', 'change --rate of every running worker, then exit')
    .option(
      '--set-target-rate <rows/s|off|default>',
      'change --target-rate of every running worker, then exit',
    )
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port while copying (0 picks one)')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const rate = opts.rate === undefined ? undefined : parseRate(opts.rate, '--rate');
        const targetRate =
          opts.targetRate === undefined ? undefined : parseRate(opts.targetRate, '--target-rate');
        const concurrency = positiveInt(opts.concurrency ?? '1', '--concurrency', 64);
        const chunkTimeMs = parseDuration(opts.chunkTime ?? '500ms', '--chunk-time');
        const maxThreadsRunning = positiveInt(
          opts.maxThreadsRunning ?? '50',
          '--max-threads-running',
          100_000,
        );
        const workerId = workerIdOf(opts.workerId);
        const setRate = controlRate(opts.setRate, '--set-rate');
        const setTargetRate = controlRate(opts.setTargetRate, '--set-target-rate');
        if (opts.pause && opts.resume)
          throw new UsageError('E_USAGE', '--pause and --resume exclude each other');
        const controlling = opts.pause || opts.resume || setRate !== undefined || setTargetRate !== undefined;
        if (controlling && opts.execute)
          throw new UsageError(
            'E_USAGE',
            '--pause/--resume/--set-rate change running workers; do not combine them with --execute',
            {
              hint: 'run them as a separate command while the copy runs',
            },
          );

        if (controlling) {
          const { openJob } = await import('../job/context.js');
          const { setCopyControl } = await import('../copy/control.js');
          const ctx = await openJob({ planPath: opts.plan, control: opts.control, create: false });
          try {
            const st = await setCopyControl(ctx.control.conn, ctx.job.id, {
              ...(opts.pause ? { paused: true } : opts.resume ? { paused: false } : {}),
              ...(setRate !== undefined ? { rate: setRate } : {}),
              ...(setTargetRate !== undefined ? { targetRate: setTargetRate } : {}),
            });
            if (opts.json) outJson({ ok: true, job: ctx.job.name, control: st });
            else
              out(
                `job ${ctx.job.name}: ${st.paused ? 'paused' : 'running'}; rate ${st.rate === null ? "each worker's --rate" : st.rate === 0 ? 'unlimited' : `${st.rate} rows/s`}; target rate ${st.targetRate === null ? "each worker's --target-rate" : st.targetRate === 0 ? 'unlimited' : `${st.targetRate} rows/s`} (workers pick it up within a second)`,
              );
            return 0;
          } finally {
            await ctx.close();
          }
        }

        if (!opts.execute) {
          const { previewCopy } = await import('../copy/preview.js');
          const { assertPreflight, renderReport } = await import('../preflight/index.js');
          const p = await previewCopy({ planPath: opts.plan });
          if (opts.json) {
            if (p.preflight.ok) outJson({ ok: true, dryRun: true, preview: p });
          } else {
            out(`plan ${p.plan.path} (sha256 ${p.plan.hash.slice(0, 12)}): ${p.plan.from} → ${p.plan.to}`);
            out(
              table(
                ['source', 'moves to', 'table', 'table rows', 'est. rows to copy', 'selected by'],
                p.sources.flatMap((s) =>
                  s.tables.map((t) => [
                    s.source,
                    [...new Set(s.moves.map((m) => m.to))].join(','),
                    t.table,
                    t.tableRows ?? '?',
                    t.estimatedRows ?? '?',
                    t.filter === 'all' ? 'all rows' : t.filter === 'sql' ? 'SQL predicate' : 'client filter',
                  ]),
                ),
              ),
            );
            out(`about ${p.estimatedRows} rows to copy (estimates from information_schema)`);
            if (!p.preflight.ok) out(renderReport(p.preflight));
            note('dry run: nothing was written; add --execute to copy');
          }
          assertPreflight(p.preflight);
          return 0;
        }

        const { runCopy } = await import('../copy/run.js');
        const { parseMetricsPort, serveMetrics } = await import('../metrics/index.js');
        const metricsPort = parseMetricsPort((opts as { metricsPort?: string }).metricsPort);
        const metrics = metricsPort !== undefined ? await serveMetrics(metricsPort) : undefined;
        if (metrics) note(`metrics on http://127.0.0.1:${metrics.port}/metrics`);
        const s = await runCopy({
          planPath: opts.plan,
          ...(opts.control !== undefined ? { control: opts.control } : {}),
          ...(rate !== undefined ? { rate } : {}),
          ...(targetRate !== undefined ? { targetRate } : {}),
          concurrency,
          chunkTimeMs,
          maxThreadsRunning,
          ...(opts.metaDb !== undefined ? { metaDb: opts.metaDb } : {}),
          ...(workerId !== undefined ? { workerId } : {}),
          handleSignals: true,
        }).finally(() => metrics?.close());
        if (opts.json) outJson(s);
        else if (s.alreadyCopied) {
          out(`job ${s.job.name} is ${s.job.state}: the copy is already complete`);
        } else {
          out(
            table(
              ['source', 'table', 'rows (this worker)', 'chunks', 'rows (job)', 'state'],
              s.tables.map((t) => [t.source, t.table, t.rows, t.chunks, t.rowsTotal, t.state]),
            ),
          );
          out(
            `${s.complete ? 'copy complete' : 'copy interrupted (re-run to resume)'}: ${s.rows} rows in ${s.seconds.toFixed(1)} s ` +
              `(${s.rowsPerSecond} rows/s), throttled ${s.throttledSeconds} s, peak RSS ${mb(s.peakRssBytes)}; job ${s.job.name} is ${s.job.state}`,
          );
          if (s.misplaced > 0)
            note(
              `warning: ${s.misplaced} rows on a source that does not own them were not copied (see the log)`,
            );
        }
        // 130: stopped by SIGINT/SIGTERM before the job was complete (re-run to resume).
        return s.complete ? 0 : 130;
      }),
    );
}
