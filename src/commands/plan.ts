import { statSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { out, outJson } from '../output.js';
import type { EstimateRequest } from '../plan/estimate.js';
import type { Topology } from '../topology/types.js';
import { action } from './run.js';

interface Opts {
  from: string;
  to?: string;
  out?: string;
  json?: boolean;
  estimate: string;
  copyRate: string;
  sampleRows: string;
  suggest?: boolean;
  shards?: string;
}

const ESTIMATES: readonly EstimateRequest[] = ['auto', 'exact', 'sample', 'none'];

/** Rows per second: `50000`, `50k`, `1.5m`. */
function parseRate(v: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(v.trim());
  const n = m
    ? Number(m[1]) * (m[2]?.toLowerCase() === 'k' ? 1e3 : m[2]?.toLowerCase() === 'm' ? 1e6 : 1)
    : 0;
  if (!m || !(n >= 1)) {
    throw new UsageError('E_USAGE', `--copy-rate must be rows per second, at least 1, got '${v}'`, {
      hint: 'e.g. --copy-rate 50000 or --copy-rate 50k',
    });
  }
  return Math.round(n);
}

function wholeNumber(v: string, flag: string, min: number, max: number, example: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < min || n > max) {
    throw new UsageError('E_USAGE', `${flag} must be a whole number from ${min} to ${max}, got '${v}'`, {
      hint: `e.g. ${flag} ${example}`,
    });
  }
  return n;
}

/** The plan file's directory must exist before any work is done, so a long estimate is not wasted. */
function checkOut(path: string): void {
  const dir = dirname(resolve(path));
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) {
    throw new UsageError('E_PLAN_OUT', `cannot write the plan to ${path}: directory ${dir} does not exist`, {
      hint: 'create the directory first, or choose another --out path',
    });
  }
  try {
    if (statSync(path).isDirectory()) {
      throw new UsageError('E_PLAN_OUT', `--out ${path} is a directory`, {
        hint: 'name a file, e.g. plan.json',
      });
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
  }
}

/** Directories kept in a table are read at copy time; a plan made without them would be wrong. */
function refuseTableDirectory(t: Topology): void {
  if (t.scheme.type === 'directory' && t.scheme.source.kind === 'table' && t.scheme.entries === undefined) {
    throw new UsageError(
      'E_DIRECTORY_TABLE',
      `${t.file} keeps its directory in a table, which reshard plan cannot read yet`,
      {
        where: `${t.file}: scheme.table`,
        hint: 'export the directory to a key,shard CSV file and point scheme.file at it',
      },
    );
  }
}

export function definePlan(program: Command): void {
  program
    .command('plan')
    .description(
      'Plan the move from the current to the target topology: segments that move and stay, movement against the minimum, rows and bytes per move, balance after, ETA. Only reads: sources are queried for row counts (--estimate none: no server contact). With --suggest, compare hash-mod and consistent hashing for --shards M.',
    )
    .requiredOption('--from <file>', 'current topology')
    .option('--to <file>', 'target topology')
    .option('--out <file>', 'write the plan file here (atomically); later commands read it')
    .option(
      '--estimate <mode>',
      'rows and bytes per move: auto (exact where SQL can route the keys, else sample), exact, sample, none',
      'auto',
    )
    .option('--copy-rate <rows/s>', 'copy rate the ETA assumes, over all sources together', '50000')
    .option('--sample-rows <n>', 'rows sampled per table per source (--estimate sample)', '10000')
    .option('--suggest', 'compare hash-mod and consistent hashing for --shards M shards (no --to)')
    .option('--shards <M>', 'target shard count, with --suggest')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (opts: Opts) => {
        const tty = process.stdout.isTTY === true;
        if (opts.suggest) {
          if (opts.to || opts.out) {
            throw new UsageError(
              'E_USAGE',
              '--suggest compares schemes for a shard count; it takes no --to or --out',
              {
                hint: 'reshard plan --suggest --from current.yaml --shards 6',
              },
            );
          }
          if (opts.shards === undefined) {
            throw new UsageError('E_USAGE', '--suggest needs --shards M (the target shard count)', {
              hint: 'reshard plan --suggest --from current.yaml --shards 6',
            });
          }
          const shards = wholeNumber(opts.shards, '--shards', 1, 65536, 6);
          const { loadTopology } = await import('../topology/load.js');
          const { suggest } = await import('../plan/suggest.js');
          const { renderSuggestion } = await import('../plan/render.js');
          const from = loadTopology(opts.from);
          refuseTableDirectory(from);
          const s = suggest(from, shards);
          if (opts.json) outJson({ ok: true, ...s });
          else out(renderSuggestion(s, { tty }));
          return 0;
        }
        if (opts.shards !== undefined) {
          throw new UsageError('E_USAGE', '--shards goes with --suggest', {
            hint: 'reshard plan --suggest --from current.yaml --shards 6, or give a target with --to',
          });
        }
        if (!opts.to) {
          throw new UsageError(
            'E_USAGE',
            'reshard plan needs --to <target topology> (or --suggest --shards M)',
            {
              hint: 'reshard plan --from current.yaml --to target.yaml --out plan.json',
            },
          );
        }
        const requested = opts.estimate as EstimateRequest;
        if (!ESTIMATES.includes(requested)) {
          throw new UsageError(
            'E_USAGE',
            `--estimate must be one of ${ESTIMATES.join(', ')}, got '${opts.estimate}'`,
            {
              hint: 'leave it out (auto: exact where SQL can route the keys, else sample), or --estimate none to skip the servers',
            },
          );
        }
        const copyRate = parseRate(opts.copyRate);
        const sampleRows = wholeNumber(opts.sampleRows, '--sample-rows', 100, 10_000_000, 10_000);
        if (opts.out) checkOut(opts.out);

        const { loadTopology } = await import('../topology/load.js');
        const { plan } = await import('../plan/planner.js');
        const { writePlanFile } = await import('../plan/planfile.js');
        const { estimatePlan, resolveEstimateMode, summarizePlan } = await import('../plan/estimate.js');
        const { renderPlanReport } = await import('../plan/render.js');
        const from = loadTopology(opts.from);
        const to = loadTopology(opts.to);
        refuseTableDirectory(from);
        refuseTableDirectory(to);
        const p = plan(from, to);
        if (opts.out) {
          // Later commands resolve these against the plan file's directory first
          // (job/context.ts resolveTopologyPath), so the plan moves with its topologies.
          const base = dirname(resolve(opts.out));
          p.from.file = relative(base, resolve(opts.from));
          p.to.file = relative(base, resolve(opts.to));
        }
        const { mode, note } = resolveEstimateMode(requested, from, to);
        const progress = process.stderr.isTTY === true && !opts.json;
        const estimate =
          mode === 'none'
            ? undefined
            : await estimatePlan({
                plan: p,
                from,
                to,
                mode,
                sampleRows,
                ...(progress
                  ? {
                      onProgress: (e: { done: number; total: number; source: string; table: string }) =>
                        process.stderr.write(
                          `\r\x1b[2Kcounting rows (${mode}): ${e.done}/${e.total} ${e.source}.${e.table}${e.done === e.total ? '\n' : ''}`,
                        ),
                    }
                  : {}),
              });
        const hash = opts.out ? writePlanFile(opts.out, p) : undefined;
        const report = summarizePlan(p, to, estimate, {
          requested,
          mode,
          copyRate,
          planFile: opts.out ?? null,
          notes: note ? [note] : [],
          ...(hash ? { hash } : {}),
        });
        if (opts.json) outJson({ ok: true, ...report });
        else out(renderPlanReport(report, { tty }));
        return 0;
      }),
    );
}
