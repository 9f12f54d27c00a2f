import type { Command } from 'commander';
import { asReshardError, ExitCode, type ReshardError } from '../errors.js';
import { out, outJson, reportError } from '../output.js';
import { action } from './run.js';

interface Opts {
  json?: boolean;
}

export function defineValidate(program: Command): void {
  program
    .command('validate')
    .description(
      'Check topology files: schema and cross-field rules; exits 2 with every problem of every file listed',
    )
    .argument('<files...>', 'topology YAML files')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (files: string[], opts: Opts) => {
        const { loadTopology, topologyHash } = await import('../topology/load.js');
        const ok: Record<string, unknown>[] = [];
        const failed: ReshardError[] = [];
        // Every file is checked, so one run shows every problem, not just the first file's.
        for (const f of files) {
          try {
            const t = loadTopology(f);
            ok.push({
              file: f,
              name: t.name,
              shards: t.shards.length,
              tables: t.tables.length,
              scheme: t.scheme.type,
              hash: topologyHash(t),
            });
          } catch (e) {
            failed.push(asReshardError(e));
          }
        }
        if (failed.length === 1 && ok.length === 0) throw failed[0];
        if (opts.json) {
          outJson({ ok: failed.length === 0, topologies: ok, errors: failed.map((e) => e.toJSON()) });
        } else {
          for (const r of ok)
            out(
              `${r.file}: ok (${r.shards} shards, ${r.tables} tables, ${r.scheme}, sha256 ${String(r.hash).slice(0, 12)})`,
            );
        }
        let code: number = ExitCode.ok;
        for (const e of failed) code = Math.max(code, reportError(e, { json: false }));
        return code;
      }),
    );
}
