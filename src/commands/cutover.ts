import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson, table } from '../output.js';
import { action } from './run.js';

interface Opts {
  plan: string;
  control?: string;
  metaDb?: string;
  execute?: boolean;
  maxFreeze: string;
  maxLag: string;
  verifyMaxAge: string;
  onFlip?: string;
  routingOut?: string;
  readsOnly?: boolean;
  canary?: string;
  json?: boolean;
}

export function defineCutover(program: Command): void {
  program
    .command('cutover')
    .description(
      'Switch writes and reads to the new shards: freeze writes on the old ones (read_only), drain the tailer to their final positions, verify, flip routing in one control transaction, arm reverse replication, unfreeze. Without --execute: print the preconditions and the predicted freeze. A re-run after a crash finishes or undoes what the journal shows.',
    )
    .requiredOption('--plan <file>', 'plan file (from `reshard plan`)')
    .option('--control <dsn>', 'control schema DSN, mysql://user@host:port/db (default $RESHARD_CONTROL_DSN)')
    .option('--meta-db <name>', 'reshard’s database on each target (positions, parked rows)', '_reshard')
    .option('--execute', 'do it (default: only check and predict)')
    .option('--max-freeze <duration>', 'abort before freezing when the predicted freeze is longer', '5s')
    .option('--max-lag <duration>', 'the tailer must apply the sources’ writes within this', '2s')
    .option('--verify-max-age <duration>', 'a clean verify must have finished within this', '30m')
    .option(
      '--on-flip <command>',
      'shell command run after the flip (env RESHARD_ROUTING_VERSION, RESHARD_ROUTING_FILE)',
    )
    .option('--routing-out <file>', 'write the new routing document (JSON) here after the flip')
    .option('--reads-only', 'flip reads only: writes stay on the old shards (a later cutover flips writes)')
    .option(
      '--canary <fraction>',
      'with --reads-only: flip reads of this fraction of the moving segments only',
    )
    .option(
      '--metrics-port <port>',
      'serve Prometheus metrics (predicted and measured freeze, steps) on this port',
    )
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const { runCutover, parseDurationMs, fmtMs } = await import('../cutover/index.js');
        const dur = (v: string, flag: string) => {
          const ms = parseDurationMs(v);
          if (ms === undefined || ms <= 0)
            throw new UsageError(
              'E_USAGE',
              `${flag} must be a duration like 500ms, 5s, 30m or 1h, got '${v}'`,
            );
          return ms;
        };
        let canary: number | undefined;
        if (opts.canary !== undefined) {
          canary = Number(opts.canary);
          if (!Number.isFinite(canary) || canary <= 0 || canary > 1)
            throw new UsageError('E_USAGE', `--canary must be a fraction in (0, 1], got '${opts.canary}'`);
        }
        const { parseMetricsPort, serveMetrics } = await import('../metrics/index.js');
        const metricsPort = parseMetricsPort((opts as { metricsPort?: string }).metricsPort);
        const metrics = metricsPort !== undefined ? await serveMetrics(metricsPort) : undefined;
        if (metrics) note(`reshard cutover: metrics on http://127.0.0.1:${metrics.port}/metrics`);
        const r = await runCutover({
          planPath: opts.plan,
          control: opts.control,
          metaDb: opts.metaDb,
          execute: opts.execute === true,
          maxFreezeMs: dur(opts.maxFreeze, '--max-freeze'),
          maxLagMs: dur(opts.maxLag, '--max-lag'),
          verifyMaxAgeMs: dur(opts.verifyMaxAge, '--verify-max-age'),
          onFlip: opts.onFlip,
          routingOut: opts.routingOut,
          readsOnly: opts.readsOnly === true,
          canary,
          onNote: (t) => note(`reshard cutover: ${t}`),
        }).finally(() => metrics?.close());
        if (opts.json) {
          outJson(r);
          return r.ok ? 0 : 3;
        }
        const lines: string[] = [`job ${r.job.name}: ${r.job.state} (${r.mode})`];
        if (r.checks.length) {
          lines.push(
            table(
              ['check', 'ok', 'detail'],
              r.checks.map((c) => [c.name, c.ok ? 'ok' : 'FAIL', c.detail]),
            ),
          );
          for (const c of r.checks) if (!c.ok && c.hint) lines.push(`  fix (${c.name}): ${c.hint}`);
        }
        if (r.prediction) {
          const p = r.prediction;
          lines.push(
            `predicted freeze: ${fmtMs(p.totalMs)} = drain ${fmtMs(p.drainMs)} + verify (${p.verifyMode}) ${fmtMs(p.verifyMs)} + overhead ${fmtMs(p.overheadMs)}; budget ${fmtMs(p.budgetMs)}`,
          );
        }
        if (r.freezeServers.length) {
          lines.push(
            table(
              ['server', 'shards', 'after cutover'],
              r.freezeServers.map((s) => [
                s.address,
                s.shards.join(','),
                s.staysFrozen ? 'stays read-only' : 'writable (in place)',
              ]),
            ),
          );
        }
        if (r.steps.length) lines.push(`steps: ${r.steps.map((s) => `${s.step} ${s.ms} ms`).join(', ')}`);
        if (r.freezeMs !== undefined) lines.push(`measured freeze: ${fmtMs(r.freezeMs)}`);
        if (r.routingVersion !== undefined) lines.push(`routing version ${r.routingVersion} is active`);
        if (r.reverseStart && Object.keys(r.reverseStart).length)
          lines.push(
            `reverse replication armed at ${Object.entries(r.reverseStart)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')}`,
          );
        if (r.mode === 'dry-run')
          lines.push(r.ok ? 'ready: re-run with --execute' : 'not ready (nothing was changed)');
        out(lines.join('\n'));
        return r.ok ? 0 : 3;
      }),
    );
}
