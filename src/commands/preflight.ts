import type { Command } from 'commander';
import { out, outJson } from '../output.js';
import { action } from './run.js';

interface Opts {
  from: string;
  to?: string;
  json?: boolean;
}

export function definePreflight(program: Command): void {
  program
    .command('preflight')
    .description(
      'Check every shard (connectivity, version, binlog, server_id, grants, tables, schema); exits 3 listing every problem. Read-only.',
    )
    .requiredOption('--from <file>', 'current topology (its shards are sources)')
    .option('--to <file>', 'target topology (its shards are targets)')
    .option('--json', 'print the report as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const { loadTopology } = await import('../topology/load.js');
        const { assertPreflight, renderReport, runPreflight } = await import('../preflight/index.js');
        const from = loadTopology(opts.from);
        const to = opts.to ? loadTopology(opts.to) : undefined;
        const report = await runPreflight({ from, ...(to ? { to } : {}) });
        // With --json and failures, the error object (E_PREFLIGHT, data = the report) is the one JSON document.
        if (!opts.json) out(renderReport(report));
        assertPreflight(report);
        if (opts.json) outJson({ ok: true, report });
        return 0;
      }),
    );
}
