import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { note, out, outJson, table } from '../output.js';
import { action } from './run.js';

interface DirOpts {
  dir?: string;
  json?: boolean;
}

function parseNames(v: string): string[] {
  const names = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0 || names.some((n) => !/^[A-Za-z0-9_-]+$/.test(n))) {
    throw new UsageError('E_USAGE', `--names must be a comma-separated list of instance names, got '${v}'`, {
      hint: 'e.g. --names ctl,s0,s1,t0,t1,t2',
    });
  }
  return names;
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1024 || n > 65000) {
    throw new UsageError('E_USAGE', `--base-port must be a port from 1024 to 65000, got '${v}'`, {
      hint: 'e.g. --base-port 34400',
    });
  }
  return n;
}

export function defineSandbox(program: Command): void {
  const sb = program
    .command('sandbox')
    .description('Local MariaDB/MySQL servers on loopback ports for trying reshard and for tests');

  sb.command('up')
    .description('Start sandbox servers (ROW binlog, FULL row image, distinct server_id); idempotent')
    .option('--dir <dir>', 'state directory (default .reshard/sandbox or $RESHARD_SANDBOX_DIR)')
    .option('--names <list>', 'instance names, one port each from --base-port', 'ctl,s0,s1,t0,t1,t2')
    .option('--base-port <port>', 'port of the first instance', '34400')
    .option('--json', 'print the instances as JSON')
    .action(
      action(async (opts: DirOpts & { names: string; basePort: string }) => {
        const { sandboxUp, sandboxStatus, defaultSandboxDir } = await import('../sandbox/instances.js');
        const dir = opts.dir ?? defaultSandboxDir();
        const started = Date.now();
        await sandboxUp({ dir, names: parseNames(opts.names), basePort: parsePort(opts.basePort) });
        const st = sandboxStatus(dir);
        if (opts.json) outJson({ ok: true, dir, instances: st });
        else {
          out(
            table(
              ['name', 'port', 'server_id', 'pid', 'dsn'],
              st.map((s) => [s.name, s.port, s.serverId, s.pid ?? '-', s.dsn]),
            ),
          );
          note(
            `sandbox up in ${((Date.now() - started) / 1000).toFixed(1)} s (state in ${dir}); \`reshard sandbox env\` prints the DSNs`,
          );
        }
        return 0;
      }),
    );

  sb.command('down')
    .description('Stop the sandbox servers this sandbox started (never any other server)')
    .option('--dir <dir>', 'state directory')
    .option('--purge', 'also delete the datadirs')
    .option('--json', 'JSON output')
    .action(
      action(async (opts: DirOpts & { purge?: boolean }) => {
        const { sandboxDown, defaultSandboxDir } = await import('../sandbox/instances.js');
        const dir = opts.dir ?? defaultSandboxDir();
        const stopped = await sandboxDown(dir, { purge: opts.purge === true });
        if (opts.json) outJson({ ok: true, stopped, purged: opts.purge === true });
        else
          out(
            stopped.length
              ? `stopped: ${stopped.join(', ')}${opts.purge ? ' (purged)' : ''}`
              : `nothing running in ${dir}`,
          );
        return 0;
      }),
    );

  sb.command('status')
    .description('Show sandbox instances and whether they run')
    .option('--dir <dir>', 'state directory')
    .option('--json', 'JSON output')
    .action(
      action(async (opts: DirOpts) => {
        const { sandboxStatus, defaultSandboxDir } = await import('../sandbox/instances.js');
        const st = sandboxStatus(opts.dir ?? defaultSandboxDir());
        if (opts.json) outJson({ ok: true, instances: st });
        else if (st.length === 0) out('no sandbox here; run `reshard sandbox up`');
        else
          out(
            table(
              ['name', 'port', 'server_id', 'state', 'dsn'],
              st.map((s) => [
                s.name,
                s.port,
                s.serverId,
                s.running ? `running (pid ${s.pid})` : 'stopped',
                s.dsn,
              ]),
            ),
          );
        return 0;
      }),
    );

  sb.command('seed')
    .description(
      'Create the fixture schema on every shard of a topology and fill it, each row on the shard that owns it',
    )
    .requiredOption('--topology <file>', 'topology whose shards receive the data')
    .option(
      '--rows <n>',
      'approximate total rows over all tables (0: schema only, e.g. for targets)',
      '100000',
    )
    .option('--seed <n>', 'PRNG seed; the same seed gives the same data', '1')
    .option('--schema <file>', 'schema SQL', 'fixtures/shop/schema.sql')
    .option('--replace', 'drop and recreate fixture tables that already exist')
    .option('--json', 'JSON output')
    .action(
      action(
        async (opts: {
          topology: string;
          rows: string;
          seed: string;
          schema: string;
          replace?: boolean;
          json?: boolean;
        }) => {
          const rows = Number(opts.rows);
          const seedN = Number(opts.seed);
          if (!Number.isInteger(rows) || rows < 0)
            throw new UsageError('E_USAGE', `--rows must be a whole number >= 0, got '${opts.rows}'`);
          if (!Number.isInteger(seedN) || seedN < 0)
            throw new UsageError('E_USAGE', `--seed must be a whole number >= 0, got '${opts.seed}'`);
          const { loadTopology } = await import('../topology/load.js');
          const { seed, readSchemaFile } = await import('../sandbox/seed.js');
          const topology = loadTopology(opts.topology);
          const result = await seed({
            topology,
            rows,
            seed: seedN,
            schemaSql: readSchemaFile(opts.schema),
            replace: opts.replace === true,
            onProgress: (e) => note(`seeded ${e.table}: ${e.rows} rows`),
          });
          if (opts.json) outJson({ ok: true, ...result });
          else {
            out(
              table(
                ['shard', 'rows'],
                Object.entries(result.perShard).map(([s, n]) => [s, n]),
              ),
            );
            out(
              `${result.rows} rows in ${result.seconds.toFixed(1)} s (${Math.round(result.rows / Math.max(result.seconds, 0.001))} rows/s)`,
            );
          }
          return 0;
        },
      ),
    );

  sb.command('env')
    .description(
      'Print shell exports with the DSNs of the sandbox instances (no secrets: root has no password on loopback)',
    )
    .option('--dir <dir>', 'state directory')
    .option('--json', 'JSON output')
    .action(
      action(async (opts: DirOpts) => {
        const { sandboxStatus, defaultSandboxDir } = await import('../sandbox/instances.js');
        const st = sandboxStatus(opts.dir ?? defaultSandboxDir());
        if (st.length === 0) {
          throw new UsageError('E_NO_SANDBOX', 'no sandbox in this directory', {
            hint: 'run `reshard sandbox up` first',
          });
        }
        if (opts.json) {
          outJson({ ok: true, dsns: Object.fromEntries(st.map((s) => [s.name, s.dsn])) });
          return 0;
        }
        const ctl = st.find((s) => s.name === 'ctl') ?? st[0]!;
        out(`export RESHARD_CONTROL_DSN=mysql://root@127.0.0.1:${ctl.port}/reshard_control`);
        for (const s of st)
          out(`export RESHARD_SANDBOX_${s.name.toUpperCase().replace(/-/g, '_')}_DSN=${s.dsn}`);
        return 0;
      }),
    );
}
