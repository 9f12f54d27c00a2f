import type { Command } from 'commander';
import { out, outJson } from '../output.js';
import { action } from './run.js';

interface Opts {
  json?: boolean;
}

export function defineValidate(program: Command): void {
  program
    .command('validate')
    .description('Check topology files: schema, cross-field rules; exits 2 with every problem listed')
    .argument('<files...>', 'topology YAML files')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (files: string[], opts: Opts) => {
        const { loadTopology, topologyHash } = await import('../topology/load.js');
        const results = files.map((f) => {
          const t = loadTopology(f);
          return { file: f, name: t.name, shards: t.shards.length, tables: t.tables.length, scheme: t.scheme.type, hash: topologyHash(t) };
        });
        if (opts.json) outJson({ ok: true, topologies: results });
        else for (const r of results) out(`${r.file}: ok (${r.shards} shards, ${r.tables} tables, ${r.scheme}, sha256 ${r.hash.slice(0, 12)})`);
        return 0;
      }),
    );
}
